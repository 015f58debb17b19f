"""Meta-model scoring: load a trained model from a model directory and apply it to enriched rows.

Pure pandas/numpy (no Dask). The engine calls :func:`load_model_cached` once per worker process and
:meth:`MetaModel.predict` (or :func:`score_partition` / :func:`selective_partition`) once per
partition, right after :func:`dask_enrich.core.enrich`.

The model directory holds the feature manifest (``feature_manifest.csv`` ...), optionally
``feature_stats.json``, the model file(s) and a descriptor ``model.json``::

    {"format": "xgboost",                  # see FORMATS below
     "path": "model.ubj",                  # or "paths": [...] (xgboost-ovr: one per class, in
                                           #   the order of "classes")
     "classes": ["neither", "donor", "acceptor"],   # meaning of predict_proba's columns;
                                           #   this order is the default when omitted
     "entry_point": "pkg.mod:factory"}     # format "entry_point" only

Other keys are refused (a misspelt ``classes`` must not fall back to the default order), except the
informational ones in :data:`INFO_KEYS` (``name``, ``description``, ``made_by``, ``training``, ...).

Formats:

``xgboost``
    One multiclass booster (``multi:softprob``, 3 classes) in XGBoost's own JSON or UBJ format.
``xgboost-ovr``
    Three binary one-vs-rest boosters (``binary:logistic``), ``paths`` in class order. Each gives
    p_k = P(class k vs rest); the meta scores are p_k / (p_0 + p_1 + p_2), so that they sum to 1
    like a multiclass model's (rows where all three are 0 raise an error rather than invent values).
``skops``
    A scikit-learn estimator saved with ``skops.io.dump``. Loaded with ``skops.io.load`` after
    checking ``skops.io.get_untrusted_types`` against :data:`SKOPS_ALLOWED_TYPES`; any other
    type is refused (ConfigError naming it) unless ``trust_model=True``.
``joblib`` / ``pickle``
    A scikit-learn (or any) estimator saved with joblib or pickle. Loading a pickle runs code from
    the file, so it is refused unless ``trust_model=True`` (``--trust-model`` on the command line).
``entry_point``
    A Python factory ``factory(model_dir: pathlib.Path) -> object with predict_proba(X)``, where X
    is a DataFrame of the manifest's features in manifest order. ``entry_point`` is either the name
    of an entry point that an installed package declares in the group ``dask_enrich.models``, or
    ``"package.module:factory"``; the latter imports code named by the model directory, so unless
    an installed package declares that same target it needs ``trust_model=True``.

Every format must give, per row, three probabilities in the descriptor's class order; they are
returned as ``donor_meta``, ``acceptor_meta``, ``neither_meta`` (float64). XGBoost boosters are
run single-threaded (``nthread=1``): Dask already runs one task per worker thread.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import pickle
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from .columns import BASE_SCORES, REQUIRED
from .errors import ConfigError, EnrichError, InputError, ManifestError, RunFailure
from .manifest import Manifest, load_manifest

DESCRIPTOR = "model.json"
FORMATS = ("xgboost", "xgboost-ovr", "skops", "joblib", "pickle", "entry_point")
DEFAULT_CLASSES = ("neither", "donor", "acceptor")
#: Keys of model.json that the loader reads, and keys it accepts as information only.
DESCRIPTOR_KEYS = frozenset({"format", "path", "paths", "classes", "entry_point"})
INFO_KEYS = frozenset({"name", "description", "version", "made_by", "training", "notes"})
#: Output columns of the meta scores, in output order.
META_COLUMNS = ("donor_meta", "acceptor_meta", "neither_meta")
#: Flag column of selective mode: True where the meta-model re-scored the position.
RESCORED = "rescored"
BASE_COLUMNS = BASE_SCORES  # the base scores of columns.py, kept importable
ENTRY_POINT_GROUP = "dask_enrich.models"
EXTRA_HINT = "install the optional extra: pip install 'dask-enrich[models]'"
#: Types a skops file may contain beyond skops' own default trusted set (scikit-learn estimators
#: and numpy/scipy containers). Anything else is refused without ``trust_model``.
SKOPS_ALLOWED_TYPES = frozenset({
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfBinomialLoss",
    "numpy.dtype",
    "numpy.ndarray",
    "collections.OrderedDict",
})
#: Tolerance on the row sums of predict_proba's output.
SUM_TOLERANCE = 1e-4


# --- descriptor ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelDescriptor:
    """The parsed ``model.json`` of a model directory."""

    format: str
    paths: tuple[Path, ...]
    classes: tuple[str, ...] = DEFAULT_CLASSES
    entry_point: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def read_descriptor(model_dir: str | Path) -> ModelDescriptor:
    """Parse and check ``model_dir/model.json`` (format, files, class order)."""
    model_dir = Path(model_dir)
    path = model_dir / DESCRIPTOR
    if not path.is_file():
        raise ConfigError(f"{model_dir}: no {DESCRIPTOR} model descriptor; it must name the format "
                          f"({', '.join(FORMATS)}) and the model file, e.g. "
                          '{"format": "xgboost", "path": "model.ubj"}')
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    unknown = sorted(set(data) - DESCRIPTOR_KEYS - INFO_KEYS)
    if unknown:  # a misspelt "classes" must not silently fall back to the default order
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(DESCRIPTOR_KEYS))} (and, for information only, "
                          f"{', '.join(sorted(INFO_KEYS))})")
    fmt = data.get("format")
    if fmt not in FORMATS:
        raise ConfigError(f"{path}: 'format' must be one of {', '.join(FORMATS)}, not {fmt!r}")
    classes = data.get("classes", list(DEFAULT_CLASSES))
    if (not isinstance(classes, list) or sorted(map(str, classes)) != sorted(DEFAULT_CLASSES)
            or len(classes) != 3):
        raise ConfigError(f"{path}: 'classes' must list each of {', '.join(DEFAULT_CLASSES)} once "
                          f"(the meaning of the model's output columns, in order), not {classes!r}")
    if "path" in data and "paths" in data:
        raise ConfigError(f"{path}: give 'path' or 'paths', not both")
    names = data.get("paths", [data["path"]] if "path" in data else [])
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{path}: 'paths' must be a list of file names")
    entry = data.get("entry_point")
    if fmt == "entry_point":
        if not isinstance(entry, str) or not entry:
            raise ConfigError(f"{path}: format 'entry_point' needs an 'entry_point' "
                              "(an installed dask_enrich.models entry point or 'package.module:factory')")
    else:
        expected = 3 if fmt == "xgboost-ovr" else 1
        if len(names) != expected:
            raise ConfigError(f"{path}: format {fmt!r} needs {expected} model file(s) in "
                              f"{'paths' if expected > 1 else 'path'}, got {len(names)}")
    files = tuple(model_dir / n for n in names)
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise ConfigError(f"{path}: model file(s) not found: {', '.join(absent)}")
    return ModelDescriptor(fmt, files, tuple(map(str, classes)), entry, data)


# --- the model -----------------------------------------------------------------------------------
@dataclass
class MetaModel:
    """A loaded meta-model: ``predict(features)`` gives donor_meta, acceptor_meta, neither_meta.

    ``predict_proba(X)`` is the underlying model's own output (columns in ``descriptor.classes``
    order); ``manifest`` fixes which feature columns, in which order, form X.
    """

    model_dir: Path
    manifest: Manifest
    descriptor: ModelDescriptor
    predict_proba: Callable[[pd.DataFrame], np.ndarray] = field(repr=False)
    fingerprint: str = ""

    @property
    def classes(self) -> tuple[str, ...]:
        return self.descriptor.classes

    def feature_matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        """The manifest's columns of ``features``, in manifest order (missing ones: InputError)."""
        names = list(self.manifest.names)
        absent = [n for n in names if n not in features.columns]
        if absent:
            shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
            raise InputError(f"model {self.model_dir}: the feature frame lacks manifest column(s) {shown}")
        return features[names]

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """donor_meta, acceptor_meta, neither_meta (float64) for each row of ``features`` (index kept)."""
        X = self.feature_matrix(features)
        if len(X) == 0:
            proba = np.zeros((0, 3))
        else:
            try:
                proba = np.asarray(self.predict_proba(X), dtype=np.float64)
            except EnrichError:
                raise
            except Exception as exc:
                raise RunFailure(f"model {self.model_dir} ({self.descriptor.format}) failed on "
                                 f"{len(X)} row(s): {type(exc).__name__}: {exc}") from exc
            _check_proba(proba, len(X), self.model_dir)
        col = {c: i for i, c in enumerate(self.classes)}
        return pd.DataFrame({f"{c}_meta": proba[:, col[c]] for c in ("donor", "acceptor", "neither")},
                            index=features.index)

    def to_dict(self) -> dict[str, Any]:
        """What a run summary records about the model."""
        return {"model_dir": str(self.model_dir), "format": self.descriptor.format,
                "classes": list(self.classes), "features": len(self.manifest),
                "fingerprint": self.fingerprint}


