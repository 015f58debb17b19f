"""Train/serve skew check: recompute a training feature matrix and compare it feature by feature.

The training matrix (MetaSpliceAI writes one per run, TSV or Parquet) holds ``gene_id``,
``position``, the base scores and the manifest's feature columns, plus columns the check ignores
(labels, ``splice_type``, ``pred_type``, ``transcript_id``, ...). :func:`skew_check` takes the
identifying columns and base scores of every training row (and the ``context_score_*`` columns
when no ``--track`` is given), recomputes every manifest feature with the enrichment core (on the
Dask engine, or in-process per gene-partition), and :func:`compare_features` compares the two
matrices row by row. The comparison itself is pure pandas/numpy.

Rules of the comparison
    A value differs when ``|training - recomputed| > atol + rtol * max(|training|, |recomputed|)``;
    NaN against a value differs, NaN against NaN does not, a training value that is not a number
    counts as NaN (and is counted as ``unparseable``).
    Rows whose gene or position cannot be placed (gene absent from the annotation or the track,
    position missing, not an integer or outside its gene, gene without sequence when the manifest
    needs it, strand contradicting the annotation) are not recomputed: they are counted and listed
    with the reason, never dropped silently. Features that cannot be recomputed from the inputs
    given, or that the training file lacks, are listed with the reason and not compared.
    Rows are aligned by their row number in the training file (not by key), so duplicated
    (gene_id, position) rows are compared one to one.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd

from .config import EnrichConfig
from .core import CONTEXT_COLUMNS, REQUIRED_COLUMNS, EnrichReport, check_inputs, enrich
from .errors import ConfigError, InputError
from .features.registry import CONTEXT, SEQUENCE
from .manifest import Manifest, load_manifest
from .text import is_in

#: Column carrying each training row's number (0-based, file order) through the recompute.
ROW = "_training_row"
#: Default tolerances (numpy.isclose's).
RTOL = 1e-5
ATOL = 1e-8
#: Example rows kept per differing feature.
EXAMPLES = 5
#: Exit code of ``dask-enrich skew`` when some feature differs beyond tolerance: its own code,
#: distinct from 1 (an unexpected failure) and from the error codes 2-5.
SKEW_EXIT_CODE = 6

Engine = Literal["dask", "local"]
Log = Callable[[str], None]


# --- the comparison (pure pandas/numpy) ---------------------------------------------------------
def differs(training: np.ndarray, recomputed: np.ndarray, rtol: float = RTOL, atol: float = ATOL
            ) -> np.ndarray:
    """Per element: True where the two values differ beyond tolerance (NaN vs value differs,
    NaN vs NaN and equal infinities do not)."""
    t = np.asarray(training, dtype=np.float64)
    r = np.asarray(recomputed, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        within = np.abs(t - r) <= atol + rtol * np.maximum(np.abs(t), np.abs(r))
        close = (t == r) | (within & np.isfinite(t) & np.isfinite(r))
    return ~(close | (np.isnan(t) & np.isnan(r)))


@dataclass
class FeatureSkew:
    """The comparison of one feature."""

    name: str
    group: str
    rows_compared: int
    rows_differing: int
    #: differing rows where exactly one side is NaN (or the training value is not a number)
    nan_mismatches: int
    #: training values that are not numbers (counted as NaN)
    unparseable: int
    #: largest |training - recomputed| over the compared rows where both are finite
    max_abs_diff: float
    #: median |training - recomputed| over the compared rows where both are finite
    median_abs_diff: float
    #: median |training - recomputed| over the differing rows where both are finite (NaN if none)
    median_abs_diff_differing: float
    #: a handful of differing rows, largest difference first (NaN mismatches first of all)
    examples: list[dict[str, Any]] = field(default_factory=list)
    #: distinct input rows the recompute had to impute for this feature (with the reason), e.g. a
    #: context neighbour absent from the track; such rows usually differ
    imputed_rows: int = 0
    imputed_reason: str = ""
    #: signed differences (training - recomputed) of the differing finite rows, for a histogram
    diffs: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def differs(self) -> bool:
        return self.rows_differing > 0

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in (
            "name", "group", "rows_compared", "rows_differing", "nan_mismatches", "unparseable",
            "max_abs_diff", "median_abs_diff", "median_abs_diff_differing", "imputed_rows",
            "imputed_reason")}
        out["examples"] = self.examples
        return _jsonable(out)


@dataclass
class SkewReport:
    """The whole check: per-feature comparisons, what could not be compared, and why."""

    features: list[FeatureSkew]
    rtol: float
    atol: float
    rows_training: int
    rows_compared: int
    #: feature -> why it was not compared (not recomputable from the inputs, absent from training)
    not_compared: dict[str, str] = field(default_factory=dict)
    #: rows that could not be placed: row, gene_id, position, reason (all of them)
    unplaced: pd.DataFrame = field(default_factory=lambda: _unplaced_frame([], [], [], []))
    #: training columns that are neither identifying, base-score, context nor manifest features
    ignored_columns: list[str] = field(default_factory=list)
    #: every differing value: row, gene_id, position, feature, training, recomputed
    differing: pd.DataFrame = field(default_factory=pd.DataFrame)
    settings: dict[str, Any] = field(default_factory=dict)
    #: training rows whose k-mer columns are all 0 while the genome gives some k-mers there (the
    #: zero-filled k-mers of older inference code)
    zero_kmer_rows: list[int] = field(default_factory=list)

    def rows_with_differences(self, limit: int | None = 100) -> pd.DataFrame:
        """Training rows with at least one differing feature: row, gene_id, position, how many
        features differ and which (most features first; the first ``limit`` rows)."""
        if self.differing.empty:
            return pd.DataFrame({"row": [], "gene_id": [], "position": [], "features_differing": [],
                                 "features": []})
        grouped = self.differing.groupby("row", sort=True)
        table = grouped.agg(gene_id=("gene_id", "first"), position=("position", "first"),
                            features_differing=("feature", "size"),
                            features=("feature", lambda f: ", ".join(list(f)[:8])
                                      + (f", ... ({len(f) - 8} more)" if len(f) > 8 else "")))
        table = table.reset_index().sort_values(["features_differing", "row"],
                                                ascending=[False, True], kind="stable")
        return table if limit is None else table.head(limit)

    @property
    def differing_features(self) -> list[str]:
        """Names of the features with at least one row differing beyond tolerance."""
        return [f.name for f in self.features if f.differs]

    @property
    def differing_rows(self) -> np.ndarray:
        """Training row numbers with at least one differing feature (sorted)."""
        if self.differing.empty:
            return np.zeros(0, dtype=np.int64)
        return np.unique(self.differing["row"].to_numpy(dtype=np.int64))

    @property
    def ok(self) -> bool:
        """True when no compared feature differs beyond tolerance."""
        return not self.differing_features

    @property
    def verdict(self) -> str:
        return "match" if self.ok else "skew"

    @property
    def exit_code(self) -> int:
        """0 when nothing differs beyond tolerance, :data:`SKEW_EXIT_CODE` (6) when something does."""
        return 0 if self.ok else SKEW_EXIT_CODE

    def to_dict(self, max_unplaced_rows: int | None = 1000) -> dict[str, Any]:
        """The JSON report (the first ``max_unplaced_rows`` unplaced rows listed; all are counted,
        and ``write_report`` writes every one of them to ``unplaced_rows.tsv``)."""
        listed = self.unplaced if max_unplaced_rows is None else self.unplaced.head(max_unplaced_rows)
        reasons = (self.unplaced["reason"].value_counts().to_dict() if len(self.unplaced) else {})
        return _jsonable({
            "verdict": self.verdict,
            "tolerance": {"rtol": self.rtol, "atol": self.atol,
                          "rule": "|training - recomputed| > atol + rtol * max(|training|, "
                                  "|recomputed|); NaN vs value differs, NaN vs NaN does not"},
            "rows": {"training": self.rows_training, "compared": self.rows_compared,
                     "unplaced": int(len(self.unplaced)),
                     "with_differences": int(len(self.differing_rows))},
            "features": {"compared": len(self.features),
                         "differing": self.differing_features,
                         "not_compared": len(self.not_compared)},
            "per_feature": [f.to_dict() for f in self.features],
            "not_compared": dict(self.not_compared),
            "unplaced_rows": {"count": int(len(self.unplaced)), "by_reason": reasons,
                              "listed": int(len(listed)),
                              "rows": listed.to_dict(orient="records")},
            "rows_with_differences": self.rows_with_differences().to_dict(orient="records"),
            "zero_kmer_rows": list(self.zero_kmer_rows),
            "ignored_columns": list(self.ignored_columns),
            "settings": dict(self.settings),
        })


def compare_features(training: pd.DataFrame, recomputed: pd.DataFrame, features: Sequence[str], *,
                     rtol: float = RTOL, atol: float = ATOL, on: Sequence[str] | None = None,
                     groups: dict[str, str] | None = None, examples: int = EXAMPLES,
                     imputed: EnrichReport | None = None, extra_id: pd.Series | None = None
                     ) -> SkewReport:
    """Compare ``features`` of ``training`` against ``recomputed``, row by row.

    The frames are aligned on their index (``on=None``: both must have the same index labels) or
    on the key columns ``on`` (e.g. ``("gene_id", "position")``; duplicated keys are matched in
    order of appearance). Training rows without a recomputed partner are returned as unplaced.
    ``extra_id`` (aligned with ``recomputed``) is shown beside the examples (e.g. the genomic
    position of gene-relative rows). Every feature must be a column of both frames.
    """
    if rtol < 0 or atol < 0:
        raise ConfigError(f"tolerances must be non-negative (rtol={rtol}, atol={atol})")
    absent = [f for f in features if f not in training.columns or f not in recomputed.columns]
    if absent:
        raise InputError(f"feature column(s) missing from a frame to compare: {', '.join(absent)}")
    unplaced = _unplaced_frame([], [], [], [])
    if on is not None:
        training, recomputed, unplaced = _align_on(training, recomputed, list(on))
    else:
        missing = ~training.index.isin(recomputed.index)
        if missing.any():
            lost = training[missing]
            unplaced = _unplaced_frame(lost.index, _col(lost, "gene_id"), _col(lost, "position"),
                                       "no recomputed row")
            training = training[~missing]
        recomputed = recomputed.loc[training.index]
    row_ids = training.index.to_numpy()
    gene = _col(training, "gene_id")
    position = _col(training, "position")
    extra = None if extra_id is None else extra_id.reindex(recomputed.index).to_numpy()
    groups = groups or {}
    results: list[FeatureSkew] = []
    differing_parts: list[pd.DataFrame] = []
    for name in features:  # a loop over the manifest's columns, vectorised over rows
        raw = training[name]
        t = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        unparseable = int((np.isnan(t) & raw.notna().to_numpy()).sum())
        r = recomputed[name].to_numpy(dtype=np.float64, na_value=np.nan)
        bad = differs(t, r, rtol, atol)
        with np.errstate(invalid="ignore"):
            diff = t - r
        finite = np.isfinite(diff)
        absdiff = np.abs(diff)
        nan_mismatch = bad & (np.isnan(t) ^ np.isnan(r))
        bad_finite = bad & finite
        report = FeatureSkew(
            name=name, group=groups.get(name, ""), rows_compared=len(t),
            rows_differing=int(bad.sum()), nan_mismatches=int(nan_mismatch.sum()),
            unparseable=unparseable,
            max_abs_diff=float(absdiff[finite].max()) if finite.any() else float("nan"),
            median_abs_diff=float(np.median(absdiff[finite])) if finite.any() else float("nan"),
            median_abs_diff_differing=(float(np.median(absdiff[bad_finite])) if bad_finite.any()
                                       else float("nan")),
            diffs=diff[bad_finite],
        )
        if imputed is not None and name in imputed.imputed:
            report.imputed_rows = int(imputed.imputed[name])
            report.imputed_reason = imputed.reasons.get(name, "")
        if bad.any():
            where = np.flatnonzero(bad)
            rank = np.where(finite[where], absdiff[where], np.inf)
            top = where[np.argsort(-rank, kind="stable")[:examples]]
            for i in top:
                example = {"row": row_ids[i], "gene_id": gene[i], "position": position[i],
                           "training": raw.iloc[i] if unparseable and np.isnan(t[i]) else t[i],
                           "recomputed": r[i], "abs_diff": absdiff[i] if finite[i] else None}
                if extra is not None:
                    example["genomic_position"] = extra[i]
                report.examples.append(_jsonable(example))
            differing_parts.append(pd.DataFrame({
                "row": row_ids[where], "gene_id": gene[where], "position": position[where],
                "feature": name, "training": t[where], "recomputed": r[where]}))
        results.append(report)
    differing = (pd.concat(differing_parts, ignore_index=True) if differing_parts else
                 pd.DataFrame({"row": pd.Series([], dtype=np.int64), "gene_id": pd.Series([], dtype="str"),
                               "position": pd.Series([], dtype=np.int64), "feature": pd.Series([], dtype="str"),
                               "training": pd.Series([], dtype=np.float64),
                               "recomputed": pd.Series([], dtype=np.float64)}))
    return SkewReport(features=results, rtol=rtol, atol=atol, rows_training=len(training) + len(unplaced),
                      rows_compared=len(training), unplaced=unplaced, differing=differing)


def zero_kmer_rows(training: pd.DataFrame, recomputed: pd.DataFrame, kmers: Sequence[str]) -> list[int]:
    """Index labels of rows whose k-mer columns are all 0 in ``training`` but not in
    ``recomputed`` (aligned frames): the signature of zero-filled k-mers."""
    if not kmers:
        return []
    block = training[list(kmers)]
    try:
        t = block.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):  # text in a k-mer column: those values count as NaN
        t = block.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    r = recomputed[list(kmers)].to_numpy(dtype=np.float64, na_value=np.nan)
    hit = (t == 0).all(axis=1) & (np.nan_to_num(r) != 0).any(axis=1)
    return [int(i) for i in training.index[hit]]


def _align_on(training: pd.DataFrame, recomputed: pd.DataFrame, on: list[str]
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pair rows on key columns ``on`` (the k-th duplicate with the k-th duplicate)."""
    occurrence = "_occurrence"
    left = training[on].assign(**{occurrence: training.groupby(on, sort=False).cumcount().to_numpy()})
    right = recomputed[on].assign(**{occurrence: recomputed.groupby(on, sort=False).cumcount().to_numpy()})
    left_i = pd.MultiIndex.from_frame(left)
    right_i = pd.MultiIndex.from_frame(right)
    partner = right_i.get_indexer(left_i)
    found = partner >= 0
    lost = training[~found]
    unplaced = _unplaced_frame(lost.index, _col(lost, "gene_id"), _col(lost, "position"),
                               "no recomputed row with this key")
    return training[found], recomputed.iloc[partner[found]].set_axis(training.index[found]), unplaced


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name in frame.columns:
        return frame[name].to_numpy(dtype=object)
    return np.full(len(frame), None, dtype=object)


