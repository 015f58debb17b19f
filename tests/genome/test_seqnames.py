"""Sequence names of the annotation matched to the genome's: chr prefixes, chrM/MT, one-to-one
only, --seq-aliases; the same cache whichever side carries the 'chr'."""
from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from dask_enrich.errors import InputError
from dask_enrich.cli.build_cache import register_cli
from dask_enrich.genome.cache import build_cache
from dask_enrich.genome.seqnames import SeqNames, automatic_candidates, read_seq_aliases
from tests.genome.conftest import renamed_copies


def test_automatic_candidates():
    assert automatic_candidates("chr1") == ["1"]
    assert automatic_candidates("1") == ["chr1"]
    assert automatic_candidates("Chr2") == ["2"]
    assert automatic_candidates("chrM") == ["M", "MT", "chrMT"]
    assert automatic_candidates("MT") == ["M", "chrM", "chrMT"]


def test_resolve_prefers_alias_then_exact_then_one_to_one_automatic():
    names = SeqNames(["chr1", "chrM", "2", "chrX"], {"chrX": "NC_X"})
    mapping, report = names.resolve(["1", "MT", "chr2", "2", "NC_X", "chrX"])
    assert mapping == {"chr1": "1", "chrM": "MT", "2": "2", "chrX": "NC_X"}
    assert report["seq_names_mapped"] == {"chr1": "1", "chrM": "MT", "chrX": "NC_X"}
    # 'chr1' could only be '1', which '1' itself uses: not one-to-one, left unmatched
    mapping, report = SeqNames(["1", "chr1"]).resolve(["1"])
    assert mapping == {"1": "1"} and report["seq_names_ambiguous"] == ["chr1"]
    # two automatic candidates in the genome: ambiguous
    mapping, report = SeqNames(["chrM"]).resolve(["M", "MT"])
    assert mapping == {} and report["seq_names_ambiguous"] == ["chrM"]
    # an alias whose target is absent falls back to the name itself, and is reported
    mapping, report = SeqNames(["chr1"], {"chr1": "NC_1"}).resolve(["chr1"])
    assert mapping == {"chr1": "chr1"} and report["seq_aliases_unused"] == ["chr1"]


def test_alias_file(tmp_path):
    path = tmp_path / "aliases.tsv"
    path.write_text("# annotation\tgenome\nchr1\tNC_000001.11\n\nchrM\tNC_012920.1\n")
    assert read_seq_aliases(path) == {"chr1": "NC_000001.11", "chrM": "NC_012920.1"}
    path.write_text("chr1\tNC_000001.11\nchr2\tNC_000002.12\nchr1\t1\n")
    with pytest.raises(InputError, match=r"aliases\.tsv: line 3: 'chr1' is mapped twice \(also on line 1"):
        read_seq_aliases(path)
    path.write_text("chr1 NC_000001.11\n")
    with pytest.raises(InputError, match=r"aliases\.tsv: line 1: expected two tab-separated columns"):
        read_seq_aliases(path)


@pytest.mark.parametrize("gtf_name,fasta_name", [("chr1", "1"), ("1", "chr1"), ("chrM", "MT")])
def test_mismatched_names_give_the_cache_of_matching_names(tmp_path, gtf_name, fasta_name):
    gtf, fasta = renamed_copies(tmp_path, gtf_name, fasta_name)
    _, same = renamed_copies(tmp_path, gtf_name, gtf_name)
    messages: list[str] = []
    got = build_cache(fasta, gtf, tmp_path / "got", progress=messages.append)
    ref = build_cache(same, gtf, tmp_path / "ref")
    assert (got.gene_table["seq_offset"] >= 0).all() and len(got.gene_table) == 380
    pd.testing.assert_frame_equal(got.gene_table, ref.gene_table)
    pd.testing.assert_frame_equal(got.splice_sites, ref.splice_sites)
    assert (got.path / "bases.npy").read_bytes() == (ref.path / "bases.npy").read_bytes()
    assert got.report["seq_names_mapped"] == {gtf_name: fasta_name} and ref.report["seq_names_mapped"] == {}
    stored = json.loads((got.path / "cache.json").read_text())
    assert stored["report"]["seq_names_mapped"] == {gtf_name: fasta_name}
    assert f"sequence {gtf_name} of the annotation is {fasta_name} in the genome" in messages


def test_no_annotated_sequence_in_the_genome_exits_2(tmp_path, capsys):
    gtf, fasta = renamed_copies(tmp_path, "NC_003070.9", "Chr1")
    parser = argparse.ArgumentParser(prog="dask-enrich")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["build-cache", "--genome", str(fasta), "--annotation", str(gtf),
                              "--out", str(tmp_path / "c"), "--quiet"])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert "no annotated gene's sequence is in the genome" in err
    assert "the annotation names NC_003070.9 (1); the genome has Chr1 (1)" in err and "--seq-aliases" in err
    aliases = tmp_path / "aliases.tsv"
    aliases.write_text("NC_003070.9\tChr1\n")
    args = parser.parse_args(["build-cache", "--genome", str(fasta), "--annotation", str(gtf),
                              "--out", str(tmp_path / "c"), "--seq-aliases", str(aliases)])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "380 genes" in out and "sequence names matched (annotation -> genome): NC_003070.9 -> Chr1" in out
    twice = tmp_path / "twice.tsv"
    twice.write_text("NC_003070.9\tChr1\nNC_003070.9\t1\n")
    args = parser.parse_args(["build-cache", "--genome", str(fasta), "--annotation", str(gtf),
                              "--out", str(tmp_path / "d"), "--seq-aliases", str(twice)])
    assert args.handler(args) == 2
    assert "twice.tsv: line 2: 'NC_003070.9' is mapped twice (also on line 1" in capsys.readouterr().err
    # the aliases are part of the fingerprint: without them the same inputs are a different cache
    with_aliases = build_cache(fasta, gtf, tmp_path / "c", seq_aliases=aliases)
    assert (with_aliases.gene_table["seq_offset"] >= 0).all()
    with pytest.raises(InputError, match="no annotated gene's sequence"):
        build_cache(fasta, gtf, tmp_path / "c")
