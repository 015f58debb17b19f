"""The enrichment core: layout, row order, context sources, missing-value policy, schema."""
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_enrich.config import EnrichConfig
from dask_enrich.core import (
    PartitionInputs,
    check_inputs,
    enrich,
    output_meta,
    output_schema,
)
from dask_enrich.errors import InputError, MissingFeatureError
from dask_enrich.features import registry
from dask_enrich.features.scores import SCORE_FEATURES
from dask_enrich.manifest import load_manifest, manifest_from_names

from .features.test_scores import reference_row

SCORE_MANIFEST = manifest_from_names(sorted(SCORE_FEATURES))


def make_track(rng, genes):
    """A full per-nucleotide track: genes = {gene_id: (start, end, strand)}."""
    parts = []
    for gene, (start, end, strand) in genes.items():
        pos = np.arange(start, end + 1)
        p = rng.dirichlet([0.3, 0.3, 3], len(pos))
        parts.append(pd.DataFrame({"gene_id": gene, "strand": strand, "position": pos,
                                   "donor_score": p[:, 0], "acceptor_score": p[:, 1],
                                   "neither_score": p[:, 2]}))
    return pd.concat(parts, ignore_index=True)


def slow_context_columns(positions, track, genes, rule="larger"):
    """Reference: the neighbours of each row looked up one by one in the track."""
    lookup = {(g, p): (d, a) for g, p, d, a in
              track[["gene_id", "position", "donor_score", "acceptor_score"]].itertuples(index=False)}
    out = []
    for g, p, d, a in positions[["gene_id", "position", "donor_score", "acceptor_score"]].itertuples(index=False):
        start, end, strand = genes[g]
        use = 0 if (rule == "donor" or (rule == "larger" and d >= a)) else 1
        row = []
        for off in (-2, -1, 1, 2):
            q = p - off if strand == "-" else p + off
            row.append(0.0 if not start <= q <= end else lookup[(g, q)][use])
        out.append(row)
    return pd.DataFrame(out, columns=[f"context_score_{s}" for s in ("m2", "m1", "p1", "p2")],
                        index=positions.index)


@pytest.fixture
def genes():
    return {"GPLUS": (1000, 1400, "+"), "GMINUS": (5000, 5300, "-"), "GTINY": (9000, 9002, "+")}


@pytest.fixture
def track(genes):
    return make_track(np.random.default_rng(1), genes)


@pytest.fixture
def positions(track):
    # Uncertain positions are sparse in the track: neighbouring rows are NOT neighbouring nucleotides.
    sample = track.sample(frac=0.3, random_state=2)
    edges = track.groupby("gene_id").position.agg(["min", "max"]).stack().reset_index()
    extra = track.merge(edges.rename(columns={0: "position"})[["gene_id", "position"]])
    rows = pd.concat([sample, extra]).drop_duplicates(["gene_id", "position"])
    rows = rows.sample(frac=1, random_state=3)
    return rows.set_index(pd.Index(np.arange(len(rows)) * 7 + 100))  # a shuffled, non-range index


def test_context_from_track_matches_row_by_row_reference_on_both_strands(positions, track, genes):
    out, report = enrich(positions, SCORE_MANIFEST, track=track)
    expected = slow_context_columns(positions, track, genes)
    pd.testing.assert_frame_equal(out[expected.columns], expected)
    assert report.imputed == {}
    # and every other feature follows from those context values
    for i in range(0, len(positions), 17):
        row = positions.iloc[i]
        ref = reference_row(row.donor_score, row.acceptor_score, row.neither_score,
                            *expected.iloc[i].tolist())
        for name, value in ref.items():
            assert out[name].iloc[i] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_context_columns_and_track_give_the_same_features(positions, track, genes):
    from_track, _ = enrich(positions, SCORE_MANIFEST, track=track)
    with_columns = positions.join(slow_context_columns(positions, track, genes))
    from_columns, _ = enrich(with_columns, SCORE_MANIFEST)
    pd.testing.assert_frame_equal(from_track, from_columns)


def test_context_is_never_the_next_row(track):
    # Two rows of a gene 10 nt apart: context must come from the nucleotides, not the other row.
    rows = track[(track.gene_id == "GPLUS") & track.position.isin([1100, 1110])]
    out, _ = enrich(rows, SCORE_MANIFEST, track=track, config=EnrichConfig(context_track="donor"))
    at = track.set_index("position")[track.gene_id.values == "GPLUS"]
    assert out.context_score_p1.tolist() == at.loc[[1101, 1111], "donor_score"].tolist()


def test_row_order_and_index_are_preserved(positions, track):
    out, _ = enrich(positions, SCORE_MANIFEST, track=track)
    assert out.index.equals(positions.index)
    assert out.position.tolist() == positions.position.tolist()
    assert out.donor_score.tolist() == positions.donor_score.tolist()


