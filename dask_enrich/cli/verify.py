"""The ``verify`` command: check a finished dataset against its record."""
from __future__ import annotations

import sys
from typing import Any

from ..engine.verify import verify_output

def register_cli(subparsers: Any) -> None:
    """``dask-enrich verify OUT``."""
    p = subparsers.add_parser(
        "verify", help="check a finished output against its _SUCCESS.json (files, hashes, rows)",
        description="Check a dataset written by `dask-enrich run`/`score` against its record: every "
                    "part file present with the recorded bytes (CRC-32), valid Parquet page "
                    "checksums, the recorded rows, rows per gene and schema, and no file the record "
                    "does not list. Exit 0 when whole; else each problem on stderr and exit 2.")
    p.add_argument("out", metavar="OUT", help="the output directory (local or URL)")
    p.set_defaults(handler=_cmd_verify)


def _cmd_verify(args: Any) -> int:
    problems, counts = verify_output(args.out)
    if problems:
        print(f"dask-enrich verify: {args.out}: {len(problems)} problem(s):", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        print("rerun with --resume to rewrite the damaged partitions", file=sys.stderr)
        return 2
    print(f"{args.out}: {counts['files']} file(s), {counts['rows']:,} rows: match the record")
    return 0
