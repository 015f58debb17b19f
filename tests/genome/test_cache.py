"""Genomic cache on the real slice: sequence features vs the literal spec window, introns GT..AG,
fingerprint reuse/rebuild, coordinates, reporting, the build-cache subcommand."""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from dask_enrich.errors import InputError
from dask_enrich.features.registry import lookup
from dask_enrich.genome.cache import (
    CACHE_FORMAT_VERSION,
    GenomicCache,
    build_cache,
    gene_relative_to_genomic,
    genomic_to_gene_relative,
    load_cached,
)
from dask_enrich.cli.build_cache import register_cli
from dask_enrich.genome.gtf import GENOMIC_FEATURES
from tests.genome.conftest import SEQNAME, SLICE_FASTA, SLICE_GTF, link_into
from tests.genome.reference import features_of_window, revcomp, window_string

KMERS3 = ["3mer_" + "".join(p) for p in itertools.product("ACGT", repeat=3)]
NAMES = ["gc_content", "sequence_length", "sequence_complexity", *KMERS3,
         "6mer_AAAAAA", "6mer_GTAAGT", "6mer_TTTCAG", "1mer_A", "2mer_GT", "3mer_NNN", "8mer_TTTTTTTT"]


def _positions(cache: GenomicCache, rng: np.random.Generator) -> pd.DataFrame:
    """Every annotated splice site, both ends of every gene and random positions inside genes."""
    genes = cache.gene_table
    parts = [cache.splice_sites[["gene_id", "position"]]]
    inside = cache.splice_sites.merge(genes[["gene_start", "gene_end"]], left_on="gene_id", right_index=True)
    parts[0] = inside.loc[(inside.position >= inside.gene_start) & (inside.position <= inside.gene_end),
                          ["gene_id", "position"]]
    for col in ("gene_start", "gene_end"):
        parts.append(pd.DataFrame({"gene_id": genes.index, "position": genes[col].to_numpy()}))
    gid = rng.choice(genes.index.to_numpy(), 1500)
    start = genes.loc[gid, "gene_start"].to_numpy()
    end = genes.loc[gid, "gene_end"].to_numpy()
    parts.append(pd.DataFrame({"gene_id": gid, "position": start + (rng.random(len(gid)) * (end - start + 1)).astype(int)}))
    return pd.concat(parts, ignore_index=True)


def test_sequence_features_match_literal_windows(slice_cache, slice_chrom):
    rng = np.random.default_rng(11)
    pos = _positions(slice_cache, rng)
    got = slice_cache.sequence_features(pos["gene_id"], pos["position"], NAMES)
    assert list(got) == NAMES
    for name in NAMES:
        assert got[name].dtype == lookup(name).dtype and len(got[name]) == len(pos)
    genes = slice_cache.gene_table
    strands = set()
    clipped = 0
    for r, (gid, p) in enumerate(zip(pos["gene_id"], pos["position"])):
        g = genes.loc[gid]
        window = window_string(slice_chrom, int(g.gene_start), int(g.gene_end), g.strand, int(p))
        expected = features_of_window(window, NAMES)
        strands.add(g.strand)
        clipped += len(window) < 500
        for name in NAMES:
            if isinstance(expected[name], float):
                assert got[name][r] == pytest.approx(expected[name], abs=1e-12), (gid, p, name)
            else:
                assert got[name][r] == expected[name], (gid, p, name)
    assert strands == {"+", "-"} and clipped > 100


def test_annotated_introns_start_gt_end_ag(slice_cache, slice_chrom):
    """Real biology: after strand handling, donors read GT and acceptors AG in transcript orientation."""
    sites = slice_cache.splice_sites.merge(slice_cache.gene_table[["strand"]], left_on="gene_id", right_index=True)
    ok = []
    for gid, p, kind, strand in zip(sites.gene_id, sites.position, sites.site_type, sites.strand):
        if strand == "+":
            di = slice_chrom[p - 1:p + 1] if kind == "donor" else slice_chrom[p - 2:p]
        else:
            di = revcomp(slice_chrom[p - 2:p]) if kind == "donor" else revcomp(slice_chrom[p - 1:p + 1])
        ok.append(di == ("GT" if kind == "donor" else "AG"))
    fraction = float(np.mean(ok))
    print(f"GT..AG fraction on the slice: {fraction:.4f} of {len(ok)} sites")
    assert fraction > 0.95
    # the same through the cache's own gene sequences (transcript orientation)
    genes = slice_cache.gene_table
    good = total = 0
    for gid, grp in sites.groupby("gene_id"):
        g = genes.loc[gid]
        seq = slice_cache.gene_sequence(gid).tobytes().decode()
        for p, kind in zip(grp.position, grp.site_type):
            i = p - g.gene_start if g.strand == "+" else g.gene_end - p
            if 1 <= i < len(seq) - 1:
                di = seq[i:i + 2] if kind == "donor" else seq[i - 1:i + 1]
                good += di == ("GT" if kind == "donor" else "AG")
                total += 1
    assert total > 2500 and good / total > 0.95


