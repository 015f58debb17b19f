"""A GTF with ``chr`` names and a FASTA without (and the reverse): the run writes what it writes
with matching names (the sequence names are matched when the cache is built)."""
from __future__ import annotations

import pandas as pd
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich.engine import run_enrichment, writer
from dask_enrich.genome.cache import build_cache
from tests.genome.conftest import renamed_copies

from .conftest import MODEL_DIR, positions_in_genes

KEEP = EnrichConfig(keep_columns=("row_id",))


def _output(out) -> pd.DataFrame:
    got = pd.concat([pd.read_parquet(f) for f in writer.part_files(str(out))], ignore_index=True)
    return got.sort_values("row_id").reset_index(drop=True)


@pytest.mark.parametrize("gtf_name,fasta_name", [("chr1", "1"), ("1", "chr1")])
def test_mismatched_sequence_names_give_the_output_of_matching_names(client, tmp_path, gtf_name, fasta_name):
    gtf, fasta = renamed_copies(tmp_path, gtf_name, fasta_name)
    _, same = renamed_copies(tmp_path, gtf_name, gtf_name)
    said: list[str] = []
    run_enrichment_kw = dict(config=KEEP, partition_rows=1_000, client=client, annotation=str(gtf),
                             cache_dir=str(tmp_path / "caches"))
    genes = build_cache(same, gtf, tmp_path / "probe").gene_table  # positions inside its genes
    positions_in_genes(genes, 3_000, seed=7).to_parquet(tmp_path / "p.parquet")
    run_enrichment(str(tmp_path / "p.parquet"), MODEL_DIR, str(tmp_path / "same"), genome=str(same),
                   **run_enrichment_kw)
    run_enrichment(str(tmp_path / "p.parquet"), MODEL_DIR, str(tmp_path / "other"), genome=str(fasta),
                   log=said.append, **run_enrichment_kw)
    pd.testing.assert_frame_equal(_output(tmp_path / "other"), _output(tmp_path / "same"))
    assert f"sequence {gtf_name} of the annotation is {fasta_name} in the genome" in said
    assert len(_output(tmp_path / "same")) == 3_000
