"""The ``demo`` command: the whole job on the bundled real data."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import demo, options
from ..logs import LOGGER, progress_printer

def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo", help="run the whole job on bundled real data (Arabidopsis, SpliceAI scores)",
        description=demo.__doc__.split("\n\n")[0] + " " + " ".join(demo.__doc__.split("\n\n")[1].split()))
    parser.add_argument("--out", default="dask-enrich-demo",
                        help="output directory (default ./dask-enrich-demo; replaced if it exists)")
    parser.add_argument("--workers", type=int, default=options.DEFAULT_DEMO_WORKERS,
                        help=f"local Dask workers (default {options.DEFAULT_DEMO_WORKERS})")
    parser.add_argument("--score", action="store_true",
                        help="apply the bundled meta-model in the same pass: every track position "
                             "with base and meta scores (meta where uncertain) and a 'rescored' flag")
    parser.set_defaults(handler=_cli_demo)


def _cli_demo(args: argparse.Namespace) -> int:
    summary = demo.run_demo(args.out, workers=args.workers, progress=progress_printer(sys.stderr),
                       log=LOGGER.info, score=args.score)
    print("\n".join(summary.lines()))
    print("\nPreview (first re-scored positions: base and meta scores):" if args.score else
          "\nPreview (first rows, a few of the 124 feature columns):")
    print(demo.preview(args.out))
    if args.score:
        print(f"\nAgreement with annotated splice sites on the {len(demo._held_out())} demo genes the "
              "meta-model did not train on (whole genes, every nucleotide):")
        print(demo.agreement(args.out).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nOutput: {Path(args.out).resolve()}  (one Parquet file per gene partition; "
          f"read it with pandas.read_parquet)")
    return 0
