"""Meta-model scoring: every supported model format gives the underlying model's own predict_proba,
in the descriptor's class order, on the manifest's columns; selective mode covers every position once.

Features come from dask_enrich.core.enrich over a synthetic per-nucleotide track laid on real genes
of the bundled Arabidopsis slice (both strands), with the 124-feature demo manifest.
"""
from __future__ import annotations

import json
import pickle
import shutil
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_enrich import scoring
from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich
from dask_enrich.errors import ConfigError, InputError, ManifestError
from dask_enrich.manifest import load_manifest
from dask_enrich.scoring import (DEFAULT_CLASSES, META_COLUMNS, load_model, load_model_cached,
                                 score_partition, selective_meta, selective_partition,
                                 selective_schema, selective_scores, selective_table)

from .conftest import MODEL_DIR, SLICE_FASTA, SLICE_GTF

xgb = pytest.importorskip("xgboost")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
sklearn_lm = pytest.importorskip("sklearn.linear_model")
skops_io = pytest.importorskip("skops.io")
joblib = pytest.importorskip("joblib")

GENES = ["AT1G01010", "AT1G01020", "AT1G01090", "AT1G01110"]  # +, -, -, + strand genes of the slice


# --- fixtures: real genes, synthetic track, real features ------------------------------------------
@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from dask_enrich.genome.cache import build_cache

    work = tmp_path_factory.mktemp("scoring_cache")
    fasta = work / SLICE_FASTA.name
    for suffix in ("", ".fai", ".gzi"):
        src = Path(str(SLICE_FASTA) + suffix)
        if src.exists():
            (work / (SLICE_FASTA.name + suffix)).symlink_to(src)
    return build_cache(fasta, SLICE_GTF, work / "cache")


