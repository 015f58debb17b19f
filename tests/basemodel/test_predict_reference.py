"""predict-base with reference files named differently from each other (chr1 vs 1), a gene key
other than gene_id, and the error naming both sides when nothing matches."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from dask_enrich.basemodel import predict as bp
from dask_enrich.errors import InputError
from tests.genome.conftest import renamed_copies

from tests.basemodel.test_predict import MINUS_GENE, needs_weights


def test_no_matching_sequence_names_fail_before_any_work(tmp_path):
    gtf, fasta = renamed_copies(tmp_path, "NC_003070.9", "Chr1")
    with pytest.raises(InputError, match=r"no sequence for 'NC_003070.9'.*the genome has Chr1.*--seq-aliases"):
        bp.predict_base(fasta, gtf, [MINUS_GENE], tmp_path / "t.parquet")


@needs_weights
def test_renamed_sequences_and_gene_names_predict_the_same_scores(tmp_path):
    from distributed import Client, LocalCluster

    gtf, fasta = renamed_copies(tmp_path, "chr1", "1")
    _, same = renamed_copies(tmp_path, "chr1", "chr1")
    with gzip.open(gtf.with_suffix(".gtf.gz"), "wt") as fh:  # the RefSeq 'gene' attribute as key
        fh.write(gtf.read_text())
    name = next(line.split('; gene "')[1].split('"')[0] for line in gtf.read_text().splitlines()
                if f'gene_id "{MINUS_GENE}"' in line and "\tgene\t" in line)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cl, \
            Client(cl) as client:
        bp.predict_base(same, gtf, [MINUS_GENE], tmp_path / "same.parquet", client=client)
        bp.predict_base(fasta, gtf.with_suffix(".gtf.gz"), [name], tmp_path / "named.parquet",
                        client=client, gene_key="gene")
    want = pd.read_parquet(tmp_path / "same.parquet")
    got = pd.read_parquet(tmp_path / "named.parquet")
    assert set(got["gene_id"]) == {name} and len(got) == len(want) > 2000
    for col in ("position", "donor_score", "acceptor_score", "neither_score"):
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy())
