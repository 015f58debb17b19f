"""validate.py: schema checks, bad rows split off with a reason, the error path, and properties.

Expected reasons come from hand-made frames or from ``reference_reason`` below, an independent
row-by-row classifier written from the rules (never from output of the code under test).
"""
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich
from dask_enrich.errors import InputError
from dask_enrich.features.scores import SCORE_FEATURES
from dask_enrich.manifest import manifest_from_names
from dask_enrich.validate import (REASONS, check_columns, check_not_empty, merge_warnings,
                                  raise_for_bad_rows, reason_code, rejected_meta, split_bad_rows,
                                  suggest_column, summarise_rejected)
from tests.strategies import SEQNAMES as ANY_SEQNAME, gene_tables, raw_position_rows

SCORE_MANIFEST = manifest_from_names(sorted(SCORE_FEATURES))
CTX = ["context_score_m2", "context_score_m1", "context_score_p1", "context_score_p2"]
SRC = "data/positions.parquet"


def gene_table():
    """Three genes: G1 plus strand 101..200 on chr1, G2 minus 301..350 on chr1, G3 on chrZ (not in
    the FASTA: seq_offset -1)."""
    return pd.DataFrame(
        {"seqname": ["chr1", "chr1", "chrZ"], "strand": ["+", "-", "+"],
         "gene_start": [101, 301, 1001], "gene_end": [200, 350, 1100], "seq_offset": [0, 100, -1]},
        index=pd.Index(["G1", "G2", "G3"], name="gene_id"))


def positions(**columns):
    """A clean 3-row frame of G1, with columns overridden."""
    base = {"gene_id": ["G1", "G1", "G1"], "position": [110, 120, 130],
            "donor_score": [0.1, 0.7, 0.2], "acceptor_score": [0.1, 0.1, 0.3],
            "neither_score": [0.8, 0.2, 0.5]}
    base.update(columns)
    return pd.DataFrame(base)


def codes(rejected):
    return reason_code(rejected["reason"]).tolist()


# --- check_columns -------------------------------------------------------------------------------
@pytest.mark.parametrize("present, missing, found", [
    ("donor_prob", "donor_score", "donor_prob"),
    ("donor_probability", "donor_score", "donor_probability"),
    ("pos", "position", "pos"),
    ("coord", "position", "coord"),
    ("gene", "gene_id", "gene"),
    ("gene_name", "gene_id", "gene_name"),
    ("Gene-ID", "gene_id", "Gene-ID"),
    ("acceptor_scor", "acceptor_score", "acceptor_scor"),  # difflib, not the alias table
    ("NEITHER", "neither_score", "NEITHER"),
])
def test_missing_column_names_file_column_and_close_name(present, missing, found):
    columns = {"gene_id": "str", "position": "int64", "donor_score": "float64",
               "acceptor_score": "float64", "neither_score": "float64"}
    del columns[missing]
    columns[present] = "str" if missing == "gene_id" else "float64"
    with pytest.raises(InputError) as info:
        check_columns(columns, source=SRC)
    message = str(info.value)
    assert SRC in message
    assert f"missing required column {missing!r}" in message
    assert f"found {found!r}: rename it to {missing!r}" in message
    assert info.value.exit_code == 2


def test_missing_column_without_close_name_has_no_suggestion():
    columns = {"gene_id": "str", "position": "int64", "donor_score": "float64",
               "acceptor_score": "float64", "zzz": "float64"}
    with pytest.raises(InputError) as info:
        check_columns(columns, source=SRC)
    assert "missing required column 'neither_score'" in str(info.value)
    assert "rename" not in str(info.value)
    assert "columns present: gene_id, position, donor_score, acceptor_score, zzz" in str(info.value)


def test_every_problem_is_listed_in_one_error():
    columns = {"gene": "str", "pos": "int64", "donor_score": "str", "acceptor_score": "float64",
               "neither_score": "float64", "strand": "int64"}
    with pytest.raises(InputError) as info:
        check_columns(columns, source="in.csv")
    message = str(info.value)
    for part in ("'gene_id'", "'position'", "column 'donor_score' holds text",
                 "column 'strand' holds numbers"):
        assert part in message


