"""Per-gene SpliceAI base predictions on Dask, written as a per-nucleotide Parquet track.

One Dask task per gene: the worker reads the gene span plus 5,000 nt each side from the FASTA
(positions beyond the chromosome ends are ``N``, i.e. all-zero input, and counted in the summary),
runs the five SpliceAI models (loaded once per worker process) and returns the ``(L, 3)`` scores;
the client streams them gene by gene into one Parquet file with the columns of
:data:`TRACK_COLUMNS`, or, for a directory OUT, into one part file per partition of genes
(``engine/partition.py``'s packing, ``engine/writer.py``'s atomic parts, fingerprints and
``--resume``), so that a genome-scale run continues where it stopped.

``position`` is the 1-based genomic coordinate of the nucleotide the model scored. SpliceAI puts
its peaks on the exon-side boundary nucleotides (donor: last nucleotide of the exon; acceptor:
first nucleotide of the exon), one nucleotide away from the intronic positions that
``dask_enrich.genome`` lists as annotated splice sites. The track keeps the model's own positions.
"""
from __future__ import annotations

import functools
import os
import time
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..columns import BASE_SCORES, CHROM, GENE_ID, POSITION, STRAND
from ..errors import ConfigError, EnrichError, InputError, RunFailure
from ..options import OUTPUT_MODES
from ..text import is_in
from .spliceai import DEFAULT_CHUNK, FLANK, load_models, predict_gene

#: The track written: identifying columns, then the three base scores (float32). Every field is
#: required (no value is ever missing): its pages then carry no definition levels, which halves
#: the cost of reading a track's columns (6 columns of 5M rows: 85 -> 45 ms).
TRACK_SCHEMA = pa.schema([pa.field(name, kind, nullable=False) for name, kind in (
    (GENE_ID, pa.string()), (CHROM, pa.string()), (STRAND, pa.string()), (POSITION, pa.int64()),
    *((c, pa.float32()) for c in BASE_SCORES))])
