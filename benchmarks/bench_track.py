"""The whole-genome track workflow (issue 19): select, context and selective scoring, end to end.

    python benchmarks/bench_track.py                       # 10M and 100M track rows (long)
    python benchmarks/bench_track.py --sizes 2M --quick    # smoke run, about a minute

Inputs are generated (nothing here is real data; the point is size and shape):

* a SpliceAI-like per-nucleotide track: genes with lognormal lengths (median 15 kb, sigma 0.5,
  clipped to 2-200 kb) laid end to end with 2 kb gaps on five chromosomes, random strands, one row
  per nucleotide of each gene; most scores near 0 (exponential, mean 2e-4), 0.7% of rows in the
  default band (max(donor, acceptor) uniform in [0.02, 0.8)), about one confident site (0.8-1.0)
  per kb; neither = 1 - donor - acceptor; float32 scores as SpliceAI writes them; files of whole
  genes (about 5M rows each), row groups of 1M rows, sorted by gene and position, written with
  predict-base's writer options (position delta-encoded; ``--plain``: pyarrow's defaults, as
  another tool might write it);
* a matching GTF (a gene line, one transcript with exons of 150 nt every 1.5 kb) and a random FASTA,
  built once into a genomic cache.

Workflows, each through the CLI in a fresh process as a user runs it, on the engine's own local
cluster (``--workers 2``): **select** (``run --track T`` with the band rule: the 43 score + 14
genomic features), **positions** (1M positions given with the track for context), **selective**
(``score --track T --selective`` with the bundled demo model). Each is also run on a one-gene track:
the marginal cost is the time minus that fixed cost. In the same run: the **floor** (reading the
track's two score columns + writing the engine's selected rows in one file; for selective: reading
the whole track + writing every output row; the rows' text columns given to the Parquet writer as
dictionaries, as the engine writes them; also the earlier floors, with strings and with zeros) and
a **Polars peer** of track-only selection (neighbour columns by shifting within each gene, band filter, the same formulas, a join of the gene table, ``sink_parquet``).
Peak RSS per worker is sampled from the process tree every 0.2 s.

Results: table printed; JSON in benchmarks/results/bench_track.json. Ratios are from the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import data_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "dask_enrich" / "data" / "demo_model"
RESULTS = REPO / "benchmarks" / "results"
BAND = (0.02, 0.80)
CHROMS = 5
GAP = 2000
FILE_ROWS = 5_000_000
ROW_GROUP = 1_000_000
#: Seconds the Polars peer may take (its window query holds the whole track in memory: at 100M
#: rows it reached 10.5 GB and had not finished after minutes in an earlier run).
POLARS_TIMEOUT = 150
#: The Polars peer in a fresh interpreter (its time and peak RSS measured as the engine's are).
POLARS_SCRIPT = ("import sys; from pathlib import Path; sys.path.insert(0, {bench!r}); import bench_track; "
                 "print(bench_track.polars_select(Path({track!r}), Path({cache!r}), Path({out!r}), {names!r}))")


# --- inputs -----------------------------------------------------------------------------------------
def gene_layout(rows: int, seed: int) -> pd.DataFrame:
    """Genes (gene_id, seqname, strand, start, end) whose lengths add up to ``rows``."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(15_000), 0.5, size=rows // 5_000 + 10), 2_000, 200_000)
    lengths = lengths.astype(np.int64)
    cut = int(np.searchsorted(np.cumsum(lengths), rows)) + 1
    lengths = lengths[:cut]
    lengths[-1] -= int(lengths.sum() - rows)
    lengths = lengths[lengths > 0]
    chrom = np.minimum(np.arange(len(lengths)) * CHROMS // len(lengths), CHROMS - 1)
    start = np.empty(len(lengths), dtype=np.int64)
    for c in range(CHROMS):  # a loop over chromosomes: genes end to end with gaps
        on = np.flatnonzero(chrom == c)
        start[on] = 1 + GAP + np.concatenate([[0], np.cumsum(lengths[on] + GAP)[:-1]])
    return pd.DataFrame({"gene_id": [f"G{i:06d}" for i in range(len(lengths))],
                         "seqname": [f"chr{c + 1}" for c in chrom],
                         "strand": rng.choice(["+", "-"], len(lengths)),
                         "start": start, "end": start + lengths - 1})


def track_scores(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SpliceAI-like donor/acceptor/neither scores of n nucleotides."""
    donor = rng.exponential(2e-4, n)
    acceptor = rng.exponential(2e-4, n)
    band = rng.random(n) < 0.007
    high = rng.random(n) < 0.001
    level = np.where(high, rng.uniform(0.8, 1.0, n), rng.uniform(*BAND, n))
    is_donor = rng.random(n) < 0.5
    special = band | high
    donor = np.where(special & is_donor, level, donor)
    acceptor = np.where(special & ~is_donor, level, acceptor)
    neither = np.clip(1.0 - donor - acceptor, 0.0, 1.0)
    return donor.astype(np.float32), acceptor.astype(np.float32), neither.astype(np.float32)


def write_track(genes: pd.DataFrame, out: Path, seed: int, plain: bool = False) -> None:
    """The track as Parquet files of whole genes, with predict-base's schema (string gene_id,
    chrom and strand, dictionary-encoded; int64 position; float32 scores) and writer options
    (``writer.parquet_options``: position delta-encoded), snappy-compressed (predict-base's default
    is zstd), its fields required as predict-base's are; ``plain``: pyarrow's default options and
    nullable fields instead (a track written by another tool)."""
    from dask_enrich.basemodel.predict import TRACK_SCHEMA
    from dask_enrich.engine import writer

    rng = np.random.default_rng(seed + 1)
    out.mkdir(parents=True)
    lengths = (genes["end"] - genes["start"] + 1).to_numpy()
    file_of_gene = np.cumsum(lengths) // FILE_ROWS
    for k, idx in enumerate(np.split(np.arange(len(genes)), np.flatnonzero(np.diff(file_of_gene)) + 1)):
        g = genes.iloc[idx]
        n_of = lengths[idx]
        gene_index = np.repeat(np.arange(len(g)), n_of)
        offsets = np.arange(n_of.sum()) - np.repeat(np.cumsum(n_of) - n_of, n_of)
        d, a, nn = track_scores(int(n_of.sum()), rng)
        table = pa.table({  # text columns as strings, as predict-base writes them
            name: pa.DictionaryArray.from_arrays(pa.array(gene_index, pa.int32()),
                                                 pa.array(g[column].tolist())).cast(pa.string())
            for name, column in (("gene_id", "gene_id"), ("chrom", "seqname"), ("strand", "strand"))
        } | {
            "position": g["start"].to_numpy()[gene_index] + offsets,
            "donor_score": d, "acceptor_score": a, "neither_score": nn,
        })
        if not plain:  # predict-base's schema exactly (its fields required)
            table = table.select(TRACK_SCHEMA.names).cast(TRACK_SCHEMA)
        options = {} if plain else writer.parquet_options(table.schema, compression="snappy")
        pq.write_table(table, out / f"part-{k:05d}.parquet", row_group_size=ROW_GROUP, **options)


def write_reference(genes: pd.DataFrame, root: Path, seed: int) -> tuple[Path, Path]:
    """A GTF for the genes (exons of 150 nt every 1.5 kb) and a random FASTA covering them."""
    lines = []
    for g in genes.itertuples(index=False):  # writing the inputs once, not a hot path
        attrs = f'gene_id "{g.gene_id}";'
        lines.append(f"{g.seqname}\tbench\tgene\t{g.start}\t{g.end}\t.\t{g.strand}\t.\t{attrs}")
        for s in range(g.start, g.end - 149, 1500):
            lines.append(f"{g.seqname}\tbench\texon\t{s}\t{s + 149}\t.\t{g.strand}\t.\t"
                         f'{attrs} transcript_id "{g.gene_id}.1";')
    gtf = root / "genes.gtf"
    gtf.write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(seed + 2)
    fasta = root / "genome.fa"
    with open(fasta, "w") as fh:
        for seqname, end in genes.groupby("seqname")["end"].max().items():
            bases = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, int(end) + GAP)]
            fh.write(f">{seqname}\n")
            text = bases.tobytes()
            fh.write("\n".join(text[i:i + 80].decode() for i in range(0, len(text), 80)) + "\n")
    return gtf, fasta


def prepare(rows: int, seed: int = 0, plain: bool = False) -> dict[str, Path]:
    """Generated inputs for a track of ``rows`` rows (reused when complete; ``plain``: the track
    written with pyarrow's default options, see :func:`write_track`)."""
    root = data_dir() / f"track-{rows}-s{seed}{'-plain' if plain else '-v3'}"
    paths = {"track": root / "track", "one_gene": root / "one_gene", "cache": root / "cache",
             "positions": root / "positions.parquet", "root": root}
    if (root / "_DONE").exists():
        return paths
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    genes = gene_layout(rows, seed)
    write_track(genes, paths["track"], seed, plain)
    write_track(genes.iloc[:1], paths["one_gene"], seed, plain)
    gtf, fasta = write_reference(genes, root, seed)
    subprocess.run(["dask-enrich", "build-cache", "--genome", str(fasta), "--annotation", str(gtf),
                    "--out", str(paths["cache"]), "--quiet"], check=True)
    track = pq.read_table(paths["track"], columns=["gene_id", "position", "donor_score",
                                                   "acceptor_score", "neither_score", "strand"])
    rng = np.random.default_rng(seed + 3)
    take = np.sort(rng.choice(track.num_rows, size=min(1_000_000, track.num_rows // 10), replace=False))
    pq.write_table(track.take(pa.array(take)), paths["positions"])
    (root / "_DONE").touch()
    return paths


def manifest_57(root: Path) -> Path:
    """The 43 score features and the 14 genomic features, one name per line."""
    from dask_enrich.features.scores import SCORE_FEATURES
    from dask_enrich.genome.gtf import GENOMIC_FEATURES

    path = root / "manifest57.txt"
    path.write_text("\n".join([*sorted(SCORE_FEATURES), *GENOMIC_FEATURES]) + "\n")
    return path


# --- measuring --------------------------------------------------------------------------------------
def timed(argv: list[str], timeout: float | None = None) -> dict:
    """Wall and CPU seconds of a command, and the peak RSS of each process of its tree (sampled
    every 0.2 s): ``max_worker_rss_mb`` is the largest one other than the root. ``cpu_s``: the
    command's own CPU and its reaped children's (``os.times``) plus each other process of its tree
    as last sampled (the engine's workers are children of its forkserver, which the command does
    not reap: ``os.times`` alone leaves them out; the last < 0.2 s of each is missed).
    ``max_rss_mb``: the largest of every process, the root included. After ``timeout`` seconds
    the tree is killed and the result says ``timed_out``."""
    import psutil

    os.sync()  # the previous command's written output flushed first: it does not slow this one
    time.sleep(1.0)  # and its processes gone
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    cpu_of: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                for p in [root, *root.children(recursive=True)]:
                    with p.oneshot():
                        peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)
                        times = p.cpu_times()
                        cpu_of[p.pid] = times.user + times.system
            except psutil.Error:
                pass
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    timed_out = False
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        _, err = proc.communicate()
    stop.set()
    thread.join()
    wall = time.perf_counter() - t0
    after = os.times()
    root_peak = peaks.pop(proc.pid, 0)
    result = {"max_rss_mb": round(max([root_peak, *peaks.values()]) / 2**20, 1)}
    if timed_out:
        return {"timed_out": True, "wall_s": round(wall, 3), **result}
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err[-2000:]}")
    reaped = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    cpu = reaped + sum(v for pid, v in cpu_of.items() if pid != proc.pid)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "max_worker_rss_mb": round(max(peaks.values(), default=0) / 2**20, 1), **result}


def engine(kind: str, paths: dict[str, Path], track: Path, out: Path, manifest: Path) -> dict:
    base = ["dask-enrich", "score" if kind == "selective" else "run", "--track", str(track),
            "--cache", str(paths["cache"]), "--out", str(out), "--overwrite", "--workers", "2",
            "--quiet"]
    if kind == "selective":
        base += ["--manifest", str(DEMO_MODEL), "--selective"]
    else:
        base += ["--manifest", str(manifest)]
    if kind == "positions":
        base += ["--positions", str(one_gene_positions(paths) if track == paths["one_gene"]
                                    else paths["positions"])]
    return timed(base)


def one_gene_positions(paths: dict[str, Path]) -> Path:
    """The positions of the one-gene track's gene (the fixed-cost run of the positions workflow)."""
    out = paths["root"] / "positions-one-gene.parquet"
    if not out.exists():
        gene = pq.read_table(paths["one_gene"], columns=["gene_id"]).column("gene_id")[0].as_py()
        table = pq.read_table(paths["positions"], filters=[("gene_id", "=", gene)])
        pq.write_table(table, out)
    return out


def polars_select(track: Path, cache: Path, out: Path, names: list[str]) -> float:
    """The Polars peer of track-only selection; returns wall seconds."""
    import polars as pl
    from polars_peer import score_expressions

    t0 = time.perf_counter()
    scan = pl.scan_parquet(str(track / "*.parquet")).with_columns(
        pl.col("gene_id").cast(pl.String), pl.col("strand").cast(pl.String),
        pl.col("chrom").cast(pl.String))
    minus = pl.col("strand") == "-"
    use_donor = pl.col("donor_score") >= pl.col("acceptor_score")
    ctx = {}
    for name, k in (("m2", 2), ("m1", 1), ("p1", -1), ("p2", -2)):
        # transcript orientation: upstream is the next higher coordinate on the minus strand
        shifted = {s: pl.when(minus).then(pl.col(s).shift(-k)).otherwise(pl.col(s).shift(k))
                   .over("gene_id").fill_null(0.0) for s in ("donor_score", "acceptor_score")}
        ctx[f"context_score_{name}"] = pl.when(use_donor).then(shifted["donor_score"]) \
            .otherwise(shifted["acceptor_score"])
    top = pl.max_horizontal("donor_score", "acceptor_score")
    exprs = score_expressions()
    genes = pl.scan_parquet(str(cache / "genes.parquet"))
    query = (scan.with_columns(pl.col(c).cast(pl.Float64) for c in
                               ("donor_score", "acceptor_score", "neither_score"))
             .with_columns(**ctx)
             .filter((top >= BAND[0]) & (top < BAND[1]))
             .select("gene_id", "position", pl.col("chrom").alias("chrom_name"), "strand",
                     *[exprs[n].alias(n) for n in names if n in exprs])
             .join(genes.select("gene_id", *[n for n in names if n not in exprs]), on="gene_id",
                   how="left"))
    query.sink_parquet(out, compression="snappy")
    return time.perf_counter() - t0


def floor(track: Path, output: Path, out: Path, whole: bool) -> dict:
    """The floor of a workflow, wall seconds: read the track's two score columns (every column when
    ``whole``) and write the engine's ``output`` rows (read beforehand, untimed) in one file with the
    engine's writer options but no page checksums, and as the engine writes them
    (``writer.write_parquet``): its text columns read as dictionaries (one dictionary each) and
    given to the Parquet writer as they are (``floor_s``, best of 3). Two earlier floors: the same
    with the text columns as strings the Parquet writer hashes (``string_floor_s``, the floor before
    the engine wrote dictionaries); the same reads and as many float64 zeros as the output has rows
    and columns (``zeros_floor_s``: a column of zeros is one dictionary entry, far cheaper to write
    than the output's values)."""
    from dask_enrich.engine import writer

    strings = pq.read_table(output)
    options = writer.parquet_options(strings.schema, write_page_checksum=False)
    rows = pq.read_table(output, read_dictionary=options["use_dictionary"])
    rows = rows.unify_dictionaries().combine_chunks()  # one dictionary per column, as in a part
    zeros = pa.table({f"c{i}": np.zeros(rows.num_rows) for i in range(rows.num_columns)})
    writes = (("floor_s", rows, strings.schema, options), ("string_floor_s", strings, None, options),
              ("zeros_floor_s", zeros, None, {"compression": "snappy"}))
    result: dict[str, float] = {}
    for _ in range(3):  # best of 3, alternating (the first allocations of a process cost more)
        for name, table, schema, kw in writes:
            t0 = time.perf_counter()
            pq.read_table(track, columns=None if whole else ["donor_score", "acceptor_score"])
            writer.write_parquet(table, str(out), schema, **kw)
            result[name] = round(min(result.get(name, np.inf), time.perf_counter() - t0), 3)
            if schema is not None and not pq.read_table(out).equals(strings):
                raise AssertionError("the floor's file does not read back as the engine's output")
    return result


def same_values(engine_out: Path, polars_out: Path, names: list[str]) -> bool:
    """Whether the engine and the Polars peer selected the same rows with the same values (1e-9)."""
    keys = ["gene_id", "position"]
    a = pd.read_parquet(engine_out, columns=keys + names).sort_values(keys, ignore_index=True)
    b = pd.read_parquet(polars_out, columns=keys + names).sort_values(keys, ignore_index=True)
    return len(a) == len(b) and bool((a["position"] == b["position"]).all()) and all(
        np.allclose(a[n].to_numpy(float), b[n].to_numpy(float), rtol=1e-9, atol=1e-12, equal_nan=True)
        for n in names)


def polars_peer(paths: dict[str, Path], out: Path, names: list[str]) -> dict:
    """The Polars peer of track-only selection as a fresh process (:data:`POLARS_SCRIPT`), timed
    as the engine is; stopped after :data:`POLARS_TIMEOUT` seconds."""
    script = POLARS_SCRIPT.format(bench=str(Path(__file__).resolve().parent), track=str(paths["track"]),
                                  cache=str(paths["cache"]), out=str(out), names=names)
    return timed([sys.executable, "-c", script], timeout=POLARS_TIMEOUT)


def _median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]


def measure(rows: int, kinds: list[str], plain: bool = False, peer: bool = True,
            rounds: int = 1) -> dict:
    """Each workflow's figures at ``rows`` track rows. With ``rounds`` > 1 the full and the one-gene
    command alternate that many times; ``engine`` and ``one_gene`` are then the median runs (every
    run's wall time in ``walls``) and the margin is the difference of the medians."""
    paths = prepare(rows, plain=plain)
    work = paths["root"] / "out"
    manifest = manifest_57(paths["root"])
    names = manifest.read_text().split()
    result: dict = {"track_rows": rows, "track_options": "pyarrow default" if plain else "predict-base"}
    for kind in kinds:
        runs: dict[str, list[dict]] = {"engine": [], "one_gene": []}
        for _ in range(rounds):
            runs["engine"].append(engine(kind, paths, paths["track"], work / kind, manifest))
            runs["one_gene"].append(engine(kind, paths, paths["one_gene"], work / f"{kind}-1", manifest))
        full, fixed = _median_run(runs["engine"]), _median_run(runs["one_gene"])
        marginal = max(full["wall_s"] - fixed["wall_s"], 1e-9)
        entry = {"engine": full, "one_gene": fixed, "marginal_s": round(marginal, 3),
                 "track_rows_per_s_marginal": round(rows / marginal)}
        if rounds > 1:
            entry["walls"] = {k: [r["wall_s"] for r in v] for k, v in runs.items()}
        if kind == "select":
            selected = sum(pq.ParquetFile(p).metadata.num_rows for p in (work / kind).glob("*.parquet"))
            entry["selected_rows"] = selected
            entry.update(floor(paths["track"], work / kind, work / "floor.parquet", whole=False))
            entry["ratios"] = {"marginal_vs_floor": round(marginal / entry["floor_s"], 2)}
            if peer:
                entry["polars"] = polars_peer(paths, work / "polars.parquet", names)
            if peer and not entry["polars"].get("timed_out"):
                entry["polars_equal"] = same_values(work / kind, work / "polars.parquet", names)
                entry["ratios"]["wall_vs_polars"] = round(full["wall_s"] / entry["polars"]["wall_s"], 2)
        if kind == "selective":
            entry.update(floor(paths["track"], work / kind, work / "floor.parquet", whole=True))
            entry["ratios"] = {"marginal_vs_floor": round(marginal / entry["floor_s"], 2)}
        result[kind] = entry
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10M,100M", help="track rows, comma-separated (k/M suffixes)")
    parser.add_argument("--quick", action="store_true", help="track-only selection only")
    parser.add_argument("--kinds", default="select,positions,selective",
                        help="workflows, comma-separated (--quick: select)")
    parser.add_argument("--plain", action="store_true",
                        help="tracks written with pyarrow's default options (not predict-base's)")
    parser.add_argument("--no-peer", action="store_true", help="without the Polars peer")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternating runs of each command (medians reported; default 1)")
    args = parser.parse_args()
    kinds = ["select"] if args.quick else args.kinds.split(",")
    sizes = [int(float(s[:-1]) * {"k": 1e3, "M": 1e6}[s[-1]]) if s[-1] in "kM" else int(s)
             for s in args.sizes.split(",")]
    results = [measure(n, kinds, args.plain, not args.no_peer, args.rounds) for n in sizes]
    for r in results:
        for kind in ("select", "positions", "selective"):
            if kind in r:
                e = r[kind]
                print(f"{r['track_rows']:>12,} {kind:<10} wall {e['engine']['wall_s']:7.2f} s  "
                      f"one gene {e['one_gene']['wall_s']:5.2f} s  "
                      f"{e['track_rows_per_s_marginal'] / 1e6:6.2f}M rows/s marginal  "
                      f"worker RSS {e['engine']['max_worker_rss_mb']:7.1f} MB  {e.get('ratios', '')}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "bench_track-quick" if args.quick else f"bench_track-{'-'.join(kinds)}"
    name += "-plain.json" if args.plain else ".json"
    (RESULTS / name).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
