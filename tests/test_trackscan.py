"""The track read at the floor (dask_enrich/trackscan.py): hand-checked cases, and a piece's scan
against today's full path (read every column, check every row, select, enrich over the whole
checked track)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_enrich import trackscan as ts
from dask_enrich import validate
from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich
from dask_enrich.features.scores import SCORE_FEATURES
from dask_enrich.io import (
    POSITION_COLUMNS,
    input_pieces,
    inspect_input,
    read_pandas,
    wanted_columns,
)
from dask_enrich.manifest import manifest_from_names
from dask_enrich.selection import Selection, select_mask

from .strategies import gene_spans, tracks

DEMO_TRACK = Path(__file__).resolve().parents[1] / "dask_enrich" / "data" / "demo_track.parquet"
SCORE_MANIFEST = manifest_from_names(sorted(SCORE_FEATURES))
CONFIG = EnrichConfig(missing="impute")  # gaps give missing context: imputed alike on both paths


# --- generated tracks ------------------------------------------------------------------------------
def generated_track(seed: int = 0, genes: int = 12) -> pd.DataFrame:
    """A track of ``genes`` genes with gaps (missing positions inside a gene), bad rows (NaN,
    negative, above-one scores; some in the band), a repeated row and uncertain rows next to
    each other and next to gaps and bad rows."""
    rng = np.random.default_rng(seed)
    parts = []
    start = 1000
    for g in range(genes):
        length = int(rng.integers(150, 600))
        pos = np.arange(start, start + length)
        pos = pos[rng.random(length) > 0.03]  # gaps
        n = len(pos)
        d = rng.exponential(0.01, n)
        a = rng.exponential(0.01, n)
        band = rng.random(n) < 0.08
        d[band] = rng.uniform(0.02, 0.8, band.sum())
        parts.append(pd.DataFrame({
            "gene_id": f"G{g:03d}", "chrom": "chr1", "strand": "+-"[g % 2], "position": pos,
            "donor_score": d, "acceptor_score": a, "neither_score": np.clip(1 - d - a, 0, 1)}))
        start += length + 50
    frame = pd.concat(parts, ignore_index=True)
    bad = rng.choice(len(frame), 25, replace=False)
    kind = np.arange(25) % 3
    frame.loc[bad[kind == 0], "donor_score"] = np.nan
    frame.loc[bad[kind == 1], "acceptor_score"] = -0.25
    frame.loc[bad[kind == 2], "donor_score"] = 1.5
    repeat = frame.iloc[[40, 41]].copy()  # repeats of earlier rows (the first is kept)
    repeat["donor_score"] = 0.3  # in the band: a repeat must not be selected
    frame = pd.concat([frame.iloc[:300], repeat, frame.iloc[300:]], ignore_index=True)
    return frame


def write_files(frame: pd.DataFrame, root: Path, files: int, row_group: int,
                required_first: bool = False) -> Path:
    """``frame`` as ``files`` Parquet files (cut at row counts, so genes are split across files)
    of row groups of ``row_group`` rows (genes split across row groups); ``required_first``: the
    first file's columns without a missing value are required (not null), as predict-base writes
    them, the others nullable (a track mixing both)."""
    root.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        table = pa.Table.from_pandas(frame.iloc[part], preserve_index=False)
        if required_first and k == 0:
            table = table.cast(pa.schema([f.with_nullable(table.column(f.name).null_count > 0)
                                          for f in table.schema], metadata=table.schema.metadata))
        pq.write_table(table, root / f"part-{k:03d}.parquet", row_group_size=row_group)
    return root


# --- today's full path (the reference) -------------------------------------------------------------
def full_path(path: Path | str, selection: Selection = Selection(), config: EnrichConfig = CONFIG
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(enriched selected rows, rejected track rows): every column read, every row checked
    (``split_bad_rows`` without annotation, as the engine checks a track), selection on the good
    rows, enrich over the whole checked track."""
    source = inspect_input(str(path), label="track")
    columns = wanted_columns(source, POSITION_COLUMNS)
    frame = read_pandas(source, columns)
    good, rejected, _ = validate.split_bad_rows(frame, source=source.path, config=config)
    good = good.reset_index(drop=True)
    selected = sort_like_bin(good[select_mask(good, selection)])
    out, _ = enrich(selected, SCORE_MANIFEST, track=sort_like_bin(good), config=config)
    return out, rejected.reset_index(drop=True)


