"""The ``skew`` command: recompute a training feature matrix and report the differences."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .. import options
from ..config import EnrichConfig
from ..errors import EnrichError, InputError
from ..skew import ATOL, EXAMPLES, RTOL, SKEW_EXIT_CODE, skew_check


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``skew`` subcommand (sets ``handler`` to a function returning an exit code)."""
    parser = subparsers.add_parser(
        "skew",
        help="check that the engine reproduces a training feature matrix (train/serve skew report)",
        description=(
            "Recompute every manifest feature of the rows of a training feature matrix (gene_id, "
            "position, base scores, and context_score_* when no --track is given) and compare them "
            "with the training values, feature by feature. Writes REPORT_DIR/skew_report.json, "
            "skew_report.html, differing_rows.tsv and unplaced_rows.tsv, and prints a summary. "
            f"Exit code 0: no feature differs beyond tolerance; {SKEW_EXIT_CODE}: some do; 2/3/4: "
            "bad input, bad options, run failure; 1: an unexpected failure."),
    )
    parser.add_argument("--training", required=True, metavar="FEATURES",
                        help="training feature matrix: .tsv/.csv(.gz), .parquet, or a directory of them")
    parser.add_argument("--manifest", required=True, metavar="M",
                        help="feature manifest (CSV, JSON, text) or model directory")
    from .build_cache import add_genome_arguments, add_reference_arguments

    add_genome_arguments(parser)
    parser.add_argument("--cache", metavar="DIR", help="genomic cache from `dask-enrich build-cache`")
    add_reference_arguments(parser)
    parser.add_argument("--track", metavar="T",
                        help="full base-prediction track; the context is then recomputed from it")
    parser.add_argument("--rtol", type=float, default=RTOL, help=f"relative tolerance (default {RTOL})")
    parser.add_argument("--atol", type=float, default=ATOL, help=f"absolute tolerance (default {ATOL})")
    parser.add_argument("--coordinates", choices=options.COORDINATES, default=options.DEFAULT_COORDINATES,
                        help="training positions: 1-based genomic (default) or gene-relative "
                             "(MetaSpliceAI: 0-based offset from the gene's 5' end)")
    parser.add_argument("--context-track", choices=options.CONTEXT_TRACK,
                        default=options.DEFAULT_CONTEXT_TRACK,
                        help="which track gives a row's context neighbours (default: larger score)")
    parser.add_argument("--examples", type=int, default=EXAMPLES, help="example rows per feature")
    parser.add_argument("--local", action="store_true",
                        help="recompute in this process (no Dask cluster); for small matrices")
    parser.add_argument("--workers", type=int, default=options.DEFAULT_WORKERS,
                        help="local Dask workers (default: enrich.workers of Dask's config, else "
                             "Dask's CPU count, as `run`)")
    parser.add_argument("--out", required=True, metavar="REPORT_DIR", help="report directory")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.set_defaults(handler=run_cli)
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """The ``skew`` command: run the check, write the report, print the summary; the exit code."""
    from ..logs import LOGGER, progress_printer
    from ..skew_report import summary_lines, write_report

    say = LOGGER.info  # filtered by --quiet / --log-level (the main parser configures it)
    try:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        config = EnrichConfig(coordinates=args.coordinates, context_track=args.context_track)
        report = skew_check(args.training, args.manifest, genome=args.genome,
                            annotation=args.annotation, cache=args.cache, track=args.track,
                            rtol=args.rtol, atol=args.atol, config=config,
                            engine="local" if args.local else "dask", workers=args.workers,
                            work_dir=out, examples=args.examples, log=say,
                            gene_key=args.gene_key, seq_aliases=args.seq_aliases,
                            progress=None if args.quiet else progress_printer(sys.stderr))
        paths = write_report(report, out, log=say)
    except (EnrichError, OSError) as exc:
        if getattr(args, "debug", False):  # the main parser's --debug: show the traceback
            raise
        print(f"dask-enrich skew: error: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, EnrichError) else InputError.exit_code
    for line in summary_lines(report, paths):
        print(line)
    return report.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dask_enrich.cli.skew ...``: the ``skew`` command on its own."""
    parser = argparse.ArgumentParser(prog="dask-enrich")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["skew", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
