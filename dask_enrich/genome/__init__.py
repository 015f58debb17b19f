"""Genome side: annotation parsing (GTF, GFF3, SpliceAI gene tables), FASTA access and the
on-disk genomic cache."""
from .annotation import detect_format, read_annotation
from .cache import (
    GenomicCache,
    build_cache,
    gene_relative_to_genomic,
    genomic_to_gene_relative,
    load_cached,
)
from .fasta import IndexedFasta, reverse_complement
from .gtf import GENOMIC_FEATURES, Annotation, encode_chrom, read_gtf

__all__ = [
    "Annotation", "GENOMIC_FEATURES", "GenomicCache", "IndexedFasta", "build_cache", "detect_format",
    "encode_chrom", "read_annotation",
    "gene_relative_to_genomic", "genomic_to_gene_relative", "load_cached", "read_gtf",
    "reverse_complement",
]
