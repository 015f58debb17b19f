"""Shared test fixtures: the bundled real data and the sample 124-feature manifest."""
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "dask_enrich" / "data"
#: The 124-feature manifest of the 3-mer MetaSpliceAI model, bundled as the demo model directory.
MODEL_DIR = DATA / "demo_model"
SLICE_FASTA = DATA / "athal_chr1_1mb.fa.gz"
SLICE_GTF = DATA / "athal_chr1_1mb.gtf.gz"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return MODEL_DIR