#: Columns of the track, in order.
TRACK_COLUMNS = TRACK_SCHEMA.names
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
    known = is_in(table["gene_id"], wanted)
    unknown = wanted[~is_in(wanted, table["gene_id"])]
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
    progress=None,
    chroms: Sequence[str] | None = None,
    mode: str = "new",
    partition_rows: int | None = None,
    gene_key: str | None = None,
    seq_aliases: str | Path | dict[str, str] | None = None,
) -> pd.DataFrame:
    """Predict SpliceAI scores for every nucleotide of each gene's span; write a Parquet track.

    genome: FASTA path (plain, bgzip or plain gzip). annotation: a GTF, GFF3 or SpliceAI gene table
    path or an already parsed :class:`dask_enrich.genome.gtf.Annotation`. genes: gene ids (None =
    every gene of the annotation); chroms: only the genes on these sequences (None = all).
    out: a ``.parquet`` file: one file, written under a temporary name, then renamed; any other
    path: a directory of ``part-NNNNN.parquet`` files, one per partition of about
    ``partition_rows`` nucleotides of genes (default: ``enrich.partition-rows``), each complete
    when it appears, with ``_SUCCESS.json`` last; ``mode`` ``new`` (refuse an existing file or a
    non-empty directory), ``resume`` (a directory: keep the complete parts of the same inputs and
    settings, predict the rest) or ``overwrite``.
    client: a ``distributed.Client``; when None, Dask's ``scheduler-address`` when set
    (``DASK_SCHEDULER_ADDRESS``), else a LocalCluster with ``n_workers`` single-threaded worker
    processes (default: ``enrich.workers``, else Dask's CPU count) on 127.0.0.1, closed at the
    end. One task per gene.
    progress: ``progress(genes_done, genes)`` after each gene is written.
    gene_key: the annotation attribute that ``genes`` name (as ``build-cache --gene-key``);
    seq_aliases: annotation -> genome sequence names (a ``--seq-aliases`` file or a dict), beside the
    automatic matching of ``chr`` prefixes and chrM/MT.
    Returns the per-gene summary (:data:`SUMMARY_COLUMNS`).
    """
    from ..genome.annotation import read_annotation
    from ..genome.remote import local_file
    from ..genome.seqnames import SeqNames, describe_mismatch, read_seq_aliases

    if mode not in OUTPUT_MODES:
        raise ConfigError(f"mode must be {', '.join(OUTPUT_MODES[:-1])} or {OUTPUT_MODES[-1]}, "
                          f"not {mode!r}")
    one_file = Path(out).suffix == ".parquet"
    if one_file and mode == "resume":
        raise ConfigError(f"--resume needs a directory --out (one part file per gene partition), "
                          f"not the single file {out}")
    if one_file and Path(out).is_dir():
        raise ConfigError(f"output {out} is a directory: a .parquet --out names the file to write")
    if one_file and Path(out).exists() and mode != "overwrite":
        raise ConfigError(f"output {out} exists: give --overwrite to replace it")
    genome = Path(local_file(genome))  # a URL: its local copy (random access)
    if not genome.is_file():
        raise InputError(f"genome FASTA not found: {genome}")
    annotation_path = str(annotation) if isinstance(annotation, (str, Path)) else getattr(
        annotation, "path", None)
    if isinstance(annotation, (str, Path)):
        annotation = read_annotation(local_file(annotation), gene_key=gene_key)
    table = select_genes(annotation, genes)
    if chroms is not None:
        absent = sorted(set(chroms) - set(annotation.genes["seqname"].astype(str)))
        if absent:
            raise InputError(f"no gene of the annotation {getattr(annotation, 'path', '')} is on "
                             f"{', '.join(map(repr, absent))} (its sequences: "
                             f"{', '.join(sorted(set(annotation.genes['seqname'].astype(str)))[:10])})")
        table = table[table["seqname"].astype(str).isin(list(chroms))].reset_index(drop=True)
    if len(table) == 0:
        raise InputError("no genes to predict (the annotation has none, or none of the given genes "
                         "lies on the given --chrom)")
    fasta = _open_fasta(str(genome))  # checks seqnames and spans before any work is sent out
    if seq_aliases is not None and not isinstance(seq_aliases, dict):
        seq_aliases = read_seq_aliases(local_file(seq_aliases))
    mapping, _ = SeqNames(sorted(set(table["seqname"].astype(str))), seq_aliases or {}).resolve(fasta.names)
    absent = sorted(set(table["seqname"].astype(str)) - set(mapping))
    if absent:
        raise InputError(f"{genome}: no sequence for {', '.join(map(repr, absent[:5]))} (used by the "
                         f"annotation): {describe_mismatch(absent, fasta.names)}")
    table = table.assign(genome_seqname=table["seqname"].astype(str).map(mapping))
    lengths = table["genome_seqname"].map({n: fasta.length(n) for n in set(table["genome_seqname"])})
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
    if not one_file:
        from .. import settings
        from ..engine import writer

        partition_rows = settings.get("partition-rows", partition_rows)
        if mode == "new":  # a non-empty OUT is refused before any cluster starts
            writer.precheck_output(str(out), mode=mode, run_fingerprint="")

    own_client = client is None
    own_cluster = None
    if own_client:  # Dask's scheduler-address when set, else a LocalCluster on 127.0.0.1
        from ..engine.cluster import make_client

        client, own_cluster = make_client(workers=n_workers, threads_per_worker=1)
    try:
        if one_file:
            return _run(client, str(genome), table, out, weights_s, chunk_size, compression, progress)
        return _run_parts(client, str(genome), table, out, weights_s, chunk_size, compression,
                          progress, mode, partition_rows, annotation_path)
    finally:
        if own_client:
            client.close()
        if own_cluster is not None:
            own_cluster.close()


def _predictions(client, genome: str, table: pd.DataFrame, weights: str | None, chunk_size: int):
    """One task per gene of ``table``; yields ``(i, scores, padded, seconds, cpu)`` in table order,
    each result released once taken. Any failure (or the consumer stopping) cancels the rest."""
    token = uuid.uuid4().hex[:8]
    gene_ids = table["gene_id"].astype(str).tolist()
    futures = client.map(
        functools.partial(predict_one, weights=weights, chunk_size=chunk_size),
        [genome] * len(table),
        table["genome_seqname"].astype(str).tolist(),
        table["strand"].astype(str).tolist(),
        table["gene_start"].astype(np.int64).tolist(),
        table["gene_end"].astype(np.int64).tolist(),
        key=[f"predict-base-{g}-{token}" for g in gene_ids],
        pure=False,
    )
    taken = 0
    try:
        for i, fut in enumerate(futures):
            try:
                result = fut.result()
            except EnrichError:
                raise
            except Exception as exc:  # worker lost, out of memory, ...
                raise RunFailure(f"prediction of gene {gene_ids[i]} failed: {exc!r}") from exc
            fut.release()
            taken = i + 1
            yield (i, *result)
    finally:
        if taken < len(futures):
            client.cancel(futures[taken:])


def _gene_table(row, scores: np.ndarray) -> pa.Table:
    return track_table(str(row["gene_id"]), str(row["seqname"]), str(row["strand"]),
                       int(row["gene_start"]), scores)