def _check_proba(proba: np.ndarray, rows: int, model_dir: Path) -> None:
    if proba.ndim != 2 or proba.shape != (rows, 3):
        raise InputError(f"model {model_dir}: predict_proba returned shape {proba.shape}, "
                         f"expected ({rows}, 3) (three classes)")
    bad = ~np.isfinite(proba).all(axis=1) | (np.abs(proba.sum(axis=1) - 1.0) > SUM_TOLERANCE)
    if bad.any():
        rows_bad = np.flatnonzero(bad)
        raise InputError(f"model {model_dir}: {len(rows_bad)} row(s) of predict_proba are not "
                         f"probabilities summing to 1 (first rows {rows_bad[:5].tolist()})")


def load_model(model_dir: str | Path, *, trust_model: bool = False,
               manifest: Manifest | None = None) -> MetaModel:
    """Load the model of a model directory (descriptor, manifest, model file(s)); see module docs.

    ``manifest``: the run's already loaded manifest of this directory (the engine passes the one
    resolved on the client, so that plugin features need not be registered on the workers);
    default: read it from ``model_dir``.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"{model_dir}: model directory not found")
    descriptor = read_descriptor(model_dir)
    if manifest is None:
        manifest = load_manifest(model_dir)
    loader = _LOADERS[descriptor.format]
    proba = loader(descriptor, manifest, model_dir, trust_model)
    return MetaModel(model_dir, manifest, descriptor, proba, _fingerprint(model_dir, descriptor))


def _fingerprint(model_dir: Path, descriptor: ModelDescriptor) -> str:
    digest = hashlib.sha256()
    for path in (model_dir / DESCRIPTOR, *descriptor.paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


_CACHE: dict[tuple, tuple[tuple, MetaModel]] = {}
_CACHE_LOCK = threading.Lock()


def load_model_cached(model_dir: str | Path, trust_model: bool = False,
                      manifest: Manifest | None = None) -> MetaModel:
    """:func:`load_model`, memoised per process (one load per Dask worker); reloaded if a file of
    the model directory changed on disk (size or modification time)."""
    key = (str(Path(model_dir).resolve()), bool(trust_model), manifest.names if manifest else None)
    with _CACHE_LOCK:
        stamp = _stamp(Path(key[0]))
        hit = _CACHE.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        model = load_model(model_dir, trust_model=trust_model, manifest=manifest)
        _CACHE[key] = (_stamp(Path(key[0])), model)
        return model


def _stamp(model_dir: Path) -> tuple:
    out = []
    for path in sorted(model_dir.iterdir()) if model_dir.is_dir() else ():
        if path.is_file():
            st = path.stat()
            out.append((path.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def clear_model_cache() -> None:
    """Forget every memoised model (tests)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# --- loaders: each returns predict_proba(X: DataFrame) -> (n, 3) array in descriptor order --------