@pytest.mark.parametrize("column, dtype, words", [
    ("donor_score", "str", "holds text"),
    ("neither_score", "object", "holds text"),
    ("acceptor_score", "bool", "values of type bool"),
    ("context_score_m1", "str", "holds text"),
    ("position", "str", "positions must be integers"),
    ("position", "datetime64[ns]", "positions must be integers"),
    ("strand", "int64", "strand must be the text '+' or '-'"),
    ("gene_id", "float64", "gene ids must be text or integers"),
])
def test_wrong_type_names_file_column_and_problem(column, dtype, words):
    columns = {"gene_id": "str", "position": "int64", "donor_score": "float64",
               "acceptor_score": "float64", "neither_score": "float64", column: dtype}
    with pytest.raises(InputError) as info:
        check_columns(columns, source=SRC)
    assert SRC in str(info.value) and f"column {column!r}" in str(info.value)
    assert words in str(info.value)


def test_valid_schemas_pass_including_float_positions_and_track_without_neither():
    check_columns({"gene_id": "str", "position": "float64", "donor_score": "float32",
                   "acceptor_score": "float64", "neither_score": "int64", "strand": "str",
                   "chrom": "str", "extra": "object"}, source=SRC)
    check_columns({"gene_id": "int64", "position": "int64", "donor_score": "float64",
                   "acceptor_score": "float64"}, source=SRC, kind="track")
    with pytest.raises(InputError, match="track file"):
        check_columns({"gene_id": "str", "position": "int64", "donor_score": "float64"},
                      source=SRC, kind="track")


def test_check_columns_on_a_real_parquet_schema(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"gene_id": ["G1"], "position": [5], "donor_prob": [0.1],
                             "acceptor_score": ["0.2"], "neither_score": [0.7]}), path)
    dtypes = pq.read_schema(path).empty_table().to_pandas().dtypes.to_dict()
    with pytest.raises(InputError) as info:
        check_columns(dtypes, source=str(path))
    assert str(path) in str(info.value)
    assert "'donor_score' (found 'donor_prob'" in str(info.value)
    assert "column 'acceptor_score' holds text" in str(info.value)


def test_suggest_column_prefers_alias_and_returns_none_when_nothing_is_close():
    assert suggest_column("donor_score", ["acceptor_prob", "donor_prob"]) == "donor_prob"
    assert suggest_column("position", ["qqq", "www"]) is None


def test_empty_input():
    check_not_empty(3, source=SRC)
    with pytest.raises(InputError, match=f"{SRC}: no rows"):
        check_not_empty(0, source=SRC)


# --- split_bad_rows: one test per bad input ------------------------------------------------------
@pytest.mark.parametrize("value, code", [
    (np.nan, "score_missing"), (np.inf, "score_infinite"), (-np.inf, "score_infinite"),
    (-0.01, "score_negative"), (1.0001, "score_above_one"),
])
@pytest.mark.parametrize("column", ["donor_score", "acceptor_score", "neither_score"])
def test_bad_score_is_rejected_with_column_and_value(column, value, code):
    frame = positions()
    frame.loc[1, column] = value
    good, rejected, _ = split_bad_rows(frame, source=SRC)
    assert good.index.tolist() == [0, 2]
    assert rejected.index.tolist() == [1]
    assert rejected["reason"].iloc[0] == f"{code}: {column}={float(value)}"
    assert rejected["source"].iloc[0] == SRC


def test_scores_of_exactly_zero_and_one_are_valid():
    frame = positions(donor_score=[0.0, 1.0, 0.0], acceptor_score=[0.0, 0.0, 1.0],
                      neither_score=[1.0, 0.0, 0.0])
    good, rejected, warnings = split_bad_rows(frame, source=SRC)
    assert len(good) == 3 and len(rejected) == 0 and warnings == {}


def test_text_in_a_score_column_is_rejected_row_by_row():
    frame = positions(donor_score=pd.Series(["0.1", "abc", "0.2"], dtype=object))
    good, rejected, _ = split_bad_rows(frame, source=SRC)
    assert good.index.tolist() == [0, 2]
    assert rejected["reason"].tolist() == ["score_not_numeric: donor_score='abc'"]


def test_context_scores_missing_are_kept_but_out_of_range_rejected():
    frame = positions(context_score_m2=[np.nan, 0.5, 1.5], context_score_m1=0.1,
                      context_score_p1=0.1, context_score_p2=[0.1, 0.1, 0.1])
    good, rejected, _ = split_bad_rows(frame, source=SRC)
    assert good.index.tolist() == [0, 1]  # NaN context: the missing-value policy decides, not us
    assert rejected["reason"].tolist() == ["score_above_one: context_score_m2=1.5"]


