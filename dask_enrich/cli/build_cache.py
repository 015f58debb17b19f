"""The ``build-cache`` command, and the reference-file options every command that reads an annotation takes."""
from __future__ import annotations

import argparse
import sys

from ..errors import EnrichError
from ..genome.cache import build_cache
from ..logs import LOGGER

ANNOTATION_HELP = ("gene annotation: GTF (GENCODE, Ensembl, RefSeq), GFF3 (GENCODE, Ensembl, NCBI, "
                   "TAIR) or a SpliceAI gene table (grch37.txt/grch38.txt), plain or gzip; the format "
                   "is read from the content")
GENOME_HELP = "reference genome FASTA: plain, bgzip or plain gzip (read once into the cache)"


def add_genome_arguments(group, *, genome_required: bool = False, annotation_required: bool = False,
                         genome_note: str = "") -> None:
    """``--genome`` and ``--annotation``, in one wording for every command that reads them."""
    group.add_argument("--genome", metavar="FASTA", required=genome_required, default=None,
                       help=GENOME_HELP + genome_note)
    group.add_argument("--annotation", metavar="FILE", required=annotation_required, default=None,
                       help=ANNOTATION_HELP)


def add_reference_arguments(group) -> None:
    """``--gene-key`` and ``--seq-aliases``: the options of every command that reads an annotation."""
    group.add_argument("--gene-key", metavar="ATTRIBUTE", default=None,
                       help="annotation attribute whose values the positions' gene_id are (e.g. "
                            "gene_name, locus_tag, Name, gene); default gene_id (GFF3: gene_id, else the "
                            "gene's ID without gene-/gene:; SpliceAI tables: #NAME)")
    group.add_argument("--seq-aliases", metavar="FILE", default=None,
                       help="two tab-separated columns per line: a sequence name of the annotation, "
                            "the genome's name for it; for names the automatic matching (chr prefix, "
                            "chrM/MT) does not find")


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``build-cache`` subcommand (sets ``handler`` to a function returning an exit code)."""
    parser = subparsers.add_parser(
        "build-cache",
        help="build the genomic cache (gene table, splice sites, gene sequences) from an annotation and a FASTA",
        description=(
            "Parse the annotation (GTF, GFF3 or SpliceAI gene table, plain or gzip) into the per-gene "
            "table of genomic features and the annotated splice sites, read the genome (plain or bgzip "
            "FASTA through a .fai/.gzi, built when missing; plain gzip once from start to end), match "
            "its sequence names to the annotation's, and store everything under --out, keyed by a "
            "fingerprint of the inputs. Running it again with the same inputs reuses the cache; "
            "changed inputs rebuild it. Without --genome the cache holds the annotation only (no "
            "sequence features)."),
    )
    add_genome_arguments(parser, annotation_required=True,
                         genome_note=" (needed for gc_content, k-mers, ...)")
    parser.add_argument("--out", metavar="DIR", required=True, help="cache directory (created if needed)")
    parser.add_argument("--chrom-alias", metavar="SEQNAME=CHROM", action="append", default=[],
                        help="encode SEQNAME as chromosome CHROM in the 'chrom' feature (repeatable), e.g. "
                             "NC_003070.9=1; without it RefSeq accessions encode as 100 ('other')")
    add_reference_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    parser.set_defaults(handler=_cli_build_cache)
    return parser


def _cli_build_cache(args: argparse.Namespace) -> int:
    progress = LOGGER.info  # filtered by --quiet / --log-level (the main parser configures it)
    aliases = {}
    for item in args.chrom_alias:
        name, sep, chrom = item.partition("=")
        if not sep or not name or not chrom:
            print(f"error: --chrom-alias wants SEQNAME=CHROM, not {item!r}", file=sys.stderr)
            return 3
        aliases[name] = chrom
    try:
        cache = build_cache(args.genome, args.annotation, args.out, progress=progress,
                            chrom_aliases=aliases or None, gene_key=args.gene_key,
                            seq_aliases=args.seq_aliases)
    except EnrichError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    report = cache.report
    print(f"genomic cache {cache.path}: {len(cache.gene_table)} genes, fingerprint {cache.fingerprint[:12]}")
    mapped = report.get("seq_names_mapped") or {}
    if mapped:
        shown = ", ".join(f"{a} -> {g}" for a, g in list(mapped.items())[:10])
        print(f"  sequence names matched (annotation -> genome): {shown}{', ...' if len(mapped) > 10 else ''}")
    for key in ("genes_without_exons", "genes_mixed_seqname_or_strand", "genes_with_conflicting_gene_lines",
                "genes_sharing_transcript_ids", "genes_without_key", "genes_with_two_keys", "genes_sharing_key",
                "genes_with_only_gene_level_exons", "seq_names_ambiguous", "seq_aliases_unused",
                "genes_on_missing_sequences", "genes_beyond_sequence_end"):
        items = report.get(key) or []
        if items:
            print(f"  {key.replace('_', ' ')}: {len(items)} ({', '.join(items[:5])}{', ...' if len(items) > 5 else ''})")
    if report.get("gene_level_exons_ignored"):
        print(f"  gene-level exons ignored (beside the transcripts' own): {report['gene_level_exons_ignored']}")
    outside = report.get("genes_with_exons_outside_gene_line") or []
    if outside:
        print(f"  warning: {len(outside)} gene(s) with exons outside their gene line "
              f"({', '.join(outside[:5])}{', ...' if len(outside) > 5 else ''}): their span is the "
              "gene line's, their splice sites the exons'")
    if report.get("missing_sequences"):
        print(f"  sequences named in the annotation but absent from the genome: {report['missing_sequences']}")
    return 0