def _require(module: str, fmt: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"model format {fmt!r} needs the Python package {module.split('.')[0]!r}, "
                          f"which is not installed ({exc}); {EXTRA_HINT}") from None


def _load_xgboost(descriptor: ModelDescriptor, manifest: Manifest, model_dir: Path,
                  trust: bool) -> Callable[[pd.DataFrame], np.ndarray]:
    xgb = _require("xgboost", descriptor.format)
    boosters = []
    for path in descriptor.paths:
        booster = xgb.Booster()
        try:
            booster.load_model(str(path))
        except xgb.core.XGBoostError as exc:
            raise ConfigError(f"{path}: not an XGBoost model in JSON/UBJ format ({exc})") from None
        booster.set_param({"nthread": 1})
        _check_feature_names(path, booster.feature_names, booster.num_features(), manifest)
        boosters.append(booster)

    if descriptor.format == "xgboost":
        (booster,) = boosters

        def proba(X: pd.DataFrame) -> np.ndarray:
            out = booster.inplace_predict(_as_float(X), validate_features=False)
            if out.ndim != 2:
                raise InputError(f"{descriptor.paths[0]}: the booster gives {out.ndim}-d output; a "
                                 "multiclass (multi:softprob, 3 classes) model is needed for format "
                                 "'xgboost' (use 'xgboost-ovr' for three binary boosters)")
            return out
        return proba

    def proba_ovr(X: pd.DataFrame) -> np.ndarray:
        matrix = _as_float(X)
        cols = []
        for path, booster in zip(descriptor.paths, boosters):
            p = np.asarray(booster.inplace_predict(matrix, validate_features=False), dtype=np.float64)
            if p.ndim != 1:
                raise InputError(f"{path}: format 'xgboost-ovr' needs binary (binary:logistic) boosters")
            cols.append(p)
        p = np.column_stack(cols)
        total = p.sum(axis=1, keepdims=True)
        if (total <= 0).any():
            rows = np.flatnonzero(total[:, 0] <= 0)
            raise InputError(f"model {model_dir}: all three one-vs-rest boosters give 0 for "
                             f"{len(rows)} row(s) (first {rows[:5].tolist()}); cannot normalise")
        return p / total
    return proba_ovr


