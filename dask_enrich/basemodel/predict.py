"""Per-gene SpliceAI base predictions on Dask, written as a per-nucleotide Parquet track.

One Dask task per gene: the worker reads the gene span plus 5,000 nt each side from the FASTA
(positions beyond the chromosome ends are ``N``, i.e. all-zero input, and counted in the summary),
runs the five SpliceAI models (loaded once per worker process) and returns the ``(L, 3)`` scores;
the client streams them gene by gene into one Parquet file with the columns of
:data:`TRACK_COLUMNS`.

``position`` is the 1-based genomic coordinate of the nucleotide the model scored. SpliceAI puts
its peaks on the exon-side boundary nucleotides (donor: last nucleotide of the exon; acceptor:
first nucleotide of the exon), one nucleotide away from the intronic positions that
``dask_enrich.genome`` lists as annotated splice sites. The track keeps the model's own positions.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, EnrichError, InputError, RunFailure
from .spliceai import DEFAULT_CHUNK, FLANK, load_models, predict_gene

#: Columns of the track, in order.
TRACK_COLUMNS = ["gene_id", "chrom", "strand", "position", "donor_score", "acceptor_score", "neither_score"]
TRACK_SCHEMA = pa.schema([
    ("gene_id", pa.string()),
    ("chrom", pa.string()),
    ("strand", pa.string()),
    ("position", pa.int64()),
    ("donor_score", pa.float32()),
    ("acceptor_score", pa.float32()),
    ("neither_score", pa.float32()),
])
#: Columns of the summary :func:`predict_base` returns (one row per gene).
SUMMARY_COLUMNS = ["gene_id", "chrom", "strand", "gene_start", "gene_end", "length", "flank_padded", "seconds",
                   "cpu_seconds"]
_N = np.uint8(ord("N"))


@functools.lru_cache(maxsize=4)
def _open_fasta(path: str):
    """The genome, opened once per worker process."""
    from ..genome.fasta import IndexedFasta

    return IndexedFasta(path)


def gene_window(fasta, seqname: str, start: int, end: int, flank: int = FLANK) -> tuple[np.ndarray, int]:
    """ASCII codes of ``seqname:start-end`` plus ``flank`` nt each side, and how many of those
    flank positions lie beyond the sequence ends (returned as ``N``)."""
    length = fasta.length(seqname)
    if not 1 <= start <= end <= length:
        raise InputError(f"{seqname}:{start}-{end} is outside the genome sequence (1..{length})")
    lo, hi = start - flank, end + flank
    core = fasta.fetch(seqname, max(lo, 1), min(hi, length))
    left, right = max(0, 1 - lo), max(0, hi - length)
    if left or right:
        core = np.concatenate([np.full(left, _N), core, np.full(right, _N)])
    return core, left + right


def predict_one(
    genome: str,
    seqname: str,
    strand: str,
    start: int,
    end: int,
    *,
    weights: str | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[np.ndarray, int, float, float]:
    """Scores ``(end - start + 1, 3)`` [neither, acceptor, donor] of one gene span in forward
    genomic order, the number of N-padded flank positions, and the wall and CPU seconds taken
    (worker side; CPU seconds of the calling thread, which runs the single-threaded products)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    seq, padded = gene_window(_open_fasta(str(genome)), seqname, int(start), int(end))
    scores = predict_gene(seq, strand, load_models(weights), chunk_size=chunk_size)
    return scores, padded, time.perf_counter() - t0, time.thread_time() - c0


def select_genes(annotation, genes: Sequence[str] | None) -> pd.DataFrame:
    """Rows of ``annotation.genes`` for ``genes`` (all genes if None), in annotation order.

    Raises :class:`InputError` naming unknown or duplicated gene ids.
    """
    table = annotation.genes
    need = {"gene_id", "seqname", "strand", "gene_start", "gene_end"}
    missing = need - set(table.columns)
    if missing:
        raise InputError(f"annotation gene table lacks column(s) {sorted(missing)}")
    if genes is None:
        return table.reset_index(drop=True)
    wanted = pd.Index(pd.Series(list(genes), dtype="str"))
    if len(wanted) == 0:
        raise InputError("no gene ids given")
    dup = wanted[wanted.duplicated()].unique()
    if len(dup):
        raise InputError(f"gene id(s) given more than once: {', '.join(dup[:10])}")
    known = table["gene_id"].isin(wanted).to_numpy()
    unknown = wanted[~wanted.isin(table["gene_id"])]
    if len(unknown):
        more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise InputError(
            f"{len(unknown)} gene id(s) not in the annotation {getattr(annotation, 'path', '')}: "
            f"{', '.join(unknown[:10])}{more}"
        )
    return table[known].reset_index(drop=True)


