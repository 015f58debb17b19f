"""Indexed FASTA: bgzip vs plain, the index files vs samtools, index checks, soft-masking."""
from __future__ import annotations

import gzip
import shutil
import subprocess

import numpy as np
import pytest

from dask_enrich.errors import InputError
from dask_enrich.genome import fasta as fasta_mod
from dask_enrich.genome.fasta import IndexedFasta, is_plain_gzip, reverse_complement, stream_fasta
from tests.genome.conftest import SEQNAME, SLICE_FASTA, link_into
from tests.genome.reference import bgzf_compress

SAMTOOLS = shutil.which("samtools")


@pytest.fixture(scope="module")
def plain_copy(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain") / "slice.fa"
    with gzip.open(SLICE_FASTA, "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def test_bgzip_and_plain_agree_with_plain_python(slice_fasta, plain_copy, slice_chrom):
    bg = IndexedFasta(slice_fasta)
    pl = IndexedFasta(plain_copy)
    assert bg.bgzip and not pl.bgzip
    assert bg.names == pl.names == [SEQNAME] and bg.length(SEQNAME) == len(slice_chrom) == 1_000_000
    rng = np.random.default_rng(7)
    ranges = [(1, 1), (1, 80), (80, 81), (81, 81), (65279, 65283), (999_999, 1_000_000), (1, 1_000_000)]
    ranges += [tuple(sorted(rng.integers(1, 1_000_001, 2))) for _ in range(40)]
    for start, end in ranges:
        expected = slice_chrom[start - 1:end]
        a = bg.fetch(SEQNAME, int(start), int(end))
        b = pl.fetch(SEQNAME, int(start), int(end))
        assert a.dtype == np.uint8 and a.tobytes().decode() == expected
        assert np.array_equal(a, b)


def test_soft_masked_bases_are_upper_cased(slice_fasta):
    with gzip.open(SLICE_FASTA, "rt") as fh:
        fh.readline()
        raw = fh.readline().strip()
    assert any(c.islower() for c in raw)  # the slice starts soft-masked
    got = IndexedFasta(slice_fasta).fetch(SEQNAME, 1, len(raw)).tobytes().decode()
    assert got == raw.upper()


def test_fai_by_hand(slice_fasta):
    fa = IndexedFasta(slice_fasta)
    assert fa.fai_path.read_text() == f"{SEQNAME}\t1000000\t83\t80\t81\n"
    assert fa.gzi_path is not None and fa.gzi_path.is_file()


@pytest.mark.skipif(SAMTOOLS is None, reason="samtools not installed")
@pytest.mark.parametrize("compressed", [True, False])
def test_index_files_match_samtools(tmp_path, plain_copy, compressed):
    source = SLICE_FASTA if compressed else plain_copy
    mine = tmp_path / "mine"
    theirs = tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    shutil.copy(source, mine / source.name)
    shutil.copy(source, theirs / source.name)
    IndexedFasta(mine / source.name)
    subprocess.run([SAMTOOLS, "faidx", str(theirs / source.name)], check=True)
    suffixes = [".fai", ".gzi"] if compressed else [".fai"]
    for suffix in suffixes:
        assert (mine / (source.name + suffix)).read_bytes() == (theirs / (source.name + suffix)).read_bytes(), suffix


MULTI = ">chrA first record\nACGTacgtNN\nACGTACGTAC\nGG\n>chrB\nTTTTT\nCCC\n>empty\n>chrC desc\r\nAC\r\nGT\r\n"


@pytest.mark.parametrize("compress", [False, True])
def test_multi_record_fasta(tmp_path, compress):
    path = tmp_path / ("multi.fa.gz" if compress else "multi.fa")
    if compress:  # BGZF written by the test (small blocks: records span several)
        path.write_bytes(bgzf_compress(MULTI.encode(), 9))
    else:
        path.write_text(MULTI)
    fa = IndexedFasta(path)
    seqs = {"chrA": "ACGTACGTNNACGTACGTACGG", "chrB": "TTTTTCCC", "chrC": "ACGT"}
    assert {n: fa.length(n) for n in fa.names} == {"chrA": 22, "chrB": 8, "chrC": 4}  # empty ones left out, like samtools
    for name, seq in seqs.items():
        for start in range(1, len(seq) + 1):
            for end in range(start, len(seq) + 1):
                assert fa.fetch(name, start, end).tobytes().decode() == seq[start - 1:end]
    with pytest.raises(InputError, match="outside"):
        fa.fetch("chrB", 0, 3)
    with pytest.raises(InputError, match="no sequence named"):
        fa.fetch("chrZ", 1, 3)
    if SAMTOOLS and not compress:
        other = tmp_path / "sam"
        other.mkdir()
        shutil.copy(path, other / path.name)
        subprocess.run([SAMTOOLS, "faidx", str(other / path.name)], check=True)
        assert fa.fai_path.read_bytes() == (other / (path.name + ".fai")).read_bytes()


@pytest.mark.parametrize("field, value", [(1, "999999"), (1, "1000001"), (2, "84"), (2, "82"), (3, "60"), (4, "82")])
def test_wrong_fai_is_rejected(tmp_path, field, value):
    fasta = link_into(tmp_path, SLICE_FASTA)
    IndexedFasta(fasta)  # writes a correct .fai
    fai = tmp_path / (fasta.name + ".fai")
    fields = fai.read_text().rstrip("\n").split("\t")
    fields[field] = value
    fai.write_text("\t".join(fields) + "\n")
    with pytest.raises(InputError) as info:
        fa = IndexedFasta(fasta)
        fa.fetch(SEQNAME, 1, 1000)
        fa.fetch(SEQNAME, 999_000, fa.length(SEQNAME))
    assert str(fai) in str(info.value)


def test_unwritable_dir_uses_index_dir(tmp_path, monkeypatch):
    fasta = link_into(tmp_path / "ro", SLICE_FASTA)
    monkeypatch.setattr(fasta_mod, "_writable_dir", lambda d: d == tmp_path / "idx")
    (tmp_path / "idx").mkdir()
    fa = IndexedFasta(fasta, index_dir=tmp_path / "idx")
    assert fa.fai_path == tmp_path / "idx" / (fasta.name + ".fai")
    assert not (tmp_path / "ro" / (fasta.name + ".fai")).exists()
    again = IndexedFasta(fasta, index_dir=tmp_path / "idx")  # reuses the index in index_dir
    assert again.fai_path == fa.fai_path and again.fetch(SEQNAME, 5, 9).tobytes() == fa.fetch(SEQNAME, 5, 9).tobytes()
    monkeypatch.setattr(fasta_mod, "_writable_dir", lambda d: False)
    mem = IndexedFasta(link_into(tmp_path / "ro2", SLICE_FASTA))
    assert mem.fai_path is None and mem.length(SEQNAME) == 1_000_000


def test_plain_gzip_is_rejected_with_a_hint(tmp_path):
    path = tmp_path / "x.fa.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(">a\nACGT\n")
    with pytest.raises(InputError, match="bgzip"):
        IndexedFasta(path)


def test_ragged_lines_are_rejected(tmp_path):
    path = tmp_path / "ragged.fa"
    path.write_text(">a\nACGT\nAC\nACGT\n")
    with pytest.raises(InputError, match="line length"):
        IndexedFasta(path)


def test_reverse_complement_by_hand():
    assert reverse_complement(np.frombuffer(b"AACGTN", dtype=np.uint8)).tobytes() == b"NACGTT"
    assert reverse_complement(np.frombuffer(b"acgR", dtype=np.uint8)).tobytes() == b"YCGT"
    assert reverse_complement(np.frombuffer(b"RYKMSWBDHV", dtype=np.uint8)).tobytes() == b"BDHVWSKMRY"


@pytest.mark.slow
def test_whole_chromosome_fetch(chromosome, tmp_path):
    from tests.genome.reference import read_fasta_plain

    fasta, _ = chromosome
    fa = IndexedFasta(link_into(tmp_path, fasta))
    seq = read_fasta_plain(fasta)[SEQNAME]
    assert fa.length(SEQNAME) == len(seq) == 30_427_671
    whole = fa.fetch(SEQNAME, 1, len(seq)).tobytes().decode()
    assert whole == seq
    rng = np.random.default_rng(3)
    for start in rng.integers(1, len(seq) - 5000, 50):
        assert fa.fetch(SEQNAME, int(start), int(start) + 4999).tobytes().decode() == seq[start - 1:start + 4999]


@pytest.mark.parametrize("kind", ["plain", "gzip", "bgzip"])
def test_stream_fasta_gives_the_indexed_bases(tmp_path, kind, monkeypatch):
    """One pass from start to end: the same names, lengths and bases as the index gives (line ends
    removed, lowercase upper-cased, empty records left out), for every compression; blocks cut
    mid-record (a 7-byte read size) change nothing; unwanted records keep their length only."""
    raw = MULTI.encode()
    path = tmp_path / ("multi.fa" if kind == "plain" else "multi.fa.gz")
    path.write_bytes({"plain": raw, "gzip": gzip.compress(raw), "bgzip": bgzf_compress(raw, 9)}[kind])
    assert is_plain_gzip(path) == (kind == "gzip")
    expected = {"chrA": "ACGTACGTNNACGTACGTACGG", "chrB": "TTTTTCCC", "chrC": "ACGT"}
    for block in (1 << 24, 7):
        monkeypatch.setattr(fasta_mod, "_STREAM_BLOCK", block)
        got = {n: (length, seq) for n, length, seq in stream_fasta(path, want=lambda n: n != "chrB")}
        assert list(got) == ["chrA", "chrB", "chrC"]
        assert {n: v[0] for n, v in got.items()} == {n: len(s) for n, s in expected.items()}
        assert got["chrB"][1] is None
        assert got["chrA"][1].tobytes().decode() == expected["chrA"] and got["chrC"][1].tobytes() == b"ACGT"


def test_stream_fasta_errors(tmp_path):
    bad = tmp_path / "dup.fa.gz"
    bad.write_bytes(gzip.compress(b">a\nAC\n>b x\nGG\n>a\nTT\n"))
    with pytest.raises(InputError, match="duplicate sequence name 'a'"):
        list(stream_fasta(bad))
    bad.write_bytes(gzip.compress(b"ACGT\n>a\nAC\n"))
    with pytest.raises(InputError, match="before the first '>'"):
        list(stream_fasta(bad))
    bad.write_bytes(gzip.compress(b"hello\n")[:-6])
    with pytest.raises(InputError, match="cannot read the FASTA"):
        list(stream_fasta(bad))
