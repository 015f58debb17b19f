"""SpliceAI's gene tables (``grch37.txt``/``grch38.txt`` in the ``spliceai`` package) into the
normalised line frame of :mod:`dask_enrich.genome.gtf`, so they share the GTF's feature computation.

Format: a header ``#NAME CHROM STRAND TX_START TX_END EXON_START EXON_END`` (tab-separated), then
one transcript per gene; the exon lists are comma-separated (a trailing comma allowed); starts are
0-based and ends 1-based, as in UCSC tables (SpliceAI adds 1 to the starts when it reads them, and
so does this reader). Each row gives one ``gene`` line spanning TX_START+1..TX_END, and its exons
as one transcript named like the gene; the gene key is ``#NAME``.

A row whose exon lists differ in length, a non-integer or inverted coordinate, a strand other than
``+``/``-`` or a wrong column count raise :class:`InputError` naming the file, line and gene.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import InputError
from .gtf import _MAX_LINES_IN_MESSAGE, _open_stream

#: The header of a SpliceAI gene table.
COLUMNS = ["#NAME", "CHROM", "STRAND", "TX_START", "TX_END", "EXON_START", "EXON_END"]


def _bad(path: Path, rows: np.ndarray, names: np.ndarray, what: str) -> None:
    rows = np.asarray(rows)
    where = ", ".join(f"line {r + 2} ({names[r]})" for r in rows[:_MAX_LINES_IN_MESSAGE])
    raise InputError(f"{path}: {len(rows)} SpliceAI gene-table row(s) with {what}: {where}")


def _exon_list(column: pa.ChunkedArray, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, count per row) of a comma-separated integer list column (empty items dropped);
    (rows with a non-integer item, None) when there are such rows."""
    lists = pc.split_pattern(column, ",")
    flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    owner = pc.list_parent_indices(lists).to_numpy()
    keep = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    flat = flat.filter(pa.array(keep))
    owner = owner[keep]
    ok = pc.utf8_is_digit(flat).to_numpy(zero_copy_only=False)
    if not ok.all():
        return np.flatnonzero(np.bincount(owner[~ok], minlength=n)), None
    return pc.cast(flat, pa.int64()).to_numpy(), np.bincount(owner, minlength=n)


def genetable_frame(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The normalised line frame of a SpliceAI gene table and the skipped line numbers (none)."""
    bad_rows: list[int | None] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad_rows.append(row.number)
        return "skip"

    try:
        with _open_stream(path) as stream:
            table = pacsv.read_csv(
                stream,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 24),
                parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                                 ignore_empty_lines=True, invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS},
                                                     strings_can_be_null=False))
    except (pa.ArrowInvalid, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: cannot read as a SpliceAI gene table: {exc}") from exc
    if table.column_names != COLUMNS:
        raise InputError(f"{path}: a SpliceAI gene table needs the header {' '.join(COLUMNS)}, "
                         f"not {' '.join(table.column_names)}")
    if bad_rows:
        raise InputError(f"{path}: {len(bad_rows)} SpliceAI gene-table line(s) without the 7 "
                         f"tab-separated columns {' '.join(COLUMNS)} (line(s) "
                         f"{', '.join(map(str, bad_rows[:_MAX_LINES_IN_MESSAGE]))})")
    n = table.num_rows
    names = table["#NAME"].to_numpy(zero_copy_only=False).astype(str)
    for col in ("TX_START", "TX_END"):
        ok = pc.utf8_is_digit(table[col]).to_numpy(zero_copy_only=False)
        if not ok.all():
            _bad(path, np.flatnonzero(~ok), names, f"a non-integer {col}")
    tx_start = pc.cast(table["TX_START"], pa.int64()).to_numpy() + 1  # 0-based -> 1-based
    tx_end = pc.cast(table["TX_END"], pa.int64()).to_numpy()
    strand = table["STRAND"].to_numpy(zero_copy_only=False).astype(str)
    bad = (strand != "+") & (strand != "-")
    if bad.any():
        _bad(path, np.flatnonzero(bad), names, "a STRAND other than '+' or '-'")
    bad = (tx_start < 1) | (tx_end < tx_start)
    if bad.any():
        _bad(path, np.flatnonzero(bad), names, "TX_END <= TX_START")
    starts, n_starts = _exon_list(table["EXON_START"], n)
    if n_starts is None:
        _bad(path, starts, names, "a non-integer item in EXON_START")
    ends, n_ends = _exon_list(table["EXON_END"], n)
    if n_ends is None:
        _bad(path, ends, names, "a non-integer item in EXON_END")
    differ = n_starts != n_ends
    if differ.any():
        rows = np.flatnonzero(differ)
        detail = f"EXON_START and EXON_END lists of different lengths (expected one end per start; " \
                 f"line {rows[0] + 2} has {n_starts[rows[0]]} starts and {n_ends[rows[0]]} ends)"
        _bad(path, rows, names, detail)
    none = n_starts == 0
    if none.any():
        _bad(path, np.flatnonzero(none), names, "no exon")
    starts = starts + 1
    owner = np.repeat(np.arange(n), n_starts)
    bad = (starts < 1) | (ends < starts)
    if bad.any():
        _bad(path, pd.unique(owner[bad]), names, "an exon end <= its start")
    seqname = table["CHROM"].to_numpy(zero_copy_only=False).astype(str)
    frame = pd.DataFrame({
        "row": np.concatenate([np.arange(n), owner]),
        "feature": np.repeat(np.array(["gene", "exon"], dtype=object), [n, len(owner)]),
        "gene_id": np.concatenate([names, names[owner]]),
        "transcript_id": np.concatenate([np.full(n, "", dtype=object), names[owner]]).astype(str),
        "seqname": np.concatenate([seqname, seqname[owner]]),
        "strand": np.concatenate([strand, strand[owner]]),
        "start": np.concatenate([tx_start, starts]),
        "end": np.concatenate([tx_end, ends]),
    })
    # header line is line 1, data row r is line r + 2 (no skipped lines): _build's line numbers
    return frame, np.array([1], dtype=np.int64)