def track_table(gene_id: str, chrom: str, strand: str, start: int, scores: np.ndarray) -> pa.Table:
    """The track rows of one gene: positions ``start .. start + len(scores) - 1``."""
    n = scores.shape[0]
    return pa.Table.from_arrays(
        [
            pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [gene_id]).cast(pa.string()),
            pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [chrom]).cast(pa.string()),
            pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [strand]).cast(pa.string()),
            pa.array(np.arange(start, start + n, dtype=np.int64)),
            pa.array(np.ascontiguousarray(scores[:, 2], dtype=np.float32)),
            pa.array(np.ascontiguousarray(scores[:, 1], dtype=np.float32)),
            pa.array(np.ascontiguousarray(scores[:, 0], dtype=np.float32)),
        ],
        schema=TRACK_SCHEMA,
    )


def predict_base(
    genome: str | Path,
    annotation,
    genes: Sequence[str] | None,
    out: str | Path,
    *,
    client=None,
    n_workers: int | None = None,
    weights: str | Path | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    compression: str = "zstd",
    overwrite: bool = False,
) -> pd.DataFrame:
    """Predict SpliceAI scores for every nucleotide of each gene's span; write a Parquet track.

    genome: FASTA path (plain or bgzip). annotation: a GTF path or an already parsed
    :class:`dask_enrich.genome.gtf.Annotation`. genes: gene ids (None = every gene).
    out: the Parquet file to write (written under a temporary name, then renamed).
    client: a ``distributed.Client``; when None a LocalCluster with ``n_workers`` single-threaded
    worker processes (default: CPU count) is started and closed. One task per gene.
    An existing ``out`` is refused (ConfigError) unless ``overwrite``.
    Returns the per-gene summary (:data:`SUMMARY_COLUMNS`).
    """
    from ..genome.gtf import read_gtf

    if Path(out).exists() and not overwrite:
        raise ConfigError(f"output {out} exists: give --overwrite to replace it")
    if Path(out).is_dir():
        raise ConfigError(f"output {out} is a directory: --out names the Parquet file to write")
    genome = Path(genome)
    if not genome.is_file():
        raise InputError(f"genome FASTA not found: {genome}")
    if isinstance(annotation, (str, Path)):
        annotation = read_gtf(annotation)
    table = select_genes(annotation, genes)
    if len(table) == 0:
        raise InputError("the annotation has no genes to predict")
    fasta = _open_fasta(str(genome))  # checks seqnames and spans before any work is sent out
    absent = sorted(set(table["seqname"]) - set(fasta.names))
    if absent:
        raise InputError(f"{genome}: no sequence named {', '.join(map(repr, absent[:5]))} (used by the annotation)")
    lengths = table["seqname"].astype(str).map({n: fasta.length(n) for n in set(table["seqname"])})
    beyond = table[(table["gene_end"].to_numpy() > lengths.to_numpy()) | (table["gene_start"].to_numpy() < 1)]
    if len(beyond):
        raise InputError(
            f"{len(beyond)} gene span(s) extend beyond the sequences of {genome} (wrong genome for "
            f"this annotation?): {', '.join(beyond['gene_id'].astype(str).head(5))}"
        )
    weights_s = str(weights) if weights is not None else None
    load_models(weights_s)  # fail early (clear message) when the weights are missing
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    own_cluster = None
    if client is None:
        from distributed import Client, LocalCluster

        own_cluster = LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
            dashboard_address=":0",
        )
        client = Client(own_cluster)
    try:
        return _run(client, str(genome), table, out, weights_s, chunk_size, compression)
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()