def _as_float(X: pd.DataFrame) -> np.ndarray:
    return X.to_numpy(dtype=np.float64, na_value=np.nan)


def _check_feature_names(path: Path, names: Any, count: int | None, manifest: Manifest) -> None:
    """The model's own feature names/count, when it records them, must be the manifest's."""
    if names is not None and len(names) and list(names) != list(manifest.names):
        names = [str(n) for n in names]
        if set(names) == set(manifest.names):
            i = next(i for i, (a, b) in enumerate(zip(names, manifest.names)) if a != b)
            detail = f"same features in another order (first difference at {i}: {names[i]} vs {manifest.names[i]})"
        else:
            extra = sorted(set(names) - set(manifest.names))[:5]
            lack = sorted(set(manifest.names) - set(names))[:5]
            detail = f"model-only {extra}, manifest-only {lack}"
        raise ManifestError(f"{path}: the model was trained on other features than the manifest "
                            f"{manifest.source} names: {detail}")
    if count is not None and count != len(manifest):
        raise ManifestError(f"{path}: the model expects {count} features, the manifest "
                            f"{manifest.source} names {len(manifest)}")


def _sklearn_proba(estimator: Any, path: Path, descriptor: ModelDescriptor, manifest: Manifest
                   ) -> Callable[[pd.DataFrame], np.ndarray]:
    if not hasattr(estimator, "predict_proba"):
        raise ConfigError(f"{path}: the loaded {type(estimator).__name__} has no predict_proba")
    names = getattr(estimator, "feature_names_in_", None)
    _check_feature_names(path, names, getattr(estimator, "n_features_in_", None), manifest)
    classes = getattr(estimator, "classes_", None)
    if classes is not None and all(isinstance(c, str) for c in classes):
        if [str(c) for c in classes] != list(descriptor.classes):
            raise ConfigError(f"{path}: the estimator's classes_ {list(classes)} contradict the class "
                              f"order of {DESCRIPTOR} {list(descriptor.classes)}")
    if names is not None:
        return lambda X: estimator.predict_proba(X)
    return lambda X: estimator.predict_proba(_as_float(X))


