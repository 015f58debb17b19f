"""The ``dask-enrich`` command line: argument parsing and messages only.

Commands: ``run`` (the engine), ``features`` (the feature registry), and the commands other modules
register when importable (``build-cache``, ``predict-base``, ``demo``): each such module offers
``register_cli(subparsers)``, which adds a subparser whose ``handler(args) -> int`` does the work.
Errors of this package end the process with their class's exit code and a one-line message
(``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import Sequence

from .. import options
from .._lazy import collector_paused, dask_imported_lean
from .._version import __version__
from ..errors import ConfigError, EnrichError
from ..logs import progress_printer as _progress_printer

#: Modules that may add subcommands (each through ``register_cli(subparsers)``).
PLUGIN_MODULES = ("dask_enrich.cli.features", "dask_enrich.cli.build_cache",
                  "dask_enrich.cli.predict_base", "dask_enrich.cli.demo", "dask_enrich.cli.skew",
                  "dask_enrich.cli.verify")

_EPILOG_RUN = """\
inputs:
  positions need the columns gene_id, position, donor_score, acceptor_score, neither_score
  (optional: chrom, strand, context_score_m2/_m1/_p1/_p2, and any --keep-columns). A track needs
  gene_id, position, donor_score, acceptor_score (optional: neither_score, chrom, strand).
  Parquet (file, directory or glob) or CSV/TSV (optionally .gz); local paths or fsspec URLs.

output:
  OUT/part-NNNNN.parquet, one per gene partition, all with the same schema: gene_id, position,
  [chrom or chrom_name, strand], the --keep-columns, then the manifest's features in order.
  OUT/_SUCCESS.json records rows in/written/rejected, imputed features, each file's rows and
  CRC-32, fingerprints and timings; `dask-enrich verify OUT` checks OUT against it.

exit codes: 0 success, 2 bad input or manifest (also usage errors, every row rejected), 3 bad
  option, missing features, or OUT not usable as asked (locked by another run, not empty, ...),
  4 run failure (workers or scheduler lost, disk full, read-only OUT), 5 feature plugin error,
  6 (skew) differences found, 1 unexpected error, 130 interrupted (Ctrl-C), 143 terminated
  (SIGTERM): rerun with --resume.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, not {value}")
    return value


