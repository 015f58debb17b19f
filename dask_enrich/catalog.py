"""The feature catalogue (derived from the registry) and manifest checks, for people and the CLI."""
from __future__ import annotations

import argparse
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


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``features`` and ``check-manifest`` to the CLI."""
    listing = subparsers.add_parser(
        "features", help="list every known feature (built-in and plugins)",
        description="List every feature the registry knows: name, group, dtype, the inputs it "
                    "needs and its formula. Plugin features installed through the "
                    "dask_enrich.features entry point are included.")
    listing.add_argument("--markdown", action="store_true", help="print a Markdown table")
    listing.add_argument("--json", action="store_true", help="print JSON records")
    listing.set_defaults(handler=_cli_features)
    check = subparsers.add_parser(
        "check-manifest", help="say which inputs a manifest needs",
        description="Check a manifest (file or model directory) against the registry and say which "
                    "inputs a run needs (genome, annotation, track or context columns) and which "
                    "features would be imputed without each of them.")
    check.add_argument("manifest", help="feature_manifest.csv, train.features.json, a .txt list or "
                                        "a model directory")
    check.set_defaults(handler=_cli_check_manifest)


def _cli_features(args: argparse.Namespace) -> int:
    table = feature_table()
    if args.markdown:
        print(features_markdown())
    elif args.json:
        print(table.to_json(orient="records", indent=1))
    else:
        width, groups = table.name.str.len().max(), table.group.str.len().max()
        for r in table.itertuples():
            print(f"{r.name:<{width}}  {r.group:<{groups}}  {r.dtype:<7}  {r.doc}")
        print(f"\n{len(table) - 1} named features, plus k-mer counts for any k")
    return 0


def _cli_check_manifest(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest)
    needs = manifest_needs(args.manifest)
    print(f"{manifest.source}: {len(manifest)} features, all known to the registry"
          + (f"; training statistics for {len(manifest.stats)}" if manifest.stats else ""))
    if not needs:
        print("needs only the base scores of the positions")
    for kind, names in needs.items():
        kmers = sum(1 for n in names if registry.parse_kmer(n))
        shown = [n for n in names if not registry.parse_kmer(n)]
        listed = ", ".join(shown[:8]) + (" ..." if len(shown) > 8 else "")
        if kmers:
            listed += f"{', ' if shown else ''}{kmers} k-mers"
        print(f"needs {registry.INPUT_HINTS[kind]}: {len(names)} features ({listed}); "
              "imputed without it under --missing impute")
    return 0