def _load_skops(descriptor: ModelDescriptor, manifest: Manifest, model_dir: Path,
                trust: bool) -> Callable[[pd.DataFrame], np.ndarray]:
    sio = _require("skops.io", "skops")
    (path,) = descriptor.paths
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ConfigError(f"{path}: not a skops file ({type(exc).__name__}: {exc})") from None
    refused = sorted(set(untrusted) - SKOPS_ALLOWED_TYPES)
    if refused and not trust:
        raise ConfigError(f"{path}: the skops file contains types that are not on the allow-list: "
                          f"{', '.join(refused)}. Loading them could run code; check the file and "
                          "pass --trust-model (trust_model=True) to load it anyway")
    estimator = sio.load(path, trusted=list(untrusted))
    return _sklearn_proba(estimator, path, descriptor, manifest)


def _refuse_pickle(descriptor: ModelDescriptor, trust: bool) -> None:
    if not trust:
        raise ConfigError(
            f"{descriptor.paths[0]}: model format {descriptor.format!r} is a pickle, and loading a "
            "pickle runs code stored in the file. Load it only if you trust its origin, with "
            "--trust-model (trust_model=True); or save the estimator with skops or XGBoost's own format")


def _load_joblib(descriptor: ModelDescriptor, manifest: Manifest, model_dir: Path,
                 trust: bool) -> Callable[[pd.DataFrame], np.ndarray]:
    _refuse_pickle(descriptor, trust)
    joblib = _require("joblib", "joblib")
    (path,) = descriptor.paths
    return _sklearn_proba(joblib.load(path), path, descriptor, manifest)


def _load_pickle(descriptor: ModelDescriptor, manifest: Manifest, model_dir: Path,
                 trust: bool) -> Callable[[pd.DataFrame], np.ndarray]:
    _refuse_pickle(descriptor, trust)
    (path,) = descriptor.paths
    with open(path, "rb") as fh:
        estimator = pickle.load(fh)  # noqa: S301 - only with trust_model, see _refuse_pickle
    return _sklearn_proba(estimator, path, descriptor, manifest)


def _load_entry_point(descriptor: ModelDescriptor, manifest: Manifest, model_dir: Path,
                      trust: bool) -> Callable[[pd.DataFrame], np.ndarray]:
    target = descriptor.entry_point or ""
    declared = {e.name: e for e in entry_points(group=ENTRY_POINT_GROUP)}
    if target in declared:
        factory = declared[target].load()
    else:
        if ":" not in target:
            known = ", ".join(sorted(declared)) or "none installed"
            raise ConfigError(f"{model_dir / DESCRIPTOR}: entry point {target!r} is not declared in "
                              f"the group {ENTRY_POINT_GROUP} (declared: {known}) and is not "
                              "'package.module:factory'")
        if not trust and target not in {e.value for e in declared.values()}:
            raise ConfigError(f"{model_dir / DESCRIPTOR}: entry point {target!r} imports and runs code "
                              "named by the model directory, and no installed package declares it in "
                              f"the group {ENTRY_POINT_GROUP}; pass --trust-model (trust_model=True) to "
                              "run it")
        module, _, attr = target.partition(":")
        try:
            factory = importlib.import_module(module)
            for part in attr.split("."):
                factory = getattr(factory, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{model_dir / DESCRIPTOR}: cannot import entry point {target!r} "
                              f"({type(exc).__name__}: {exc})") from None
    model = factory(model_dir)
    if not hasattr(model, "predict_proba"):
        raise ConfigError(f"entry point {target!r} returned a {type(model).__name__} without predict_proba")
    return lambda X: model.predict_proba(X)


_LOADERS = {
    "xgboost": _load_xgboost,
    "xgboost-ovr": _load_xgboost,
    "skops": _load_skops,
    "joblib": _load_joblib,
    "pickle": _load_pickle,
    "entry_point": _load_entry_point,
}