def test_gene_table_and_bases(slice_cache, slice_annotation, slice_chrom):
    table = slice_cache.gene_table
    assert table.index.name == "gene_id" and len(table) == 380
    for name in GENOMIC_FEATURES:
        assert table[name].dtype == lookup(name).dtype
        assert np.array_equal(table[name].to_numpy(), slice_annotation.genes.set_index("gene_id").loc[table.index, name].to_numpy())
    assert table["seq_offset"].dtype == np.int64 and (table["seq_offset"] >= 0).all()
    for gid in table.index[::17]:
        g = table.loc[gid]
        span = np.asarray(slice_cache.bases[g.seq_offset:g.seq_offset + g.gene_length]).tobytes().decode()
        assert span == slice_chrom[g.gene_start - 1:g.gene_end]
    assert len(slice_cache.fingerprint) == 64
    assert slice_cache.report["genes_on_missing_sequences"] == []


def test_genomic_features_lookup(slice_cache):
    got = slice_cache.genomic_features(["AT1G01020", "AT1G01010", "AT1G01020"], ["gene_length", "chrom", "num_exons"])
    assert got["gene_length"].tolist() == [2343, 2269, 2343] and got["chrom"].tolist() == [100] * 3
    assert got["num_exons"].tolist() == [8, 6, 8]
    with pytest.raises(InputError):
        slice_cache.genomic_features(["NOPE"], ["gene_length"])


def test_position_problems_are_named(slice_cache):
    reasons = slice_cache.position_problems(["AT1G01010", "NOPE", "AT1G01010", "AT1G01020"],
                                            [3631, 5, 3630, 9130], need_sequence=True)
    assert reasons.tolist() == ["", "gene not in annotation", "position outside gene", ""]
    with pytest.raises(InputError, match="position outside gene: 1"):
        slice_cache.sequence_features(["AT1G01010", "AT1G01010"], [3700, 9999], ["gc_content"])


def test_coordinates_both_strands_by_hand():
    start = np.array([100, 100])
    end = np.array([200, 200])
    minus = np.array([False, True])
    rel = genomic_to_gene_relative([100, 100], start, end, minus)
    assert rel.tolist() == [0, 100]
    assert genomic_to_gene_relative([150, 150], start, end, minus).tolist() == [50, 50]
    assert genomic_to_gene_relative([200, 200], start, end, minus).tolist() == [100, 0]
    assert gene_relative_to_genomic([0, 0], start, end, minus).tolist() == [100, 200]
    rng = np.random.default_rng(0)
    pos = rng.integers(100, 201, 1000)
    m = rng.random(1000) < 0.5
    s = np.full(1000, 100)
    e = np.full(1000, 200)
    assert np.array_equal(gene_relative_to_genomic(genomic_to_gene_relative(pos, s, e, m), s, e, m), pos)
    with pytest.raises(InputError, match="outside"):
        genomic_to_gene_relative([99], [100], [200], [False])
    with pytest.raises(InputError, match="outside"):
        gene_relative_to_genomic([101], [100], [200], [True])
    with pytest.raises(InputError, match="outside"):
        gene_relative_to_genomic([-1], [100], [200], [False])


def _fewer_genes_gtf(path, drop: str) -> None:
    with gzip.open(SLICE_GTF, "rt") as src, open(path, "w") as dst:
        for line in src:
            if f'gene_id "{drop}"' not in line:
                dst.write(line)