def test_identifying_columns_come_first_and_chrom_is_renamed_beside_the_feature(positions, track):
    frame = positions.assign(chrom="NC_003070.9", tx=np.arange(len(positions)))
    m = manifest_from_names(["donor_score", "chrom"])
    out, report = enrich(frame, m, config=EnrichConfig(missing="impute", keep_columns=("tx",)))
    assert list(out.columns) == ["gene_id", "position", "chrom_name", "strand", "tx", "donor_score", "chrom"]
    assert report.imputed == {"chrom": len(frame)}
    out, _ = enrich(frame, manifest_from_names(["donor_score"]))
    assert list(out.columns) == ["gene_id", "position", "chrom", "strand", "donor_score"]


def test_missing_track_neighbour_is_an_error_or_imputed(positions, track, model_dir, tmp_path):
    holed = track[~((track.gene_id == "GPLUS") & (track.position == 1201))]
    rows = positions[(positions.gene_id == "GPLUS") & positions.position.between(1199, 1203)]
    n_affected = int(rows.position.isin([1199, 1200, 1202, 1203]).sum())
    if n_affected == 0:
        rows = track[(track.gene_id == "GPLUS") & (track.position == 1200)]
        n_affected = 1
    with pytest.raises(MissingFeatureError, match=r"absent from the track \(e.g. gene GPLUS: "
                                                  r"position\(s\) [0-9, ]*1201"):
        enrich(rows, SCORE_MANIFEST, track=holed)
    shutil.copy(model_dir / "feature_manifest.csv", tmp_path)
    (tmp_path / "feature_stats.json").write_text(json.dumps({"context_max": {"median": 0.25},
                                                            "donor_is_local_peak": {"median": 0.6}}))
    stats_manifest = load_manifest(tmp_path)
    m = manifest_from_names(["context_max", "donor_is_local_peak", "donor_score"],
                            stats=stats_manifest.stats)
    out, report = enrich(rows, m, track=holed, config=EnrichConfig(missing="impute"))
    assert report.imputed == {"context_max": n_affected, "donor_is_local_peak": n_affected}
    assert (out.context_max == 0.25).sum() >= n_affected
    assert out.donor_is_local_peak.dtype == np.int64


def test_no_context_at_all_names_the_inputs_that_would_help(positions):
    with pytest.raises(MissingFeatureError) as err:
        enrich(positions, SCORE_MANIFEST)
    assert "--track" in str(err.value) and "--missing impute" in str(err.value)
    with pytest.raises(MissingFeatureError, match="--genome"):
        check_inputs(load_manifest_124(), EnrichConfig(), has_context_columns=False, has_track=True,
                     has_genome=False, has_annotation=True)


def load_manifest_124():
    from .conftest import MODEL_DIR
    return load_manifest(MODEL_DIR)


def test_check_inputs_reports_what_will_be_imputed():
    missing = check_inputs(load_manifest_124(), EnrichConfig(missing="impute"), has_context_columns=False,
                           has_track=True, has_genome=False, has_annotation=True)
    assert set(missing) == {"gc_content", "sequence_length", "sequence_complexity"} | {
        n for n in load_manifest_124().names if n.startswith("3mer_")}


def test_gene_relative_positions_are_converted_on_both_strands():
    gene_table = pd.DataFrame({"gene_start": [100, 500], "gene_end": [200, 600], "strand": ["+", "-"]},
                              index=pd.Index(["P", "M"], name="gene_id"))
    genomic = SimpleNamespace(gene_table=gene_table, bases=None)
    frame = pd.DataFrame({"gene_id": ["P", "M", "M"], "position": [0, 0, 100], "donor_score": 0.1,
                          "acceptor_score": 0.1, "neither_score": 0.8})
    out, _ = enrich(frame, manifest_from_names(["donor_score"]), genomic=genomic,
                    config=EnrichConfig(coordinates="gene_relative"))
    assert out.position.tolist() == [100, 600, 500]
    with pytest.raises(InputError, match="outside their gene"):
        enrich(frame.assign(position=[0, 0, 101]), manifest_from_names(["donor_score"]),
               genomic=genomic, config=EnrichConfig(coordinates="gene_relative"))


def test_strand_conflict_is_an_error(positions, track):
    flipped = positions.assign(strand=np.where(positions.gene_id == "GPLUS", "-", positions.strand))
    with pytest.raises(InputError, match="strand conflict for gene GPLUS"):
        enrich(flipped, SCORE_MANIFEST, track=track)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["G1", "G2", "G3", "G4"]), min_size=1, max_size=8),
       st.lists(st.tuples(st.sampled_from(["G1", "G2", "G3", "G5"]),
                          st.sampled_from(["+", "-", ".", None])), max_size=12))
