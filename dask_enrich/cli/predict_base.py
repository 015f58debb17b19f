"""The ``predict-base`` command: SpliceAI base scores per nucleotide of genes."""
from __future__ import annotations

import argparse
import logging
import sys
import time

from .. import options
from ..basemodel.predict import predict_base, read_gene_list
from ..errors import ConfigError, EnrichError

_EPILOG = """\
example:
  dask-enrich predict-base --genome dask_enrich/data/athal_chr1_1mb.fa.gz \\
      --annotation dask_enrich/data/athal_chr1_1mb.gtf.gz --genes AT1G01010,AT1G01020 \\
      --out track.parquet

Without --genes/--genes-file every gene of the annotation (or of --chrom) is predicted. With a
directory --out (not ending in .parquet) the track is written as one part-NNNNN.parquet per
partition of about --partition-rows nucleotides of genes, each complete when it appears, and
_SUCCESS.json last; after an interruption, the same command with --resume predicts only the genes
of the missing parts (the same guarantees as `dask-enrich run --resume`).

The track has one row per nucleotide of each gene's span: gene_id, chrom, strand, position
(1-based genomic), donor_score, acceptor_score, neither_score (the mean of SpliceAI's five models;
5,000 nt of genomic context each side, N beyond the sequence ends; minus-strand genes are
reverse-complemented for the model and reported in forward genomic order). SpliceAI's peaks fall on
the exon-side nucleotide of each splice junction. It is CPU-heavy (per core, about 1 s per gene for
the 10 kb of context plus 0.1-0.4 s per kb of gene), so genes run as parallel Dask tasks. The weights come from the PyPI package `spliceai` 1.3.1; get
them without TensorFlow with `pip install --no-deps spliceai==1.3.1`.
"""


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add the ``predict-base`` subcommand; its ``handler`` returns the process exit code."""
    p = subparsers.add_parser(
        "predict-base",
        help="per-nucleotide SpliceAI base scores for genes (numpy, no TensorFlow), on Dask",
        description="Predict SpliceAI donor/acceptor/neither scores for every nucleotide of the\n"
        "genes of the annotation (or the given ones, or those on --chrom) and write them as a\n"
        "Parquet track (one Dask task per gene).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .build_cache import add_genome_arguments

    add_genome_arguments(p, genome_required=True, annotation_required=True)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--genes", metavar="ID[,ID...]",
                       help="comma-separated gene ids (default: every gene of the annotation)")
    which.add_argument("--genes-file", metavar="FILE", help="file with one gene id per line ('#' comments)")
    p.add_argument("--chrom", metavar="NAME[,NAME...]",
                   help="only genes on these sequences (annotation seqnames, e.g. NC_003070.9)")
    p.add_argument("--out", required=True, metavar="TRACK",
                   help="a .parquet file (one file, written when all genes are done), or a "
                        "directory: one part-NNNNN.parquet per partition of genes, each complete "
                        "when it appears, so an interrupted run continues with --resume")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="directory --out: keep its complete parts (same inputs and settings), "
                           "predict the other genes")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace an existing --out (a file, or a directory of dask-enrich's own "
                           "parts); without it an existing --out is refused")
    from . import _positive_int

    p.add_argument("--partition-rows", type=_positive_int, default=None, metavar="N",
                   help="directory --out: nucleotides of genes per part file (default: "
                        "enrich.partition-rows of Dask's config, "
                        f"{options.DEFAULT_PARTITION_ROWS:,}); genes are never split")
    from . import add_cluster_arguments

    add_cluster_arguments(p, local_options=False)
    p.add_argument("--workers", type=int, metavar="N", default=options.DEFAULT_WORKERS,
                   help="local worker processes (default: enrich.workers, else Dask's CPU count)")
    p.add_argument("--weights", metavar="DIR", help="folder with spliceai1..5.h5 (default: the installed "
                   "spliceai package)")
    from .build_cache import add_reference_arguments

    add_reference_arguments(p)
    p.set_defaults(handler=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``dask-enrich predict-base``."""
    try:
        if args.workers is not None and args.workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {args.workers}")
        if (args.scheduler or args.scheduler_file) and args.workers:
            raise ConfigError("give either --scheduler/--scheduler-file or --workers, not both")
        genes = read_gene_list(args.genes_file) if args.genes_file else [
            g.strip() for g in args.genes.split(",") if g.strip()
        ] if args.genes else None  # None: every gene of the annotation (or of --chrom)
        chroms = [c.strip() for c in args.chrom.split(",") if c.strip()] if args.chrom else None
        from ..engine.cluster import connect

        client = connect(args.scheduler, args.scheduler_file)  # None: predict_base chooses
        t0 = time.perf_counter()
        try:
            from ..logs import progress_printer as _progress_printer
            from ..logs import LOGGER

            show = LOGGER.isEnabledFor(logging.INFO)  # --log-level warning / error: no progress
            summary = predict_base(args.genome, args.annotation, genes, args.out, client=client,
                                   n_workers=args.workers, weights=args.weights, chroms=chroms,
                                   mode="resume" if args.resume else "overwrite" if args.overwrite
                                   else "new", partition_rows=args.partition_rows,
                                   progress=_progress_printer(sys.stderr, "genes") if show else None,
                                   gene_key=args.gene_key, seq_aliases=args.seq_aliases)
        finally:
            if client is not None:
                client.close()
        wall = time.perf_counter() - t0
        kb = summary["length"].sum() / 1000
        print(f"predicted {len(summary)} gene(s), {int(summary['length'].sum()):,} nt "
              f"in {wall:.1f} s ({wall / max(kb, 1e-9):.2f} s per kb wall); track written to {args.out}")
        padded = summary[summary["flank_padded"] > 0]
        if len(padded):
            print(f"note: {len(padded)} gene(s) within 5,000 nt of a sequence end; "
                  f"{int(padded['flank_padded'].sum())} context positions given as N")
        return 0
    except EnrichError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