# --- per-partition helpers for the engine ----------------------------------------------------------
def score_partition(enriched: pd.DataFrame, model: MetaModel, *, keep_features: bool = False
                    ) -> pd.DataFrame:
    """An enriched partition (output of ``core.enrich``) with the meta scores appended after the
    identifying columns (and the features, if ``keep_features``). Index and row order kept."""
    meta = model.predict(enriched)
    features = set(model.manifest.names)
    keep = [c for c in enriched.columns if keep_features or c not in features]
    out = pd.concat([enriched[keep], meta], axis=1)
    out.attrs.update(enriched.attrs)  # the engine's per-partition report rides in attrs
    return out


def scored_meta(enriched_meta: pd.DataFrame, model: MetaModel, *, keep_features: bool = False
                ) -> pd.DataFrame:
    """The empty frame (Dask ``meta``) of :func:`score_partition` for ``core.output_meta(...)``."""
    features = set(model.manifest.names)
    keep = [c for c in enriched_meta.columns if keep_features or c not in features]
    out = enriched_meta[keep].copy()
    for c in META_COLUMNS:
        out[c] = pd.Series([], dtype=np.float64)
    return out


def scored_schema(enriched_schema: pa.Schema, model: MetaModel, *, keep_features: bool = False
                  ) -> pa.Schema:
    """The pyarrow schema of :func:`score_partition` output for ``core.output_schema(...)``."""
    features = set(model.manifest.names)
    fields = [f for f in enriched_schema if keep_features or f.name not in features]
    return pa.schema(fields + [pa.field(c, pa.float64()) for c in META_COLUMNS])


def _selective_ids(columns: Any, keep_columns: Sequence[str]) -> list[str]:
    """The identifying columns of selective output present in ``columns``, then ``keep_columns``."""
    ids = [c for c in ("gene_id", "chrom", "strand", "position") if c in columns]
    return ids + [c for c in keep_columns if c not in ids]


def selective_schema(track_schema: pa.Schema, keep_columns: Sequence[str] = ()) -> pa.Schema:
    """The pyarrow schema of :func:`selective_scores` output for a track with this schema."""
    fields = [track_schema.field(c) for c in _selective_ids(track_schema.names, keep_columns)]
    for base, out in zip(BASE_COLUMNS, META_COLUMNS):
        fields += [track_schema.field(base), pa.field(out, pa.float64())]
    return pa.schema(fields + [pa.field(RESCORED, pa.bool_())])


def _check_selective(n_rows: int, columns: Sequence[str], mask: np.ndarray, meta: pd.DataFrame,
                     keep_columns: Sequence[str], key_values: Callable[[str], Any]) -> None:
    """The checks of :func:`selective_scores` (and :func:`selective_table`): the mask's shape, one
    meta row per uncertain row, the columns needed, and the uncertain rows' ``gene_id`` and
    ``position`` (``key_values(key)``: the track's values at the mask) equal to ``meta``'s."""
    if mask.shape != (n_rows,):
        raise InputError(f"uncertain mask has shape {mask.shape}, the track part has {n_rows} rows")
    if len(meta) != int(mask.sum()):
        raise InputError(f"{len(meta)} meta-score rows for {int(mask.sum())} uncertain positions")
    absent = [c for c in (*META_COLUMNS, ) if c not in meta.columns]
    absent += [c for c in (*REQUIRED["score input"], *keep_columns) if c not in columns]
    if absent:
        raise InputError(f"selective scoring lacks column(s) {', '.join(absent)}")
    for key in ("gene_id", "position"):  # the uncertain rows' values only (no copy of the rest)
        if key in meta.columns and not np.array_equal(meta[key].to_numpy(), key_values(key)):
            raise InputError(f"meta-score rows do not line up with the uncertain track rows ({key} differs)")


def _merged(base: np.ndarray, mask: np.ndarray, meta: pd.Series) -> np.ndarray:
    """A ``*_meta`` column: the base scores as float64, the meta-model's where ``mask``."""
    merged = base.astype(np.float64, copy=True)
    merged[mask] = meta.to_numpy(dtype=np.float64)
    return merged


