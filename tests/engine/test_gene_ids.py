"""The positions' gene ids against the annotation's: --gene-key (gene names), version suffixes
ignored when one-to-one, and a clear stop (exit 2) when no id matches, naming the option."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich.engine import run_enrichment, writer
from dask_enrich.errors import InputError
from dask_enrich.genome.cache import build_cache, load_cached
from dask_enrich.genome.geneids import match_gene_ids

from .conftest import MODEL_DIR, SLICE_FASTA, SLICE_GTF, positions_in_genes

KEEP = EnrichConfig(keep_columns=("row_id",))


def _output(out) -> pd.DataFrame:
    got = pd.concat([pd.read_parquet(f) for f in writer.part_files(str(out))], ignore_index=True)
    return got.sort_values("row_id").reset_index(drop=True)


def test_match_gene_ids_by_hand():
    ann = pd.Index(["ENSG1.18", "ENSG2", "ENSG3.1", "ENSG3.2", "ENSG4.1", "X"])
    # ENSG1 -> ENSG1.18 (versionless query); ENSG2.5 -> ENSG2 (versioned query); ENSG3: two
    # annotation versions (ambiguous); ENSG4.1 is exact, so ENSG4 / ENSG4.7 map nowhere (not 1:1)
    query = pd.Index(["ENSG1", "ENSG2.5", "ENSG3", "ENSG4.1", "ENSG4.7", "X", "Y.1"])
    assert match_gene_ids(ann, query) == {"ENSG1": "ENSG1.18", "ENSG2.5": "ENSG2"}
    # two query versions of one annotation id: neither is matched
    assert match_gene_ids(pd.Index(["G"]), pd.Index(["G.1", "G.2"])) == {}


def test_cache_with_gene_aliases(tmp_path):
    cache = build_cache(SLICE_FASTA, SLICE_GTF, tmp_path / "c")
    aliased = cache.with_gene_aliases((("AT1G01010.9", "AT1G01010"),))
    assert aliased.gene_rows(["AT1G01010.9", "AT1G01010", "nope"]).tolist()[2] == -1
    a, b = aliased.gene_rows(["AT1G01010.9", "AT1G01010"])
    assert aliased.gene_table.iloc[a].equals(aliased.gene_table.iloc[b])
    np.testing.assert_array_equal(aliased.gene_sequence("AT1G01010.9"), cache.gene_sequence("AT1G01010"))
    import pickle

    again = pickle.loads(pickle.dumps(aliased))
    assert again.gene_aliases == aliased.gene_aliases and "AT1G01010.9" in again.gene_table.index
    assert len(cache.gene_table) == 380  # the cache itself is unchanged


@pytest.fixture(scope="module")
def named_genes():
    """Gene id -> the RefSeq GTF's ``gene`` attribute (a gene name such as NAC001), for the slice
    genes whose name is unique, read from the GTF text by the test."""
    names: dict[str, set[str]] = {}
    with gzip.open(SLICE_GTF, "rt") as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if len(f) == 9 and f[2] == "gene" and ' gene "' in "; " + f[8]:
                gid = f[8].split('gene_id "')[1].split('"')[0]
                name = ("; " + f[8]).split('; gene "')[1].split('"')[0]
                names.setdefault(name, set()).add(gid)
    unique = {next(iter(g)): n for n, g in names.items() if len(g) == 1}
    assert len(unique) >= 50
    return unique


def test_gene_names_versions_and_gene_ids_give_the_same_features(client, tmp_path, named_genes):
    cache = build_cache(SLICE_FASTA, SLICE_GTF, tmp_path / "cache")
    genes = cache.gene_table.loc[sorted(named_genes)]
    positions = positions_in_genes(genes, 3_000, seed=4)
    positions.to_parquet(tmp_path / "by_id.parquet")
    kw = dict(config=KEEP, partition_rows=1_000, client=client)
    run_enrichment(str(tmp_path / "by_id.parquet"), MODEL_DIR, str(tmp_path / "a"), cache=str(cache.path), **kw)
    want = _output(tmp_path / "a")

    by_name = positions.assign(gene_id=positions["gene_id"].map(named_genes))
    by_name.to_parquet(tmp_path / "by_name.parquet")
    said: list[str] = []
    with pytest.raises(InputError, match=r"no row can be enriched: .* of the positions are not in the "
                                         r"annotation.*the annotation's 'gene' attribute holds .* build "
                                         r"the cache with --gene-key gene"):
        run_enrichment(str(tmp_path / "by_name.parquet"), MODEL_DIR, str(tmp_path / "b0"),
                       cache=str(cache.path), **kw)
    run_enrichment(str(tmp_path / "by_name.parquet"), MODEL_DIR, str(tmp_path / "b"), genome=str(SLICE_FASTA),
                   annotation=str(SLICE_GTF), gene_key="gene", cache_dir=str(tmp_path / "cd"), log=said.append, **kw)
    got = _output(tmp_path / "b")
    assert got["gene_id"].tolist() == want["gene_id"].map(named_genes).tolist()
    pd.testing.assert_frame_equal(got.drop(columns="gene_id"), want.drop(columns="gene_id"))

    versioned = positions.assign(gene_id=positions["gene_id"] + ".2")
    versioned.to_parquet(tmp_path / "versioned.parquet")
    said.clear()
    summary = run_enrichment(str(tmp_path / "versioned.parquet"), MODEL_DIR, str(tmp_path / "c"),
                             cache=str(cache.path), log=said.append, **kw)
    assert summary.rows_written == 3_000
    n = positions["gene_id"].nunique()
    assert any(f"{n} gene id(s) of the positions matched the annotation's once the version suffix is "
               "ignored" in m for m in said)
    got = _output(tmp_path / "c")
    assert got["gene_id"].tolist() == (want["gene_id"] + ".2").tolist()  # the positions' ids are kept
    pd.testing.assert_frame_equal(got.drop(columns="gene_id"), want.drop(columns="gene_id"))


def test_versioned_annotation_and_unversioned_positions(client, tmp_path):
    """The reverse (GENCODE-style annotation ids ``X.N``, positions without versions); a gene left
    unmatched among matched ones is a note, and its rows are the usual bad rows."""
    gtf = tmp_path / "versioned.gtf"
    with gzip.open(SLICE_GTF, "rt") as src:
        gtf.write_text(src.read().replace('gene_id "AT1G', 'gene_id "v.AT1G').replace(
            'gene_id "v.AT1G01010"', 'gene_id "v.AT1G01010.7"'))
    cache = build_cache(SLICE_FASTA, gtf, tmp_path / "cache")
    assert "v.AT1G01010.7" in cache.gene_table.index
    positions = positions_in_genes(cache.gene_table.loc[["v.AT1G01010.7", "v.AT1G01020"]], 200, seed=2)
    positions["gene_id"] = positions["gene_id"].str.replace(".7", "", regex=False)
    positions.loc[:9, "gene_id"] = "NOT_A_GENE"
    positions.to_parquet(tmp_path / "p.parquet")
    said: list[str] = []
    summary = run_enrichment(str(tmp_path / "p.parquet"), MODEL_DIR, str(tmp_path / "out"),
                             cache=str(cache.path), config=KEEP, client=client, log=said.append,
                             on_bad_rows="quarantine")
    assert summary.rows_written == 190 and summary.rows_rejected == 10
    assert any("1 gene id(s) of the positions matched" in m and "v.AT1G01010 -> v.AT1G01010.7" in m for m in said)
    assert any(m.startswith("note: 1 of 3 gene id(s) of the positions are not in the annotation") for m in said)
    got = _output(tmp_path / "out")
    ref = load_cached(cache.path).gene_table.loc["v.AT1G01010.7", "gene_length"]
    assert (got.loc[got.gene_id == "v.AT1G01010", "gene_length"] == ref).all()


def test_a_gene_name_column_hint_names_the_gene_key():
    from dask_enrich.validate import check_columns

    columns = {"gene_name": "str", "position": "int64", "donor_score": "float64",
               "acceptor_score": "float64", "neither_score": "float64"}
    with pytest.raises(InputError, match=r"found 'gene_name': rename it to 'gene_id', and if it holds gene "
                                         r"names give --gene-key gene_name \(GTF\) or Name \(GFF3\)"):
        check_columns(columns, source="p.tsv")


@pytest.mark.parametrize("command", ["build-cache", "run", "score", "skew", "predict-base"])
def test_every_command_reading_an_annotation_has_the_reference_options(command, capsys):
    from dask_enrich.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    out = capsys.readouterr().out
    assert "--gene-key ATTRIBUTE" in out and "--seq-aliases FILE" in out and "GFF3" in out
