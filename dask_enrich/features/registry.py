"""The feature registry: every feature is declared once, with the kernel that computes it.

Each :class:`Feature` carries its name, group, dtype, the inputs it needs, a one-line doc and its
kernel. The built-in features are declared by their kernel modules (:mod:`.scores`,
:mod:`.sequence`, :mod:`.genomic`, imported by the package in the spec's order); plugin features
through :mod:`.plugins`, into the tables of this module. The manifest checks, the output schema
(pandas dtypes, the Dask ``meta`` and the pyarrow schema), the missing-value policy, the core's
one loop over kernels and the docs (``dask-enrich features``) are all derived from here.

The kernel protocol, for every feature: ``kernel(inputs, names)`` gets the partition's
:class:`dask_enrich.core.PartitionInputs` and the names it is asked for (all declared with that
kernel), and returns their columns. Built-in kernels return a :class:`Computed` (columns, the rows
they could not compute and why); a plugin kernel returns one column or a ``{name: column}``
mapping (missing rows as NaN or masked entries), which the core checks. A kernel is only called
for names whose inputs the run has; the others are missing for every row.

k-mer features are not listed one by one: any name matching ``^(\\d+)mer_([ACGTN]+)$`` whose
k-mer has length k is a k-mer count feature, for any k and mixed k in one manifest.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from ..columns import CONTEXT_OFFSETS  # noqa: F401 (context column suffix -> offset)
from ..errors import ConfigError

# The inputs a feature can need. ``scores`` always come with the positions.
SCORES = "scores"  # donor_score, acceptor_score, neither_score of the row
CONTEXT = "context"  # context_score_* columns, or a full base-prediction track
SEQUENCE = "sequence"  # the reference genome (FASTA) and the gene's span and strand
ANNOTATION = "annotation"  # the gene annotation (GTF)

#: What to give the run so that an input kind becomes available (used in error messages).
INPUT_HINTS = {
    CONTEXT: "context_score_* columns in the positions, or --track",
    SEQUENCE: "--genome and --annotation (or --cache)",
    ANNOTATION: "--annotation (or --cache)",
}

FLOAT = np.dtype("float64")
INT = np.dtype("int64")
COUNT = np.dtype("int32")

KMER_PATTERN = re.compile(r"^(\d+)mer_([ACGTN]+)$")

@dataclass(frozen=True)
class Feature:
    """One feature: its name, group, dtype, the inputs it needs and a one-line doc."""

    name: str
    group: str
    dtype: np.dtype
    requires: frozenset[str]
    doc: str
    #: Documented fill value of the ``impute`` policy when no training median is known.
    impute_constant: float = 0.0
    #: The vectorised kernel ``kernel(inputs, names)`` (see the module doc).
    kernel: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    #: For plugin features: the plugin's name, used in error messages (None: built-in).
    plugin: str | None = None
    #: Whether its column is stored compressed (snappy). False for continuous values derived from
    #: the scores (ratios, differences, log-odds), which snappy leaves at 0.94-1.0x of their size
    #: on real SpliceAI scores while costing about a third of writing a part.
    compress: bool = True

    @property
    def is_integer(self) -> bool:
        return self.dtype.kind in "iu"


@dataclass
class Computed:
    """What a built-in kernel returns: the columns it was asked for, the rows it could not compute
    (None: every row computed) and why (for the report and the ``error`` policy's message)."""

    columns: dict[str, np.ndarray]
    missing: np.ndarray | None = None
    reason: str = ""


Kernel = Callable[[Any, list[str]], Any]

_REGISTRY: dict[str, Feature] = {}
#: Built-in pattern features (k-mers): (name -> Feature or None) tried in order.
_BUILTIN_PATTERNS: list[Callable[[str], Feature | None]] = []
#: Plugin features by exact name, and plugin pattern templates.
_PLUGINS: dict[str, Feature] = {}
_PLUGIN_PATTERNS: list[tuple[re.Pattern[str], Feature]] = []
ENTRY_POINT_GROUP = "dask_enrich.features"
_entry_points_loaded = False


def declare(name: str, group: str, dtype: Any, requires: Iterable[str], doc: str, kernel: Kernel,
            impute_constant: float = 0.0, *, compress: bool = True) -> Feature:
    """Declare the built-in feature ``name`` with its kernel (once: a second declaration raises)."""
    if name in _REGISTRY:
        raise ValueError(f"feature {name!r} declared twice")
    feature = Feature(name, group, np.dtype(dtype), frozenset(requires), doc, impute_constant,
                      kernel=kernel, compress=compress)
    _REGISTRY[name] = feature
    return feature


def declare_pattern(factory: Callable[[str], Feature | None]) -> None:
    """Declare a built-in family of features by name pattern (``factory(name)`` -> Feature or None)."""
    _BUILTIN_PATTERNS.append(factory)


def parse_kmer(name: str) -> tuple[int, str] | None:
    """``(k, kmer)`` for a k-mer feature name such as ``3mer_ACG``, else None."""
    match = KMER_PATTERN.match(name)
    if match is None or int(match.group(1)) != len(match.group(2)):
        return None
    return len(match.group(2)), match.group(2)


def _builtin(name: str) -> Feature | None:
    found = _REGISTRY.get(name)
    for factory in _BUILTIN_PATTERNS:
        if found is not None:
            break
        found = factory(name)
    return found


def lookup(name: str) -> Feature | None:
    """The feature called ``name`` (built-in, k-mer or plugin), or None when nobody declares it."""
    return _builtin(name) or lookup_plugin(name)


def builtin_features() -> Iterator[Feature]:
    """Every named (non-pattern) built-in feature, in declaration order."""
    return iter(_REGISTRY.values())


def is_builtin(name: str) -> bool:
    """True for the spec's features and k-mers, False for plugin features."""
    return _builtin(name) is not None


# --- Plugin tables (declared through :mod:`dask_enrich.features.plugins`) -----------------------
def register_plugin(feature: Feature, pattern: str | None = None) -> None:
    """Add a plugin feature (a template for every name matching ``pattern`` when given)."""
    if pattern is None:
        if is_builtin(feature.name) or feature.name in _PLUGINS:
            raise ValueError(f"plugin feature {feature.name!r}: that name is already declared")
        _PLUGINS[feature.name] = feature
    else:
        _PLUGIN_PATTERNS.append((re.compile(pattern), feature))


def unregister_plugin(label: str) -> None:
    """Forget a plugin feature (by name or pattern)."""
    _PLUGINS.pop(label, None)
    _PLUGIN_PATTERNS[:] = [(p, f) for p, f in _PLUGIN_PATTERNS if f.name != label]


def lookup_plugin(name: str) -> Feature | None:
    """The plugin feature called ``name``, loading installed entry points on first use."""
    load_entry_points()
    if name in _PLUGINS:
        return _PLUGINS[name]
    for compiled, template in _PLUGIN_PATTERNS:
        if compiled.fullmatch(name) and not is_builtin(name):
            return Feature(name, template.group, template.dtype, template.requires, template.doc,
                           template.impute_constant, kernel=template.kernel, plugin=template.plugin,
                           compress=template.compress)
    return None


def plugin_features() -> Iterator[Feature]:
    """Every declared plugin feature (patterns as their pattern), for listings and docs."""
    load_entry_points()
    yield from _PLUGINS.values()
    yield from (template for _, template in _PLUGIN_PATTERNS)


def load_entry_points() -> list[str]:
    """Import every installed ``dask_enrich.features`` plugin once; returns their names."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return []
    _entry_points_loaded = True
    loaded = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = entry.load()
            if callable(target):
                target()
        except Exception as exc:
            raise ConfigError(f"feature plugin {entry.name!r} ({entry.value}) failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
        loaded.append(entry.name)
    return loaded


# --- Schema derivation ---------------------------------------------------------------------------
#: Identifying columns the engine writes before the features, with their dtypes.
STRING = pd.Series([], dtype="str").dtype
ID_COLUMNS: dict[str, tuple[object, pa.DataType]] = {
    "gene_id": (STRING, pa.string()),
    "position": (INT, pa.int64()),
    "chrom": (STRING, pa.string()),
    "strand": (STRING, pa.string()),
}
#: Name of the identifying chromosome column when the manifest wants the encoded ``chrom`` feature.
CHROM_ID_WHEN_FEATURE = "chrom_name"


def id_column_name(column: str, feature_names: Iterable[str]) -> str:
    """Output name of identifying column ``column`` (``chrom`` becomes ``chrom_name`` beside the
    encoded ``chrom`` feature)."""
    if column == "chrom" and "chrom" in set(feature_names):
        return CHROM_ID_WHEN_FEATURE
    return column


def meta_frame(features: Iterable[Feature], id_columns: dict[str, object]) -> pd.DataFrame:
    """An empty frame with the output columns and dtypes: the Dask ``meta`` of an enriched partition.

    ``id_columns`` maps each identifying output column to its pandas dtype, in output order.
    """
    columns: dict[str, pd.Series] = {
        name: pd.Series([], dtype=dtype) for name, dtype in id_columns.items()
    }
    for feature in features:
        columns[feature.name] = pd.Series([], dtype=feature.dtype)
    return pd.DataFrame(columns)


def arrow_schema(features: Iterable[Feature], id_columns: dict[str, pa.DataType]) -> pa.Schema:
    """The pyarrow schema of every output file for these features and identifying columns."""
    fields = [pa.field(name, dtype) for name, dtype in id_columns.items()]
    fields += [pa.field(f.name, pa.from_numpy_dtype(f.dtype)) for f in features]
    return pa.schema(fields)