def test_fingerprint_reuse_and_rebuild(tmp_path):
    fasta = link_into(tmp_path / "fa", SLICE_FASTA)
    out = tmp_path / "cache"
    first = build_cache(fasta, SLICE_GTF, out)
    stamp = (out / "genes.parquet").stat().st_mtime_ns
    messages: list[str] = []
    again = build_cache(fasta, SLICE_GTF, out, progress=messages.append)
    assert any("reusing" in m for m in messages)
    assert (out / "genes.parquet").stat().st_mtime_ns == stamp and again.fingerprint == first.fingerprint
    opened = load_cached(out)
    assert load_cached(out) is opened
    # changed annotation -> rebuilt, never mixed
    gtf2 = tmp_path / "fewer.gtf"
    _fewer_genes_gtf(gtf2, "AT1G01010")
    rebuilt = build_cache(fasta, gtf2, out)
    assert rebuilt.fingerprint != first.fingerprint and len(rebuilt.gene_table) == 379
    assert "AT1G01010" not in rebuilt.gene_table.index
    assert len(rebuilt.bases) == len(first.bases) - 2269
    assert load_cached(out) is not opened and load_cached(out).fingerprint == rebuilt.fingerprint
    meta = json.loads((out / "cache.json").read_text())
    assert meta["fingerprint"] == rebuilt.fingerprint and meta["format_version"] == CACHE_FORMAT_VERSION == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".build")]


def test_cache_of_an_older_format_is_rebuilt(tmp_path):
    """A cache written before n_splice_sites/num_overlaps followed training (format 1) is rebuilt."""
    fasta = link_into(tmp_path / "fa", SLICE_FASTA)
    out = tmp_path / "cache"
    build_cache(fasta, SLICE_GTF, out)
    meta = json.loads((out / "cache.json").read_text())
    genes = pd.read_parquet(out / "genes.parquet")
    genes["n_splice_sites"] = genes["n_splice_sites"].clip(lower=0)  # what format 1 stored
    genes.to_parquet(out / "genes.parquet")
    meta["format_version"] = 1
    (out / "cache.json").write_text(json.dumps(meta))
    messages: list[str] = []
    rebuilt = build_cache(fasta, SLICE_GTF, out, progress=messages.append)
    assert not any("reusing" in m for m in messages)
    assert (rebuilt.gene_table["n_splice_sites"] == -1).sum() > 0
    assert json.loads((out / "cache.json").read_text())["format_version"] == CACHE_FORMAT_VERSION


def test_interrupted_build_is_not_reused(tmp_path, monkeypatch):
    fasta = link_into(tmp_path / "fa", SLICE_FASTA)
    out = tmp_path / "cache"
    build_cache(fasta, SLICE_GTF, out)
    gtf2 = tmp_path / "fewer.gtf"
    _fewer_genes_gtf(gtf2, "AT1G01020")
    import dask_enrich.genome.cache as cache_mod

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cache_mod, "read_annotation", boom)
    with pytest.raises(RuntimeError):
        build_cache(fasta, gtf2, out)
    assert not (out / "cache.json").exists()  # the old cache is invalidated, not half-replaced
    with pytest.raises(InputError, match="not a genomic cache"):
        GenomicCache.open(out)


def test_pickles_as_a_reference_to_disk(slice_cache):
    import pickle

    blob = pickle.dumps(slice_cache)
    assert len(blob) < 1000  # path + fingerprint, not the bases
    again = pickle.loads(blob)
    assert again is load_cached(slice_cache.path) and again.fingerprint == slice_cache.fingerprint
    assert np.array_equal(np.asarray(again.bases[:1000]), np.asarray(slice_cache.bases[:1000]))


def test_annotation_only_cache(tmp_path):
    cache = build_cache(None, SLICE_GTF, tmp_path / "ann")
    assert not cache.has_sequence and len(cache.bases) == 0
    assert (cache.gene_table["seq_offset"] == -1).all()
    assert cache.genomic_features(["AT1G01010"], ["gene_start"])["gene_start"].tolist() == [3631]
    with pytest.raises(InputError, match="no sequence"):
        cache.sequence_features(["AT1G01010"], [3700], ["gc_content"])


def test_gene_on_missing_chromosome_is_reported(tmp_path):
    gtf = tmp_path / "extra.gtf"
    with gzip.open(SLICE_GTF, "rt") as src:
        text = src.read()
    extra = 'chrZ\tX\texon\t10\t50\t.\t+\t.\tgene_id "GZ"; transcript_id "TZ";\n'
    beyond = f'{SEQNAME}\tX\texon\t999990\t1000020\t.\t+\t.\tgene_id "GB"; transcript_id "TB";\n'
    gtf.write_text(text + extra + beyond)
    cache = build_cache(link_into(tmp_path / "fa", SLICE_FASTA), gtf, tmp_path / "c")
    assert cache.report["genes_on_missing_sequences"] == ["GZ"]
    assert cache.report["missing_sequences"] == ["chrZ"]
    assert cache.report["genes_beyond_sequence_end"] == ["GB"]
    assert cache.gene_table.loc["GZ", "seq_offset"] == -1 and cache.gene_table.loc["GB", "seq_offset"] == -1
    assert cache.position_problems(["GZ"], [20], need_sequence=True).tolist() == ["no sequence for gene"]
    assert cache.position_problems(["GZ"], [20], need_sequence=False).tolist() == [""]