def test_a_rows_strand_from_the_track_is_its_genes_first_track_row(frame_genes, track_rows):
    """Strand from the track only (no strand column, no annotation): the first track row of the
    row's gene, unknown for a gene without track rows or with a missing or '.' strand there;
    tracks unsorted, with genes of no position and repeated genes."""
    frame = pd.DataFrame({"gene_id": pd.Series(frame_genes, dtype="str"), "position": 1,
                          "donor_score": 0.1, "acceptor_score": 0.1, "neither_score": 0.8})
    track = pd.DataFrame({"gene_id": pd.Series([g for g, _ in track_rows], dtype="str"),
                          "strand": pd.Series([s for _, s in track_rows], dtype="str"),
                          "position": np.arange(len(track_rows), dtype=np.int64)})
    inputs = PartitionInputs(frame, None, track, EnrichConfig())
    first: dict = {}
    for gene, strand in track_rows:
        first.setdefault(gene, strand)
    assert inputs.minus.tolist() == [first.get(g) == "-" for g in frame_genes]
    assert inputs.strand_known.tolist() == [first.get(g) in ("+", "-") for g in frame_genes]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 5), st.booleans())
def test_schema_and_dtypes_are_stable_whatever_the_partition(n_rows, with_strand):
    rng = np.random.default_rng(n_rows)
    p = rng.dirichlet([1, 1, 1], n_rows)
    frame = pd.DataFrame({"gene_id": pd.Series([f"g{i % 2}" for i in range(n_rows)], dtype="str"),
                          "position": np.arange(n_rows, dtype=np.int64) + 10,
                          "donor_score": p[:, 0], "acceptor_score": p[:, 1], "neither_score": p[:, 2]})
    for c in ("m2", "m1", "p1", "p2"):
        frame[f"context_score_{c}"] = rng.random(n_rows)
    if with_strand:
        frame["strand"] = pd.Series(["+"] * n_rows, dtype="str")
    m = load_manifest_124()
    out, _ = enrich(frame, m, config=EnrichConfig(missing="impute"))
    meta = output_meta(m, frame.dtypes, EnrichConfig(missing="impute"))
    pd.testing.assert_series_equal(out.dtypes, meta.dtypes)
    schema = output_schema(m, frame.dtypes, EnrichConfig(missing="impute"))
    assert schema.names == list(out.columns)
    table = pa.Table.from_pandas(out, schema=schema, preserve_index=False)  # no lossy cast needed
    assert table.schema.remove_metadata().equals(schema)
    assert table.num_rows == n_rows


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["+", "-", ".", "", None]), max_size=40),
       st.sampled_from(["str", "object", "category"]))
def test_strand_flags_match_a_row_by_row_reading(strands, dtype):
    """minus / known from a strand column, whatever its dtype, equal reading each row."""
    from dask_enrich.core import _minus_known

    minus, known = _minus_known(pd.Series(strands, dtype=dtype))
    assert minus.tolist() == [s == "-" for s in strands]
    assert known.tolist() == [s in ("+", "-") for s in strands]
    assert minus.dtype == known.dtype == np.bool_


def test_features_missing_for_every_row_are_filled_and_independent():
    """Without genome, annotation or track, the 124 manifest's genomic and k-mer features are the
    fill value on every row (the training median, or the documented constant), each column its
    own: writing into one leaves the others as they were."""
    from dask_enrich.core import impute_value

    m = load_manifest_124()
    rng = np.random.default_rng(3)
    p = rng.dirichlet([1, 1, 1], 50)
    frame = pd.DataFrame({"gene_id": pd.Series(["g"] * 50, dtype="str"),
                          "position": np.arange(50, dtype=np.int64) + 1, "donor_score": p[:, 0],
                          "acceptor_score": p[:, 1], "neither_score": p[:, 2]})
    out, report = enrich(frame, m, config=EnrichConfig(missing="impute"))
    whole = [n for n, count in report.imputed.items() if count == 50]
    kmers = [n for n in whole if n[0].isdigit()]
    assert len(kmers) == 64 and "gene_length" in whole
    for name in whole:
        want = np.full(50, impute_value(m, name), dtype=registry.lookup(name).dtype)
        np.testing.assert_array_equal(out[name].to_numpy(), want)
        assert out[name].dtype == want.dtype
    before = out[kmers[1]].to_numpy().copy()
    out.loc[0, kmers[0]] = 12345
    np.testing.assert_array_equal(out[kmers[1]].to_numpy(), before)
    assert out.loc[0, kmers[0]] == 12345
