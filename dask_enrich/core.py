"""The enrichment core: positions in, the manifest's feature matrix out (pandas/numpy, no Dask).

``enrich`` computes every feature the manifest names from what the run was given (scores, context
columns or a track, the genomic cache) in one loop over their kernels (as the registry binds them),
applies the missing-value policy, and returns the frame with identifying columns first and the
features in manifest order. Row i of the output is row i of the
input. The Dask engine calls it once per gene-partition; the seed-compatible API wraps it.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

# the required position columns and the context columns, declared in columns.py
from .columns import CONTEXT_COLUMNS, POSITION_COLUMNS as REQUIRED_COLUMNS
from .config import EnrichConfig
from .errors import InputError, MissingFeatureError, PluginError
from .features import registry
from .features.context import choose_track, context_from_track, gene_codes_in
from .features.registry import ANNOTATION, CONTEXT, INPUT_HINTS, SEQUENCE
from .gene_codes import GeneCodes
from .manifest import Manifest
from .validate import OUTSIDE_GENE, place

if TYPE_CHECKING:  # pragma: no cover
    from .genome.cache import GenomicCache


@dataclass
class EnrichReport:
    """What a call of ``enrich`` had to impute, and why."""

    rows: int = 0
    imputed: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def merge(self, other: "EnrichReport") -> "EnrichReport":
        """The report of two runs together (counts added)."""
        imputed = dict(self.imputed)
        for name, count in other.imputed.items():
            imputed[name] = imputed.get(name, 0) + count
        return EnrichReport(self.rows + other.rows, imputed, {**self.reasons, **other.reasons})

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "imputed": dict(self.imputed), "reasons": dict(self.reasons)}


# --- Output layout -------------------------------------------------------------------------------
def _id_columns(manifest: Manifest, input_columns: Mapping[str, Any], config: EnrichConfig
                ) -> list[tuple[str, str]]:
    """(input column, output column) pairs of the identifying and kept columns, in output order."""
    pairs = [(c, registry.id_column_name(c, manifest.names))
             for c in registry.ID_COLUMNS if c in input_columns or c in ("gene_id", "position")]
    pairs += [(c, c) for c in config.keep_columns if c not in registry.ID_COLUMNS]
    clash = [out for _, out in pairs if out in set(manifest.names)]
    if clash:
        raise InputError(f"kept column(s) {', '.join(clash)} have the name of a manifest feature")
    return pairs


def output_meta(manifest: Manifest, input_dtypes: Mapping[str, Any],
                config: EnrichConfig = EnrichConfig()) -> pd.DataFrame:
    """An empty frame with exactly the columns and dtypes ``enrich`` returns for such an input."""
    id_dtypes = {}
    for source, out in _id_columns(manifest, input_dtypes, config):
        id_dtypes[out] = (registry.ID_COLUMNS[source][0] if source in registry.ID_COLUMNS
                          else input_dtypes[source])
    return registry.meta_frame(manifest.features, id_dtypes)


def output_schema(manifest: Manifest, input_dtypes: Mapping[str, Any],
                  config: EnrichConfig = EnrichConfig()) -> pa.Schema:
    """The pyarrow schema of every output file for such an input (derived from the registry)."""
    id_types = {}
    for source, out in _id_columns(manifest, input_dtypes, config):
        if source in registry.ID_COLUMNS:
            id_types[out] = registry.ID_COLUMNS[source][1]
        else:
            id_types[out] = pa.Schema.from_pandas(
                pd.DataFrame({source: pd.Series([], dtype=input_dtypes[source])}),
                preserve_index=False).field(source).type
    return registry.arrow_schema(manifest.features, id_types)


# --- Up-front check ------------------------------------------------------------------------------
def check_inputs(manifest: Manifest, config: EnrichConfig, *, has_context_columns: bool,
                 has_track: bool, has_genome: bool, has_annotation: bool) -> dict[str, str]:
    """Features that cannot be computed from the run's inputs, with the reason.

    With the ``error`` policy this raises MissingFeatureError naming them and the input that would
    provide them; with ``impute`` it returns them (feature -> reason) so the run can say so early.
    """
    available = {
        CONTEXT: has_context_columns or has_track,
        SEQUENCE: has_genome and has_annotation,
        ANNOTATION: has_annotation,
    }
    missing: dict[str, str] = {}
    for feature in manifest.features:
        name = feature.name
        for need in sorted(feature.requires):
            if need in available and not available[need]:
                missing[name] = f"needs {INPUT_HINTS[need]}"
                break
    if missing and config.missing == "error":
        raise MissingFeatureError(_missing_message(missing))
    return missing


def _missing_message(missing: Mapping[str, str], rows: Mapping[str, int] | None = None) -> str:
    by_reason: dict[str, list[str]] = defaultdict(list)
    for name, reason in missing.items():
        by_reason[reason].append(name)
    parts = []
    for reason, names in by_reason.items():
        kmers = [n for n in names if registry.parse_kmer(n)]
        named = [n for n in names if not registry.parse_kmer(n)]
        listed = ", ".join(named + ([f"{len(kmers)} k-mers ({kmers[0]}...)"] if kmers else []))
        count = f" in {max(rows[n] for n in names)} rows" if rows else ""
        parts.append(f"{listed}{count}: {reason}")
    return ("cannot compute " + f"{len(missing)} manifest feature(s): " + "; ".join(parts)
            + ". Give the input named, or use --missing impute (missing='impute') to fill them "
            "with training medians and report it.")


# --- The core ------------------------------------------------------------------------------------
def check_position_columns(columns, config: EnrichConfig = EnrichConfig()) -> None:
    """InputError unless ``columns`` hold the required position columns and ``keep_columns``."""
    absent = [c for c in REQUIRED_COLUMNS if c not in columns]
    if absent:
        raise InputError(f"positions lack required column(s): {', '.join(absent)}")
    missing_keep = [c for c in config.keep_columns if c not in columns]
    if missing_keep:
        raise InputError(f"--keep-columns names column(s) not in the positions: {', '.join(missing_keep)}")


def enrich(frame: pd.DataFrame, manifest: Manifest, *, genomic: "GenomicCache | None" = None,
           track: pd.DataFrame | None = None, config: EnrichConfig = EnrichConfig(),
           genes: GeneCodes | None = None) -> tuple[pd.DataFrame, EnrichReport]:
    """The manifest's features for every row of ``frame``, and a report of what was imputed.
    ``genes``: ``frame``'s gene ids already factorised (its rows, in its order), else done here."""
    check_position_columns(frame.columns, config)
    inputs = PartitionInputs(frame, genomic, track, config, genes)
    columns: dict[str, np.ndarray] = {}
    missing_rows: dict[str, np.ndarray] = {}
    reasons: dict[str, str] = {}
    for kernel_names in _group_by_kernel(manifest):  # the one loop: each kernel once per partition
        for computed in _run_kernel(inputs, manifest, kernel_names):
            if computed.missing is not None and computed.missing.any():
                for name in computed.columns:
                    missing_rows[name], reasons[name] = computed.missing, computed.reason
                columns.update(computed.columns)
            else:  # an empty partition: nothing to impute, the placeholders become empty columns
                columns.update({k: np.zeros(len(frame)) if v is UNAVAILABLE else v
                                for k, v in computed.columns.items()})

    report = EnrichReport(rows=len(frame))
    if missing_rows:
        count_of_mask = {id(m): int(m.sum()) for m in missing_rows.values()}  # masks are shared
        counts = {n: count_of_mask[id(m)] for n, m in missing_rows.items()}
        if config.missing == "error":
            raise MissingFeatureError(_missing_message(reasons, counts))
        whole = [n for n in missing_rows if counts[n] == len(frame)]  # every row filled
        columns.update(_constant_columns(whole, len(frame), manifest))
        for name, mask in missing_rows.items():
            if counts[name] < len(frame):
                columns[name] = _impute(columns[name], mask, manifest, name)
            report.imputed[name] = counts[name]
            report.reasons[name] = reasons[name]
    return _assemble(frame, manifest, columns, inputs, config), report


