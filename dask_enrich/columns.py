"""Input columns, declared once: what each kind of input must have, may have, and their dtypes.

Every reader and check (:mod:`dask_enrich.io`, :mod:`dask_enrich.validate`, the core's
``check_position_columns``, :mod:`dask_enrich.selection`, :mod:`dask_enrich.seed`,
:mod:`dask_enrich.scoring`, the engine) takes the names from here, as sgkit's ``variables``
declares each array once and every function validates against it.

Kinds of input (:data:`REQUIRED`):

``positions``
    the rows to enrich: gene id, 1-based position and the three base-model scores.
``track``
    a full per-nucleotide base-model track: gene id, position, donor and acceptor scores
    (``neither_score`` optional).
``context track``
    the columns the engine reads from a track for context scores (:data:`CONTEXT_TRACK_READ`).
``score input``
    the rows selective scoring writes (the identifying columns and the base scores).
"""
from __future__ import annotations

from typing import Mapping

GENE_ID = "gene_id"
POSITION = "position"
CHROM = "chrom"
STRAND = "strand"
#: The base model's three scores of a position, in output order.
BASE_SCORES = ("donor_score", "acceptor_score", "neither_score")
#: The context neighbours: column suffix -> offset in transcript orientation (the registry's
#: ``context_score_*`` features and the positions' optional context columns).
CONTEXT_OFFSETS = {"m2": -2, "m1": -1, "p1": 1, "p2": 2}
#: The context scores of the neighbouring nucleotides, one per offset.
CONTEXT_COLUMNS = tuple(f"context_score_{s}" for s in CONTEXT_OFFSETS)
#: The two keys of a row.
KEYS = (GENE_ID, POSITION)

#: Columns every positions input must have.
POSITION_COLUMNS = (*KEYS, *BASE_SCORES)
#: Columns every base-prediction track must have (``neither_score``, ``chrom``, ``strand`` optional).
TRACK_COLUMNS = (*KEYS, "donor_score", "acceptor_score")
#: Optional columns carried when present (after the required ones, in this order).
OPTIONAL_COLUMNS = ("neither_score", CHROM, STRAND) + CONTEXT_COLUMNS
#: Columns a context track is read with, beside :data:`TRACK_COLUMNS` (when present).
CONTEXT_TRACK_OPTIONAL = (STRAND,)
#: Columns of a track read as a seed-API track (the optional ones when present).
SEED_TRACK_COLUMNS = (*TRACK_COLUMNS, "neither_score", CHROM, STRAND)

#: Required columns of each kind of input.
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "positions": POSITION_COLUMNS,
    "track": TRACK_COLUMNS,
    "context track": TRACK_COLUMNS,
    "score input": (*KEYS, *BASE_SCORES),
}

#: Text columns (read as pandas ``str``).
STRING_COLUMNS = (GENE_ID, CHROM, STRAND)
#: Score columns (read as float64).
FLOAT_COLUMNS = BASE_SCORES + CONTEXT_COLUMNS

#: Column names other tools use for the required columns (normalised: lower case, '_' separators).
ALIASES: dict[str, str] = {
    **dict.fromkeys(["gene", "geneid", "gene_name", "genename", "gene_symbol", "gene_stable_id",
                     "ensembl_gene_id", "gid"], "gene_id"),
    **dict.fromkeys(["pos", "coord", "coordinate", "coordinates", "genomic_position", "loc",
                     "location", "site", "site_position", "pos1", "position_1based", "bp"],
                    "position"),
    **dict.fromkeys(["donor", "donor_prob", "donor_probability", "donor_scores", "p_donor",
                     "prob_donor", "donor_p", "donorscore", "d", "donor_pred"], "donor_score"),
    **dict.fromkeys(["acceptor", "acceptor_prob", "acceptor_probability", "acceptor_scores",
                     "p_acceptor", "prob_acceptor", "acceptor_p", "acceptorscore", "a",
                     "acceptor_pred", "acc", "acc_score"], "acceptor_score"),
    **dict.fromkeys(["neither", "neither_prob", "neither_probability", "neither_scores",
                     "p_neither", "prob_neither", "neither_p", "neitherscore", "n", "none",
                     "none_score", "other_score", "neither_pred", "background"], "neither_score"),
    **dict.fromkeys(["str", "strand_sign", "orientation"], "strand"),
    **dict.fromkeys(["chr", "chromosome", "seqname", "seqid", "contig", "chrom_name"], "chrom"),
}


def required(kind: str) -> tuple[str, ...]:
    """The required columns of ``kind`` (a key of :data:`REQUIRED`); ValueError for another kind."""
    if kind not in REQUIRED:
        raise ValueError(f"kind must be one of {', '.join(REQUIRED)}, not {kind!r}")
    return REQUIRED[kind]
