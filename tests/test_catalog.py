"""The catalogue is derived from the registry, and check-manifest reports each input's features."""
import argparse

from dask_enrich import catalog
from dask_enrich.cli import features as features_command
from dask_enrich.features import registry


def test_catalogue_lists_every_builtin_feature_once_plus_the_kmer_pattern():
    table = catalog.feature_table()
    builtin = [f.name for f in registry.builtin_features()]
    assert table.name.tolist()[: len(builtin)] == builtin
    assert "{k}mer_{KMER}" in set(table.name) and table.name.is_unique
    assert table.set_index("name").loc["donor_is_local_peak", "dtype"] == "int64"


def test_markdown_has_a_row_per_feature():
    lines = catalog.features_markdown().splitlines()
    assert len(lines) == 2 + len(catalog.feature_table())


def test_check_manifest_groups_needs(model_dir, capsys):
    needs = catalog.manifest_needs(model_dir)
    assert len(needs[registry.SEQUENCE]) == 3 + 64
    assert len(needs[registry.ANNOTATION]) == 14
    assert "context_score_m1" in needs[registry.CONTEXT]
    parser = argparse.ArgumentParser()
    features_command.register_cli(parser.add_subparsers())
    args = parser.parse_args(["check-manifest", str(model_dir)])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "124 features" in out and "64 k-mers" in out and "--track" in out


def test_docs_feature_catalogue_is_current():
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs" / "features.md"
    assert catalog.features_markdown() in docs.read_text(), (
        "docs/features.md is stale: regenerate it with `dask-enrich features --markdown`")