@pytest.mark.parametrize("value, code", [
    (120.5, "position_not_integer"), (np.nan, "position_not_integer"),
    (np.inf, "position_not_integer"), (0, "position_out_of_range"),
    (-5, "position_out_of_range"),
])
def test_bad_position(value, code):
    frame = positions(position=[110.0, value, 130.0])
    good, rejected, _ = split_bad_rows(frame, source=SRC)
    assert good.index.tolist() == [0, 2]
    assert codes(rejected) == [code]
    assert "position=" in rejected["reason"].iloc[0]


def test_text_positions_are_rejected_and_integral_floats_accepted():
    frame = positions(position=pd.Series(["110", "x12", "130.0"], dtype=object))
    good, rejected, _ = split_bad_rows(frame, source=SRC)
    assert good.index.tolist() == [0, 2]
    assert rejected["reason"].tolist() == ["position_not_integer: position='x12'"]


def test_gene_relative_positions_start_at_zero_and_end_before_the_gene_length():
    config = EnrichConfig(coordinates="gene_relative")
    frame = positions(position=[0, 99, 100])  # G1 is 100 nt long: offsets 0..99
    good, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=gene_table(), config=config)
    assert good.index.tolist() == [0, 1]
    assert rejected["reason"].tolist() == ["position_outside_gene: position=100 not in [0, 99] of gene G1"]
    good, rejected, _ = split_bad_rows(positions(position=[0, -1, 3]), source=SRC, config=config)
    assert codes(rejected) == ["position_out_of_range"]


@pytest.mark.parametrize("value", [".", "", "plus", "1", None, " +"])
def test_bad_strand(value):
    frame = positions(strand=pd.Series(["+", value, "-"], dtype="str" if value is not None else object))
    good, rejected, _ = split_bad_rows(frame, source=SRC)
    assert good.index.tolist() == [0, 2]
    assert codes(rejected) == ["strand_invalid"]
    assert rejected["reason"].iloc[0].startswith("strand_invalid: strand=")


def test_missing_gene_id():
    frame = positions(gene_id=pd.Series(["G1", None, "  "], dtype="str"))
    good, rejected, _ = split_bad_rows(frame, source=SRC)
    assert good.index.tolist() == [0]
    assert codes(rejected) == ["gene_id_missing", "gene_id_missing"]


def test_duplicates_keep_the_first_reject_the_rest_and_say_so():
    frame = positions(position=[110, 120, 110])
    frame = pd.concat([frame, frame.iloc[[1]]])  # 4 rows, index 0 1 2 1
    frame.index = [10, 11, 12, 13]
    good, rejected, warnings = split_bad_rows(frame, source=SRC)
    assert good.index.tolist() == [10, 11]
    assert rejected.index.tolist() == [12, 13]
    assert set(codes(rejected)) == {"duplicate_position"}
    assert warnings["duplicate_position"]["count"] == 2
    assert "first of each was kept" in warnings["duplicate_position"]["message"]


def test_a_bad_copy_before_a_good_row_does_not_push_the_good_one_out():
    frame = positions(position=[120, 120, 130], donor_score=[np.nan, 0.7, 0.2])
    good, rejected, warnings = split_bad_rows(frame, source=SRC)
    assert good.index.tolist() == [1, 2]
    assert codes(rejected) == ["score_missing"]
    assert "duplicate_position" not in warnings


def test_duplicates_in_a_sorted_frame_keep_the_first():
    frame = positions(gene_id=["G1", "G1", "G1", "G2", "G2", "G2"], position=[110, 110, 120, 5, 5, 5],
                      donor_score=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], acceptor_score=0.1,
                      neither_score=0.1)
    good, rejected, warnings = split_bad_rows(frame, source=SRC)
    assert good.index.tolist() == [0, 2, 3] and rejected.index.tolist() == [1, 4, 5]
    assert warnings["duplicate_position"]["count"] == 3


def test_same_position_in_two_genes_is_not_a_duplicate():
    frame = positions(gene_id=["G1", "G2", "G1"], position=[120, 120, 110])
    good, rejected, _ = split_bad_rows(frame, source=SRC)
    assert len(good) == 3 and len(rejected) == 0