def _run(client, genome: str, table: pd.DataFrame, out: Path, weights: str | None,
         chunk_size: int, compression: str) -> pd.DataFrame:
    token = uuid.uuid4().hex[:8]
    gene_ids = table["gene_id"].astype(str).tolist()
    futures = client.map(
        functools.partial(predict_one, weights=weights, chunk_size=chunk_size),
        [genome] * len(table),
        table["seqname"].astype(str).tolist(),
        table["strand"].astype(str).tolist(),
        table["gene_start"].astype(np.int64).tolist(),
        table["gene_end"].astype(np.int64).tolist(),
        key=[f"predict-base-{g}-{token}" for g in gene_ids],
        pure=False,
    )
    tmp = out.with_name(f".{out.name}.{token}.tmp")
    padded = np.zeros(len(table), dtype=np.int64)
    seconds = np.zeros(len(table), dtype=np.float64)
    cpu = np.zeros(len(table), dtype=np.float64)
    try:
        with pq.ParquetWriter(tmp, TRACK_SCHEMA, compression=compression) as writer:
            for i, fut in enumerate(futures):
                try:
                    scores, padded[i], seconds[i], cpu[i] = fut.result()
                except EnrichError:
                    raise
                except Exception as exc:  # worker lost, out of memory, ...
                    raise RunFailure(f"prediction of gene {gene_ids[i]} failed: {exc!r}") from exc
                fut.release()
                row = table.iloc[i]
                writer.write_table(track_table(gene_ids[i], str(row["seqname"]), str(row["strand"]),
                                               int(row["gene_start"]), scores))
        os.replace(tmp, out)
    except BaseException:
        client.cancel(futures)
        tmp.unlink(missing_ok=True)
        raise
    start = table["gene_start"].to_numpy(np.int64)
    end = table["gene_end"].to_numpy(np.int64)
    return pd.DataFrame({
        "gene_id": pd.Series(gene_ids, dtype="str"),
        "chrom": table["seqname"].astype("str").to_numpy(),
        "strand": table["strand"].astype("str").to_numpy(),
        "gene_start": start,
        "gene_end": end,
        "length": end - start + 1,
        "flank_padded": padded,
        "seconds": seconds,
        "cpu_seconds": cpu,
    })


# ------------------------------------------------------------------------------------------ CLI
_EPILOG = """\
example:
  dask-enrich predict-base --genome dask_enrich/data/athal_chr1_1mb.fa.gz \\
      --annotation dask_enrich/data/athal_chr1_1mb.gtf.gz --genes AT1G01010,AT1G01020 \\
      --out track.parquet

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
        "given genes and write them as a Parquet track (one Dask task per gene).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--genome", required=True, metavar="FASTA", help="genome FASTA (plain or bgzip)")
    p.add_argument("--annotation", required=True, metavar="GTF", help="gene annotation GTF (plain or gzip)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--genes", metavar="ID[,ID...]", help="comma-separated gene ids")
    which.add_argument("--genes-file", metavar="FILE", help="file with one gene id per line ('#' comments)")
    p.add_argument("--out", required=True, metavar="TRACK", help="output Parquet file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (else refused)")
    p.add_argument("--scheduler", metavar="ADDR", help="address of a running Dask scheduler "
                   "(default: start a local cluster)")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: CPU count)")
    p.add_argument("--weights", metavar="DIR", help="folder with spliceai1..5.h5 (default: the installed "
                   "spliceai package)")
    p.set_defaults(handler=run_cli)
    return p


def read_gene_list(path: str | Path) -> list[str]:
    """Gene ids from a text file: one per line; blank lines and '#' comments ignored."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"gene list not found: {path}")
    ids = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise InputError(f"{path}: no gene ids")
    return ids


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``dask-enrich predict-base``."""
    try:
        if args.workers is not None and args.workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {args.workers}")
        if args.scheduler and args.workers:
            raise ConfigError("give either --scheduler or --workers, not both")
        genes = read_gene_list(args.genes_file) if args.genes_file else [
            g.strip() for g in args.genes.split(",") if g.strip()
        ]
        client = None
        if args.scheduler:
            from distributed import Client

            try:
                client = Client(args.scheduler, timeout="20s")
            except OSError as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {args.scheduler}: {exc}") from exc
        t0 = time.perf_counter()
        try:
            summary = predict_base(args.genome, args.annotation, genes, args.out, client=client,
                                   n_workers=args.workers, weights=args.weights,
                                   overwrite=bool(getattr(args, "overwrite", False)))
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
