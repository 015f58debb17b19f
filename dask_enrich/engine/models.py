"""The outputs of a run: one dataset per model from one enrichment pass, and meta-model scoring.

A run has one or more *targets*, one per manifest (``--manifest`` given several times, or a
directory of model directories). Each partition is read and enriched once with the *union*
manifest (every feature computed once); :func:`finish_bin` then cuts each target's columns out of
the enriched frame (and, with scoring, applies the target's meta-model: ``core`` features ->
``donor_meta``/``acceptor_meta``/``neither_meta``, see :mod:`dask_enrich.scoring`), and
:func:`write_part` writes each target's file. Layout: one manifest writes ``OUT/`` as before;
several write ``OUT/<model-name>/``, each a complete dataset with its own ``_RUN.json``,
``_SUCCESS.json``, schema and fingerprint. A target's fingerprint is the one a separate run of that
manifest alone would have, so its files equal a separate run's and ``--resume`` works per target.

Imputation with ``--missing impute`` uses each model's own training medians: a shared feature
whose fill value differs between models is computed again for the models that disagree with the
union (``Target.overrides``), so each dataset is exactly what a separate run would write.

Client side: :func:`resolve_targets`, :func:`fingerprint_targets`, :func:`precheck`,
:func:`prepare`, :func:`write_successes`. Worker side: :func:`finish_bin`, :func:`write_part`.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import storage
from ..columns import BASE_SCORES
from ..config import EnrichConfig
from ..core import _id_columns, enrich, impute_value, output_schema
from ..errors import ConfigError
from ..features import registry
from ..gene_codes import GeneCodes
from ..manifest import MANIFEST_FILES, Manifest, load_manifest
from ..selection import select_mask
from . import writer


@dataclass(frozen=True)
class ScoreOptions:
    """Meta-model scoring of a run (``--score``): the meta scores are written after the
    identifying columns; ``keep_features`` keeps the features too; ``selective`` (track only)
    writes every track position once, with the meta scores where uncertain and the base scores
    elsewhere, and a ``rescored`` flag; ``trust_model`` allows pickles and code entry points."""

    trust_model: bool = False
    keep_features: bool = False
    selective: bool = False

    def to_dict(self) -> dict[str, Any]:
        """What the run fingerprint records (trust does not change the output)."""
        return {"keep_features": self.keep_features, "selective": self.selective}


@dataclass(frozen=True)
class Target:
    """One output dataset of a run: its manifest, directory, model and (after :func:`prepare`)
    its schema and complete partitions. Small: it travels to the workers in the run context."""

    name: str
    manifest: Manifest
    out: str
    model_dir: str | None = None
    model_info: dict[str, Any] | None = field(default=None, compare=False)
    overrides: Manifest | None = None
    fingerprint: str = ""
    record: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    schema: pa.Schema | None = field(default=None, compare=False, repr=False)
    #: OUT of a run with one dataset per model (this target writes OUT/<name>/), else None
    run_out: str | None = None


# --- client side ---------------------------------------------------------------------------------
def _is_model_collection(path: Path) -> bool:
    """A directory holding no manifest itself but model directories that do."""
    return (path.is_dir() and not any((path / f).is_file() for f in MANIFEST_FILES)
            and any(_has_manifest(p) for p in path.iterdir()))


def _has_manifest(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in MANIFEST_FILES)


def expand_manifests(manifest: Any) -> tuple[list[Any], bool]:
    """The manifests a ``manifest`` argument names, and whether the run writes one dataset per
    model (several manifests, or a directory of model directories)."""
    items = list(manifest) if isinstance(manifest, (list, tuple)) else [manifest]
    if not items:
        raise ConfigError("no --manifest given")
    expanded: list[Any] = []
    collection = False
    for item in items:
        if not isinstance(item, Manifest) and _is_model_collection(Path(item)):
            expanded += sorted((p for p in Path(item).iterdir() if _has_manifest(p)),
                               key=lambda p: p.name)
            collection = True
        else:
            expanded.append(item)
    return expanded, collection or len(expanded) > 1


def union_manifest(manifests: Sequence[Manifest]) -> Manifest:
    """One manifest of every feature the manifests name (first appearance order); statistics
    from the first manifest naming each feature."""
    if len(manifests) == 1:
        return manifests[0]
    features: dict[str, registry.Feature] = {}
    stats: dict[str, dict[str, float]] = {}
    for m in manifests:
        for f in m.features:
            features.setdefault(f.name, f)
            if m.stats and f.name in m.stats and f.name not in stats:
                stats[f.name] = m.stats[f.name]
    return Manifest(tuple(features), " + ".join(m.source for m in manifests), "union",
                    stats or None, tuple(features.values()))


def resolve_targets(manifest: Any, out: str, score: ScoreOptions | None, config: EnrichConfig,
                    *, track_only: bool) -> tuple[list[Target], Manifest]:
    """Load the manifests (and, with scoring, check each model loads: the client fails early),
    name each target's output directory; return the targets and the union manifest."""
    items, multi = expand_manifests(manifest)
    if score is not None and score.selective:
        if not track_only:
            raise ConfigError("--selective re-scores the full track: give --track without --positions")
        if score.keep_features:
            raise ConfigError("--selective writes every track position; --keep-features would leave "
                              "the features of the positions that are not uncertain undefined")
    manifests = [m if isinstance(m, Manifest) else load_manifest(m) for m in items]
    names = [m.name for m in manifests]
    if multi:
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ConfigError(f"several manifests are named {', '.join(clash)}: each model writes "
                              "OUT/<model-name>/, so give model directories with distinct names")
        bad = [n for n in names if not n or n.startswith((".", "_")) or "/" in n]
        if bad:
            raise ConfigError(f"model name(s) {bad} cannot name an output directory")
    union = union_manifest(manifests)
    targets = []
    for item, m in zip(items, manifests):
        target_out = f"{str(out).rstrip('/')}/{m.name}" if multi else str(out)
        model_dir = info = None
        if score is not None:
            model_dir, info = _check_model(item, m, score)
        targets.append(Target(m.name, m, target_out, model_dir, info,
                              _overrides(m, union, config), run_out=str(out) if multi else None))
    return targets, union