def _columns(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")


def _add_logging(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``-v`` and ``--log-level`` (on the main parser and, not overriding it, on each command)."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="store_const", const="debug", dest="log_level",
                        default=default, help="log debug messages too (--log-level debug)")
    parser.add_argument("--log-level", choices=options.LOG_LEVELS, default=default,
                        help="messages of the dask_enrich logger to show on stderr: debug, info "
                             "(default: plan, cluster, progress notes), warning (also --quiet), error")


def _add_run(subparsers, name: str = "run") -> None:
    from . import scoring

    p = subparsers.add_parser(
        name, help="enrich positions with a manifest's features on Dask, write Parquet"
        if name == "run" else scoring.SCORE_HELP,
        description="Compute, for each position, the feature vector a meta-model's manifest names;\n"
                    "partitioned by gene on Dask; written as a Parquet dataset."
        if name == "run" else scoring.SCORE_DESCRIPTION,
        epilog=_EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("inputs")
    g.add_argument("--positions", metavar="P",
                   help="positions to enrich (Parquet file/dir/glob or CSV/TSV[.gz], local or URL). "
                        "Omit it to select uncertain positions from --track with --select")
    g.add_argument("--manifest", metavar="M", required=True, action="append",
                   help="feature manifest: feature_manifest.csv, train.features.json, a "
                        "one-name-per-line .txt, or a model directory holding one (and optionally "
                        "feature_stats.json with training medians for --missing impute). Give it "
                        "several times, or a directory of model directories, to enrich once and "
                        "write one dataset per model, OUT/<model-name>/")
    g.add_argument("--track", metavar="T",
                   help="full per-nucleotide base-model predictions (same formats): the source of "
                        "context scores (neighbouring nucleotides), and of positions when "
                        "--positions is omitted")
    from .build_cache import add_genome_arguments, add_reference_arguments

    add_genome_arguments(g, genome_note=" for sequence features and k-mers; needs --annotation; a "
                                        "genomic cache is built (or reused) in --cache-dir")
    g.add_argument("--cache", metavar="DIR",
                   help="a genomic cache built earlier by `dask-enrich build-cache` (instead of "
                        "--genome/--annotation)")
    g.add_argument("--cache-dir", metavar="DIR",
                   help="where to build the cache from --genome/--annotation (default: "
                        "enrich.cache-dir of Dask's config, else .dask-enrich-cache beside OUT); "
                        "reused when the inputs are unchanged")
    add_reference_arguments(g)
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", required=True,
                   help="output directory (local or URL) for the Parquet dataset and _SUCCESS.json")
    mode = o.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue an interrupted run into OUT: keep its complete partitions "
                           "(same inputs and settings; each verified against its record and "
                           "hash), redo the rest")
    mode.add_argument("--overwrite", action="store_true",
                      help="delete what dask-enrich wrote in OUT first (an OUT holding other files "
                           "is refused). Without --resume or --overwrite a non-empty OUT is refused")
    o.add_argument("--keep-columns", metavar="A,B", type=_columns, default=(),
                   help="comma-separated extra columns of the positions to carry into the output")
    f = p.add_argument_group("features")
    f.add_argument("--missing", choices=options.MISSING, default=None,
                   help="a manifest feature the inputs cannot provide: 'error' stops before any "
                        "work (naming the input that would provide it, the default); 'impute' fills "
                        "it with the training median (else a documented constant) and reports counts "
                        "(default: enrich.missing of Dask's config, 'error')")
    f.add_argument("--on-bad-rows", choices=options.ON_BAD_ROWS, default=options.DEFAULT_ON_BAD_ROWS,
                   help="rows that fail the input checks (NaN or out-of-range scores, fractional "
                        "positions, duplicates, genes absent from the annotation, ...): 'error' "
                        "fails the run naming the file, reasons and example rows (default); "
                        "'quarantine' writes them with their reason to OUT/_rejected/ and goes on")
    f.add_argument("--coordinates", choices=options.COORDINATES, default=options.DEFAULT_COORDINATES,
                   help="positions are 1-based genomic coordinates (default) or 0-based offsets from "
                        "the gene's 5' end in transcript orientation (MetaSpliceAI training rows; "
                        "needs the annotation)")
    f.add_argument("--context-track", choices=options.CONTEXT_TRACK,
                   default=options.DEFAULT_CONTEXT_TRACK,
                   help="which track of --track gives a position's context scores: the one of its "
                        "larger score (ties: donor; default), or always donor/acceptor")
    s = p.add_argument_group("selection (only when --positions is omitted)")
    s.add_argument("--select", choices=options.SELECT_RULES, default=options.DEFAULT_SELECT_RULE,
                   help="rule choosing uncertain track rows: 'band' keeps LOW <= max(donor, "
                        "acceptor) < HIGH (default); 'entropy' keeps rows whose top score < "
                        "MAX_BELOW, or normalised entropy > ENTROPY_ABOVE, or top-two spread < "
                        "SPREAD_BELOW")
    chosen = options.SELECTION
    s.add_argument("--band-low", type=float, default=chosen.low, metavar="LOW",
                   help=f"band lower bound ({chosen.low})")
    s.add_argument("--band-high", type=float, default=chosen.high, metavar="HIGH",
                   help=f"band upper bound ({chosen.high:.2f})")
    s.add_argument("--max-below", type=float, default=chosen.max_below,
                   help=f"entropy rule: top-score threshold ({chosen.max_below:.2f})")
    s.add_argument("--entropy-above", type=float, default=chosen.entropy_above,
                   help=f"entropy rule: normalised-entropy threshold ({chosen.entropy_above})")
    s.add_argument("--spread-below", type=float, default=chosen.spread_below,
                   help=f"entropy rule: top-two spread threshold ({chosen.spread_below})")
    c = p.add_argument_group("cluster")
    add_cluster_arguments(c)
    c.add_argument("--partition-rows", type=_positive_int, default=None, metavar="N",
                   help=f"target rows per partition (positions plus their genes' track rows; default "
                        f"enrich.partition-rows of Dask's config, {options.DEFAULT_PARTITION_ROWS:,}). Genes "
                        "are never split: small genes are packed together, a larger gene gets a "
                        "partition of its own")
    c.add_argument("--exchange", choices=options.EXCHANGE, default=options.DEFAULT_EXCHANGE,
                   help="how rows reach their gene partition: 'auto' (default: no exchange when "
                        "the input is grouped by gene, i.e. each gene's rows in one file or row "
                        "group, its files are not much smaller than --partition-rows, and there "
                        "are at least two of them; else 'staged'), 'staged' Arrow "
                        "files under OUT/_staging, or 'p2p' (Dask's shuffle)")
    c.add_argument("--quiet", action="store_true",
                   help="no progress bar or log lines (warnings and errors only: --log-level warning)")
    scoring.add_score_arguments(p, name)
    _add_debug(p)
    p.set_defaults(handler=_cmd_run)


