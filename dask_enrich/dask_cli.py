"""``dask enrich ...``: the ``dask-enrich`` commands under Dask's own ``dask`` command.

Dask's command line (``dask.cli.run_cli``) adds every ``click`` command registered in the
``dask_cli`` entry-point group, as distributed does for ``dask scheduler`` and ``dask worker``.
This package registers :data:`enrich` there (``pyproject.toml``); it hands all its arguments,
``--help`` included, to the argparse command line of :mod:`dask_enrich.cli` unchanged, so
``dask enrich run ...`` and ``dask-enrich run ...`` are the same command with the same exit codes.
"""
from __future__ import annotations

import sys

import click

from .cli import main


@click.command(
    "enrich",
    help="dask-enrich: training-parity feature enrichment for splice-site meta-models "
         "(`dask enrich --help` lists its commands)",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def enrich(args: tuple[str, ...]) -> None:
    """Run ``dask-enrich`` with ``args``; exit with its exit code."""
    sys.exit(main(list(args), prog="dask enrich"))
