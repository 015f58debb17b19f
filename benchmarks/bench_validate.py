"""Cost of the per-bin row checks (``--on-bad-rows``) against the enrichment of the same bin.

The engine runs :func:`dask_enrich.engine.quarantine.check_bin` (``validate.split_bad_rows`` with the
genomic cache's gene table and the genome check) on each bin before ``core.enrich``. This measures
both on the same bins, in one process, on generated positions inside the real genes of the whole
A. thaliana chromosome 1 (``benchmarks/data.py``) with the 124-feature 3-mer manifest: clean bins
(the common path) and bins with 1% bad rows (quarantine path, rejected files written to a temp dir).

    python benchmarks/bench_validate.py [--rows 1000000] [--bin-rows 200000]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.data import chromosome_fasta, chromosome_gtf, data_dir, read_positions, write_positions  # noqa: E402
from dask_enrich.core import enrich  # noqa: E402
from dask_enrich.engine import quarantine as rejects  # noqa: E402
from dask_enrich.genome.cache import build_cache, load_cached  # noqa: E402
from dask_enrich.manifest import load_manifest  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_MANIFEST = Path("/work/shared/data/model-3mer-124")
BUNDLED_MANIFEST = Path(__file__).resolve().parents[1] / "dask_enrich" / "data" / "demo_model"


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bin-rows", type=int, default=200_000)
    args = parser.parse_args()
    cache_dir = data_dir() / "cache-chr1"
    build_cache(chromosome_fasta(), chromosome_gtf(), cache_dir)
    genomic = load_cached(cache_dir)
    manifest = load_manifest(SHARED_MANIFEST if SHARED_MANIFEST.exists() else BUNDLED_MANIFEST)
    frame = read_positions(write_positions(args.rows))
    frame = frame[["gene_id", "position", "chrom", "strand", "donor_score", "acceptor_score",
                   "neither_score"] + [c for c in frame.columns if c.startswith("context_score_")]]
    bins = [frame.iloc[i:i + args.bin_rows].reset_index(drop=True)
            for i in range(0, len(frame), args.bin_rows)]
    rng = np.random.default_rng(0)
    dirty = []
    for b in bins:
        d = b.copy()
        bad = rng.choice(len(d), len(d) // 100, replace=False)
        d.loc[bad[::2], "donor_score"] = np.nan
        d.loc[bad[1::2], "position"] = 0
        dirty.append(d)
    out = tempfile.mkdtemp(prefix="bench-validate-")
    clean_checks = rejects.BinChecks("error", "positions", need_sequence=True)
    dirty_checks = rejects.BinChecks("quarantine", "positions", need_sequence=True)

    def check(frames, checks):
        for i, b in enumerate(frames):
            rejects.check_bin(b, checks, bin_id=i, config=manifest_config, genomic=genomic, out=out,
                              fingerprint="bench")

    from dask_enrich.config import EnrichConfig

    manifest_config = EnrichConfig()
    t_check = best_of(lambda: check(bins, clean_checks))
    t_dirty = best_of(lambda: check(dirty, dirty_checks))
    t_enrich = best_of(lambda: [enrich(b, manifest, genomic=genomic) for b in bins], repeat=2)
    rows = len(frame)
    result = {
        "rows": rows, "bin_rows": args.bin_rows, "features": len(manifest.names),
        "check_clean_s": round(t_check, 4), "check_1pct_bad_quarantine_s": round(t_dirty, 4),
        "enrich_s": round(t_enrich, 4),
        "check_rows_per_s": round(rows / t_check), "enrich_rows_per_s": round(rows / t_enrich),
        "check_over_enrich": round(t_check / t_enrich, 4),
        "check_1pct_bad_over_enrich": round(t_dirty / t_enrich, 4),
        "machine": platform.platform(),
    }
    print(f"{'step':34s} {'seconds':>8s} {'rows/s':>12s} {'vs enrich':>9s}")
    print(f"{'row checks, clean bins':34s} {t_check:8.3f} {rows / t_check:12,.0f} {t_check / t_enrich:9.1%}")
    print(f"{'row checks, 1% bad (quarantine)':34s} {t_dirty:8.3f} {rows / t_dirty:12,.0f} "
          f"{t_dirty / t_enrich:9.1%}")
    print(f"{'enrich (' + str(len(manifest.names)) + ' features)':34s} {t_enrich:8.3f} "
          f"{rows / t_enrich:12,.0f} {1:9.1%}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_validate.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