@pytest.fixture(scope="module")
def track(cache):
    """A per-nucleotide track over the whole span of real genes, with a spike at each annotated site."""
    rng = np.random.default_rng(7)
    genes = cache.gene_table.loc[GENES]
    parts = []
    for gene_id, row in genes.iterrows():
        pos = np.arange(row.gene_start, row.gene_end + 1)
        p = rng.dirichlet([0.2, 0.2, 4.0], len(pos))
        parts.append(pd.DataFrame({"gene_id": gene_id, "chrom": row.seqname, "strand": row.strand,
                                   "position": pos, "donor_score": p[:, 0].astype(np.float32),
                                   "acceptor_score": p[:, 1].astype(np.float32),
                                   "neither_score": p[:, 2].astype(np.float32)}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(MODEL_DIR)


@pytest.fixture(scope="module")
def uncertain(track):
    top = np.maximum(track.donor_score, track.acceptor_score).to_numpy()
    return (top >= 0.02) & (top < 0.8)


@pytest.fixture(scope="module")
def features(track, uncertain, cache, manifest):
    rows = track[uncertain]
    out, report = enrich(rows, manifest, genomic=cache, track=track)
    assert not report.imputed
    return out


@pytest.fixture(scope="module")
def labels(features):
    """Labels with some signal (the larger base score), in DEFAULT_CLASSES coding."""
    d, a = features.donor_score.to_numpy(), features.acceptor_score.to_numpy()
    y = np.where(d > a, 1, 2)
    y[np.maximum(d, a) < 0.1] = 0
    return y


def model_dir(tmp_path: Path, descriptor: dict, files: dict[str, object] | None = None) -> Path:
    """A model directory: the demo manifest, ``model.json`` and model files written by callables."""
    out = tmp_path / "model"
    out.mkdir()
    shutil.copy(MODEL_DIR / "feature_manifest.csv", out / "feature_manifest.csv")
    (out / "model.json").write_text(json.dumps(descriptor))
    for name, write in (files or {}).items():
        write(out / name)
    return out


def X_of(features, manifest):
    return features[list(manifest.names)]


@pytest.fixture(scope="module")
def xgb_clf(features, labels, manifest):
    clf = xgb.XGBClassifier(n_estimators=6, max_depth=3, learning_rate=0.5, n_jobs=1)
    return clf.fit(X_of(features, manifest), labels)


# --- XGBoost ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["ubj", "json"])
def test_xgboost_multiclass_equals_predict_proba(tmp_path, xgb_clf, features, manifest, suffix):
    d = model_dir(tmp_path, {"format": "xgboost", "path": f"m.{suffix}"},
                  {f"m.{suffix}": lambda p: xgb_clf.save_model(p)})
    got = load_model(d).predict(features)
    want = xgb_clf.predict_proba(X_of(features, manifest))
    assert list(got.columns) == list(META_COLUMNS)
    assert (got.dtypes == np.float64).all()
    assert got.index.equals(features.index)
    # default class order neither, donor, acceptor = label codes 0, 1, 2
    np.testing.assert_allclose(got.neither_meta, want[:, 0], rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.donor_meta, want[:, 1], rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.acceptor_meta, want[:, 2], rtol=0, atol=1e-7)


def test_declared_class_order_permutes_columns(tmp_path, xgb_clf, features, manifest):
    order = ["donor", "acceptor", "neither"]  # column 0 of the model now *means* donor
    d = model_dir(tmp_path, {"format": "xgboost", "path": "m.ubj", "classes": order},
                  {"m.ubj": lambda p: xgb_clf.save_model(p)})
    got = load_model(d).predict(features)
    want = xgb_clf.predict_proba(X_of(features, manifest))
    for j, cls in enumerate(order):
        np.testing.assert_allclose(got[f"{cls}_meta"], want[:, j], rtol=0, atol=1e-7)


def test_xgboost_one_vs_rest_normalised(tmp_path, features, labels, manifest):
    X = X_of(features, manifest)
    clfs = [xgb.XGBClassifier(n_estimators=4, max_depth=2, n_jobs=1).fit(X, (labels == k).astype(int))
            for k in range(3)]
    files = {f"c{k}.json": (lambda p, c=c: c.save_model(p)) for k, c in enumerate(clfs)}
    d = model_dir(tmp_path, {"format": "xgboost-ovr", "paths": ["c0.json", "c1.json", "c2.json"]}, files)
    got = load_model(d).predict(features)
    raw = np.column_stack([c.predict_proba(X)[:, 1] for c in clfs]).astype(np.float64)
    want = raw / raw.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got.neither_meta, want[:, 0], atol=1e-7)
    np.testing.assert_allclose(got.donor_meta, want[:, 1], atol=1e-7)
    np.testing.assert_allclose(got.acceptor_meta, want[:, 2], atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)


def test_manifest_columns_in_manifest_order(tmp_path, xgb_clf, features, manifest):
    d = model_dir(tmp_path, {"format": "xgboost", "path": "m.ubj"}, {"m.ubj": lambda p: xgb_clf.save_model(p)})
    shuffled = features[features.columns[::-1]].copy()
    shuffled["unrelated"] = 1.0
    np.testing.assert_array_equal(load_model(d).predict(shuffled), load_model(d).predict(features))
    with pytest.raises(InputError, match="gc_content"):
        load_model(d).predict(features.drop(columns=["gc_content"]))


def test_model_trained_on_other_order_is_refused(tmp_path, features, labels, manifest):
    X = X_of(features, manifest)
    X = X[list(X.columns[1:]) + [X.columns[0]]]
    clf = xgb.XGBClassifier(n_estimators=2, max_depth=2, n_jobs=1).fit(X, labels)
    d = model_dir(tmp_path, {"format": "xgboost", "path": "m.ubj"}, {"m.ubj": lambda p: clf.save_model(p)})
    with pytest.raises(ManifestError, match="another order"):
        load_model(d)


# --- scikit-learn: skops, joblib, pickle ---------------------------------------------------------
@pytest.fixture(scope="module")
def logreg(features, labels, manifest):
    train = slice(0, 400)  # a small fit is enough: the test compares predictions, not quality
    return sklearn_lm.LogisticRegression(max_iter=30).fit(X_of(features, manifest).iloc[train], labels[train])


def test_skops_logistic_regression(tmp_path, logreg, features, manifest):
    d = model_dir(tmp_path, {"format": "skops", "path": "m.skops"},
                  {"m.skops": lambda p: skops_io.dump(logreg, p)})
    got = load_model(d).predict(features)
    want = logreg.predict_proba(X_of(features, manifest))
    np.testing.assert_allclose(got[["neither_meta", "donor_meta", "acceptor_meta"]].to_numpy(), want,
                               rtol=1e-12, atol=1e-15)


def test_skops_allow_listed_tree_model_loads(tmp_path, features, labels, manifest):
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = X_of(features, manifest)
    clf = HistGradientBoostingClassifier(max_iter=2, max_depth=2).fit(X.iloc[:400], labels[:400])
    d = model_dir(tmp_path, {"format": "skops", "path": "m.skops"}, {"m.skops": lambda p: skops_io.dump(clf, p)})
    got = load_model(d).predict(features)
    np.testing.assert_allclose(got[["neither_meta", "donor_meta", "acceptor_meta"]].to_numpy(),
                               clf.predict_proba(X), rtol=1e-12)


class CustomProba:
    """A hand-made estimator: a type skops does not know, so loading it must need trust."""

    def __init__(self, weights=None):
        self.weights = weights

    def predict_proba(self, X):
        z = np.asarray(X, dtype=np.float64) @ self.weights
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def softmax_reference(X: pd.DataFrame, W: np.ndarray) -> np.ndarray:
    """Row-by-row softmax of X @ W (independent of CustomProba)."""
    out = []
    for row in X.to_numpy(dtype=np.float64):
        z = [sum(row[i] * W[i, j] for i in range(len(row))) for j in range(W.shape[1])]
        m = max(z)
        e = [np.exp(v - m) for v in z]
        out.append([v / sum(e) for v in e])
    return np.array(out)


@pytest.fixture(scope="module")
def weights(manifest):
    return np.random.default_rng(3).normal(scale=1e-3, size=(len(manifest), 3))


def test_skops_unknown_type_refused_then_trusted(tmp_path, weights, features, manifest):
    d = model_dir(tmp_path, {"format": "skops", "path": "m.skops"},
                  {"m.skops": lambda p: skops_io.dump(CustomProba(weights), p)})
    with pytest.raises(ConfigError, match=r"CustomProba.*--trust-model"):
        load_model(d)
    got = load_model(d, trust_model=True).predict(features.iloc[:50])
    want = softmax_reference(X_of(features.iloc[:50], manifest), weights)
    np.testing.assert_allclose(got[["neither_meta", "donor_meta", "acceptor_meta"]].to_numpy(), want,
                               rtol=1e-9)


@pytest.mark.parametrize("fmt", ["joblib", "pickle"])
def test_pickle_formats_need_trust(tmp_path, fmt, logreg, features, manifest):
    def write(p):
        if fmt == "joblib":
            joblib.dump(logreg, p)
        else:
            p.write_bytes(pickle.dumps(logreg))

    d = model_dir(tmp_path, {"format": fmt, "path": "m.bin"}, {"m.bin": write})
    with pytest.raises(ConfigError, match=r"runs code.*--trust-model") as err:
        load_model(d)
    assert err.value.exit_code == 3
    got = load_model(d, trust_model=True).predict(features)
    np.testing.assert_allclose(got[["neither_meta", "donor_meta", "acceptor_meta"]].to_numpy(),
                               logreg.predict_proba(X_of(features, manifest)), rtol=1e-12, atol=1e-15)


def test_sklearn_string_classes_must_agree_with_descriptor(tmp_path, features, labels, manifest):
    names = np.array(DEFAULT_CLASSES)[labels]
    clf = sklearn_lm.LogisticRegression(max_iter=30).fit(X_of(features, manifest).iloc[:400], names[:400])
    # sklearn sorts string classes: acceptor, donor, neither
    bad = model_dir(tmp_path, {"format": "skops", "path": "m.skops"},
                    {"m.skops": lambda p: skops_io.dump(clf, p)})
    with pytest.raises(ConfigError, match="contradict"):
        load_model(bad)
    desc = json.loads((bad / "model.json").read_text()) | {"classes": ["acceptor", "donor", "neither"]}
    (bad / "model.json").write_text(json.dumps(desc))
    got = load_model(bad).predict(features)
    want = clf.predict_proba(X_of(features, manifest))
    np.testing.assert_allclose(got.acceptor_meta, want[:, 0], rtol=1e-12)
    np.testing.assert_allclose(got.neither_meta, want[:, 2], rtol=1e-12)


# --- entry points --------------------------------------------------------------------------------
def make_entry_model(model_dir: Path) -> CustomProba:
    """Entry-point factory used by the tests: weights read from the model directory."""
    return CustomProba(np.load(model_dir / "weights.npy"))


def test_entry_point_object_reference_needs_trust(tmp_path, weights, features, manifest):
    target = f"{__name__}:make_entry_model"
    d = model_dir(tmp_path, {"format": "entry_point", "entry_point": target},
                  {"weights.npy": lambda p: np.save(p, weights)})
    with pytest.raises(ConfigError, match="--trust-model"):
        load_model(d)
    got = load_model(d, trust_model=True).predict(features.iloc[:40])
    want = softmax_reference(X_of(features.iloc[:40], manifest), weights)
    np.testing.assert_allclose(got[["neither_meta", "donor_meta", "acceptor_meta"]].to_numpy(), want, rtol=1e-9)


def test_declared_entry_point_loads_without_trust(tmp_path, monkeypatch, weights, features, manifest):
    declared = [EntryPoint("demo-softmax", f"{__name__}:make_entry_model", scoring.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(scoring, "entry_points", lambda group: declared if group == scoring.ENTRY_POINT_GROUP else [])
    d = model_dir(tmp_path, {"format": "entry_point", "entry_point": "demo-softmax",
                             "classes": ["acceptor", "neither", "donor"]},
                  {"weights.npy": lambda p: np.save(p, weights)})
    got = load_model(d).predict(features.iloc[:30])
    want = softmax_reference(X_of(features.iloc[:30], manifest), weights)
    np.testing.assert_allclose(got[["acceptor_meta", "neither_meta", "donor_meta"]].to_numpy(), want, rtol=1e-9)


def test_bad_output_of_custom_model(tmp_path, weights, features):
    d = model_dir(tmp_path, {"format": "entry_point", "entry_point": f"{__name__}:make_entry_model"},
                  {"weights.npy": lambda p: np.save(p, weights[:, :2])})
    with pytest.raises(InputError, match=r"shape .*\(40, 3\)"):
        load_model(d, trust_model=True).predict(features.iloc[:40])


# --- descriptor, extras, caching -----------------------------------------------------------------
@pytest.mark.parametrize("descriptor, message", [
    (None, "no model.json"),
    ({"format": "onnx", "path": "m"}, "'format' must be one of"),
    ({"format": "xgboost", "path": "absent.ubj"}, "not found"),
    ({"format": "xgboost-ovr", "path": "m.ubj"}, "needs 3 model file"),
    ({"format": "xgboost", "path": "m.ubj", "classes": ["donor", "donor", "neither"]}, "'classes'"),
    ({"format": "entry_point"}, "needs an 'entry_point'"),
    ({"format": "xgboost", "path": "m.ubj", "clases": ["donor", "acceptor", "neither"]}, "unknown key"),
])
def test_descriptor_errors(tmp_path, descriptor, message):
    d = model_dir(tmp_path, descriptor or {}, {"m.ubj": lambda p: p.write_bytes(b"x")})
    if descriptor is None:
        (d / "model.json").unlink()
    with pytest.raises(ConfigError, match=message):
        load_model(d)


def test_missing_extra_named(tmp_path, monkeypatch, xgb_clf):
    d = model_dir(tmp_path, {"format": "xgboost", "path": "m.ubj"}, {"m.ubj": lambda p: xgb_clf.save_model(p)})
    monkeypatch.setitem(sys.modules, "xgboost", None)  # import xgboost -> ImportError
    with pytest.raises(ConfigError, match=r"dask-enrich\[models\]"):
        load_model(d)


def test_load_model_cached_once_per_process_and_reloaded_on_change(tmp_path, xgb_clf, features):
    scoring.clear_model_cache()
    d = model_dir(tmp_path, {"format": "xgboost", "path": "m.ubj"}, {"m.ubj": lambda p: xgb_clf.save_model(p)})
    first = load_model_cached(d)
    assert load_model_cached(d) is first
    assert load_model_cached(d, trust_model=True) is not first
    import os
    st = (d / "m.ubj").stat()
    os.utime(d / "m.ubj", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_model_cached(d) is not first


def test_partitions_score_like_the_whole(tmp_path, xgb_clf, features, manifest):
    """Scoring partition by partition (any split) gives the rows' scores of the whole frame."""
    d = model_dir(tmp_path, {"format": "xgboost", "path": "m.ubj"}, {"m.ubj": lambda p: xgb_clf.save_model(p)})
    model = load_model(d)
    whole = xgb_clf.predict_proba(X_of(features, manifest))
    bounds = np.linspace(0, len(features), 6).astype(int)
    parts = [score_partition(features.iloc[lo:hi], model) for lo, hi in zip(bounds[:-1], bounds[1:])]
    got = pd.concat(parts)
    assert got.index.equals(features.index)
    assert list(got.columns[:4]) == ["gene_id", "position", "chrom_name", "strand"]  # chrom is a feature
    assert "gc_content" not in got.columns
    np.testing.assert_allclose(got.donor_meta, whole[:, 1], atol=1e-7)
    kept = score_partition(features, model, keep_features=True)
    assert list(kept.columns) == list(features.columns) + list(META_COLUMNS)


# --- selective mode --------------------------------------------------------------------------------
def slow_selective(track: pd.DataFrame, mask: np.ndarray, meta: pd.DataFrame) -> dict:
    """Reference: (gene_id, position) -> (donor, acceptor, neither, rescored), row by row."""
    out, j = {}, 0
    for i, row in enumerate(track.itertuples(index=False)):
        if mask[i]:
            m = meta.iloc[j]
            out[(row.gene_id, row.position)] = (m.donor_meta, m.acceptor_meta, m.neither_meta, True)
            j += 1
        else:
            out[(row.gene_id, row.position)] = (float(row.donor_score), float(row.acceptor_score),
                                                float(row.neither_score), False)
    return out


def check_selective(track, mask, meta, got):
    assert len(got) == len(track) and got.index.equals(track.index)
    keys = list(zip(got.gene_id, got.position))
    assert len(set(keys)) == len(keys) == len(set(zip(track.gene_id, track.position)))
    ref = slow_selective(track, mask, meta)
    for key, d, a, n, r in zip(keys, got.donor_meta, got.acceptor_meta, got.neither_meta, got.rescored):
        assert (d, a, n, r) == ref[key]
    np.testing.assert_array_equal(got.donor_score, track.donor_score)  # base scores kept as they are


@settings(max_examples=30, deadline=None)
@given(st.lists(st.booleans(), min_size=0, max_size=60), st.integers(0, 2**31))
def test_selective_scores_cover_every_position_once(flags, seed):
    rng = np.random.default_rng(seed)
    n = len(flags)
    p = rng.dirichlet([1, 1, 1], n).astype(np.float32) if n else np.zeros((0, 3), np.float32)
    track = pd.DataFrame({"gene_id": np.where(np.arange(n) < n // 2, "G1", "G2"), "strand": "+",
                          "position": np.arange(n) + 100, "donor_score": p[:, 0],
                          "acceptor_score": p[:, 1], "neither_score": p[:, 2]},
                         index=rng.permutation(n) + 7)
    mask = np.array(flags, dtype=bool)
    q = rng.dirichlet([1, 1, 1], int(mask.sum()))
    meta = pd.DataFrame(q, columns=["donor_meta", "acceptor_meta", "neither_meta"])
    got = selective_scores(track, mask, meta)
    check_selective(track, mask, meta, got)
    assert got.rescored.sum() == mask.sum()
    assert dict(got.dtypes) == dict(selective_meta(dict(track.dtypes)).dtypes)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.booleans(), min_size=0, max_size=60), st.integers(0, 2**31), st.booleans())
def test_selective_table_is_selective_scores_as_written(flags, seed, nulls):
    """The Arrow path of a scanned track (dictionary text, float32 scores, a null score) writes
    what the pandas path writes: the rows as a read normalises them, through ``writer.to_table``."""
    from dask_enrich.engine.writer import to_table
    from dask_enrich.io import normalise_frame, text_decoded

    rng = np.random.default_rng(seed)
    n = len(flags)
    p = rng.dirichlet([1, 1, 1], n).astype(np.float32) if n else np.zeros((0, 3), np.float32)
    donor = pa.array(p[:, 0], mask=(np.arange(n) == n // 3) if nulls else None)
    track = pa.table({"gene_id": pa.array(np.where(np.arange(n) < n // 2, "G1", "G2")).dictionary_encode(),
                      "chrom": pa.array(["1"] * n).dictionary_encode(),
                      "strand": pa.array(rng.choice(["+", "-"], n)).dictionary_encode(),
                      "position": pa.array(np.arange(n, dtype=np.int64) + 100),
                      "donor_score": donor, "acceptor_score": p[:, 1], "neither_score": p[:, 2]})
    mask = np.array(flags, dtype=bool)
    meta = pd.DataFrame(rng.dirichlet([1, 1, 1], int(mask.sum())),
                        columns=["donor_meta", "acceptor_meta", "neither_meta"])
    frame = normalise_frame(text_decoded(track).to_pandas(), "track")
    schema = selective_schema(pa.Schema.from_pandas(frame, preserve_index=False))
    got = selective_table(track, mask, meta).cast(schema)
    want = to_table(selective_scores(frame, mask, meta), schema)
    assert got.schema.equals(schema)
    pd.testing.assert_frame_equal(got.to_pandas(), want.to_pandas(), check_exact=True)
    for name in got.column_names:  # NaN where a score was null, as pandas has it (not a null)
        assert got.column(name).null_count == want.column(name).null_count == 0
    meta["position"] = track.column("position").filter(pa.array(mask)).to_numpy() + 1
    if mask.any():
        with pytest.raises(InputError, match="position differs"):
            selective_table(track, mask, meta)


def test_selective_scores_rejects_misaligned_meta(track, uncertain):
    meta = pd.DataFrame({"donor_meta": 0.2, "acceptor_meta": 0.3, "neither_meta": 0.5,
                         "gene_id": track.gene_id[uncertain].to_numpy(),
                         "position": track.position[uncertain].to_numpy() + 1}, )
    with pytest.raises(InputError, match="position differs"):
        selective_scores(track, uncertain, meta)
    with pytest.raises(InputError, match="meta-score rows"):
        selective_scores(track, uncertain, meta.iloc[1:])


def test_selective_partition_end_to_end(tmp_path, xgb_clf, track, uncertain, cache, manifest):
    d = model_dir(tmp_path, {"format": "xgboost", "path": "m.ubj"}, {"m.ubj": lambda p: xgb_clf.save_model(p)})
    model = load_model(d)
    parts = []
    for _, gene_part in track.groupby("gene_id", sort=False):  # one partition per gene
        mask = uncertain[gene_part.index]
        got, report = selective_partition(gene_part, mask, model, genomic=cache, config=EnrichConfig())
        assert report.rows == mask.sum() and not report.imputed
        parts.append(got)
    got = pd.concat(parts).loc[track.index]
    enriched, _ = enrich(track[uncertain], manifest, genomic=cache, track=track)
    want = xgb_clf.predict_proba(X_of(enriched, manifest))
    meta = pd.DataFrame({"neither_meta": want[:, 0], "donor_meta": want[:, 1], "acceptor_meta": want[:, 2]})
    check_selective_close(track, uncertain, meta, got)


def check_selective_close(track, mask, meta, got):
    assert len(got) == len(track) and not got.duplicated(["gene_id", "position"]).any()
    np.testing.assert_array_equal(got.rescored, mask)
    for c, base in zip(META_COLUMNS, scoring.BASE_COLUMNS):
        np.testing.assert_allclose(got[c][mask], meta[c], atol=1e-7)
        np.testing.assert_array_equal(got[c][~mask], track[base][~mask].astype(np.float64))


def select_band(part: pd.DataFrame) -> np.ndarray:
    top = np.maximum(part.donor_score, part.acceptor_score).to_numpy()
    return (top >= 0.02) & (top < 0.8)


# --- across worker processes -----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.distributed
def test_scores_equal_on_dask_worker_processes(tmp_path, xgb_clf, features, manifest, track, uncertain, cache):
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    d = model_dir(tmp_path, {"format": "xgboost", "path": "m.ubj"}, {"m.ubj": lambda p: xgb_clf.save_model(p)})
    meta = scoring.scored_meta(features.iloc[:0], load_model(d))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        frame = dd.from_pandas(features, npartitions=4)
        got = frame.map_partitions(lambda part: score_partition(part, load_model_cached(d)),
                                   meta=meta).compute()
        # selective mode: the full track, one partition per gene group (genes never cut)
        import dask

        genes = track.gene_id.unique()
        parts = [dask.delayed(lambda g: track[track.gene_id.isin(g)])(list(genes[i::2])) for i in range(2)]
        full = dd.from_delayed(parts, meta=track.iloc[:0], verify_meta=False)
        sel = full.map_partitions(
            lambda part: selective_partition(
                part, select_band(part), load_model_cached(d, manifest=manifest), genomic=cache)[0],
            meta=selective_meta(track.dtypes.to_dict())).compute()
        loads = client.run(lambda: len(scoring._CACHE))
    assert got.index.equals(features.index)
    sel = sel.loc[track.index]  # raises if a row is missing; duplicates are caught below
    enriched, _ = enrich(track[uncertain], manifest, genomic=cache, track=track)
    p = xgb_clf.predict_proba(X_of(enriched, manifest))
    check_selective_close(track, uncertain, pd.DataFrame(
        {"neither_meta": p[:, 0], "donor_meta": p[:, 1], "acceptor_meta": p[:, 2]}), sel)
    want = xgb_clf.predict_proba(X_of(features, manifest))
    np.testing.assert_allclose(got[["neither_meta", "donor_meta", "acceptor_meta"]].to_numpy(), want, atol=1e-7)
    assert all(v <= 2 for v in loads.values())  # one model per (directory, manifest) key and process


# --- the bundled demo model ------------------------------------------------------------------------
def test_bundled_demo_model_scores_the_demo_track(cache, manifest):
    """The committed demo model loads through its descriptor and gives XGBoost's own probabilities
    on real features of the demo track; its held-out genes were not trained on."""
    descriptor = json.loads((MODEL_DIR / "model.json").read_text())
    assert descriptor["format"] == "xgboost" and descriptor["classes"] == list(DEFAULT_CLASSES)
    training = descriptor["training"]
    assert not set(training["training_genes"]) & set(training["held_out_genes"])
    assert (MODEL_DIR / descriptor["path"]).stat().st_size < 1_000_000
    track = pd.read_parquet(MODEL_DIR.parent / "demo_track.parquet")
    assert set(training["training_genes"]) | set(training["held_out_genes"]) == set(track.gene_id)
    top = np.maximum(track.donor_score, track.acceptor_score).to_numpy()
    rows = track[(top >= 0.02) & (top < 0.8)]
    enriched, report = enrich(rows, manifest, genomic=cache, track=track)
    assert not report.imputed
    got = load_model(MODEL_DIR).predict(enriched)
    booster = xgb.Booster(model_file=str(MODEL_DIR / descriptor["path"]))
    assert booster.feature_names == list(manifest.names)
    want = booster.predict(xgb.DMatrix(X_of(enriched, manifest)))
    np.testing.assert_allclose(got[["neither_meta", "donor_meta", "acceptor_meta"]].to_numpy(), want, atol=1e-7)


def test_output_schemas_and_report_attrs(tmp_path, xgb_clf, features, track, uncertain, manifest):
    import pyarrow as pa

    from dask_enrich.core import output_meta, output_schema

    d = model_dir(tmp_path, {"format": "xgboost", "path": "m.ubj"}, {"m.ubj": lambda p: xgb_clf.save_model(p)})
    model = load_model(d, manifest=manifest)  # the run's manifest, as the engine passes it
    assert model.manifest is manifest
    rows = track[uncertain]
    part = features.copy()
    part.attrs["report"] = {"rows": len(part)}
    for keep in (False, True):
        out = score_partition(part, model, keep_features=keep)
        assert out.attrs["report"] == {"rows": len(part)}
        meta = scoring.scored_meta(output_meta(manifest, rows.dtypes.to_dict()), model, keep_features=keep)
        pd.testing.assert_series_equal(out.dtypes, meta.dtypes)
        schema = scoring.scored_schema(output_schema(manifest, rows.dtypes.to_dict()), model, keep_features=keep)
        assert schema.names == list(out.columns)
        table = pa.Table.from_pandas(out, schema=schema, preserve_index=False)
        assert table.schema.remove_metadata().equals(schema)
    sel = selective_scores(track, uncertain, model.predict(features))
    track_schema = pa.Schema.from_pandas(track, preserve_index=False)
    schema = scoring.selective_schema(track_schema)
    assert schema.names == list(sel.columns)
    assert pa.Table.from_pandas(sel, schema=schema, preserve_index=False).schema.remove_metadata().equals(schema)
    pd.testing.assert_series_equal(sel.dtypes, selective_meta(track.dtypes.to_dict()).dtypes)


def test_model_failure_is_a_run_failure_naming_the_model(tmp_path, logreg, features):
    from dask_enrich.errors import RunFailure

    d = model_dir(tmp_path, {"format": "skops", "path": "m.skops"}, {"m.skops": lambda p: skops_io.dump(logreg, p)})
    holed = features.copy()
    holed.loc[holed.index[3], "gc_content"] = np.nan  # LogisticRegression refuses NaN
    with pytest.raises(RunFailure, match=r"model .*\(skops\) failed on"):
        load_model(d).predict(holed)