def test_gene_absent_from_the_annotation():
    frame = positions(gene_id=["G1", "AT9G99999", "G1"])
    good, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=gene_table())
    assert good.index.tolist() == [0, 2]
    assert rejected["reason"].tolist() == ["gene_not_in_annotation: gene_id='AT9G99999'"]


@pytest.mark.parametrize("gene, pos, ok", [
    ("G1", 101, True), ("G1", 200, True), ("G1", 100, False), ("G1", 201, False),
    ("G2", 301, True), ("G2", 350, True), ("G2", 300, False), ("G2", 351, False),
])
def test_position_outside_the_gene_span(gene, pos, ok):
    frame = positions(gene_id=["G1", gene, "G1"], position=[150, pos, 160])
    good, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=gene_table())
    assert len(good) == (3 if ok else 2)
    if not ok:
        start, end = {"G1": (101, 200), "G2": (301, 350)}[gene]
        assert rejected["reason"].tolist() == [
            f"position_outside_gene: position={pos} not in [{start}, {end}] of gene {gene}"]


def test_strand_disagreeing_with_the_annotation():
    frame = positions(gene_id=["G1", "G2", "G1"], position=[150, 320, 160], strand=["+", "+", "+"])
    good, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=gene_table())
    assert good.index.tolist() == [0, 2]
    assert rejected["reason"].tolist() == [
        "strand_mismatch: strand='+' but the annotation has '-' for gene G2"]


def test_chromosome_disagreeing_with_the_annotation():
    """A row naming another chromosome than the annotation's for its gene is a bad row (naming
    the reason, the gene, both chromosomes); 'chr' prefixes and M/MT are one name, a missing
    chrom is no disagreement."""
    frame = positions(gene_id=["G1"] * 4, position=[150, 160, 170, 180],
                      donor_score=[0.1] * 4, acceptor_score=[0.1] * 4, neither_score=[0.8] * 4,
                      chrom=["chr1", "1", "chr2", None])
    good, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=gene_table())
    assert good.index.tolist() == [0, 1, 3]
    assert rejected["reason"].tolist() == [
        "chromosome_mismatch: chrom='chr2' but the annotation has 'chr1' for gene G1"]
    with pytest.raises(InputError) as info:
        raise_for_bad_rows(rejected, SRC)
    message = str(info.value)
    assert SRC in message and "chromosome_mismatch" in message and "gene_id=G1 position=170" in message
    assert "chrom='chr2' but the annotation has 'chr1'" in message


def test_chromosome_named_as_the_genome_names_it():
    """Where the cache matched an annotation name to another genome name (an alias file), a row
    may name the chromosome either way; a third name is still a mismatch."""
    table = gene_table().assign(seqname=["NC_003070.9", "NC_003070.9", "chrZ"])
    frame = positions(chrom=["NC_003070.9", "Chr1", "Chr2"])
    good, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=table,
                                       genome_names={"NC_003070.9": "Chr1"})
    assert good.index.tolist() == [0, 1]
    assert rejected["reason"].tolist() == [
        "chromosome_mismatch: chrom='Chr2' but the annotation has 'NC_003070.9' for gene G1"]
    _, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=table)
    assert codes(rejected) == ["chromosome_mismatch"] * 2


def test_chromosome_absent_from_the_fasta():
    frame = positions(gene_id=["G1", "G3", "G2"], position=[150, 1050, 320])
    # without the genome check (annotation-only runs) G3 is fine
    good, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=gene_table())
    assert len(rejected) == 0
    good, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=gene_table(),
                                       has_sequence_for=True)
    assert good.index.tolist() == [0, 2]
    assert rejected["reason"].tolist() == [
        "chromosome_not_in_genome: chromosome 'chrZ' of gene G3 is not in the genome"]
    # the same from the FASTA's sequence names
    good, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=gene_table(),
                                       has_sequence_for={"chr1"})
    assert codes(rejected) == ["chromosome_not_in_genome"]
    with pytest.raises(ValueError):
        split_bad_rows(frame, source=SRC, has_sequence_for=True)


