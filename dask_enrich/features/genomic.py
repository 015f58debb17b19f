"""Genomic features (14): per-gene values of the annotation, looked up for each row's gene.

The values themselves are computed once per annotation by :mod:`dask_enrich.genome.gtf` into the
genomic cache's gene table (one column per feature declared here); the kernel reads that column at
each row's gene.
"""
from __future__ import annotations

from .registry import ANNOTATION, FLOAT, INT, Computed, builtin_features, declare


def genomic_kernel(inputs, names: list[str]) -> Computed:
    """The gene-table columns of each row's gene; rows of genes absent from the annotation missing."""
    return Computed({name: inputs.gene_column(name) for name in names}, ~inputs.in_annotation,
                    "gene absent from the annotation")


for _name, _dtype, _doc in [
    ("gene_start", INT, "gene start (1-based; GTF gene line, else smallest exon start)"),
    ("gene_end", INT, "gene end (GTF gene line, else largest exon end)"),
    ("gene_length", INT, "gene_end - gene_start + 1"),
    ("tx_start", INT, "start of the representative transcript (longest spliced length)"),
    ("tx_end", INT, "end of the representative transcript"),
    ("transcript_length", INT, "tx_end - tx_start + 1 of the representative transcript"),
    ("num_exons", INT, "exons of the representative transcript"),
    ("avg_exon_length", FLOAT, "mean exon length of the representative transcript"),
    ("median_exon_length", FLOAT, "median exon length of the representative transcript"),
    ("total_exon_length", INT, "spliced length of the representative transcript"),
    ("total_intron_length", INT, "transcript_length - total_exon_length of the representative transcript"),
    ("n_splice_sites", INT, "distinct annotated splice-site positions over all transcripts, donors and "
                            "acceptors pooled; -1 for a gene with none"),
    ("num_overlaps", INT, "2 x other same-strand genes overlapping this gene's span (both with a gene "
                          "line and >= 2 exon lines), else 0"),
    ("chrom", INT, "encoded chromosome: 1-22, X=23, Y=24, MT/M=25, other=100 ('chr' prefix ignored)"),
]:
    declare(_name, "genomic", _dtype, {ANNOTATION}, _doc, genomic_kernel)

#: The 14 genomic features of the spec, in the spec's order (the gene table's feature columns).
GENOMIC_FEATURES = [f.name for f in builtin_features() if f.kernel is genomic_kernel]
