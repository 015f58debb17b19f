"""The ``features`` and ``check-manifest`` commands."""
from __future__ import annotations

import argparse

from ..catalog import feature_table, features_markdown, manifest_needs
from ..features import registry
from ..manifest import load_manifest

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