def test_score_sum_far_from_one_is_a_warning_with_counts_not_a_rejection():
    frame = positions(donor_score=[0.1, 0.5, 0.2], acceptor_score=[0.1, 0.5, 0.3],
                      neither_score=[0.8, 0.5, 0.47])  # sums 1.0, 1.5, 0.97
    good, rejected, warnings = split_bad_rows(frame, source=SRC)
    assert len(good) == 3 and len(rejected) == 0
    assert warnings["score_sum"]["count"] == 1
    assert warnings["score_sum"]["max_deviation"] == pytest.approx(0.5)
    assert "1 row(s)" in warnings["score_sum"]["message"]
    _, _, warnings = split_bad_rows(frame, source=SRC, sum_tolerance=0.01)
    assert warnings["score_sum"]["count"] == 2 and warnings["score_sum"]["threshold"] == 0.01


def test_good_rows_keep_order_index_and_dtypes_and_rejected_rows_keep_input_columns():
    frame = positions(position=[130, 0, 110], strand=["-", "+", "+"], extra=[1, 2, 3])
    frame.index = [7, 3, 5]
    good, rejected, _ = split_bad_rows(frame, source=SRC)
    pd.testing.assert_frame_equal(good, frame.loc[[7, 5]])
    assert list(rejected.columns) == list(frame.columns) + ["reason", "source"]
    pd.testing.assert_frame_equal(rejected[frame.columns], frame.loc[[3]])
    assert rejected.dtypes["reason"] == rejected.dtypes["source"] == pd.Series([], dtype="str").dtype
    meta = rejected_meta(frame)
    assert list(meta.columns) == list(rejected.columns) and len(meta) == 0
    assert meta.dtypes.to_dict() == rejected.dtypes.to_dict()


def test_empty_frame():
    good, rejected, warnings = split_bad_rows(positions().iloc[:0], source=SRC,
                                              gene_table=gene_table(), has_sequence_for=True)
    assert len(good) == len(rejected) == 0 and warnings == {}


def test_first_reason_wins_in_the_documented_order():
    frame = positions(position=[110, 0, 130], donor_score=[0.1, np.nan, 2.0],
                      gene_id=["G1", "G1", "GX"])
    _, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=gene_table())
    assert codes(rejected) == ["position_out_of_range", "score_above_one"]
    assert list(REASONS).index("position_out_of_range") < list(REASONS).index("score_missing")


def test_merge_warnings_adds_counts():
    a = {"score_sum": {"count": 2, "threshold": 0.05, "max_deviation": 0.2, "message": "2 row(s) x"}}
    b = {"score_sum": {"count": 3, "threshold": 0.05, "max_deviation": 0.4, "message": "3 row(s) x"},
         "duplicate_position": {"count": 1, "message": "1 dup"}}
    merged = merge_warnings(a, b)
    assert merged["score_sum"]["count"] == 5 and merged["score_sum"]["max_deviation"] == 0.4
    assert merged["score_sum"]["message"] == "5 row(s) x"
    assert merged["duplicate_position"]["count"] == 1
    assert a["score_sum"]["count"] == 2  # inputs untouched


# --- raise_for_bad_rows ----------------------------------------------------------------------------
def test_error_path_lists_each_reason_with_count_and_at_most_three_examples():
    n = 8
    frame = pd.DataFrame({"gene_id": [f"G{i}" for i in range(n)], "position": np.arange(1, n + 1) * 10,
                          "donor_score": [np.nan] * 5 + [0.1] * 3, "acceptor_score": 0.1,
                          "neither_score": [0.8] * 5 + [1.7, 0.8, 0.8]})
    frame.loc[7, "position"] = -4
    _, rejected, _ = split_bad_rows(frame, source=SRC)
    assert raise_for_bad_rows(rejected.iloc[:0], SRC) is None
    with pytest.raises(InputError) as info:
        raise_for_bad_rows(rejected, SRC)
    message = str(info.value)
    assert info.value.exit_code == 2
    assert SRC in message and "7 bad row(s)" in message
    assert "score_missing (a base score is missing (NaN)): 5 row(s)" in message
    assert "score_above_one (a score is above 1): 1 row(s)" in message
    assert "position_out_of_range" in message and "gene_id=G7 position=-4" in message
    line = next(l for l in message.splitlines() if l.strip().startswith("score_missing"))
    assert line.count("gene_id=") == 3  # three examples of five
    assert "gene_id=G0 position=10 (donor_score=nan)" in line
    assert "gene_id=G1 position=20" in line and "gene_id=G3" not in line
    assert "--on-bad-rows quarantine" in message
    summary = summarise_rejected(rejected)
    assert summary["score_missing"]["count"] == 5 and len(summary["score_missing"]["examples"]) == 3