def add_cluster_arguments(group, local_options: bool = True) -> None:
    """The options choosing the Dask cluster (``engine/cluster.py``); defaults from Dask's config."""
    group.add_argument("--scheduler", metavar="ADDR",
                       help="address of a running Dask scheduler (tcp://HOST:PORT); default: Dask's "
                            "scheduler-address (DASK_SCHEDULER_ADDRESS) when set, else a LocalCluster "
                            "on this machine, listening on 127.0.0.1 only")
    group.add_argument("--scheduler-file", metavar="FILE",
                       help="Dask's JSON scheduler file of a running scheduler (written by `dask "
                            "scheduler --scheduler-file FILE`), instead of --scheduler")
    if not local_options:
        return
    group.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="LocalCluster worker processes (default: enrich.workers of Dask's "
                            "config, else Dask's CPU count)")
    group.add_argument("--threads-per-worker", type=_positive_int, default=None, metavar="N",
                       help="threads per LocalCluster worker (default: enrich.threads-per-worker, "
                            "1: the work is numpy-bound)")
    group.add_argument("--memory-limit", default=None, metavar="X",
                       help="memory limit per LocalCluster worker, e.g. 4GiB (default: "
                            "enrich.memory-limit, 'auto': the machine's memory divided among the "
                            "workers; 0 for none)")


def _cmd_run(args: argparse.Namespace) -> int:
    if args.positions is None and args.track is None:
        raise ConfigError("give --positions, or --track to select uncertain positions from it")
    from ..engine import cluster

    with collector_paused(), dask_imported_lean():  # the engine's imports
        # the LocalCluster starts while the run reads footers and plans; run_enrichment takes it
        if cluster.prestart_client(scheduler=args.scheduler, scheduler_file=args.scheduler_file,
                                   workers=args.workers, threads_per_worker=args.threads_per_worker,
                                   memory_limit=args.memory_limit, processes=True):
            import dask.dataframe  # noqa: F401 - the run imports it; now, they overlap the start
        from ..engine import run  # noqa: F401
    try:
        return _run_command(args)
    finally:
        cluster.discard_prestarted()


def _run_command(args: argparse.Namespace) -> int:
    from ..config import EnrichConfig
    from ..engine.run import run_enrichment
    from ..selection import Selection
    from .. import settings

    config = EnrichConfig(missing=settings.get("missing", args.missing), coordinates=args.coordinates,
                          context_track=args.context_track, keep_columns=tuple(args.keep_columns))
    selection = Selection(args.select, args.band_low, args.band_high, args.max_below,
                          args.entropy_above, args.spread_below)
    from ..logs import LOGGER

    log = LOGGER.info
    from .scoring import score_options

    manifest = args.manifest[0] if len(args.manifest) == 1 else args.manifest
    summary = run_enrichment(
        args.positions, manifest, args.out, track=args.track, cache=args.cache,
        genome=args.genome, annotation=args.annotation, cache_dir=args.cache_dir, config=config,
        selection=selection, mode="resume" if args.resume else "overwrite" if args.overwrite else "new",
        partition_rows=args.partition_rows, scheduler=args.scheduler, workers=args.workers,
        threads_per_worker=args.threads_per_worker, memory_limit=args.memory_limit,
        scheduler_file=args.scheduler_file,
        exchange_method=args.exchange, on_bad_rows=args.on_bad_rows,
        progress=_progress_printer(sys.stderr) if LOGGER.isEnabledFor(logging.INFO) else None, log=log,
        score=score_options(args), gene_key=args.gene_key, seq_aliases=args.seq_aliases)
    print("\n".join(summary.lines()))
    return 0


