"""Feature plugins: research groups' own features, declared through the same registry.

A plugin feature has a name (or a name pattern), group, dtype, one-line doc, the inputs it needs
(``registry.SCORES``/``CONTEXT``/``SEQUENCE``/``ANNOTATION``) and a vectorised kernel::

    from dask_enrich.features.plugins import feature
    from dask_enrich.features.registry import ANNOTATION

    @feature("exon_fraction", dtype="float64", requires={ANNOTATION},
             doc="total_exon_length / gene_length of the row's gene")
    def exon_fraction(inputs, names):
        return inputs.gene_column("total_exon_length") / inputs.gene_column("gene_length")

The kernel gets the partition's :class:`dask_enrich.core.PartitionInputs` and the requested names
of this plugin, and returns one column (a single name) or a ``{name: column}`` mapping, each of
the partition's length and of the declared dtype. Rows it cannot compute are given as NaN (float
features) or as masked entries of a ``numpy.ma.MaskedArray``: the missing-value policy then applies
to them as to built-in features. Installed packages declare plugins under the entry-point group
``dask_enrich.features`` (a module, imported, or a callable, called); they are found without code
changes. Plugin features take part in manifests, output schemas, the policy and
``dask-enrich features`` exactly like built-in ones.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from . import registry
from .registry import ENTRY_POINT_GROUP, Feature, load_entry_points, lookup_plugin, plugin_features

__all__ = ["ENTRY_POINT_GROUP", "feature", "load_entry_points", "lookup_plugin", "plugin_features",
           "register_feature", "unregister"]


def register_feature(name: str | None = None, *, pattern: str | None = None, kernel: Callable[..., Any],
                     dtype: Any = "float64", doc: str, requires: Iterable[str] = (),
                     group: str = "plugin", plugin: str | None = None,
                     impute_constant: float = 0.0) -> Feature:
    """Declare a plugin feature called ``name``, or every name matching regex ``pattern``."""
    if (name is None) == (pattern is None):
        raise ValueError("give exactly one of name= or pattern=")
    label = name or pattern
    unknown = set(requires) - {registry.SCORES, registry.CONTEXT, registry.SEQUENCE, registry.ANNOTATION}
    if unknown:
        raise ValueError(f"plugin feature {label!r}: unknown inputs {sorted(unknown)}")
    template = Feature(label, group, np.dtype(dtype), frozenset(requires), doc, impute_constant,
                       kernel=kernel, plugin=plugin or getattr(kernel, "__module__", "plugin"))
    registry.register_plugin(template, pattern)
    return template


def feature(name: str | None = None, **declaration: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator form of :func:`register_feature` (the decorated function is the kernel)."""
    def wrap(kernel: Callable[..., Any]) -> Callable[..., Any]:
        register_feature(name, kernel=kernel, plugin=declaration.pop("plugin", kernel.__qualname__),
                         **declaration)
        return kernel
    return wrap


def unregister(label: str) -> None:
    """Forget a plugin feature (by name or pattern); for tests and notebooks."""
    registry.unregister_plugin(label)