# --- properties ------------------------------------------------------------------------------------
GENES = {"G1": (101, 200, "+", 0), "G2": (301, 350, "-", 100), "G3": (1001, 1100, "+", -1)}
SEQNAMES = {"G1": "chr1", "G2": "chr1", "G3": "chrZ"}


def same_chromosome(a: str, b: str) -> bool:
    """The rule, literally: a 'chr' prefix and case ignored, M and MT one name."""
    def key(name):
        name = name[3:] if name.lower().startswith("chr") else name
        return {"M": "MT"}.get(name.upper(), name.upper())
    return key(a) == key(b)


def reference_reason(row, seen, *, annotation, genome, coordinates="genomic", tol=0.05):
    """The first reason code of one row, or None; ``seen`` holds the (gene, position) of the
    earlier valid rows (updated when the row is valid). Written from the rules, row by row."""
    gene = row["gene_id"]
    if gene is None or (isinstance(gene, float) and math.isnan(gene)) or str(gene).strip() == "":
        return "gene_id_missing"
    try:
        pos = float(row["position"])
    except (TypeError, ValueError):
        return "position_not_integer"
    if not math.isfinite(pos) or pos != int(pos):
        return "position_not_integer"
    pos = int(pos)
    if pos < (0 if coordinates == "gene_relative" else 1):
        return "position_out_of_range"
    scores = {c: row[c] for c in ("donor_score", "acceptor_score", "neither_score", *CTX) if c in row}
    for code in ("score_missing", "score_infinite", "score_negative", "score_above_one"):
        for column, v in scores.items():
            base = not column.startswith("context")
            if ((code == "score_missing" and base and math.isnan(v))
                    or (code == "score_infinite" and math.isinf(v))
                    or (code == "score_negative" and v < 0)
                    or (code == "score_above_one" and math.isfinite(v) and v > 1)):
                return code
    if "strand" in row and row["strand"] not in ("+", "-"):
        return "strand_invalid"
    if annotation:
        if gene not in GENES:
            return "gene_not_in_annotation"
        start, end, strand, offset = GENES[gene]
        if "strand" in row and row["strand"] != strand:
            return "strand_mismatch"
        if isinstance(row.get("chrom"), str) and not same_chromosome(row["chrom"], SEQNAMES[gene]):
            return "chromosome_mismatch"
        lo, hi = (0, end - start) if coordinates == "gene_relative" else (start, end)
        if not lo <= pos <= hi:
            return "position_outside_gene"
        if genome and offset < 0:
            return "chromosome_not_in_genome"
    if (gene, pos) in seen:
        return "duplicate_position"
    seen.add((gene, pos))
    return None


def table_of(genes):
    return pd.DataFrame({"gene_start": [g[0] for g in genes.values()],
                         "gene_end": [g[1] for g in genes.values()],
                         "strand": [g[2] for g in genes.values()],
                         "seq_offset": [g[3] for g in genes.values()],
                         "seqname": [SEQNAMES[g] for g in genes]},
                        index=pd.Index(list(genes), name="gene_id"))


row_strategy = raw_position_rows(genes=["G1", "G2", "G3", "GX", "", None])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row_strategy, max_size=40), annotation=st.booleans(), genome=st.booleans(),
       relative=st.booleans(), with_strand=st.booleans(), presorted=st.booleans(),
       with_chrom=st.booleans())