def build_parser(prog: str = "dask-enrich") -> argparse.ArgumentParser:
    """The ``dask-enrich`` parser with every available subcommand (``prog``: the name shown in
    usage lines, ``dask enrich`` when run through Dask's command line)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Training-parity feature enrichment for splice-site meta-models, partitioned by "
                    "gene on Dask.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    _add_logging(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(subparsers)
    _add_run(subparsers, "score")
    for module_name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # that module is not there (yet)
            raise
        register = getattr(module, "register_cli", None)
        if register is not None:
            register(subparsers)
    for command in subparsers.choices.values():
        _add_logging(command)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "dask-enrich") -> int:
    """Entry point of the ``dask-enrich`` console script (and of ``dask enrich``); returns the
    exit code."""
    with collector_paused():  # the command modules' imports
        _start_workers_early(sys.argv[1:] if argv is None else argv)
        parser = build_parser(prog)
        args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    debug = bool(getattr(args, "debug", False))
    from ..logs import configure

    configure(args.log_level or ("warning" if getattr(args, "quiet", False) else options.DEFAULT_LOG_LEVEL))
    previous = _catch_sigterm()
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, so that a closed pipe is handled below
        return code
    except EnrichError as exc:
        if debug:
            raise
        print(f"dask-enrich: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `dask-enrich features | head`: the reader has gone, say nothing
        _silence_stdout()
        return 141
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"dask-enrich: {'terminated (SIGTERM)' if terminated else 'interrupted'}: the complete "
              "partitions are kept; continue later with --resume", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        if debug:
            raise
        print(f"dask-enrich: error: {type(exc).__name__}: {_one_line(exc)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if argv is None:  # this process's own command line: it exits next
            _before_exit()


#: Commands that start the engine's LocalCluster unless given a scheduler.
CLUSTER_COMMANDS = ("run", "score", "demo", "predict-base")


def _start_workers_early(argv: Sequence[str]) -> None:
    """For a command that will start a LocalCluster (:func:`starts_local_cluster`), start the
    forkserver its workers are forked from now (``engine/cluster.py``), before the parser and the
    engine are imported: its imports then run beside this process's own. Only a head start: a
    wrong guess costs an idle process, and the cluster start reports any problem itself."""
    if not starts_local_cluster(argv):
        return
    try:
        from ..engine import cluster

        if cluster.existing_scheduler() is None:
            cluster.start_forkserver(scoring=scores(argv))
    except Exception:  # noqa: BLE001 - see above
        pass


def starts_local_cluster(argv: Sequence[str]) -> bool:
    """Whether the command line ``argv`` names one of :data:`CLUSTER_COMMANDS` without a scheduler
    option or ``--help`` (judged from the words alone, before parsing)."""
    words = list(argv)
    return _command(words) in CLUSTER_COMMANDS and not any(
        w in ("-h", "--help") or w.startswith("--scheduler") for w in words)


def scores(argv: Sequence[str]) -> bool:
    """Whether the command line ``argv`` applies a meta-model (``score``, or ``--score``)."""
    words = list(argv)
    return "--score" in words or _command(words) == "score"


def _command(words: list[str]) -> str | None:
    """The command word of a command line (the first word not an option or an option's value)."""
    return next((w for i, w in enumerate(words) if not w.startswith("-")
                 and (i == 0 or words[i - 1] != "--log-level")), None)


def _before_exit() -> None:
    """``gc.freeze()``: the interpreter's shutdown then skips its collections over every object
    the imports made (pandas, pyarrow, dask, distributed: about 0.2 s)."""
    import gc

    gc.freeze()


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's time limit, ``kill``): handled as Ctrl-C, exit 143."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _catch_sigterm():
    """SIGTERM raises :class:`Terminated` in the main thread; returns the previous handler."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