def test_genes_at_the_chromosome_ends(tmp_path, slice_chrom):
    """Genes touching base 1 and the last base of the sequence: windows clipped there, both strands."""
    gtf = tmp_path / "ends.gtf"
    gtf.write_text(
        f'{SEQNAME}\tX\texon\t1\t400\t.\t+\t.\tgene_id "START"; transcript_id "T1";\n'
        f'{SEQNAME}\tX\texon\t999601\t1000000\t.\t-\t.\tgene_id "END"; transcript_id "T2";\n'
        f'{SEQNAME}\tX\texon\t1\t150\t.\t-\t.\tgene_id "STARTM"; transcript_id "T3";\n')
    cache = build_cache(link_into(tmp_path / "fa", SLICE_FASTA), gtf, tmp_path / "c")
    cases = [("START", p) for p in (1, 2, 250, 251, 400)] + [("END", p) for p in (999601, 999850, 1000000)]
    cases += [("STARTM", p) for p in (1, 75, 150)]
    got = cache.sequence_features([c[0] for c in cases], [c[1] for c in cases], NAMES)
    genes = cache.gene_table
    for r, (gid, p) in enumerate(cases):
        g = genes.loc[gid]
        expected = features_of_window(window_string(slice_chrom, int(g.gene_start), int(g.gene_end), g.strand, p), NAMES)
        for name in NAMES:
            assert got[name][r] == pytest.approx(expected[name], abs=1e-12), (gid, p, name)
    assert got["sequence_length"].tolist() == [250, 251, 400, 400, 251, 251, 400, 250, 150, 150, 150]


def test_build_cache_subcommand(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="dask-enrich")
    sub = parser.add_subparsers(dest="command")
    register_cli(sub)
    fasta = link_into(tmp_path / "fa", SLICE_FASTA)
    args = parser.parse_args(["build-cache", "--genome", str(fasta), "--annotation", str(SLICE_GTF),
                              "--out", str(tmp_path / "c"), "--chrom-alias", f"{SEQNAME}=1"])
    from dask_enrich.logs import configure

    configure("info")  # what the main parser does: progress goes through the dask_enrich logger
    assert args.handler(args) == 0
    assert (GenomicCache.open(tmp_path / "c").gene_table["chrom"] == 1).all()
    out = capsys.readouterr()
    assert "380 genes" in out.out and "reading NC_003070.9" in out.err
    assert "380/380 genes" in out.err and " genes/s, " in out.err  # progress with its rate
    bad = parser.parse_args(["build-cache", "--annotation", str(tmp_path / "none.gtf"), "--out", str(tmp_path / "d")])
    assert bad.handler(bad) == InputError.exit_code
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["build-cache", "--help"])
    assert "--annotation FILE" in capsys.readouterr().out


def test_chrom_aliases_change_encoding_and_fingerprint(tmp_path):
    plain = build_cache(None, SLICE_GTF, tmp_path / "a")
    aliased = build_cache(None, SLICE_GTF, tmp_path / "a", chrom_aliases={SEQNAME: "1"})
    assert (plain.gene_table["chrom"] == 100).all() and (aliased.gene_table["chrom"] == 1).all()
    assert plain.fingerprint != aliased.fingerprint


def _build_in_child(args):
    fasta, out = args
    return build_cache(fasta, SLICE_GTF, out).fingerprint


def test_concurrent_builders_share_one_cache(tmp_path):
    import multiprocessing

    fasta = link_into(tmp_path / "fa", SLICE_FASTA)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        prints = pool.map(_build_in_child, [(fasta, tmp_path / "c")] * 3)
    assert len(set(prints)) == 1
    assert GenomicCache.open(tmp_path / "c").fingerprint == prints[0]
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".build")]


