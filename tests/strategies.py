"""Shared hypothesis strategies: scores, positions, tracks and gene tables.

One place for the inputs the kernel and property tests draw, so that every test explores the same
shapes (gene spans, tracks with gaps, positions inside or around their gene, rows holding the bad
values real inputs hold). Each strategy draws plain Python values or small pandas frames; the
expected results stay hand-written references in the tests.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

#: A probability: a float in [0, 1] (never NaN).
probabilities = st.floats(0.0, 1.0, allow_nan=False)

#: A score as an input file may hold it: mostly in [0, 1], sometimes missing, infinite or out of
#: range (the row checks must reject those).
raw_scores = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, np.nan, np.inf, -np.inf, -0.2, 1.3]))


def score_rows(width: int, min_size: int = 1, max_size: int = 40):
    """Lists of ``width``-tuples of probabilities (e.g. donor, acceptor, neither scores)."""
    return st.lists(st.tuples(*[probabilities] * width), min_size=min_size, max_size=max_size)


@st.composite
def gene_spans(draw, max_genes: int = 3, max_start: int = 50, max_extra: int = 12
               ) -> dict[int, tuple[int, int]]:
    """{gene: (start, end)}: 1..``max_genes`` genes numbered from 0, each 1-based span starting at
    1..``max_start`` and ``max_extra`` nucleotides at most longer than one."""
    spans = {}
    for gene in range(draw(st.integers(1, max_genes))):
        start = draw(st.integers(1, max_start))
        spans[gene] = (start, start + draw(st.integers(0, max_extra)))
    return spans


@st.composite
def tracks(draw, spans: dict[int, tuple[int, int]]) -> list[tuple[int, int, float, float]]:
    """A base-model track over ``spans``: (gene, position, donor, acceptor) rows in gene and
    position order, with gaps (a nucleotide whose position is a multiple of 3 may be absent)."""
    track = []
    for gene, (start, end) in spans.items():
        for position in range(start, end + 1):
            if draw(st.booleans()) or position % 3:
                track.append((gene, position, draw(probabilities), draw(probabilities)))
    return track


@st.composite
def positions_in(draw, spans: dict[int, tuple[int, int]], min_size: int = 1, max_size: int = 10
                 ) -> list[tuple[int, int]]:
    """(gene, position) rows, each position inside its gene's span (repeats possible)."""
    genes = sorted(spans)
    rows = []
    for _ in range(draw(st.integers(min_size, max_size))):
        gene = draw(st.sampled_from(genes))
        rows.append((gene, draw(st.integers(*spans[gene]))))
    return rows


#: Sequence names a gene table's ``seqname`` and a row's ``chrom`` are drawn from (some the same
#: chromosome under another spelling: ``chr1``/``1``/``CHR1``, ``M``/``chrM``/``MT``).
SEQNAMES = ("chr1", "1", "CHR1", "chr2", "chrZ", "Z", "M", "chrM", "MT")


@st.composite
def gene_tables(draw, max_genes: int = 5, max_start: int = 1000, max_length: int = 200
                ) -> pd.DataFrame:
    """A gene table as the genomic cache holds it: index ``gene_id`` (G0, G1, ...), columns
    ``seqname``, ``strand``, ``gene_start``, ``gene_end`` (1-based, inclusive) and
    ``seq_offset`` (-1: the chromosome is absent from the genome)."""
    n = draw(st.integers(0, max_genes))
    starts = [draw(st.integers(1, max_start)) for _ in range(n)]
    return pd.DataFrame(
        {"seqname": [draw(st.sampled_from(SEQNAMES)) for _ in range(n)],
         "strand": [draw(st.sampled_from("+-")) for _ in range(n)],
         "gene_start": np.array(starts, dtype=np.int64),
         "gene_end": np.array([s + draw(st.integers(0, max_length)) for s in starts], dtype=np.int64),
         "seq_offset": np.array([draw(st.sampled_from([-1, 0, 10])) for _ in range(n)], dtype=np.int64)},
        index=pd.Index([f"G{i}" for i in range(n)], name="gene_id"))


def raw_position_rows(genes=("G1", "G2", "G3", "GX", "", None),
                      positions=st.one_of(st.integers(-2, 1200),
                                          st.sampled_from([150.5, np.nan, 101, 200, 301, 350]))):
    """One positions row as a dict, with the bad values inputs hold: blank or unknown gene ids,
    fractional or missing positions, bad scores, strands and chromosome spellings."""
    return st.fixed_dictionaries({
        "gene_id": st.sampled_from(list(genes)),
        "position": positions,
        "donor_score": raw_scores, "acceptor_score": raw_scores, "neither_score": raw_scores,
        "context_score_m1": raw_scores,
        "strand": st.sampled_from(["+", "-", ".", None]),
        "chrom": st.sampled_from(["chr1", "1", "CHR1", "chrZ", "Z", "chr2", "M", None]),
    })
