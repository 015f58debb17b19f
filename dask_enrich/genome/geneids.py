"""The positions' gene ids matched to the annotation's: exactly, else with a version suffix (``.N``,
as in Ensembl's ``ENSG00000141510.18``) ignored on either side when that is one-to-one; and the
message for ids that match nothing (what the annotation's keys look like, which option would
match them).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..text import is_in

_VERSION = r"\.\d+$"
#: Annotation attributes that commonly hold other gene keys (``--gene-key`` values to suggest).
KEY_ATTRIBUTES = ("gene_name", "Name", "gene", "locus_tag")


def _examples(values, k: int = 3) -> str:
    values = [str(v) for v in list(values)[:k + 1]]
    return ", ".join(values[:k]) + (", ..." if len(values) > k else "")


def match_gene_ids(annotation_ids: pd.Index, query_ids: pd.Index) -> dict[str, str]:
    """{query id: annotation id} for query ids absent from the annotation that equal exactly one
    annotation id once a ``.N`` suffix is removed from both, where no other query id (matched or
    not) claims that annotation id (one-to-one)."""
    annotation_ids = pd.Index(annotation_ids, dtype=object).astype(str)
    query_ids = pd.Index(pd.unique(np.asarray(query_ids, dtype=object)), dtype=object).astype(str)
    missing = query_ids[~is_in(query_ids, annotation_ids)]
    if len(missing) == 0:
        return {}
    a_base = pd.Series(annotation_ids.str.replace(_VERSION, "", regex=True), index=annotation_ids)
    a_unique = a_base[~a_base.duplicated(keep=False)]
    by_base = pd.Series(a_unique.index.to_numpy(), index=a_unique.to_numpy())
    q_base = pd.Series(query_ids.str.replace(_VERSION, "", regex=True), index=query_ids)
    q_unique = ~q_base.duplicated(keep=False)  # one query id per base, counting exact matches too
    cand = pd.Series(by_base.reindex(q_base[missing].to_numpy()).to_numpy(), index=missing)
    ok = cand.notna().to_numpy() & q_unique[missing].to_numpy() & ~is_in(cand, query_ids)
    return dict(zip(missing[ok].tolist(), cand[ok].tolist()))


def unmatched_message(unmatched: pd.Index, total: int, annotation_ids: pd.Index, where: str,
                      alternatives: pd.DataFrame | None = None) -> str:
    """Why ``unmatched`` of ``total`` gene ids are not in the annotation, and what would match.

    ``alternatives``: per annotation gene (index gene_id), other attributes (columns) of it; an
    attribute that holds unmatched ids is named as the ``--gene-key`` to use."""
    text = (f"{len(unmatched):,} of {total:,} gene id(s) of the positions are not in the annotation "
            f"of {where} (positions: {_examples(unmatched)}; annotation: {_examples(annotation_ids)})")
    hits = {}
    if alternatives is not None and len(alternatives.columns):
        for col in alternatives.columns:
            n = int(is_in(unmatched, alternatives[col].dropna().astype(str)).sum())
            if n:
                hits[col] = n
    if hits:
        best = max(hits, key=hits.get)
        text += (f": the annotation's {best!r} attribute holds {hits[best]:,} of them; build the "
                 f"cache with --gene-key {best}")
    else:
        text += (": if the positions hold gene names or another attribute of the annotation, build "
                 f"the cache with --gene-key ATTRIBUTE (e.g. {', '.join(KEY_ATTRIBUTES)}); a version "
                 "suffix (.N) is already ignored where that matches one-to-one")
    return text


def reconcile_gene_ids(cache, query_ids, *, label: str, need: bool,
                       log=lambda message: None) -> tuple[tuple[str, str], ...]:
    """Before a run: the (query id, annotation id) aliases that version matching gives
    (:func:`match_gene_ids`, logged), and the :func:`unmatched_message` for ids still absent,
    logged, or raised as :class:`InputError` when ``need`` (rows are checked against the
    annotation) and no id matches at all (such a run would write no row)."""
    from ..errors import InputError

    table_ids = cache.gene_table.index
    query = pd.Index(pd.unique(np.asarray(query_ids, dtype=object)), dtype=object).astype(str)
    mapping = match_gene_ids(table_ids, query)
    if mapping:
        first = next(iter(mapping.items()))
        log(f"{len(mapping):,} gene id(s) of the {label} matched the annotation's once the version "
            f"suffix is ignored (e.g. {first[0]} -> {first[1]})")
    unmatched = query[~is_in(query, table_ids) & ~is_in(query, list(mapping))]
    if len(unmatched) and need:
        message = unmatched_message(unmatched, len(query), table_ids, f"cache {cache.path}",
                                    cache.alternative_keys)
        message = message.replace("of the positions", f"of the {label}")
        if len(unmatched) == len(query):
            raise InputError("no row can be enriched: " + message)
        log("note: " + message)
    return tuple(sorted(mapping.items()))
