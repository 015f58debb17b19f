"""GTF parsing: every genomic feature vs a row-by-row Python reference on the real slice, plus the
GTF flavours and the error paths."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from dask_enrich.errors import InputError
from dask_enrich.features.registry import lookup
from dask_enrich.genome.gtf import GENOMIC_FEATURES, encode_chrom, read_gtf
from tests.genome.conftest import SLICE_GTF
from tests.genome.reference import reference_genes


def _compare(genes: pd.DataFrame, ref: dict[str, dict]) -> None:
    assert sorted(genes["gene_id"]) == sorted(ref)
    table = genes.set_index("gene_id")
    for gid, expected in ref.items():
        row = table.loc[gid]
        for name, value in expected.items():
            got = row[name]
            if isinstance(value, float):
                assert got == pytest.approx(value, rel=1e-12), (gid, name)
            else:
                assert got == value, (gid, name, got, value)


def test_genomic_features_match_reference(slice_annotation, slice_reference):
    ref, _ = slice_reference
    _compare(slice_annotation.genes, ref)
    assert len(ref) == 380


def test_dtypes_follow_registry(slice_annotation):
    genes = slice_annotation.genes
    assert list(genes.columns) == ["gene_id", "seqname", "strand", *GENOMIC_FEATURES]
    assert len(GENOMIC_FEATURES) == 14
    for name in GENOMIC_FEATURES:
        assert genes[name].dtype == lookup(name).dtype, name
    assert genes["gene_id"].is_unique


def test_slice_covers_the_edge_cases(slice_annotation):
    """Both strands, overlapping genes, single-exon genes and the first gene of the slice."""
    genes = slice_annotation.genes.set_index("gene_id")
    assert set(genes["strand"]) == {"+", "-"}
    assert (genes["num_overlaps"] > 0).sum() >= 2
    assert (genes["num_exons"] == 1).sum() >= 10
    # genes with no splice site in any transcript get -1 (training's fill), never 0
    no_site = genes.index.difference(pd.Index(slice_annotation.splice_sites["gene_id"]))
    assert len(no_site) >= 10 and (genes.loc[no_site, "n_splice_sites"] == -1).all()
    assert (genes["n_splice_sites"] != 0).all()
    # AT1G01010 is the first gene (3631..5899, +, 6 exons), by hand from the GTF lines
    first = genes.loc["AT1G01010"]
    assert (first["gene_start"], first["gene_end"], first["num_exons"], first["total_exon_length"]) == (3631, 5899, 6, 1688)
    assert first["n_splice_sites"] == 10 and first["chrom"] == 100


def test_splice_sites_match_reference(slice_annotation, slice_reference):
    _, ref_sites = slice_reference
    sites = slice_annotation.splice_sites
    got = set(zip(sites["gene_id"], sites["position"].astype(int), sites["site_type"]))
    assert got == ref_sites
    # by hand: AT1G01010 (+) exon 1 ends 3913, exon 2 starts 3996
    assert ("AT1G01010", 3914, "donor") in got and ("AT1G01010", 3995, "acceptor") in got
    # AT1G01020 (-): exon 8594..9130 then 8417..8464: donor 8593, acceptor 8465
    assert ("AT1G01020", 8593, "donor") in got and ("AT1G01020", 8465, "acceptor") in got


def test_without_gene_lines(tmp_path):
    """Some GTFs have no gene lines: gene_start/gene_end come from the exons."""
    path = tmp_path / "nogene.gtf"
    with gzip.open(SLICE_GTF, "rt") as src, open(path, "w") as dst:
        for line in src:
            if line.split("\t")[2:3] != ["gene"]:
                dst.write(line)
    ref, _ = reference_genes(path)
    genes = read_gtf(path).genes
    _compare(genes, ref)


GENCODE = """##description: GENCODE-style lines written by hand
chr1\tHAVANA\tgene\t100\t1000\t.\t+\t.\tgene_id "G1.1"; gene_type "protein_coding"; tag "a"; tag "b";
chr1\tHAVANA\ttranscript\t100\t1000\t.\t+\t.\tgene_id "G1.1"; transcript_id "T2"; tag "basic"; tag "CCDS";
chr1\tHAVANA\texon\t100\t199\t.\t+\t.\tgene_id "G1.1"; transcript_id "T2"; exon_number 1; tag "basic"; tag "CCDS";
chr1\tHAVANA\texon\t300\t399\t.\t+\t.\tgene_id "G1.1"; transcript_id "T2"; exon_number 2;
chr1\tHAVANA\texon\t150\t249\t.\t+\t.\tgene_id "G1.1"; transcript_id "T1"; exon_number 1;
chr1\tHAVANA\texon\t501\t600\t.\t+\t.\tgene_id "G1.1"; transcript_id "T1"; exon_number 2;
chr1\tHAVANA\texon\t800\t1000\t.\t+\t.\tgene_id "G1.1"; transcript_id "T3"; exon_number 1;
chr1\tHAVANA\tCDS\t800\t900\t.\t+\t0\tgene_id "G1.1"; transcript_id "T3"; note "has # and ; inside";
chrX\tENSEMBL\texon\t50\t60\t.\t-\t.\tgene_id "GX"; transcript_id "TX1";
chrX\tENSEMBL\texon\t10\t20\t.\t-\t.\tgene_id "GX"; transcript_id "TX1";
chrX\tENSEMBL\texon\t55\t70\t.\t-\t.\tgene_id "GX2"; transcript_id "TX2";
chrM\tENSEMBL\tgene\t5\t9\t.\t-\t.\tgene_id "GM";
chrM\tENSEMBL\texon\t5\t9\t.\t-\t.\tgene_id "GM"; transcript_id "TM";
chrM\tENSEMBL\tgene\t1\t30\t.\t+\t.\tgene_id "NOEXON"; gene_type "pseudogene";
7\tensembl\texon\t1\t10\t.\t+\t.\tgene_id UNQ1; transcript_id UNQT; orig_gene_id "WRONG";
"""


def test_gencode_flavour_by_hand(tmp_path):
    path = tmp_path / "gencode.gtf.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(GENCODE)
    ann = read_gtf(path)
    genes = ann.genes.set_index("gene_id")
    g1 = genes.loc["G1.1"]
    # T1 and T2 both have spliced length 200 (tie -> T1, the smaller id); T3 has 201 -> representative
    assert (g1["tx_start"], g1["tx_end"], g1["num_exons"], g1["total_exon_length"]) == (800, 1000, 1, 201)
    assert (g1["gene_start"], g1["gene_end"], g1["chrom"]) == (100, 1000, 1)
    # splice sites over all transcripts: donors 200, 250; acceptors 299, 500
    assert g1["n_splice_sites"] == 4
    gx = genes.loc["GX"]  # minus strand, no gene line: span from exons; exons given out of order
    assert (gx["gene_start"], gx["gene_end"], gx["num_exons"], gx["total_intron_length"]) == (10, 60, 2, 29)
    assert gx["median_exon_length"] == 11.0 and gx["chrom"] == 23
    # no gene lines for GX/GX2: not eligible for MetaSpliceAI's overlap table although they overlap
    assert gx["num_overlaps"] == 0 and genes.loc["GX2", "num_overlaps"] == 0
    sites = ann.splice_sites
    gx_sites = set(zip(sites.loc[sites.gene_id == "GX", "position"], sites.loc[sites.gene_id == "GX", "site_type"]))
    assert gx_sites == {(49, "donor"), (21, "acceptor")}
    # GM has one exon line, its neighbour NOEXON none and the other strand: neither is eligible
    assert genes.loc["GM", "chrom"] == 25 and genes.loc["GM", "num_overlaps"] == 0
    assert genes.loc["GM", "n_splice_sites"] == -1  # single exon: no site (training's -1)
    assert "NOEXON" not in genes.index and ann.report["genes_without_exons"] == ["NOEXON"]
    assert genes.loc["UNQ1", "chrom"] == 7 and genes.loc["UNQ1", "gene_length"] == 10  # unquoted values
    # T3 "first exon" by hand to check the two tied transcripts lost on length, not on order
    ann2 = read_gtf(path)
    assert ann2.genes.equals(ann.genes)


# Hand-made GTF for the training-parity rules of n_splice_sites and num_overlaps (FEATURES.md).
PARITY = """\
chr2\tt\tgene\t100\t1000\t.\t+\t.\tgene_id "A";
chr2\tt\texon\t100\t200\t.\t+\t.\tgene_id "A"; transcript_id "A1";
chr2\tt\texon\t400\t500\t.\t+\t.\tgene_id "A"; transcript_id "A1";
chr2\tt\texon\t100\t398\t.\t+\t.\tgene_id "A"; transcript_id "A2";
chr2\tt\texon\t600\t700\t.\t+\t.\tgene_id "A"; transcript_id "A2";
chr2\tt\tgene\t800\t2000\t.\t+\t.\tgene_id "B";
chr2\tt\texon\t800\t900\t.\t+\t.\tgene_id "B"; transcript_id "B1";
chr2\tt\texon\t1500\t2000\t.\t+\t.\tgene_id "B"; transcript_id "B1";
chr2\tt\tgene\t900\t1200\t.\t-\t.\tgene_id "C";
chr2\tt\texon\t900\t950\t.\t-\t.\tgene_id "C"; transcript_id "C1";
chr2\tt\texon\t1100\t1200\t.\t-\t.\tgene_id "C"; transcript_id "C1";
chr2\tt\texon\t950\t990\t.\t+\t.\tgene_id "D"; transcript_id "D1";
chr2\tt\texon\t1300\t1400\t.\t+\t.\tgene_id "D"; transcript_id "D1";
chr2\tt\tgene\t1900\t2500\t.\t+\t.\tgene_id "E";
chr2\tt\texon\t1900\t2500\t.\t+\t.\tgene_id "E"; transcript_id "E1";
chr2\tt\tgene\t1950\t2100\t.\t+\t.\tgene_id "F";
chr2\tt\texon\t1950\t2000\t.\t+\t.\tgene_id "F"; transcript_id "F1";
chr2\tt\texon\t2050\t2100\t.\t+\t.\tgene_id "F"; transcript_id "F2";
chr2\tt\tgene\t1150\t1160\t.\t-\t.\tgene_id "G";
chr2\tt\texon\t1150\t1152\t.\t-\t.\tgene_id "G"; transcript_id "G1";
chr2\tt\texon\t1158\t1160\t.\t-\t.\tgene_id "G"; transcript_id "G1";
"""


def test_training_parity_of_sites_and_overlaps(tmp_path):
    """n_splice_sites and num_overlaps as MetaSpliceAI's training code computes them, by hand.

    A (+) and B (+) overlap: 2 each from that pair; B also overlaps F (two one-exon transcripts:
    2 exon lines, eligible), so 4. C (-) overlaps A, B and D but on the other strand; only G (-)
    counts: 2. D has no gene line and E a single exon line: neither is eligible (0), and neither
    counts as a partner of A/B. A's position 399 is an acceptor of A1 and a donor of A2: counted
    once (201, 399, 599 -> 3; the old unique-donors + unique-acceptors rule gave 4).
    """
    path = tmp_path / "parity.gtf"
    path.write_text(PARITY)
    ann = read_gtf(path)
    genes = ann.genes.set_index("gene_id")
    assert genes["num_overlaps"].to_dict() == {"A": 2, "B": 4, "C": 2, "D": 0, "E": 0, "F": 2, "G": 2}
    assert genes["n_splice_sites"].to_dict() == {"A": 3, "B": 2, "C": 2, "D": 2, "E": -1, "F": -1, "G": 2}
    sites = ann.splice_sites
    a = sites[sites["gene_id"] == "A"]
    assert set(zip(a["position"], a["site_type"])) == {(201, "donor"), (399, "acceptor"), (399, "donor"),
                                                       (599, "acceptor")}
    assert genes.loc["F", "num_exons"] == 1  # its representative transcript has one exon


def test_tie_goes_to_smallest_transcript_id(tmp_path):
    text = (
        'c1\ts\texon\t1\t10\t.\t+\t.\tgene_id "G"; transcript_id "B";\n'
        'c1\ts\texon\t21\t30\t.\t+\t.\tgene_id "G"; transcript_id "B";\n'
        'c1\ts\texon\t5\t24\t.\t+\t.\tgene_id "G"; transcript_id "A";\n'
    )
    path = tmp_path / "tie.gtf"
    path.write_text(text)
    g = read_gtf(path).genes.iloc[0]
    assert (g["tx_start"], g["tx_end"], g["num_exons"]) == (5, 24, 1)
    assert g["chrom"] == 100


@pytest.mark.parametrize("bad_line, what", [
    ('c1\ts\texon\t1\t10\t.\t+\t.\ttranscript_id "T";\n', "no gene_id"),
    ('c1\ts\texon\tx\t10\t.\t+\t.\tgene_id "G"; transcript_id "T";\n', "non-integer"),
    ('c1\ts\texon\t20\t10\t.\t+\t.\tgene_id "G"; transcript_id "T";\n', "end < start"),
    ('c1\ts\texon\t1\t10\t.\t.\t.\tgene_id "G"; transcript_id "T";\n', "strand"),
    ('c1\ts\texon\t1\t10\t.\t+\n', "malformed"),
    ('c1\ts\texon\t1\t10\t.\t+\t.\tgene_id "G";\n', "without transcript_id"),
])
def test_malformed_lines_name_file_and_line(tmp_path, bad_line, what):
    good = 'c1\ts\texon\t1\t10\t.\t+\t.\tgene_id "G0"; transcript_id "T0";\n'
    path = tmp_path / "bad.gtf"
    path.write_text("#comment\n" + good + good.replace("G0", "G1").replace("T0", "T1") + bad_line + good)
    with pytest.raises(InputError) as info:
        read_gtf(path)
    message = str(info.value)
    assert str(path) in message and "line" in message and "4" in message
    assert what.split()[0] in message


def test_ambiguous_genes_are_reported_and_left_out(tmp_path):
    text = (
        'chrX\ts\tgene\t1\t100\t.\t+\t.\tgene_id "PAR";\n'
        'chrY\ts\tgene\t1\t100\t.\t+\t.\tgene_id "PAR";\n'
        'chrX\ts\texon\t1\t100\t.\t+\t.\tgene_id "PAR"; transcript_id "TP";\n'
        'chrY\ts\texon\t1\t100\t.\t+\t.\tgene_id "PAR"; transcript_id "TP";\n'
        'chr1\ts\tgene\t10\t50\t.\t-\t.\tgene_id "TWICE";\n'
        'chr1\ts\tgene\t10\t50\t.\t-\t.\tgene_id "TWICE";\n'
        'chr1\ts\texon\t10\t50\t.\t-\t.\tgene_id "TWICE"; transcript_id "TT";\n'
        'chr1\ts\texon\t100\t150\t.\t+\t.\tgene_id "A"; transcript_id "SHARED";\n'
        'chr1\ts\texon\t200\t250\t.\t+\t.\tgene_id "B"; transcript_id "SHARED";\n'
        'chr2\ts\texon\t1\t9\t.\t+\t.\tgene_id "TRANS"; transcript_id "T1";\n'
        'chr2\ts\texon\t20\t29\t.\t-\t.\tgene_id "TRANS"; transcript_id "T1";\n'
    )
    path = tmp_path / "ambiguous.gtf"
    path.write_text(text)
    ann = read_gtf(path)
    assert ann.genes["gene_id"].tolist() == ["TWICE"]
    assert ann.report["genes_with_conflicting_gene_lines"] == ["PAR"]
    assert ann.report["genes_sharing_transcript_ids"] == ["A", "B"]
    assert ann.report["genes_mixed_seqname_or_strand"] == ["TRANS"]
    assert set(ann.exons["gene_id"]) == {"TWICE"} and set(ann.splice_sites["gene_id"]) <= {"TWICE"}


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_gtf(tmp_path / "nope.gtf")


def test_encode_chrom_by_hand():
    names = ["1", "chr1", "22", "chr23", "X", "chrY", "chrM", "MT", "chrMT", "NC_003070.9", "Chr2", "0", "scaffold_1"]
    assert encode_chrom(names).tolist() == [1, 1, 22, 100, 23, 24, 25, 25, 25, 100, 2, 100, 100]
    assert encode_chrom(["NC_003070.9"], {"NC_003070.9": "1"}).tolist() == [1]


@pytest.mark.slow
def test_whole_chromosome_matches_reference(chromosome):
    import time

    _, gtf = chromosome
    t0 = time.perf_counter()
    ann = read_gtf(gtf)
    seconds = time.perf_counter() - t0
    ref, ref_sites = reference_genes(gtf)
    _compare(ann.genes, ref)
    sites = ann.splice_sites
    assert set(zip(sites["gene_id"], sites["position"].astype(int), sites["site_type"])) == ref_sites
    assert len(ann.report["genes_without_exons"]) == 7
    # Training-parity figures of chr1 (9694 genes): 3343 genes have no splice site and get -1 (they
    # had 0 under the old rule); 288 genes have an overlap partner in MetaSpliceAI's sense (2930 had
    # one on either strand among all spans before, 592 on the same strand without the gene-line and
    # two-exon-line eligibility), each counted twice: only 2 (one partner) and 4 (two) occur.
    genes = ann.genes
    assert len(genes) == 9694 and (genes["n_splice_sites"] == -1).sum() == 3343
    assert (genes["num_overlaps"] > 0).sum() == 288
    assert genes["num_overlaps"].value_counts().to_dict() == {0: 9406, 2: 282, 4: 6}
    assert seconds < 15, seconds
    assert np.all(ann.genes["gene_length"] > 0)