def _unplaced_frame(rows, gene, position, reason) -> pd.DataFrame:
    n = len(rows)
    return pd.DataFrame({
        "row": np.asarray(rows, dtype=np.int64),
        "gene_id": np.asarray(gene, dtype=object) if n else np.zeros(0, dtype=object),
        "position": np.asarray(position, dtype=object) if n else np.zeros(0, dtype=object),
        "reason": (np.full(n, reason, dtype=object) if isinstance(reason, str)
                   else np.asarray(reason, dtype=object)),
    })


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, NaN/inf as None, containers recursed."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


# --- reading -----------------------------------------------------------------------------------
def table_columns(path: str | Path, label: str = "training") -> list[str]:
    """Column names of a Parquet/TSV/CSV file, directory or glob (local or fsspec URL), read
    cheaply from the first file (Parquet footer or header line)."""
    from .io import inspect_input

    return list(inspect_input(str(path), label=label).columns)


def read_table(path: str | Path, columns: Sequence[str] | None = None, label: str = "training"
               ) -> pd.DataFrame:
    """A Parquet/TSV/CSV file, directory or glob (local or fsspec URL; files resolved as ``run``
    resolves its inputs) as one pandas frame, with only ``columns`` when given (all of which must
    exist). Values are kept as written (``gene_id`` and ``strand`` as strings): a bad position is
    the caller's to report, not a reading error."""
    import fsspec

    from .io import inspect_input

    source = inspect_input(str(path), label=label)
    if columns is not None:
        absent = [c for c in columns if c not in source.columns]
        if absent:
            shown = ", ".join(source.columns[:40]) + (" ..." if len(source.columns) > 40 else "")
            raise InputError(f"{label} file {source.files[0]}: missing column(s) {', '.join(absent)}; "
                             f"columns present: {shown}")
    wanted = list(columns) if columns is not None else None
    parts = []
    for file in source.files:
        try:
            if source.format == "parquet":
                parts.append(pd.read_parquet(file, columns=wanted,
                                             storage_options=source.storage_options))
            else:
                with fsspec.open(file, "rb", compression=source.compression,
                                 **(source.storage_options or {})) as handle:
                    parts.append(pd.read_csv(handle, sep=source.sep, usecols=wanted,
                                             dtype={"gene_id": "str", "strand": "str"}))
        except (OSError, ValueError) as exc:
            raise InputError(f"{label} file {file}: cannot be read ({exc})") from None
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if wanted is not None:
        frame = frame[wanted]
    return frame.reset_index(drop=True)