def _run(client, genome: str, table: pd.DataFrame, out: Path, weights: str | None,
         chunk_size: int, compression: str, progress=None) -> pd.DataFrame:
    """All genes streamed into the one Parquet file ``out`` (temporary name, then renamed)."""
    from ..engine import writer

    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    stats = np.zeros((len(table), 3), dtype=np.float64)  # padded, seconds, cpu seconds
    if progress:
        progress(0, len(table))
    try:
        with pq.ParquetWriter(tmp, TRACK_SCHEMA, **writer.parquet_options(
                TRACK_SCHEMA, compression=compression)) as sink:
            for i, scores, *values in _predictions(client, genome, table, weights, chunk_size):
                stats[i] = values
                sink.write_table(_gene_table(table.iloc[i], scores))
                if progress:
                    progress(i + 1, len(table))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _summary(table, stats)


def _summary(table: pd.DataFrame, stats: np.ndarray) -> pd.DataFrame:
    start = table["gene_start"].to_numpy(np.int64)
    end = table["gene_end"].to_numpy(np.int64)
    return pd.DataFrame({
        "gene_id": pd.Series(table["gene_id"].astype(str).tolist(), dtype="str"),
        "chrom": table["seqname"].astype("str").to_numpy(),
        "strand": table["strand"].astype("str").to_numpy(),
        "gene_start": start,
        "gene_end": end,
        "length": end - start + 1,
        "flank_padded": stats[:, 0].astype(np.int64),
        "seconds": stats[:, 1],
        "cpu_seconds": stats[:, 2],
    })


def _run_parts(client, genome: str, table: pd.DataFrame, out: Path, weights: str | None,
               chunk_size: int, compression: str, progress, mode: str, partition_rows: int,
               annotation_path: str | None) -> pd.DataFrame:
    """Genes packed in annotation order into partitions of about ``partition_rows`` nucleotides,
    one ``OUT/part-NNNNN.parquet`` per partition (written under a temporary name and renamed when
    complete; its footer records the run fingerprint and its genes' statistics), then
    ``OUT/_SUCCESS.json``. ``mode`` as ``run``'s: ``resume`` keeps the complete parts of the same
    inputs and settings and predicts only the other partitions' genes."""
    import fsspec

    from .._version import __version__
    from ..engine import writer
    from ..engine.partition import plan_partitions
    from ..engine.run import _file_key, _fingerprint
    from .spliceai import model_paths, weights_dir

    gene_ids = table["gene_id"].astype(str).tolist()
    lengths = (table["gene_end"] - table["gene_start"] + 1).to_numpy(np.int64)
    plan = plan_partitions(pd.Series(lengths, index=gene_ids), partition_rows, keep_order=True)
    weight_files = model_paths(weights if weights is not None else weights_dir())
    record = {"version": __version__, "command": "predict-base",
              "inputs": {"genome": _file_key(genome), "annotation": _file_key(annotation_path),
                         "weights": [_file_key(str(w)) for w in weight_files]},
              "settings": {"partition_rows": int(partition_rows), "chunk_size": int(chunk_size)},
              "genes": gene_ids}
    fingerprint = _fingerprint(record)
    done = writer.prepare_output(str(out), mode=mode, run_fingerprint=fingerprint,
                                 run_record=record, n_bins=plan.n_bins)
    stats = np.zeros((len(table), 3), dtype=np.float64)
    position = {g: i for i, g in enumerate(gene_ids)}
    for part in done.values():  # the statistics of the genes already predicted
        for gene, values in part["genes"].items():
            stats[position[gene]] = values
    todo = np.flatnonzero(~np.isin(plan.bins, np.fromiter(done, dtype=np.int64, count=len(done))))
    fs = fsspec.filesystem("file")
    pending: list[pa.Table] = []
    if progress:
        progress(0, len(todo))
    for n, (j, scores, *values) in enumerate(_predictions(client, genome, table.iloc[todo],
                                                          weights, chunk_size), start=1):
        i = int(todo[j])
        stats[i] = values
        pending.append(_gene_table(table.iloc[i], scores))
        bin_id = int(plan.bins[i])
        if n == len(todo) or int(plan.bins[todo[j + 1]]) != bin_id:  # the partition is complete
            part = pa.concat_tables(pending)
            genes = {gene_ids[k]: stats[k].tolist() for k in np.flatnonzero(plan.bins == bin_id)}
            meta = {"fingerprint": fingerprint, "bin": bin_id, "file": writer.part_name(bin_id),
                    "rows": part.num_rows, "genes": genes}
            writer.write_recorded_part(fs, part, str(out), bin_id, meta,
                                       **writer.parquet_options(part.schema, compression=compression))
            pending = []
        if progress:
            progress(n, len(todo))
    summary = _summary(table, stats)
    writer.write_success(str(out), {
        "version": __version__, "fingerprint": fingerprint,
        "genes": len(gene_ids), "rows": int(lengths.sum()),
        "partitions": {"count": plan.n_bins, "written": plan.n_bins - len(done), "resumed": len(done),
                       "files": [writer.part_name(b) for b in range(plan.n_bins)]},
        "inputs": record["inputs"], "settings": record["settings"]})
    return summary


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