def sort_like_bin(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by gene (first appearance) then position, stable: the order of an engine bin."""
    codes, _ = pd.factorize(frame["gene_id"])
    order = np.lexsort((frame["position"].to_numpy(np.int64), codes))
    return frame.iloc[order].reset_index(drop=True)


def enrich_from_scan(selected: pd.DataFrame, context: pd.DataFrame,
                     config: EnrichConfig = CONFIG) -> pd.DataFrame:
    """Enrich the scan's selected rows with its context rows as the track (rows in input order
    first, then as a bin orders them)."""
    drop = [c for c in (ts.PIECE, ts.ROW) if c in selected.columns]
    order = [c for c in (ts.PIECE, ts.ROW) if c in context.columns]
    context = context.sort_values(order, kind="stable").drop(columns=order)
    selected = selected.sort_values(drop, kind="stable").drop(columns=drop)
    out, _ = enrich(sort_like_bin(selected), SCORE_MANIFEST, track=sort_like_bin(context),
                    config=config)
    return out


def scan_all(path: Path | str, selection: Selection = Selection()):
    source = inspect_input(str(path), label="track")
    columns = tuple(wanted_columns(source, POSITION_COLUMNS))
    # one piece per row group (Parquet), or the whole file (CSV)
    _, pieces, _ = input_pieces(source, columns, blocksize=1 if source.format == "parquet" else None)
    spec = ts.ScanSpec(columns, selection=selection, config=CONFIG, source=source.path)
    return source, pieces, spec, [ts.scan_piece(source, p, i, spec) for i, p in enumerate(pieces)]


# --- hand-checked ------------------------------------------------------------------------------------
def test_hand_checked_piece(tmp_path):
    # one gene at 1..10 without 6; row at 3 has a NaN score; the row at 5 is the only uncertain one
    pos = np.array([1, 2, 3, 4, 5, 7, 8, 9, 10])
    d = np.array([0.001, 0.001, np.nan, 0.001, 0.5, 0.001, 0.001, 0.001, 0.001])
    frame = pd.DataFrame({"gene_id": "A", "position": pos, "donor_score": d,
                          "acceptor_score": 0.001, "neither_score": 1 - 0.001 - np.nan_to_num(d)})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    *_, (scan,) = scan_all(path)
    assert scan.rows == 9
    assert scan.selected["position"].tolist() == [5]
    # neighbours 4 and 7 found (3 is bad, 6 absent), and the gene's end rows 1 and 10
    assert scan.context["position"].tolist() == [1, 4, 7, 10]
    assert scan.context[ts.ROW].tolist() == [0, 3, 5, 8]
    assert sorted(scan.missing["position"].tolist()) == [3, 6]
    assert scan.rejected_counts == {"score_missing": 1}
    assert scan.rejected["position"].tolist() == [3]
    assert scan.rejected["reason"].iloc[0].startswith("score_missing: donor_score=")
    assert scan.genes.to_dict("list") == {"gene_id": ["A"], "rows": [9], "good": [8],
                                          "selected": [1], "min_position": [1], "max_position": [10]}
    # the context values: -2 = position 3 (bad: absent, NaN), -1 = 4, +1 = 6 (absent), +2 = 7
    out = enrich_from_scan(scan.selected, scan.context, EnrichConfig(missing="impute"))
    full, _ = full_path(path)
    pd.testing.assert_frame_equal(out, full)


def test_unsorted_piece_and_repeat(tmp_path):
    frame = pd.DataFrame({"gene_id": ["B", "A", "B", "A", "A", "B"],
                          "position": [12, 3, 11, 2, 3, 13],
                          "donor_score": [0.001, 0.5, 0.4, 0.001, 0.3, 0.001],
                          "acceptor_score": 0.001, "neither_score": 0.5})
    path = tmp_path / "u.parquet"
    frame.to_parquet(path)
    _, _, _, (scan,) = scan_all(path)
    assert not scan.sorted
    # (A, 3) at row 4 repeats row 1: rejected, not selected although in the band
    assert scan.rejected[ts.ROW].tolist() == [4]
    assert scan.rejected["reason"].iloc[0].startswith("duplicate_position")
    assert scan.selected[ts.ROW].tolist() == [1, 2]
    assert scan.genes["gene_id"].tolist() == ["B", "A"]  # first appearance
    assert scan.genes["rows"].tolist() == [3, 3] and scan.genes["good"].tolist() == [3, 2]
    assert scan.warnings["duplicate_position"]["count"] == 1


def test_strict_read_refuses_a_missing_position(tmp_path):
    from dask_enrich.errors import InputError

    table = pa.table({"gene_id": ["A", "A"], "position": pa.array([1, None], pa.int64()),
                      "donor_score": [0.1, 0.1], "acceptor_score": [0.1, 0.1],
                      "neither_score": [0.8, 0.8]})
    path = tmp_path / "m.parquet"
    pq.write_table(table, path)
    with pytest.raises(InputError, match="m.parquet.*position"):
        scan_all(path)


# --- against the full path ----------------------------------------------------------------------------
def test_demo_track_one_piece_equals_full_path():
    *_, scans = scan_all(DEMO_TRACK)
    assert sum(s.rows for s in scans) == 71459
    full, rejected = full_path(DEMO_TRACK)
    assert len(rejected) == 0
    selected = pd.concat([s.selected.assign(**{ts.PIECE: s.piece}) for s in scans])
    context = pd.concat([s.context.assign(**{ts.PIECE: s.piece}) for s in scans])
    pd.testing.assert_frame_equal(enrich_from_scan(selected, context), full)


def test_generated_single_file_equals_full_path(tmp_path):
    frame = generated_track()
    path = write_files(frame, tmp_path / "one", files=1, row_group=len(frame))
    _, _, _, scans = scan_all(path)
    (scan,) = scans
    full, rejected = full_path(path)
    assert scan.rejected_counts == validate.reason_code(rejected["reason"]).value_counts().to_dict()
    assert len(scan.rejected) == 27  # 25 bad scores and 2 repeats
    pd.testing.assert_frame_equal(scan.rejected.drop(columns=ts.ROW), rejected)
    pd.testing.assert_frame_equal(enrich_from_scan(scan.selected, scan.context), full)


def test_bad_strands_across_row_groups_equal_full_path(tmp_path):
    """Strands other than + and - (and a missing one), in row groups with different dictionaries:
    the same rejected rows and reasons as the full read."""
    frame = generated_track()
    frame["strand"] = frame["strand"].astype(object)
    frame.loc[[5, 700], "strand"] = "x"
    frame.loc[[900], "strand"] = None
    path = write_files(frame, tmp_path / "one", files=1, row_group=300)
    source, _, spec, _ = scan_all(path)
    scan = ts.scan_piece(source, (str(path / "part-000.parquet"), None), 0, spec)  # 4 row groups
    full, rejected = full_path(path)
    got = scan.rejected.drop(columns=ts.ROW)
    assert (validate.reason_code(got["reason"]) == "strand_invalid").sum() == 3
    pd.testing.assert_frame_equal(got, rejected)


def test_lookup_piece_finds_keys_and_ends(tmp_path):
    frame = generated_track(genes=4)
    path = write_files(frame, tmp_path / "rg", files=1, row_group=100)
    source = inspect_input(str(path), label="track")
    columns = tuple(wanted_columns(source, POSITION_COLUMNS))
    _, pieces, _ = input_pieces(source, columns)
    spec = ts.ScanSpec(columns, selection=None, config=CONFIG, source=source.path)
    good, _, _ = validate.split_bad_rows(read_pandas(source, columns), source="x", config=CONFIG)
    g1 = good[good["gene_id"] == "G001"]
    keys = pd.DataFrame({"gene_id": ["G001", "G001", "G002", "ZZZ"],
                         "position": [int(g1["position"].iloc[10]), 10**9, 1, 5]})
    rows = ts.lookup_piece(source, pieces[0], spec, keys, end_genes=["G003"])
    g3 = good[good["gene_id"] == "G003"]["position"]
    assert rows["position"].tolist() == [int(g1["position"].iloc[10]), g3.min(), g3.max()]
    assert rows[ts.ROW].is_monotonic_increasing


def test_position_keys():
    keys = ts.position_keys(pd.DataFrame({"gene_id": ["A", "A", "B", "C"],
                                          "position": [10, 11, 1, 5]}), ["B", "A"])
    # A (code 1): 10 -> 8, 9, 11, 12; 11 -> 9, 10, 12, 13; B (code 0): 1 -> 0, 2, 3; C not asked
    b, a = [0, 2, 3], [8, 9, 10, 11, 12, 13]
    assert keys.tolist() == b + [(1 << 40) + p for p in a]


def test_csv_piece_equals_full_path(tmp_path):
    frame = generated_track(seed=7, genes=5)
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    _, pieces, _, scans = scan_all(path)
    full, rejected = full_path(path)
    assert sum(s.rows for s in scans) == len(frame)
    assert sum(len(s.rejected) for s in scans) == len(rejected)
    selected = pd.concat([s.selected.assign(**{ts.PIECE: s.piece}) for s in scans])
    context = pd.concat([s.context.assign(**{ts.PIECE: s.piece}) for s in scans])
    pd.testing.assert_frame_equal(enrich_from_scan(selected, context), full)


def test_keep_column_and_integer_gene_ids(tmp_path):
    frame = generated_track(seed=9, genes=4)
    frame["gene_id"] = frame["gene_id"].str[1:].astype(np.int64)  # integer ids: text in the output
    frame["note"] = np.arange(len(frame)) * 10
    path = write_files(frame, tmp_path / "k", files=1, row_group=len(frame))
    source = inspect_input(str(path), label="track")
    columns = tuple(wanted_columns(source, POSITION_COLUMNS, ("note",)))
    _, pieces, _ = input_pieces(source, columns)
    spec = ts.ScanSpec(columns, config=CONFIG, source=source.path)
    scan = ts.scan_piece(source, pieces[0], 0, spec)
    good, _, _ = validate.split_bad_rows(read_pandas(source, list(columns)), source="x", config=CONFIG)
    expected = good[select_mask(good, Selection())].reset_index(drop=True)
    pd.testing.assert_frame_equal(scan.selected.drop(columns=ts.ROW), expected)
    assert set(scan.selected["gene_id"]) <= {"0", "1", "2", "3"}  # "G000" -> 0 -> "0"
    assert (scan.selected["note"] == scan.selected[ts.ROW] * 10).all()  # note = row * 10


def test_float32_band_edges_as_select_mask(tmp_path):
    f32 = np.float32
    edges = [f32(0.02), f32(0.8)]
    around = np.array([np.nextafter(e, f32(s * np.inf)) for e in edges for s in (-1, 1)] + edges,
                      dtype=np.float32)
    d = np.concatenate([around, [f32(0.5), f32(0.0), f32(1.0)]]).astype(np.float32)
    table = pa.table({"gene_id": ["A"] * len(d), "position": np.arange(1, len(d) + 1),
                      "donor_score": d, "acceptor_score": np.zeros(len(d), np.float32),
                      "neither_score": (1 - d).astype(np.float32)})
    pq.write_table(table, tmp_path / "e.parquet")
    *_, (scan,) = scan_all(tmp_path / "e.parquet")
    frame = pd.DataFrame({"donor_score": d.astype(np.float64), "acceptor_score": 0.0})
    expected = np.flatnonzero(select_mask(frame, Selection()))
    assert scan.selected[ts.ROW].tolist() == expected.tolist()
    # in the band: just above float32(0.02), just below float32(0.8), 0.5; float32(0.02) is
    # 0.0199999996 (below 0.02) and float32(0.8) is 0.800000012 (not below 0.8)
    assert expected.tolist() == [1, 2, 6]


def test_entropy_rule_equals_full_path(tmp_path):
    frame = generated_track(seed=10, genes=4)
    path = write_files(frame, tmp_path / "h", files=1, row_group=len(frame))
    rule = Selection(rule="entropy")
    *_, (scan,) = scan_all(path, rule)
    full, _ = full_path(path, rule)
    assert len(full) > 0
    pd.testing.assert_frame_equal(enrich_from_scan(scan.selected, scan.context), full)


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 50)), max_size=60),
       st.lists(st.integers(0, 8), max_size=5))
def test_keys_of_genes_equal_a_mask_of_every_key(pairs, codes):
    from dask_enrich.features.context import POSITION_BITS, track_keys

    gene = np.array([g for g, _ in pairs], dtype=np.int64)
    pos = np.array([p for _, p in pairs], dtype=np.int64)
    keys = ts._unique(track_keys(gene, pos))
    codes = np.unique(np.array(codes, dtype=np.int64))
    expected = keys[np.isin(keys >> POSITION_BITS, codes)]
    assert np.array_equal(ts._keys_of(keys, codes), expected)


# --- the dense-run path (every row good, grouped, positions rising) against the keys -------------------
def _scan_one(path: Path, way: str) -> ts.TrackScan:
    """The scan of a one-file piece: ``streamed`` (by row group, when dense), ``dense`` (the whole
    piece by row offsets) or ``keys`` (the whole piece by keys)."""
    from contextlib import ExitStack
    from unittest import mock

    source = inspect_input(str(path), label="track")
    columns = tuple(wanted_columns(source, POSITION_COLUMNS))
    spec = ts.ScanSpec(columns, config=CONFIG, source=source.path)
    with ExitStack() as stack:
        if way in ("dense", "keys"):
            stack.enter_context(mock.patch.object(ts, "_scan_streamed", lambda *a: None))
        if way == "keys":
            stack.enter_context(mock.patch.object(ts, "_dense_runs", lambda loaded: None))
        return ts.scan_piece(source, (str(path), None), 0, spec)


def _assert_same_scan(got: ts.TrackScan, expected: ts.TrackScan) -> None:
    for name in ("selected", "context", "missing", "rejected", "genes"):
        pd.testing.assert_frame_equal(getattr(got, name), getattr(expected, name), obj=name)
    assert (got.rows, got.repeats, got.sorted, got.null_gene_rows) == \
        (expected.rows, expected.repeats, expected.sorted, expected.null_gene_rows)
    for a, b in zip(got.off_sums, expected.off_sums):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=80, deadline=None)  # each example writes and reads a Parquet file
@given(spans=st.integers(1, 4).flatmap(lambda n: gene_spans(max_genes=n, max_start=6, max_extra=30)),
       data=st.data())
def test_dense_runs_scan_equals_the_keys_scan(spans, data):
    """A grouped track with gaps and uncertain rows anywhere (at gene ends, beside gaps, p <= 2):
    the scan by row offsets gives the same selected, context and missing rows, gene table and
    warnings as the scan by keys."""
    import tempfile

    rows = data.draw(tracks(spans))
    if not rows:
        return
    band = data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    d = np.array([r[2] * 0.01 if not b else 0.02 + 0.7 * r[2] for r, b in zip(rows, band)])
    a = np.array([r[3] * 0.01 for r in rows])
    frame = pd.DataFrame({"gene_id": [f"G{r[0]}" for r in rows], "strand": ["+-"[r[0] % 2] for r in rows],
                          # one value per gene, or none: row groups of one value (made from their
                          # statistics by the streamed scan) and of several or a null (read)
                          "chrom": [("chr1", "chr2", None)[r[0] % 3] for r in rows],
                          "position": np.array([r[1] for r in rows], dtype=np.int64),
                          "donor_score": d, "acceptor_score": a, "neither_score": 1 - d - a})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=7)
        loaded = ts._load(inspect_input(str(path), label="track"), (str(path), None),
                          ts.ScanSpec(tuple(frame.columns)))
        assert ts._dense_runs(loaded) is not None
        source = inspect_input(str(path), label="track")
        assert ts._scan_streamed(source, (str(path), None), 0, ts.ScanSpec(tuple(frame.columns))) \
            is not None
        keys = _scan_one(path, "keys")
        _assert_same_scan(_scan_one(path, "dense"), keys)
        _assert_same_scan(_scan_one(path, "streamed"), keys)


@pytest.mark.parametrize("row_group", [1, 2, 100])  # the fault across row groups or within one
@pytest.mark.parametrize("genes, positions", [
    (["A", "B", "A"], [1, 1, 2]),  # a gene in two runs
    # ... its second run in a later row group whose dictionary lists it after the gene before it
    (["A", "B", "B", "A"], [1, 1, 2, 2]),
    (["A", "A", "B"], [1, 1, 2]),  # a repeated position
    (["A", "A", "B"], [2, 1, 5]),  # positions falling within a gene
])
def test_pieces_the_dense_path_refuses(tmp_path, genes, positions, row_group):
    frame = pd.DataFrame({"gene_id": genes, "position": positions, "donor_score": 0.5,
                          "acceptor_score": 0.001, "neither_score": 0.499})
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group)
    loaded = ts._load(inspect_input(str(path), label="track"), (str(path), None),
                      ts.ScanSpec(tuple(frame.columns)))
    assert ts._dense_runs(loaded) is None
    source = inspect_input(str(path), label="track")
    assert ts._scan_streamed(source, (str(path), None), 0, ts.ScanSpec(tuple(frame.columns))) is None
    _assert_same_scan(_scan_one(path, "streamed"), _scan_one(path, "keys"))


def test_dense_path_refuses_codes_out_of_key_order(tmp_path):
    """Genes grouped, but the file's dictionary lists them in another order than the rows: the
    keys' order is not the rows', so the keys scan runs (and reports the piece unsorted)."""
    gene = pa.DictionaryArray.from_arrays(pa.array([1, 1, 0, 0], pa.int32()), pa.array(["A", "B"]))
    table = pa.table({"gene_id": gene, "position": [1, 2, 1, 2], "donor_score": [0.5] * 4,
                      "acceptor_score": [0.001] * 4, "neither_score": [0.499] * 4})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    loaded = ts._load(inspect_input(str(path), label="track"), (str(path), None),
                      ts.ScanSpec(tuple(table.column_names)))
    assert ts._dense_runs(loaded) is None
    source = inspect_input(str(path), label="track")
    assert ts._scan_streamed(source, (str(path), None), 0, ts.ScanSpec(tuple(table.column_names))) is None
    scan = _scan_one(path, "streamed")
    assert not scan.sorted and scan.genes["gene_id"].tolist() == ["B", "A"]
