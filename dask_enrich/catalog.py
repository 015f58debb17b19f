"""The feature catalogue (derived from the registry) and manifest checks, for people and the CLI."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .features import registry
from .features.plugins import plugin_features
from .manifest import load_manifest

KMER_ROW = {"name": "{k}mer_{KMER}", "group": "kmer", "dtype": "int32", "requires": "sequence",
            "doc": "raw count of overlapping KMER (A/C/G/T, N only when named) in the window; any k"}


def feature_table() -> pd.DataFrame:
    """Every known feature: built-in, the k-mer pattern, and plugins (name, group, dtype, inputs, doc)."""
    rows = [_row(f) for f in registry.builtin_features()]
    rows.append(KMER_ROW)
    rows += [{**_row(f), "group": f"{f.group} (plugin {f.plugin})"} for f in plugin_features()]
    return pd.DataFrame(rows, columns=["name", "group", "dtype", "requires", "doc"])


def _row(feature: registry.Feature) -> dict[str, str]:
    needs = sorted(feature.requires - {registry.SCORES}) or ["scores"]
    return {"name": feature.name, "group": feature.group, "dtype": str(feature.dtype),
            "requires": ", ".join(needs), "doc": feature.doc}


def features_markdown() -> str:
    """The catalogue as a Markdown table (used for the README's feature list)."""
    table = feature_table()
    lines = ["| name | group | dtype | needs | formula / meaning |", "|---|---|---|---|---|"]
    lines += [f"| `{r.name}` | {r.group} | {r.dtype} | {r.requires} | {r.doc} |"
              for r in table.itertuples()]
    return "\n".join(lines)


def manifest_needs(manifest_path: str | Path) -> dict[str, list[str]]:
    """For a manifest: input kind -> the features that need it (scores are always given)."""
    manifest = load_manifest(manifest_path)
    needs: dict[str, list[str]] = {}
    for feature in manifest.features:
        for kind in sorted(feature.requires - {registry.SCORES}):
            needs.setdefault(kind, []).append(feature.name)
    return needs