def selective_scores(track_part: pd.DataFrame, uncertain_mask: Any, meta: pd.DataFrame,
                     keep_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Every row of ``track_part`` once, in order (index kept): its identifying columns (and
    ``keep_columns``), the base scores, ``donor_meta``/``acceptor_meta``/``neither_meta`` (float64: the meta-model's scores where
    ``uncertain_mask``, the base scores elsewhere) and ``rescored`` (= the mask).

    ``meta`` has one row per uncertain row, in track order (e.g. ``MetaModel.predict`` of the
    enriched uncertain rows); when it carries gene_id/position they must match those rows.
    """
    mask = np.asarray(uncertain_mask, dtype=bool)
    _check_selective(len(track_part), track_part.columns, mask, meta, keep_columns,
                     lambda key: np.asarray(track_part[key].array[mask]))
    data: dict[str, Any] = {c: track_part[c].array
                            for c in _selective_ids(track_part.columns, keep_columns)}
    for base, out in zip(BASE_COLUMNS, META_COLUMNS):
        data[base] = track_part[base].array
        data[out] = _merged(track_part[base].to_numpy(dtype=np.float64, na_value=np.nan), mask, meta[out])
    data[RESCORED] = mask
    return pd.DataFrame(data, index=track_part.index, copy=False)


def selective_table(track: pa.Table, uncertain_mask: Any, meta: pd.DataFrame) -> pa.Table:
    """:func:`selective_scores` of an Arrow table of track rows (text columns may be dictionaries)
    as an Arrow table, the identifying columns as given (the writer casts them to the output's
    schema): the rows that are only streamed through stay Arrow from read to write. The base
    scores are float64 as a read normalises them (a null is NaN); the same checks."""
    mask = np.asarray(uncertain_mask, dtype=bool)
    arrow_mask = pa.array(mask)  # made once: the checks' filters and the ``rescored`` column

    def at_mask(key: str) -> np.ndarray:
        values = track.column(key).filter(arrow_mask)
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        return values.to_numpy(zero_copy_only=False)

    _check_selective(track.num_rows, track.column_names, mask, meta, (), at_mask)
    data: dict[str, Any] = {c: track.column(c) for c in _selective_ids(track.column_names, ())}
    for base, out in zip(BASE_COLUMNS, META_COLUMNS):
        scores = track.column(base).to_numpy(zero_copy_only=False).astype(np.float64)
        data[base] = pa.array(scores)  # NaN (not null) where the read had a null, as pandas has it
        data[out] = pa.array(_merged(scores, mask, meta[out]))
    data[RESCORED] = arrow_mask
    return pa.table(data)


def selective_meta(track_dtypes: Mapping[str, Any], keep_columns: Sequence[str] = ()) -> pd.DataFrame:
    """The empty frame (Dask ``meta``) of :func:`selective_scores` for a track with these dtypes."""
    cols = {c: pd.Series([], dtype=track_dtypes[c])
            for c in _selective_ids(track_dtypes, keep_columns)}
    for base, out in zip(BASE_COLUMNS, META_COLUMNS):
        cols[base] = pd.Series([], dtype=track_dtypes[base])
        cols[out] = pd.Series([], dtype=np.float64)
    cols[RESCORED] = pd.Series([], dtype=bool)
    return pd.DataFrame(cols)


def selective_partition(track_part: pd.DataFrame, uncertain_mask: Any, model: MetaModel, *,
                        genomic: Any = None, config: Any = None) -> tuple[pd.DataFrame, Any]:
    """Selective mode for one partition of the full track (whole genes): enrich the uncertain rows
    (context from ``track_part`` itself), score them with ``model``, and return
    (:func:`selective_scores` frame, the enrichment's ``EnrichReport``)."""
    from .config import EnrichConfig
    from .core import enrich

    mask = np.asarray(uncertain_mask, dtype=bool)
    rows = track_part[mask]
    enriched, report = enrich(rows, model.manifest, genomic=genomic, track=track_part,
                              config=config or EnrichConfig())
    return selective_scores(track_part, mask, model.predict(enriched)), report