def _check_model(item: Any, manifest: Manifest, score: ScoreOptions) -> tuple[str, dict[str, Any]]:
    from ..scoring import DESCRIPTOR, load_model

    source = Path(manifest.source)
    model_dir = Path(item) if not isinstance(item, Manifest) else source.parent
    if not model_dir.is_dir():
        model_dir = source.parent
    if not (model_dir / DESCRIPTOR).is_file():
        raise ConfigError(f"--score needs each --manifest to be a model directory holding "
                          f"{DESCRIPTOR}; {item} has none")
    model = load_model(model_dir, trust_model=score.trust_model, manifest=manifest)
    return str(model_dir.resolve()), model.to_dict()


def _overrides(manifest: Manifest, union: Manifest, config: EnrichConfig) -> Manifest | None:
    """The features of ``manifest`` that ``--missing impute`` would fill with another value than
    the union's (different training medians): computed again for this target."""
    if manifest is union or config.missing != "impute":
        return None
    names = [n for n in manifest.names if impute_value(manifest, n) != impute_value(union, n)]
    if not names:
        return None
    return Manifest(tuple(names), manifest.source, manifest.name, manifest.stats,
                    tuple(manifest.feature(n) for n in names))


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:32]
    except OSError:
        return None


def _plugin_version(module: str) -> str | None:
    """The installed version of the distribution providing ``module`` (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    for dist in packages_distributions().get(module.split(".")[0], []):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def manifest_record(manifest: Manifest) -> dict[str, Any]:
    """What the run fingerprint records of a manifest: its source, the bytes of its file and of
    the ``feature_stats.json`` it read (training medians: the values ``--missing impute``
    writes), the statistics themselves, and each plugin feature's declaration, module, version
    and kernel source (a changed plugin changes values)."""
    from ..manifest import STATS_FILE

    source = Path(manifest.source)
    files = {}
    if source.is_file():
        files[source.name] = _file_sha256(source)
        if manifest.stats is not None and (source.parent / STATS_FILE).is_file():
            files[STATS_FILE] = _file_sha256(source.parent / STATS_FILE)
    stats = (hashlib.sha256(json.dumps(manifest.stats, sort_keys=True, default=str).encode())
             .hexdigest()[:32] if manifest.stats else None)
    plugins = {}
    for f in manifest.features:
        if f.plugin is None:
            continue
        module = getattr(f.kernel, "__module__", "") or ""
        try:
            code = hashlib.sha256(inspect.getsource(f.kernel).encode()).hexdigest()[:16]
        except (OSError, TypeError):
            code = None
        plugins[f.name] = {"plugin": f.plugin, "module": module, "version": _plugin_version(module),
                           "dtype": str(f.dtype), "requires": sorted(f.requires), "doc": f.doc,
                           "impute_constant": f.impute_constant, "kernel_sha256": code}
    return {"source": manifest.source, "names": len(manifest.names), "files": files, "stats": stats,
            "plugins": plugins}


def fingerprint_targets(targets: list[Target], run_record: dict[str, Any], score: ScoreOptions | None,
                        fingerprint: Callable[[dict[str, Any]], str], out: str
                        ) -> tuple[dict[str, Any], str, list[Target]]:
    """Each target's run record and fingerprint (what a run of its manifest alone records), and
    the record and fingerprint of the whole run (the single target's, or one over all targets)."""
    done = []
    for t in targets:
        record = copy.deepcopy(run_record)
        record["inputs"]["manifest"] = manifest_record(t.manifest)
        record["manifest_names"] = list(t.manifest.names)
        if score is not None:
            record["settings"]["score"] = score.to_dict()
            record["model"] = {k: t.model_info[k] for k in ("format", "classes", "fingerprint")}
        done.append(replace(t, record=record, fingerprint=fingerprint(record)))
    if len(done) == 1 and done[0].out == str(out):
        return done[0].record, done[0].fingerprint, done
    record = {**run_record, "outputs": {t.name: t.fingerprint for t in done}}
    return record, fingerprint(record), done


def precheck(targets: Sequence[Target], mode: writer.Mode,
             storage_options: dict[str, Any] | None = None) -> None:
    """:func:`writer.precheck_output` of every target's directory (before any cluster starts)."""
    for t in targets:
        writer.precheck_output(t.out, mode=mode, run_fingerprint=t.fingerprint,
                               storage_options=storage_options, run_record=t.record)


def _arrow_type(dtype: Any) -> pa.DataType:
    kind = getattr(dtype, "kind", None)
    if kind in ("O", "U") or pd.api.types.is_string_dtype(dtype):
        return pa.string()
    return pa.Schema.from_pandas(pd.DataFrame({"c": pd.Series([], dtype=dtype)}),
                                 preserve_index=False).field("c").type


def _target_schema(t: Target, score: ScoreOptions | None, input_dtypes: Mapping[str, Any],
                   track_meta: pd.DataFrame | None, config: EnrichConfig) -> pa.Schema:
    """The Arrow schema of target ``t``'s part files."""
    from ..scoring import scored_schema, selective_schema

    schema = output_schema(t.manifest, input_dtypes, config)
    if score is None:
        return schema
    if score.selective:
        track_schema = pa.schema([pa.field(c, _arrow_type(d))
                                  for c, d in track_meta.dtypes.to_dict().items()])
        return selective_schema(track_schema, config.keep_columns)
    model = SimpleNamespace(manifest=t.manifest)  # the layout needs only the feature names
    return scored_schema(schema, model, keep_features=score.keep_features)


def prepare(targets: list[Target], score: ScoreOptions | None, *, mode: writer.Mode, plan: Any,
            input_meta: pd.DataFrame, track_meta: pd.DataFrame | None, config: EnrichConfig,
            storage_options: dict[str, Any] | None = None, failed: dict[str, str] | None = None
            ) -> tuple[list[Target], dict[int, dict[str, Any]]]:
    """Each target's schema, its output directory made ready (``writer.prepare_output``);
    returns the targets and the partitions complete in every target (resume), with their reports
    merged. The kept parts that failed verification (redone) go to ``failed`` ({path: reason})."""
    dtypes = input_meta.dtypes.to_dict()
    ready, done_each = [], []
    run_out = targets[0].run_out  # several models: OUT, else None
    if run_out is not None:  # several models: the run's own _SUCCESS.json is stale from here on
        fs, root = storage.url_to_fs(run_out, storage_options)
        if fs.exists(f"{root}/{writer.SUCCESS_FILE}"):
            fs.rm(f"{root}/{writer.SUCCESS_FILE}")
    digests = [plan.bin_digest(b) for b in range(plan.n_bins)]
    for t in targets:
        schema = _target_schema(t, score, dtypes, track_meta, config)
        record = {**t.record, "plan": plan.summary()}
        redone: dict[str, str] = {}
        done_each.append(writer.prepare_output(t.out, mode=mode, run_fingerprint=t.fingerprint,
                                               run_record=record, n_bins=plan.n_bins,
                                               storage_options=storage_options,
                                               bin_digests=digests, failed=redone))
        if failed is not None:
            failed.update({f"{t.out.rstrip('/')}/{name}": why for name, why in redone.items()})
        ready.append(replace(t, schema=schema))
    bins = set(done_each[0]).intersection(*done_each[1:])
    done = {}
    for b in sorted(bins):
        record = copy.deepcopy(done_each[0][b])
        for other in done_each[1:]:
            record["report"]["imputed"].update(other[b]["report"].get("imputed", {}))
            record["report"]["reasons"].update(other[b]["report"].get("reasons", {}))
        done[b] = record
    return ready, done


def filter_report(report: Mapping[str, Any], manifest: Manifest) -> dict[str, Any]:
    """An enrichment report (``EnrichReport.to_dict()``) restricted to ``manifest``'s features."""
    names = set(manifest.names)
    return {**report,
            "imputed": {k: v for k, v in report.get("imputed", {}).items() if k in names},
            "reasons": {k: v for k, v in report.get("reasons", {}).items() if k in names}}


def write_successes(targets: Sequence[Target], success: dict[str, Any],
                    storage_options: dict[str, Any] | None = None,
                    files: Mapping[str, list[dict[str, Any]]] | None = None) -> str:
    """Each target's ``_SUCCESS.json`` (its fingerprint, manifest, model, imputed features, schema
    and ``files``: each part's rows and hash); returns the path(s) written."""
    paths = []
    for t in targets:
        data = dict(success)
        if files is not None:
            data["partitions"] = {**success["partitions"], "files": files.get(t.out, [])}
        if t.schema is not None:
            data["schema"] = writer.schema_fields(t.schema)
            if files is not None:
                writer.write_dataset_metadata(t.out, [f["file"] for f in files.get(t.out, [])],
                                              t.schema, storage_options)
        report = filter_report({"imputed": success.get("imputed", {}),
                                "reasons": success.get("imputed_reasons", {})}, t.manifest)
        data.update(fingerprint=t.fingerprint, imputed=report["imputed"],
                    imputed_reasons=report["reasons"], inputs=t.record.get("inputs", success.get("inputs")),
                    settings=t.record.get("settings", success.get("settings")),
                    manifest={"source": t.manifest.source, "name": t.manifest.name,
                              "features": len(t.manifest.names)})
        if t.model_info is not None:
            data["model"] = t.model_info
        paths.append(writer.write_success(t.out, data, storage_options))
    run_out = targets[0].run_out  # several models: OUT, else None
    if run_out is not None:  # several models: OUT/_SUCCESS.json last, pointing at each model's
        keep = ("version", "started", "finished", "rows", "partitions", "inputs", "settings",
                "timings_s", "positions_per_second", "warnings", "rejected")
        data = {k: success[k] for k in keep if k in success}
        data["partitions"] = {k: v for k, v in data.get("partitions", {}).items() if k != "files"}
        data["models"] = {t.name: {"dir": t.name, "fingerprint": t.fingerprint,
                                   "features": len(t.manifest.names)} for t in targets}
        paths.append(writer.write_success(run_out, data, storage_options))
    return paths[0] if len(paths) == 1 else ", ".join(paths)




# --- worker side ---------------------------------------------------------------------------------
def _values(series: pd.Series) -> Any:
    """The column's data without a copy (numpy array or extension array)."""
    if isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        return series.array
    return series.to_numpy()


def _slice(enriched: pd.DataFrame, input_columns: Sequence[str], union: Manifest, t: Target,
           config: EnrichConfig) -> pd.DataFrame:
    """Target ``t``'s enriched frame (its identifying columns, its features in its order) out
    of the union's."""
    if t.manifest is union or t.manifest.names == union.names:
        return enriched
    data: dict[str, Any] = {}
    for (src, mine), (_, theirs) in zip(_id_columns(t.manifest, input_columns, config),
                                        _id_columns(union, input_columns, config)):
        data[mine] = _values(enriched[theirs])
    for name in t.manifest.names:
        data[name] = _values(enriched[name])
    return pd.DataFrame(data, index=enriched.index, copy=False)


def _target_frame(enriched: pd.DataFrame, positions: pd.DataFrame, track: pd.DataFrame | None,
                  t: Target, ctx: Any, rows: pd.DataFrame | pa.Table | None = None
                  ) -> pd.DataFrame | pa.Table:
    from ..scoring import (
        load_model_cached,
        score_partition,
        selective_scores,
        selective_table,
    )

    frame = _slice(enriched, list(positions.columns), ctx.manifest, t, ctx.config)
    if t.overrides is not None:  # this model's own fill values for features shared with others
        again, _ = enrich(positions, t.overrides, genomic=ctx.genomic(), track=track, config=ctx.config)
        frame = frame.copy(deep=False)
        for name in t.overrides.names:
            frame[name] = again[name].to_numpy()
    score = ctx.score
    if score is None:
        return frame
    model = load_model_cached(t.model_dir, score.trust_model, t.manifest)
    if not score.selective:
        return score_partition(frame, model, keep_features=score.keep_features)
    # every checked track row of the bin (tasks.enrich_bin), in plan order
    track = track if rows is None else rows
    arrow = isinstance(track, pa.Table)  # a scanned track's rows: Arrow from read to write
    track = track if arrow else track.reset_index(drop=True)
    scores = pd.DataFrame({c: track.column(c).to_numpy(zero_copy_only=False)
                           for c in BASE_SCORES if c in track.column_names}) if arrow else track
    mask = np.asarray(select_mask(scores, ctx.selection), dtype=bool)
    meta = model.predict(frame)
    meta.insert(0, "gene_id", frame["gene_id"].to_numpy())
    if ctx.config.coordinates == "genomic":
        meta.insert(1, "position", frame["position"].to_numpy())
    if arrow:
        return selective_table(track, mask, meta.reset_index(drop=True))
    return selective_scores(track, mask, meta.reset_index(drop=True), ctx.config.keep_columns)


def finish_bin(enriched: pd.DataFrame, positions: pd.DataFrame, track: pd.DataFrame | None,
               ctx: Any, rows: pd.DataFrame | pa.Table | None = None
               ) -> tuple[pd.DataFrame | pa.Table, ...]:
    """One frame per target for one bin (in the order of ``ctx.targets``): the enriched frame
    itself (one target, no scoring), or each target's columns, scored or selective. Without
    targets (the lazy API): the enriched frame. ``rows``: the rows a selective output writes
    when ``track`` (the positions' context) is not all of them (a scanned track); given as an
    Arrow table, the selective output is one too (``scoring.selective_table``)."""
    targets = getattr(ctx, "targets", ())
    score = getattr(ctx, "score", None)
    if not targets or (len(targets) == 1 and score is None and targets[0].overrides is None):
        return (enriched,)
    return tuple(_target_frame(enriched, positions, track, t, ctx, rows) for t in targets)


def write_part(frames: Sequence[pd.DataFrame], ctx: Any, bin_id: int, report: dict[str, Any], *,
               rows_in: int, rows_rejected: int, genes: GeneCodes | None = None) -> int:
    """Write one bin: each target's frame (:func:`finish_bin`) into its directory with its schema,
    its fingerprint and its features' part of the report (``writer.write_part``). Returns the
    rows written (the same in every target). ``genes``: the frames' gene ids factorised (the
    rows of every frame), else each part's digest factorises its own."""
    digest = ctx.plan.bin_digest(bin_id)
    one = len(ctx.targets) == 1
    records = [writer.write_part(frame, t.out, bin_id, t.schema, t.fingerprint,
                                 report if one else filter_report(report, t.manifest),
                                 ctx.storage_options, rows_in=rows_in, rows_rejected=rows_rejected,
                                 genes=digest, gene_codes=genes)
               for frame, t in zip(frames, ctx.targets, strict=True)]
    rows = {r["rows"] for r in records}
    if len(rows) != 1:
        from ..errors import RunFailure

        raise RunFailure(f"bin {bin_id}: the models' outputs have different row counts {sorted(rows)}")
    return int(records[0]["rows"])