def test_random_rows_match_the_row_by_row_reference(rows, annotation, genome, relative, with_strand,
                                                    presorted, with_chrom):
    frame = pd.DataFrame(rows, columns=["gene_id", "position", "donor_score", "acceptor_score",
                                        "neither_score", "context_score_m1", "strand", "chrom"])
    if not with_chrom:
        frame = frame.drop(columns="chrom")
    if presorted:  # as the engine hands bins over: sorted by (gene_id, position)
        frame = frame.sort_values(["gene_id", "position"], kind="stable")
    if not with_strand:
        frame = frame.drop(columns="strand")
    frame.index = np.arange(len(frame)) * 3 + 5
    coordinates = "gene_relative" if relative else "genomic"
    seen: set = set()
    expected = [reference_reason(dict(r), seen, annotation=annotation, genome=annotation and genome,
                                 coordinates=coordinates)
                for r in frame.to_dict("records")]
    good, rejected, _ = split_bad_rows(
        frame, source=SRC, gene_table=table_of(GENES) if annotation else None,
        has_sequence_for=annotation and genome, config=EnrichConfig(coordinates=coordinates))
    assert len(good) + len(rejected) == len(frame)
    valid = np.array([r is None for r in expected], dtype=bool)
    pd.testing.assert_frame_equal(good, frame[valid])
    assert codes(rejected) == [r for r in expected if r is not None]
    assert rejected.index.tolist() == frame.index[~valid].tolist()
    assert (rejected["source"] == SRC).all()


def clean_rows(draw_seed, n, genes):
    """n valid, unique rows in genes (with context columns), from a seeded generator."""
    rng = np.random.default_rng(draw_seed)
    keys = set()
    out = []
    names = list(genes)
    while len(out) < n:
        gene = names[rng.integers(len(names))]
        start, end, strand, _ = genes[gene]
        pos = int(rng.integers(start, end + 1))
        if (gene, pos) in keys:
            continue
        keys.add((gene, pos))
        d, a, nn = rng.dirichlet([0.4, 0.4, 2])
        out.append({"gene_id": gene, "position": pos, "donor_score": d, "acceptor_score": a,
                    "neither_score": nn, "strand": strand,
                    **{c: float(v) for c, v in zip(CTX, rng.random(4))}})
    return pd.DataFrame(out)


CORRUPTIONS = [
    ("donor_score", np.nan), ("acceptor_score", np.inf), ("neither_score", -0.5),
    ("donor_score", 1.5), ("context_score_p1", 2.0), ("position", 0), ("position", 150.5),
    ("position", np.nan), ("strand", "."), ("gene_id", "GX"), ("gene_id", None), ("position", 5000),
    ("strand", "flip"), ("duplicate", None),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n=st.integers(1, 40),
       bad=st.lists(st.tuples(st.integers(0, len(CORRUPTIONS) - 1), st.integers(0, 10**6),
                              st.integers(0, 10**6)), max_size=25))
def test_corrupted_frames_yield_exactly_the_clean_rows_enriched_as_in_a_clean_run(seed, n, bad):
    genes = {k: v for k, v in GENES.items() if v[3] >= 0}
    clean = clean_rows(seed, n, genes)
    rows = clean.to_dict("records")
    is_clean = [True] * len(rows)
    for kind, source, where in bad:
        column, value = CORRUPTIONS[kind]
        i = source % len(clean)
        row = dict(clean.iloc[i])
        if column == "duplicate":  # an exact copy after the original
            at = _index_of(rows, is_clean, i) + 1 + where % (len(rows) - _index_of(rows, is_clean, i))
        else:
            if column == "strand" and value == "flip":
                value = "-" if row["strand"] == "+" else "+"
            row[column] = value
            at = where % (len(rows) + 1)  # anywhere, even before its clean twin
        rows.insert(at, row)
        is_clean.insert(at, False)
    frame = pd.DataFrame(rows)
    frame.index = np.arange(len(frame))[::-1] * 2  # a non-range index, preserved
    good, rejected, _ = split_bad_rows(frame, source=SRC, gene_table=table_of(GENES),
                                       has_sequence_for=True)
    assert len(good) + len(rejected) == len(frame)
    assert good.index.tolist() == frame.index[np.array(is_clean, dtype=bool)].tolist()
    assert len(rejected) == is_clean.count(False)
    ours, _ = enrich(good, SCORE_MANIFEST)
    theirs, _ = enrich(clean, SCORE_MANIFEST)
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs.reset_index(drop=True))


def _index_of(rows, is_clean, i):
    """Index in ``rows`` of the i-th clean row."""
    return [k for k, c in enumerate(is_clean) if c][i]


