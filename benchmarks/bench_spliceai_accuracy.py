"""Validation of the numpy SpliceAI port on real Arabidopsis genes, and its speed.

For genes of the bundled 1 Mb slice that have introns, predicts the per-nucleotide track with
``predict_base`` (one Dask task per gene on a LocalCluster) and reports SpliceAI's top-k accuracy
per splice-site type and strand: k = number of annotated sites of that type over the genes of that
strand; accuracy = fraction of the k highest-scoring positions (pooled over those genes' spans)
that are annotated sites. Also reports seconds per kb (worker seconds and wall clock) and a linear
fit seconds = a + b * kb per gene (a = fixed cost of the 10 kb of flanking context).

Coordinates: ``dask_enrich.genome`` lists annotated sites at the intronic nucleotide next to the
exon (plus strand: donor = exon_end + 1, acceptor = exon_start - 1). SpliceAI scores the exonic
nucleotide of the boundary (donor = last exon nt, acceptor = first exon nt), so the annotated
sites are moved one nucleotide into the exon before matching (``--shift`` 1). The table of
accuracy against shifts -2..2 shows that this is where the model's peaks are.

    python benchmarks/bench_spliceai_accuracy.py            # a 40-gene sample, 20 per strand
    python benchmarks/bench_spliceai_accuracy.py --all      # every multi-exon gene of the slice
    python benchmarks/bench_spliceai_accuracy.py --track dask_enrich/data/demo_track.parquet
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dask_enrich.basemodel.predict import predict_base
from dask_enrich.genome.gtf import read_gtf

DATA = Path(__file__).resolve().parents[1] / "dask_enrich" / "data"
FASTA = DATA / "athal_chr1_1mb.fa.gz"
GTF = DATA / "athal_chr1_1mb.gtf.gz"
RESULTS = Path(__file__).resolve().parent / "results"


def pick_genes(genes: pd.DataFrame, per_strand: int | None) -> list[str]:
    """Genes with introns; ``per_strand`` evenly spaced along the slice on each strand (None = all)."""
    spliced = genes[genes["n_splice_sites"] > 0].sort_values("gene_start")
    if per_strand is None:
        return spliced["gene_id"].tolist()
    picked = []
    for strand in ("+", "-"):
        s = spliced[spliced["strand"] == strand]
        idx = np.unique(np.linspace(0, len(s) - 1, min(per_strand, len(s))).round().astype(int))
        picked += s["gene_id"].iloc[idx].tolist()
    return picked


def exonic_sites(sites: pd.DataFrame, strand_of: pd.Series, shift: int) -> pd.DataFrame:
    """Annotated sites moved ``shift`` nt into the exon (the nucleotide SpliceAI scores)."""
    strand = sites["gene_id"].map(strand_of).to_numpy()
    sign = np.where(sites["site_type"].to_numpy() == "donor", -1, 1) * np.where(strand == "+", 1, -1)
    out = sites.assign(position=sites["position"].to_numpy() + sign * shift, strand=strand)
    return out


def topk_table(track: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """Pooled top-k accuracy per (site_type, strand)."""
    rows = []
    for site_type, col in (("donor", "donor_score"), ("acceptor", "acceptor_score")):
        for strand in ("+", "-"):
            t = track[track["strand"] == strand]
            s = sites[(sites["site_type"] == site_type) & (sites["strand"] == strand)
                      & sites["gene_id"].isin(t["gene_id"].unique())]
            truth = pd.MultiIndex.from_arrays([s["gene_id"].to_numpy(), s["position"].to_numpy()]).unique()
            k = len(truth)
            if k == 0:
                continue
            top = np.argsort(-t[col].to_numpy(), kind="stable")[:k]
            hit = pd.MultiIndex.from_arrays([t["gene_id"].to_numpy()[top], t["position"].to_numpy()[top]]).isin(truth)
            # per gene top-k (k = that gene's sites), averaged over genes
            per_gene = []
            for gid, g in t.groupby("gene_id", sort=False):
                gs = set(s.loc[s["gene_id"] == gid, "position"])
                if gs:
                    order = np.argsort(-g[col].to_numpy(), kind="stable")[: len(gs)]
                    per_gene.append(np.isin(g["position"].to_numpy()[order], list(gs)).mean())
            rows.append({"site_type": site_type, "strand": strand, "genes": t["gene_id"].nunique(),
                         "k": k, "topk_accuracy": float(hit.mean()),
                         "per_gene_mean": float(np.mean(per_gene)) if per_gene else float("nan")})
    return pd.DataFrame(rows)


def speed_probe(repeat: int = 2) -> dict:
    """In-process, one thread: CPU seconds for a 1 kb and a 21 kb span (+10 kb context), best of
    ``repeat``; gives the fixed per-gene cost and the marginal seconds per kb without Dask."""
    from dask_enrich.basemodel.spliceai import CONTEXT, load_models, one_hot, predict_onehot

    models = load_models()
    rng = np.random.default_rng(0)
    best = {}
    for kb in (1, 21):
        x = one_hot(bytes(rng.choice(list(b"ACGT"), kb * 1000 + CONTEXT).astype(np.uint8)))
        times = []
        for _ in range(repeat):
            t0 = time.thread_time()
            predict_onehot(x, models, threads=1)
            times.append(time.thread_time() - t0)
        best[kb] = min(times)
    marginal = (best[21] - best[1]) / 20
    return {"one_thread_s_1kb_gene": best[1], "one_thread_s_21kb_gene": best[21],
            "one_thread_marginal_s_per_kb": marginal, "one_thread_fixed_s_per_gene": best[1] - marginal}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-strand", type=int, default=20, help="genes per strand in the sample")
    ap.add_argument("--all", action="store_true", help="every multi-exon gene of the slice")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--track", help="evaluate this existing track instead of predicting")
    ap.add_argument("--shift", type=int, default=1, help="nt to move annotated sites into the exon")
    ap.add_argument("--no-probe", action="store_true", help="skip the in-process one-thread speed probe")
    ap.add_argument("--out", default=str(RESULTS / "bench_spliceai_accuracy.json"))
    args = ap.parse_args()

    ann = read_gtf(GTF)
    strand_of = ann.genes.set_index("gene_id")["strand"]
    timing = {}
    if args.track:
        track = pd.read_parquet(args.track)
        gene_ids = track["gene_id"].unique().tolist()
        source = str(args.track)
    else:
        gene_ids = pick_genes(ann.genes, None if args.all else args.per_strand)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "track.parquet"
            t0 = time.perf_counter()
            summary = predict_base(FASTA, ann, gene_ids, out, n_workers=args.workers)
            wall = time.perf_counter() - t0
            track = pd.read_parquet(out)
        kb = summary["length"].to_numpy() / 1000
        sec = summary["seconds"].to_numpy()
        cpu = summary["cpu_seconds"].to_numpy()
        b, a = np.polyfit(kb, cpu, 1)
        timing = {
            "workers": args.workers,
            "genes": len(summary),
            "total_kb": float(kb.sum()),
            "wall_seconds": wall,
            "wall_s_per_kb": wall / kb.sum(),
            "worker_s_per_kb": float(sec.sum() / kb.sum()),
            "worker_cpu_s_per_kb": float(cpu.sum() / kb.sum()),
            "fit_fixed_cpu_s_per_gene": float(a),
            "fit_marginal_cpu_s_per_kb": float(b),
            "median_gene_kb": float(np.median(kb)),
        }
        source = "predicted (sample)" if not args.all else "predicted (all multi-exon genes)"

    probe = {} if args.no_probe else speed_probe()
    sites = ann.splice_sites[ann.splice_sites["gene_id"].isin(gene_ids)]
    table = topk_table(track, exonic_sites(sites, strand_of, args.shift))
    shifts = {}
    for sh in range(-2, 3):
        tt = topk_table(track, exonic_sites(sites, strand_of, sh))
        shifts[sh] = float((tt["topk_accuracy"] * tt["k"]).sum() / tt["k"].sum())

    print(f"SpliceAI numpy port, top-k accuracy on {len(gene_ids)} Arabidopsis genes ({source})")
    print(f"annotated sites moved {args.shift} nt into the exon (SpliceAI's boundary nucleotide)\n")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\npooled top-k accuracy by shift into the exon: "
          + ", ".join(f"{k:+d}: {v:.3f}" for k, v in shifts.items()))
    if timing:
        print(f"\nspeed ({timing['workers']} worker processes, 1 thread each, {timing['genes']} genes, "
              f"{timing['total_kb']:.1f} kb): wall {timing['wall_seconds']:.1f} s = "
              f"{timing['wall_s_per_kb']:.3f} s/kb; in the workers {timing['worker_s_per_kb']:.3f} s/kb wall, "
              f"{timing['worker_cpu_s_per_kb']:.3f} CPU s/kb; CPU per gene {timing['fit_fixed_cpu_s_per_gene']:.2f} s "
              f"+ {timing['fit_marginal_cpu_s_per_kb']:.3f} s/kb")
    if probe:
        print(f"one thread, no Dask (CPU s): 1 kb gene {probe['one_thread_s_1kb_gene']:.2f} s, 21 kb gene "
              f"{probe['one_thread_s_21kb_gene']:.2f} s -> {probe['one_thread_fixed_s_per_gene']:.2f} s per gene "
              f"+ {probe['one_thread_marginal_s_per_kb']:.3f} s/kb")
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "bench_spliceai_accuracy",
        "source": source,
        "genes": gene_ids,
        "shift_into_exon": args.shift,
        "topk": table.to_dict(orient="records"),
        "pooled_topk_by_shift": {str(k): v for k, v in shifts.items()},
        "timing": timing,
        "one_thread_probe": probe,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