#: The placeholder of a feature whose input is absent for every row: no array is made for it;
#: the missing-value policy refuses it or fills the whole column.
UNAVAILABLE = None


def _group_by_kernel(manifest: Manifest) -> list[list[str]]:
    """The manifest's names grouped by kernel (in manifest order): each kernel is called once."""
    groups: dict[int, list[str]] = {}
    for feature in manifest.features:
        groups.setdefault(id(feature.kernel), []).append(feature.name)
    return list(groups.values())


def _run_kernel(inputs: "PartitionInputs", manifest: Manifest, names: list[str]
                ) -> list[registry.Computed]:
    """One kernel's columns for ``names``: names whose inputs the run lacks are missing for every
    row (no array is made; the policy refuses or fills them), the kernel computes the rest."""
    n = len(inputs.frame)
    ready: list[str] = []
    lacking: dict[str, list[str]] = defaultdict(list)  # hint -> names
    for name in names:
        unavailable = [need for need in sorted(manifest.feature(name).requires) if not inputs.has(need)]
        if unavailable:
            lacking[f"needs {INPUT_HINTS[unavailable[0]]}"].append(name)
        else:
            ready.append(name)
    out = [registry.Computed(dict.fromkeys(group, UNAVAILABLE), np.ones(n, dtype=bool), hint)
           for hint, group in lacking.items()]
    if ready:
        first = manifest.feature(ready[0])
        if first.plugin is None:
            out.append(first.kernel(inputs, ready))
        else:
            out.append(_plugin_columns(inputs, manifest, ready))
    return out