@pytest.mark.slow
def test_whole_chromosome_cache(chromosome, tmp_path):
    import time

    from tests.genome.reference import read_fasta_plain

    fasta, gtf = chromosome
    t0 = time.perf_counter()
    cache = build_cache(link_into(tmp_path / "fa", fasta), gtf, tmp_path / "cache")
    seconds = time.perf_counter() - t0
    chrom = read_fasta_plain(fasta)[SEQNAME]
    sites = cache.splice_sites.merge(cache.gene_table[["strand"]], left_on="gene_id", right_index=True)
    ok = []
    for p, kind, strand in zip(sites.position, sites.site_type, sites.strand):
        if strand == "+":
            di = chrom[p - 1:p + 1] if kind == "donor" else chrom[p - 2:p]
        else:
            di = revcomp(chrom[p - 2:p]) if kind == "donor" else revcomp(chrom[p - 1:p + 1])
        ok.append(di == ("GT" if kind == "donor" else "AG"))
    fraction = float(np.mean(ok))
    print(f"whole chromosome: build {seconds:.1f} s, GT..AG fraction {fraction:.4f} of {len(ok)} sites")
    assert fraction > 0.95 and len(ok) > 50_000
    rng = np.random.default_rng(5)
    pos = _positions(cache, rng).sample(3000, random_state=1)
    got = cache.sequence_features(pos["gene_id"], pos["position"], NAMES)
    genes = cache.gene_table
    for r, (gid, p) in enumerate(zip(pos["gene_id"], pos["position"])):
        g = genes.loc[gid]
        expected = features_of_window(window_string(chrom, int(g.gene_start), int(g.gene_end), g.strand, int(p)), NAMES)
        for name in NAMES:
            assert got[name][r] == pytest.approx(expected[name], abs=1e-12), (gid, p, name)


def test_cache_build_writes_fasta_indexes_into_the_cache_not_beside_its_inputs(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(SLICE_FASTA, inputs / SLICE_FASTA.name)
    build_cache(inputs / SLICE_FASTA.name, SLICE_GTF, tmp_path / "cache")
    assert sorted(p.name for p in inputs.iterdir()) == [SLICE_FASTA.name]
    assert (tmp_path / "cache" / (SLICE_FASTA.name + ".fai")).is_file()


def _with_missing_and_beyond_genes(path):
    with gzip.open(SLICE_GTF, "rt") as src:
        text = src.read()
    path.write_text(text + 'chrZ\tX\texon\t10\t50\t.\t+\t.\tgene_id "GZ"; transcript_id "TZ";\n'
                    f'{SEQNAME}\tX\texon\t999990\t1000020\t.\t+\t.\tgene_id "GB"; transcript_id "TB";\n')
    return path


@pytest.mark.parametrize("extra", [False, True], ids=["all-genes-have-sequence", "missing-and-beyond"])
def test_plain_bgzip_and_plain_gzip_fasta_give_identical_caches(tmp_path, slice_chrom, extra, capsys):
    """The same bases, in the same layout, from the plain, the bgzip and the plain-gzip copy of one
    FASTA (the plain-gzip one read once from start to end, no index); with genes that get no
    sequence the layout is still every sequenced gene's span back to back in gene-table order."""
    raw = gzip.decompress(SLICE_FASTA.read_bytes())
    fastas = {"plain": tmp_path / "g.fa", "bgzip": link_into(tmp_path / "bg", SLICE_FASTA),
              "gzip": tmp_path / "g.fa.gz"}
    fastas["plain"].write_bytes(raw)
    fastas["gzip"].write_bytes(gzip.compress(raw, 1))
    gtf = _with_missing_and_beyond_genes(tmp_path / "x.gtf") if extra else SLICE_GTF
    messages: list[str] = []
    caches = {k: build_cache(f, gtf, tmp_path / f"cache-{k}", progress=messages.append) for k, f in fastas.items()}
    assert any("once from start to end" in m for m in messages)
    assert not list((tmp_path / "cache-gzip").glob("*.fai")) and (tmp_path / "cache-plain" / "g.fa.fai").is_file()
    ref = caches["plain"]
    for kind in ("bgzip", "gzip"):
        assert (caches[kind].path / "bases.npy").read_bytes() == (ref.path / "bases.npy").read_bytes(), kind
        pd.testing.assert_frame_equal(caches[kind].gene_table, ref.gene_table)
        pd.testing.assert_frame_equal(caches[kind].splice_sites, ref.splice_sites)
    genes = ref.gene_table
    has = genes[genes["seq_offset"] >= 0]
    assert has["seq_offset"].tolist() == np.concatenate([[0], np.cumsum(has["gene_length"])[:-1]]).tolist()
    assert len(ref.bases) == int(has["gene_length"].sum())
    for gid in has.index[::37]:
        g = has.loc[gid]
        assert ref.gene_sequence(gid, False).tobytes().decode() == slice_chrom[g.gene_start - 1:g.gene_end]
    if extra:
        assert genes.loc["GZ", "seq_offset"] == -1 and genes.loc["GB", "seq_offset"] == -1
        assert caches["gzip"].report["genes_beyond_sequence_end"] == ["GB"]