# --- placing rows ------------------------------------------------------------------------------
def place_rows(training: pd.DataFrame, *, genomic: Any = None, track_span: pd.DataFrame | None = None,
               config: EnrichConfig = EnrichConfig(), need_sequence: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """(reason, position) per training row: ``reason`` is '' where the row can be recomputed, else
    why not; ``position`` is the row's integer position as given (-1 where it is not one).

    genomic: the genomic cache (its ``gene_table``: gene_start, gene_end, strand, seq_offset).
    track_span: per gene of the track (index gene_id), columns ``lo``/``hi`` (its extent); rows of
        genes absent from it cannot get their context from the track.
    """
    n = len(training)
    reason = np.full(n, "", dtype=object)

    def mark(mask: np.ndarray, why: str) -> None:
        reason[mask & (reason == "")] = why

    gene = training["gene_id"]
    mark(gene.isna().to_numpy() | (gene.astype("str").str.strip() == "").to_numpy(), "gene_id missing")
    raw = pd.to_numeric(training["position"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    integral = np.isfinite(raw) & (raw == np.round(raw))
    mark(~integral, "position missing or not an integer")
    position = np.where(integral, raw, -1).astype(np.int64)
    gene_ids = pd.Index(gene.astype("str").to_numpy(dtype=object))
    if genomic is not None:
        table = genomic.gene_table
        idx = table.index.get_indexer(gene_ids)
        found = idx >= 0
        mark(~found, "gene not in the annotation")
        take = np.maximum(idx, 0)
        start = table["gene_start"].to_numpy()[take]
        end = table["gene_end"].to_numpy()[take]
        if config.coordinates == "gene_relative":
            outside = (position < 0) | (position > end - start)
            mark(found & outside, "gene-relative position outside its gene")
        else:
            mark(found & ((position < start) | (position > end)), "position outside its gene")
        if need_sequence:
            mark(found & (table["seq_offset"].to_numpy()[take] < 0), "no genome sequence for the gene")
        if "strand" in training.columns:
            given = training["strand"].astype("str").to_numpy(dtype=object)
            known = np.isin(given, ["+", "-"])
            mark(found & known & (given != table["strand"].astype("str").to_numpy(dtype=object)[take]),
                 "strand differs from the annotation")
    elif config.coordinates == "gene_relative":
        raise ConfigError("--coordinates gene_relative needs the annotation (--annotation or --cache) "
                          "to convert the training positions")
    if track_span is not None:
        idx = track_span.index.get_indexer(gene_ids)
        mark(idx < 0, "gene absent from the track")
        if genomic is None:
            take = np.maximum(idx, 0)
            lo = track_span["lo"].to_numpy()[take]
            hi = track_span["hi"].to_numpy()[take]
            mark((idx >= 0) & ((position < lo) | (position > hi)), "position outside its gene's track")
    return reason, position


# --- recomputing ---------------------------------------------------------------------------------
def recompute_local(inputs: pd.DataFrame, manifest: Manifest, *, genomic: Any = None,
                    track: pd.DataFrame | None = None, config: EnrichConfig = EnrichConfig(),
                    partition_rows: int = 200_000) -> tuple[pd.DataFrame, EnrichReport]:
    """The engine's per-bin function (``engine.tasks.enrich_bin``: the row checks, the
    gene-then-position order, the pure core) over gene-partitions of ``inputs`` in this process
    (no Dask), so that both engines compute the rows by one code path.

    Genes are packed whole into partitions of about ``partition_rows`` rows (the engine's plan);
    the track is split the same way once (sorted by partition, sliced by offsets). Output rows
    follow ``inputs`` (by their ``_training_row``, which ``config`` must keep).
    """
    from .engine.context import RunContext
    from .engine.partition import plan_partitions
    from .engine.quarantine import BinChecks, bin_checks
    from .engine.tasks import enrich_bin

    if inputs.empty:
        return enrich(inputs, manifest, genomic=genomic, track=track, config=config)
    genes = inputs["gene_id"].astype("str")
    plan = plan_partitions(genes.value_counts(sort=False), partition_rows, keep_order=True)
    checks = bin_checks({}, manifest, None, "in-process" if genomic is not None else None)
    ctx = RunContext(manifest, config, plan, tuple(inputs.columns),
                     checks=replace(checks, source="training rows"),
                     track_checks=BinChecks(source="track", need_annotation=False))
    row_bin = plan.bin_of(genes)
    order = np.argsort(row_bin, kind="stable")
    bounds = np.searchsorted(row_bin[order], np.arange(plan.n_bins + 1))
    track_parts = None
    if track is not None:
        t_bin = plan.bin_of(track["gene_id"].astype("str"))
        keep = np.flatnonzero(t_bin >= 0)
        t_order = keep[np.argsort(t_bin[keep], kind="stable")]
        track_parts = (track.iloc[t_order], np.searchsorted(t_bin[t_order], np.arange(plan.n_bins + 1)))
    outputs, report = [], EnrichReport()
    for b in range(plan.n_bins):  # one iteration per partition, not per gene
        part_track = None
        if track_parts is not None:
            part_track = track_parts[0].iloc[track_parts[1][b]:track_parts[1][b + 1]]
        done = enrich_bin(inputs.iloc[order[bounds[b]:bounds[b + 1]]], part_track, ctx, b,
                          genomic=genomic)
        outputs.append(done.frames[0])
        report = report.merge(done.report)
    out = pd.concat(outputs, ignore_index=True)
    out = out.set_index(out[ROW].to_numpy()).reindex(inputs[ROW].to_numpy())
    return out.set_axis(inputs.index), report


def recompute_dask(inputs: pd.DataFrame, manifest: Manifest, work_dir: Path, *,
                   cache_path: str | None = None, track_path: str | None = None,
                   config: EnrichConfig = EnrichConfig(), workers: int = 2,
                   processes: bool = True, client: Any = None, log: Log | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   ) -> tuple[pd.DataFrame, EnrichReport]:
    """The engine's ``run_enrichment`` on ``inputs`` (written to ``work_dir`` as Parquet), read
    back and put in the order of ``inputs`` by the ``_training_row`` column (a row the engine
    rejected comes back all-NaN, its ``_training_row`` too)."""
    from .engine.run import run_enrichment

    positions = work_dir / "positions.parquet"
    inputs.to_parquet(positions, index=False)
    out = work_dir / "recomputed"
    summary = run_enrichment(str(positions), manifest, str(out), track=track_path, cache=cache_path,
                             config=config, workers=workers, processes=processes, client=client,
                             log=log, progress=progress)
    recomputed = pd.read_parquet(out)
    # rows the engine rejected (its input validation) come back all-NaN, ROW included
    recomputed = recomputed.set_index(ROW, drop=False).reindex(inputs[ROW].to_numpy())
    recomputed.index = inputs.index
    report = EnrichReport(rows=summary.rows_written, imputed=dict(summary.imputed),
                          reasons=dict(summary.imputed_reasons))
    return recomputed, report


def _track_extent(track_path: str) -> pd.DataFrame:
    """Per gene of the track (index gene_id): its extent lo/hi, computed out of core with Dask
    (only ``gene_id`` and ``position`` are read)."""
    from .io import inspect_input, read_dask

    source = inspect_input(str(track_path), label="track")
    track = read_dask(source, ["gene_id", "position"])
    span = track.groupby("gene_id")["position"].agg(["min", "max"]).compute()
    span.index = span.index.astype("str")
    return span.rename(columns={"min": "lo", "max": "hi"})


def _track_span(track_path: str, genes: pd.Index) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(track rows of ``genes``, per-gene extent lo/hi) of the track file, read into memory."""
    columns = table_columns(track_path, label="track")
    wanted = [c for c in ("gene_id", "position", "donor_score", "acceptor_score", "neither_score",
                          "strand") if c in columns]
    track = read_table(track_path, wanted, label="track")
    track["gene_id"] = track["gene_id"].astype("str")
    track = track[is_in(track["gene_id"], genes)].reset_index(drop=True)
    span = track.groupby("gene_id", sort=False)["position"].agg(lo="min", hi="max")
    return track, span


def skew_check(training: str | Path | pd.DataFrame, manifest: str | Path | Manifest, *,
               genome: str | None = None, annotation: str | None = None, cache: str | None = None,
               track: str | None = None, rtol: float = RTOL, atol: float = ATOL,
               config: EnrichConfig = EnrichConfig(), engine: Engine = "dask",
               workers: int = 2, processes: bool = True, client: Any = None,
               work_dir: str | Path | None = None, examples: int = EXAMPLES,
               log: Log | None = None, gene_key: str | None = None,
               seq_aliases: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> SkewReport:
    """Recompute every manifest feature of the training rows and compare with the training values.

    training: the training feature matrix (path to TSV/CSV/Parquet or a directory, or a frame).
    genome/annotation or cache: the genomic inputs (needed for genomic, sequence and k-mer
        features and for gene-relative positions); a cache is built from genome/annotation
        (with ``gene_key`` and ``seq_aliases``, as for ``run``).
    track: a full base-prediction track; when given, the context is recomputed from it (the
        training's ``context_score_*`` are then compared, not used); otherwise the training's
        ``context_score_*`` columns are the context input.
    config: ``coordinates`` says whether training positions are genomic or gene-relative;
        ``context_track`` the context rule; ``missing`` is ignored (the check never stops on a
        feature it cannot compute: it lists it).
    engine: ``dask`` (the engine's distributed run, into ``work_dir`` then read back) or
        ``local`` (``core.enrich`` per gene-partition in this process).
    """
    say = log or (lambda message: None)
    if engine not in ("dask", "local"):
        raise ConfigError(f"engine must be 'dask' or 'local', not {engine!r}")
    if rtol < 0 or atol < 0:
        raise ConfigError(f"--rtol and --atol must be non-negative (got {rtol}, {atol})")
    manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    names = list(manifest.names)
    source = "<frame>" if isinstance(training, pd.DataFrame) else str(training)

    # 1. The training columns the check needs; everything else is ignored (and listed).
    all_columns = list(training.columns) if isinstance(training, pd.DataFrame) else table_columns(training)
    absent = [c for c in REQUIRED_COLUMNS if c not in all_columns]
    if absent:
        raise InputError(f"training file {source}: missing required column(s) {', '.join(absent)} "
                         f"(columns present: {', '.join(map(str, all_columns[:30]))})")
    feature_columns = [n for n in names if n in all_columns]
    context_present = all(c in all_columns for c in CONTEXT_COLUMNS)
    use_training_context = context_present and track is None
    id_extra = ["strand"] if "strand" in all_columns and "strand" not in names else []
    wanted = list(dict.fromkeys(list(REQUIRED_COLUMNS) + id_extra
                                + (list(CONTEXT_COLUMNS) if context_present else []) + feature_columns))
    ignored = [c for c in all_columns if c not in set(wanted)]
    frame = (training[wanted].reset_index(drop=True) if isinstance(training, pd.DataFrame)
             else read_table(training, wanted))
    say(f"training: {len(frame):,} rows, {len(feature_columns)} of {len(names)} manifest features "
        f"present, {len(ignored)} column(s) ignored")

    # 2. Engine, genomic cache and track.
    engine_used = engine
    cache_path = _resolve_cache(cache, genome, annotation, work_dir, say, gene_key, seq_aliases)
    genomic = None
    if cache_path is not None:
        from .genome.cache import load_cached
        from .genome.geneids import reconcile_gene_ids

        genomic = load_cached(cache_path)
        genomic = genomic.with_gene_aliases(reconcile_gene_ids(
            genomic, frame["gene_id"], label="training rows", need=False, log=say))
    has_sequence = bool(genomic is not None and getattr(genomic, "has_sequence",
                                                        len(getattr(genomic, "bases", ())) > 0))
    check_config = config.with_(missing="impute", keep_columns=(ROW,))
    not_recomputable = check_inputs(manifest, check_config, has_context_columns=use_training_context,
                                    has_track=track is not None, has_genome=has_sequence,
                                    has_annotation=genomic is not None)
    needs = manifest.requires
    track_frame = span = None
    if track is not None and CONTEXT in needs:
        if engine_used == "local":
            track_frame, span = _track_span(track, pd.Index(frame["gene_id"].astype("str").unique()))
        else:  # the workers read the track; the client only needs each gene's extent
            span = _track_extent(track)

    # 3. Place the rows; the unplaced ones are listed with the reason.
    need_sequence = SEQUENCE in needs and has_sequence and any(
        SEQUENCE in manifest.feature(n).requires for n in names if n not in not_recomputable)
    reason, position = place_rows(frame, genomic=genomic, track_span=span, config=config,
                                  need_sequence=need_sequence)
    placed = reason == ""
    if not placed.any():
        raise InputError(f"training file {source}: none of its {len(frame):,} rows could be placed "
                         "(" + "; ".join(f"{why}: {count:,} rows" for why, count in
                                         pd.Series(reason).value_counts().head(3).items()) + ")")
    unplaced = _unplaced_frame(np.flatnonzero(~placed), frame["gene_id"].to_numpy(dtype=object)[~placed],
                               frame["position"].to_numpy(dtype=object)[~placed], reason[~placed])
    if len(unplaced):
        say(f"{len(unplaced):,} training row(s) cannot be placed and are not recomputed")

    # 4. Recompute the placed rows.
    input_columns = list(REQUIRED_COLUMNS) + (list(CONTEXT_COLUMNS) if use_training_context else [])
    if genomic is None and "strand" in id_extra:
        input_columns.append("strand")
    inputs = frame.loc[placed, input_columns].copy()
    inputs["gene_id"] = inputs["gene_id"].astype("str")
    inputs["position"] = position[placed]
    inputs[ROW] = np.flatnonzero(placed).astype(np.int64)
    # Rows with identical inputs (a position repeated per transcript, say) are recomputed once:
    # cheaper, and the engine's validation would reject repeated (gene_id, position) rows.
    codes = inputs.groupby(input_columns, sort=False, dropna=False).ngroup().to_numpy()
    _, first = np.unique(codes, return_index=True)
    distinct = inputs.iloc[first]
    if len(distinct) < len(inputs):
        say(f"{len(inputs) - len(distinct):,} training row(s) repeat another row's inputs: "
            f"recomputing {len(distinct):,} distinct rows")
    if engine_used == "dask":
        with tempfile.TemporaryDirectory(prefix="skew-recompute-", dir=work_dir) as tmp:
            recomputed, enrich_report = recompute_dask(
                distinct, manifest, Path(tmp), cache_path=cache_path,
                track_path=track if CONTEXT in needs else None, config=check_config,
                workers=workers, processes=processes, client=client, log=say, progress=progress)
    else:
        recomputed, enrich_report = recompute_local(distinct, manifest, genomic=genomic,
                                                    track=track_frame, config=check_config)
    recomputed = recomputed.iloc[codes].set_axis(inputs.index)
    lost = recomputed[ROW].isna().to_numpy()
    if lost.any():  # rows the engine's input validation rejected: listed, never dropped silently
        rows_lost = inputs.index[lost]
        reason[rows_lost] = "rejected by the engine's input validation"
        unplaced = pd.concat([unplaced, _unplaced_frame(
            rows_lost, frame.loc[rows_lost, "gene_id"], frame.loc[rows_lost, "position"],
            "rejected by the engine's input validation")]).sort_values("row", ignore_index=True)
        placed = reason == ""
        recomputed = recomputed[~lost]

    # 5. Compare the features both sides have and the recompute could compute.
    not_compared: dict[str, str] = {}
    for name in names:
        why = []
        if name in not_recomputable:
            why.append(f"not recomputable: {not_recomputable[name]}")
        if name not in all_columns:
            why.append("absent from the training file")
        if why:
            not_compared[name] = "; ".join(why)
    compared = [n for n in names if n not in not_compared]
    train_rows = frame.loc[placed]
    genomic_position = (recomputed["position"] if config.coordinates == "gene_relative" else None)
    report = compare_features(train_rows, recomputed, compared, rtol=rtol, atol=atol,
                              groups={n: manifest.feature(n).group for n in names},
                              examples=examples, imputed=enrich_report, extra_id=genomic_position)
    report.rows_training = len(frame)
    report.zero_kmer_rows = zero_kmer_rows(train_rows, recomputed,
                                           [n for n in compared if manifest.feature(n).group == "kmer"])
    report.unplaced = unplaced
    report.not_compared = not_compared
    report.ignored_columns = ignored
    report.settings = {
        "training": source, "manifest": manifest.source, "model": manifest.name,
        "manifest_features": len(names), "cache": cache_path, "track": track,
        "coordinates": config.coordinates, "context_track": config.context_track,
        "context_source": ("track" if track is not None else
                           "training context_score_* columns (context features are checked for "
                           "consistency with them, not recomputed from a track)"
                           if use_training_context else "none"),
        "engine": engine_used, "rtol": rtol, "atol": atol,
    }
    return report


def _resolve_cache(cache: str | None, genome: str | None, annotation: str | None,
                   work_dir: str | Path | None, say: Log, gene_key: str | None = None,
                   seq_aliases: str | None = None) -> str | None:
    """Like ``run``: --cache as given, or built (or reused) beside the report from
    --genome/--annotation (.dask-enrich-cache/<inputs key>)."""
    from .engine.run import resolve_cache

    return resolve_cache(cache, genome, annotation, str(Path(work_dir or "skew_report")), log=say,
                         gene_key=gene_key, seq_aliases=seq_aliases)