def _plugin_columns(inputs: "PartitionInputs", manifest: Manifest, names: list[str]) -> registry.Computed:
    """Call one plugin kernel for its requested names and check what it returns."""
    first = manifest.feature(names[0])
    n = len(inputs.frame)
    where = f"feature plugin {first.plugin!r}"
    try:
        result = first.kernel(inputs, list(names))
    except Exception as exc:
        raise PluginError(f"{where} failed computing {', '.join(names)}: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(result, Mapping):
        if len(names) != 1:
            raise PluginError(f"{where} must return a mapping name -> column for {names}")
        result = {names[0]: result}
    values: dict[str, np.ndarray] = {}
    absent = np.zeros(n, dtype=bool)
    for name in names:
        if name not in result:
            raise PluginError(f"{where} returned no column for feature {name!r}")
        column = result[name]
        mask = np.ma.getmaskarray(column) if np.ma.isMaskedArray(column) else None
        column = np.asarray(np.ma.getdata(column))
        declared = manifest.feature(name).dtype
        if column.shape != (n,):
            raise PluginError(f"{where} returned {column.shape[0] if column.ndim else 0} values "
                              f"for feature {name!r}, the partition has {n} rows")
        if column.dtype != declared:
            raise PluginError(f"{where} returned dtype {column.dtype} for feature {name!r}, "
                              f"declared {declared}")
        if mask is None and column.dtype.kind == "f":
            mask = np.isnan(column)
        if mask is not None:
            absent |= mask
        values[name] = column
    return registry.Computed(values, absent, f"the feature plugin {first.plugin!r} could not compute it")


def impute_value(manifest: Manifest, name: str) -> float | int:
    """The ``impute`` policy's fill value: the training median when the model directory gives one,
    else the feature's documented constant (rounded for integer features)."""
    feature = manifest.feature(name)
    median = manifest.median(name)
    fill = feature.impute_constant if median is None else median
    return round(fill) if feature.is_integer else fill


def _impute(values: np.ndarray, mask: np.ndarray, manifest: Manifest, name: str) -> np.ndarray:
    """``values`` with the rows of ``mask`` set to the feature's fill value (a new array)."""
    out = np.array(values, dtype=manifest.feature(name).dtype, copy=True)
    out[mask] = impute_value(manifest, name)
    return out


def _constant_columns(names: list[str], n: int, manifest: Manifest) -> dict[str, np.ndarray]:
    """Each feature of ``names`` filled with its fill value on all ``n`` rows (a whole input
    missing: no genome, no track...). The columns of one dtype are the rows of one 2-D array:
    one large allocation (huge pages where the system gives them) instead of one per column,
    about twice as fast to fill for a manifest's dozens of k-mers."""
    out: dict[str, np.ndarray] = {}
    by_dtype: dict[np.dtype, list[str]] = defaultdict(list)
    for name in names:
        by_dtype[np.dtype(manifest.feature(name).dtype)].append(name)
    for dtype, group in by_dtype.items():
        block = np.empty((len(group), n), dtype=dtype)
        for row, name in zip(block, group):  # one iteration per feature
            row.fill(impute_value(manifest, name))
            out[name] = row
    return out


def _assemble(frame: pd.DataFrame, manifest: Manifest, columns: dict[str, np.ndarray],
              inputs: "PartitionInputs", config: EnrichConfig) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for source, out in _id_columns(manifest, frame.columns, config):
        if source == "position":
            data[out] = inputs.positions
        elif source in registry.ID_COLUMNS:
            data[out] = frame[source].astype(registry.ID_COLUMNS[source][0]).array
        else:
            data[out] = frame[source].array
    for name in manifest.names:
        data[name] = np.asarray(columns[name], dtype=manifest.feature(name).dtype)
    # copy=False keeps one block per column: no consolidation copy of the whole matrix.
    return pd.DataFrame(data, index=frame.index, copy=False)


class PartitionInputs:
    """Per-row facts of a partition, resolved once and shared by every kernel (plugins included).

    Attributes: ``frame`` (the positions), ``d``/``a``/``n`` (scores, float64), ``positions``
    (1-based genomic, int64), ``minus`` and ``strand_known`` (bool), ``gene_codes`` and
    ``gene_uniques`` (factorised gene ids), ``gene_row`` (row of each position's gene in the gene
    table, -1 if absent) and ``in_annotation``, ``genomic`` (the genomic cache or None), ``track``
    (the partition's base-prediction track or None) and ``config``. ``genes``: the frame's gene
    ids already factorised (None: on first use).
    """

    def __init__(self, frame: pd.DataFrame, genomic: "GenomicCache | None",
                 track: pd.DataFrame | None, config: EnrichConfig, genes: GeneCodes | None = None):
        self.frame, self.genomic, self.track, self.config = frame, genomic, track, config
        self._genes = genes.checked(len(frame)) if genes is not None else None
        self.d = _float_column(frame, "donor_score")
        self.a = _float_column(frame, "acceptor_score")
        self.n = _float_column(frame, "neither_score")
        self.positions = self._genomic_positions(frame["position"].to_numpy())
        self.minus, self.strand_known = self._strands()

    # --- identity (worked out on first use: score-only manifests need none of it) -----------------
    @cached_property
    def _factorised_genes(self) -> tuple[np.ndarray, pd.Index]:
        genes = self._genes if self._genes is not None else GeneCodes.of(self.frame["gene_id"])
        return genes.codes, genes.uniques

    @property
    def gene_codes(self) -> np.ndarray:
        """Code of each row's gene id (an index into :attr:`gene_uniques`)."""
        return self._factorised_genes[0]

    @property
    def gene_uniques(self) -> pd.Index:
        """The distinct gene ids, in order of first appearance."""
        return self._factorised_genes[1]

    @cached_property
    def track_gene_codes(self) -> np.ndarray:
        """Index in :attr:`gene_uniques` of each track row's gene id (-1: not a gene of the frame)."""
        return gene_codes_in(self.track["gene_id"], self.gene_uniques)

    @cached_property
    def gene_row(self) -> np.ndarray:
        """Row of each position's gene in the gene table (-1: absent, or no annotation)."""
        if self.genomic is None:
            return np.full(len(self.frame), -1, dtype=np.int64)
        return self.genomic.gene_table.index.get_indexer(self.gene_uniques)[self.gene_codes]

    @cached_property
    def in_annotation(self) -> np.ndarray:
        return self.gene_row >= 0

    @cached_property
    def _gene_take(self) -> np.ndarray:
        """The gene-table row each row takes its gene's columns from (0 where absent)."""
        return np.where(self.in_annotation, self.gene_row, 0)

    def gene_column(self, name: str) -> np.ndarray:
        """Column ``name`` of the gene table for each row (meaningless where ``~in_annotation``)."""
        return self.genomic.gene_table[name].to_numpy()[self._gene_take]

    def _genomic_positions(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        if self.config.coordinates == "genomic":
            return positions
        if self.genomic is None:
            raise InputError("gene-relative positions need the annotation (--annotation or --cache)")
        if not self.in_annotation.all():
            lost = pd.unique(self.frame["gene_id"].to_numpy()[~self.in_annotation])[:5]
            raise InputError("gene-relative positions of genes absent from the annotation cannot be "
                             f"converted: {', '.join(map(str, lost))}")
        placement = place(self.genomic.gene_table, self.gene_row, positions, coordinates="gene_relative")
        start, end = placement.start, placement.end
        minus = self.gene_column("strand") == "-"
        genomic = np.where(minus, end - positions, start + positions)
        outside = placement.code == OUTSIDE_GENE
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise InputError(
                f"{int(outside.sum())} gene-relative position(s) fall outside their gene, e.g. row {i}: "
                f"gene {self.frame['gene_id'].iloc[i]} offset {positions[i]} (gene length "
                f"{end[i] - start[i] + 1})")
        return genomic

    def _strands(self) -> tuple[np.ndarray, np.ndarray]:
        """(minus, known): strand of each row from the positions, else the annotation, else the
        track; a conflict between sources is an InputError."""
        n = len(self.frame)
        sources: list[tuple[str, np.ndarray, np.ndarray]] = []  # (name, minus, known)
        if "strand" in self.frame.columns:
            sources.append(("positions", *_minus_known(self.frame["strand"])))
        if self.genomic is not None:
            minus, known = _minus_known(self.genomic.gene_table["strand"])
            at = np.where(self.in_annotation, self.gene_row, 0)
            sources.append(("annotation", minus[at] & self.in_annotation,
                            known[at] & self.in_annotation))
        if self.track is not None and "strand" in self.track.columns:
            # each gene's strand from its first track row (unknown for a gene absent from the track)
            genes, first = np.unique(self.track_gene_codes, return_index=True)
            first, genes = first[genes >= 0], genes[genes >= 0]
            minus = np.zeros(len(self.gene_uniques), dtype=bool)
            known = np.zeros(len(self.gene_uniques), dtype=bool)
            minus[genes], known[genes] = _minus_known(self.track["strand"].iloc[first])
            sources.append(("track", minus[self.gene_codes], known[self.gene_codes]))
        minus = np.zeros(n, dtype=bool)
        known = np.zeros(n, dtype=bool)
        for name, source_minus, ok in sources:
            clash = known & ok & (minus != source_minus)
            if clash.any():
                gene = self.frame["gene_id"].to_numpy()[np.flatnonzero(clash)[0]]
                raise InputError(f"strand conflict for gene {gene}: the {name} disagree with an "
                                 f"earlier source ({int(clash.sum())} rows)")
            take = ok & ~known
            minus[take] = source_minus[take]
            known |= ok
        return minus, known

    # --- context ----------------------------------------------------------------------------------
    def context(self) -> tuple[tuple[np.ndarray, ...] | None, np.ndarray | None, str]:
        """(m2, m1, p1, p2), the rows whose context is missing, and why."""
        frame = self.frame
        if all(c in frame.columns for c in CONTEXT_COLUMNS):
            values = tuple(_float_column(frame, c) for c in CONTEXT_COLUMNS)
            missing = _any_nan(values)
            return values, missing, "context_score_* value missing (NaN) in the positions"
        if self.track is None:
            return None, np.ones(len(frame), dtype=bool), f"needs {INPUT_HINTS[CONTEXT]}"
        track = self.track
        track_codes = self.track_gene_codes
        keep = track_codes >= 0
        track_codes = track_codes[keep]
        track_pos = track["position"].to_numpy()[keep].astype(np.int64)
        span_start, span_end = self._span_from_track(track_codes, track_pos)
        use_donor = choose_track(self.d, self.a, self.config.context_track)
        values = context_from_track(
            self.gene_codes, self.positions, self.minus, use_donor, span_start, span_end,
            track_codes, track_pos,
            _float_column(track, "donor_score")[keep], _float_column(track, "acceptor_score")[keep],
        )
        gap = _any_nan(values)
        missing = gap | ~self.strand_known
        return values, missing, self._context_reason(values, gap)

    def _context_reason(self, values: tuple[np.ndarray, ...], gap: np.ndarray) -> str:
        """Why context scores are missing, naming a gene and the track positions it lacks."""
        parts = []
        if gap.any():
            rows = np.flatnonzero(gap)
            i = int(rows[0])
            step = -1 if self.minus[i] else 1
            absent = [str(int(self.positions[i]) + offset * step)
                      for offset, column in zip(registry.CONTEXT_OFFSETS.values(), values)
                      if np.isnan(column[i])]
            parts.append(f"in-gene neighbour nucleotide(s) absent from the track (e.g. gene "
                         f"{self.gene_uniques[self.gene_codes[i]]}: position(s) {', '.join(absent)} "
                         f"around {int(self.positions[i])}; {len(rows):,} row(s))")
        unknown = ~self.strand_known
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            parts.append(f"the strand is unknown (e.g. gene {self.gene_uniques[self.gene_codes[i]]}; "
                         f"{int(unknown.sum()):,} row(s))")
        return "; ".join(parts) or "an in-gene neighbour nucleotide is absent from the track"

    def _span_from_track(self, track_codes: np.ndarray, track_pos: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Gene span per row: the annotation's, else the extent of the gene's track."""
        n_genes = len(self.gene_uniques)
        lo = np.full(n_genes, np.iinfo(np.int64).max)
        hi = np.full(n_genes, np.iinfo(np.int64).min)
        np.minimum.at(lo, track_codes, track_pos)
        np.maximum.at(hi, track_codes, track_pos)
        start, end = lo[self.gene_codes], hi[self.gene_codes]
        if self.genomic is not None:
            start = np.where(self.in_annotation, self.gene_column("gene_start"), start)
            end = np.where(self.in_annotation, self.gene_column("gene_end"), end)
        return start, end

    def has(self, need: str) -> bool:
        """Whether the run gave the input kind ``need`` (a ``registry`` input name)."""
        if need == CONTEXT:
            return self.track is not None or all(c in self.frame.columns for c in CONTEXT_COLUMNS)
        if need == SEQUENCE:
            return self.genomic is not None and getattr(self.genomic, "bases", None) is not None
        if need == ANNOTATION:
            return self.genomic is not None
        return True


def _any_nan(columns: tuple[np.ndarray, ...]) -> np.ndarray:
    """Rows where any of these equal-length float columns is NaN (no stacked copy)."""
    missing = np.isnan(columns[0])
    for column in columns[1:]:
        missing |= np.isnan(column)
    return missing


def _minus_known(strand: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(minus, known) per row of a strand column: '-' and either of '+'/'-' (one pass over the
    values, the string tests on its few distinct values)."""
    codes, uniques = pd.factorize(strand)
    text = np.asarray(uniques, dtype=object).astype(str)
    minus = np.append(text == "-", False)[codes]  # code -1 (missing) -> the appended False
    known = np.append((text == "-") | (text == "+"), False)[codes]
    return minus, known


def _float_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    try:
        return frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise InputError(f"column {name!r} must be numeric") from None
