"""Feature manifests: which features a model wants, in which order, and its training statistics."""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ManifestError
from .features import registry

#: Manifest files looked for in a model directory, in order of preference.
MANIFEST_FILES = ("feature_manifest.csv", "train.features.json", "features.txt")
STATS_FILE = "feature_stats.json"


@dataclass(frozen=True)
class Manifest:
    """An ordered, validated list of feature names, with optional training statistics."""

    names: tuple[str, ...]
    source: str
    name: str
    #: feature -> {"median": ..., ...} from the model directory's ``feature_stats.json``.
    stats: dict[str, dict[str, float]] | None = None
    #: The registry's declaration of each name, resolved once where the manifest is loaded, so
    #: that plugin features registered in the client's session travel with it to the workers.
    features: tuple[registry.Feature, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.features:
            _check_names(list(self.names), self.source)
            object.__setattr__(self, "features", tuple(registry.lookup(n) for n in self.names))

    def feature(self, name: str) -> registry.Feature:
        """The declaration of manifest feature ``name``."""
        return self._by_name[name]

    @property
    def _by_name(self) -> dict[str, registry.Feature]:
        cache = self.__dict__.get("_by_name_cache")
        if cache is None:
            cache = {f.name: f for f in self.features}
            object.__setattr__(self, "_by_name_cache", cache)
        return cache

    @property
    def requires(self) -> frozenset[str]:
        """The input kinds (registry.SCORES, CONTEXT, SEQUENCE, ANNOTATION) some feature needs."""
        return frozenset().union(*(f.requires for f in self.features))

    def median(self, feature: str) -> float | None:
        """The training median of ``feature``, when the model directory gave one."""
        if not self.stats or feature not in self.stats:
            return None
        value = self.stats[feature].get("median")
        return None if value is None else float(value)

    def __len__(self) -> int:
        return len(self.names)


def manifest_from_names(names: list[str], source: str = "<names>", name: str = "model",
                        stats: dict[str, dict[str, float]] | None = None) -> Manifest:
    """A manifest from a list of names, checked against the registry."""
    _check_names(names, source)
    return Manifest(tuple(names), source, name, stats)


def load_manifest(path: str | Path) -> Manifest:
    """Read a manifest: ``feature_manifest.csv`` (column ``feature``), ``*.json`` with
    ``feature_names``, a one-name-per-line text file, or a model directory holding one of these
    (and optionally ``feature_stats.json``). Unknown, duplicated or no names raise ManifestError."""
    path = Path(path)
    stats = None
    name = path.stem
    if path.is_dir():
        name = path.name
        found = [path / f for f in MANIFEST_FILES if (path / f).is_file()]
        if not found:
            raise ManifestError(
                f"{path}: model directory holds no manifest (looked for {', '.join(MANIFEST_FILES)})"
            )
        if (path / STATS_FILE).is_file():
            stats = _read_stats(path / STATS_FILE)
        path = found[0]
    elif not path.is_file():
        raise ManifestError(f"{path}: manifest file not found")
    names = _read_names(path)
    _check_names(names, str(path))
    if stats is not None:
        stats = {k: v for k, v in stats.items() if k in set(names)}
    return Manifest(tuple(names), str(path), name, stats)


def find_manifest(model_path: str | Path) -> Path:
    """The manifest belonging to a model file or directory (seed-compatible lookup)."""
    model_path = Path(model_path)
    folder = model_path if model_path.is_dir() else model_path.parent
    for candidate in MANIFEST_FILES:
        if (folder / candidate).is_file():
            return folder
    raise ManifestError(
        f"{model_path}: no feature manifest beside the model (looked for {', '.join(MANIFEST_FILES)})"
    )


def _read_names(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("feature_names"), list):
            raise ManifestError(f"{path}: expected a JSON object with a 'feature_names' list")
        return [str(n).strip() for n in data["feature_names"]]
    if path.suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows and "feature" not in text.splitlines()[0:1]:
            raise ManifestError(f"{path}: empty manifest (no header 'feature')")
        if rows and "feature" not in rows[0]:
            raise ManifestError(
                f"{path}: manifest CSV needs a column 'feature' (columns: {', '.join(rows[0])})"
            )
        return [(r["feature"] or "").strip() for r in rows if (r["feature"] or "").strip()]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _read_stats(path: Path) -> dict[str, dict[str, float]]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ManifestError(f"{path}: expected {{feature: {{'median': value, ...}}}}")
    return data


def _check_names(names: list[str], source: str) -> None:
    if not names:
        raise ManifestError(f"{source}: the manifest names no features")
    duplicated = sorted(n for n, c in Counter(names).items() if c > 1)
    unknown = [n for n in names if registry.lookup(n) is None]
    problems = []
    if duplicated:
        problems.append(f"named more than once: {', '.join(duplicated)}")
    if unknown:
        problems.append(
            f"unknown to the feature registry: {', '.join(unknown)} "
            "(see `dask-enrich features`; k-mers are written like 3mer_ACG)"
        )
    if problems:
        raise ManifestError(f"{source}: " + "; ".join(problems))