def test_the_one_placement_check_by_hand():
    """validate.place: gene known, chromosome agrees, position inside the span, sequence present;
    the first problem of each row, hand-worked."""
    from dask_enrich.validate import (CHROMOSOME_DIFFERS, GENE_ABSENT, NO_SEQUENCE, OUTSIDE_GENE,
                                      PLACED, place)

    table = pd.DataFrame({"gene_start": [100, 500], "gene_end": [200, 520], "strand": ["+", "-"],
                          "seqname": ["Chr1", "Chr2"], "seq_offset": [0, -1]},
                         index=pd.Index(["GA", "GB"], name="gene_id"))
    rows = np.array([0, 0, 0, -1, 1, 1, 0])
    pos = np.array([100, 201, 150, 150, 510, 519, 99])
    chrom = pd.Series(["chr1", "Chr1", "Chr2", "Chr1", None, "Chr2", "Chr1"])
    got = place(table, rows, pos, chrom=chrom, has_sequence_for=True)
    assert got.code.tolist() == [PLACED, OUTSIDE_GENE, CHROMOSOME_DIFFERS, GENE_ABSENT,
                                 NO_SEQUENCE, NO_SEQUENCE, OUTSIDE_GENE]
    assert got.start.tolist() == [100, 100, 100, 100, 500, 500, 100]
    assert got.end.tolist()[4] == 520 and got.placed.tolist() == [True] + [False] * 6
    # without the chromosome and sequence checks
    assert place(table, rows, pos).code.tolist() == [PLACED, OUTSIDE_GENE, PLACED, GENE_ABSENT,
                                                    PLACED, PLACED, OUTSIDE_GENE]
    # gene-relative: offsets 0 .. end - start (100 for GA, 20 for GB)
    rel = place(table, np.array([0, 0, 0, 1, 1]), np.array([0, 100, 101, 20, -1]),
                coordinates="gene_relative")
    assert rel.code.tolist() == [PLACED, PLACED, OUTSIDE_GENE, PLACED, OUTSIDE_GENE]
    assert rel.lo.tolist() == [0] * 5 and rel.hi.tolist() == [100, 100, 100, 20, 20]
    # sequence names instead of seq_offset; an empty gene table places nothing
    assert place(table, np.array([0, 1]), np.array([150, 510]),
                 has_sequence_for={"Chr2"}).code.tolist() == [NO_SEQUENCE, PLACED]
    assert place(table.iloc[:0], np.array([-1]), np.array([5])).code.tolist() == [GENE_ABSENT]
    with pytest.raises(ValueError, match="seq_offset"):
        place(table.drop(columns="seq_offset"), rows, pos, has_sequence_for=True)


@settings(max_examples=150, deadline=None)
@given(table=gene_tables(), data=st.data(), relative=st.booleans(), need_sequence=st.booleans())
def test_placement_matches_a_row_by_row_reading(table, data, relative, need_sequence):
    """validate.place on random gene tables and rows (known and unknown genes, positions in and
    around their span, chromosome spellings) equals reading each row by the rule."""
    from dask_enrich.validate import (CHROMOSOME_DIFFERS, GENE_ABSENT, NO_SEQUENCE, OUTSIDE_GENE,
                                      PLACED, place)

    names = [*table.index, "GX"]
    rows = data.draw(st.lists(st.tuples(st.sampled_from(names), st.integers(-5, 1300),
                                        st.sampled_from([*ANY_SEQNAME, None])), max_size=30))
    gene_row = table.index.get_indexer([g for g, _, _ in rows])
    chrom = pd.Series([c for _, _, c in rows], dtype=object)
    got = place(table, gene_row, np.array([p for _, p, _ in rows], dtype=np.int64),
                coordinates="gene_relative" if relative else "genomic", chrom=chrom,
                has_sequence_for=True if need_sequence else None)
    expected = []
    for gene, pos, name in rows:
        if gene not in table.index:
            expected.append(GENE_ABSENT)
            continue
        gene_line = table.loc[gene]
        start, end = int(gene_line["gene_start"]), int(gene_line["gene_end"])
        lo, hi = (0, end - start) if relative else (start, end)
        if name is not None and not same_chromosome(name, gene_line["seqname"]):
            expected.append(CHROMOSOME_DIFFERS)
        elif not lo <= pos <= hi:
            expected.append(OUTSIDE_GENE)
        elif need_sequence and gene_line["seq_offset"] < 0:
            expected.append(NO_SEQUENCE)
        else:
            expected.append(PLACED)
    assert got.code.tolist() == expected
    assert got.found.tolist() == [g in table.index for g, _, _ in rows]
