"""Manifest formats, model directories, training statistics and refusal of bad manifests."""
import json
import shutil
from pathlib import Path

import pytest

from dask_enrich.errors import ManifestError
from dask_enrich.manifest import find_manifest, load_manifest

from .conftest import MODEL_DIR as SAMPLE

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "model-3mer-124"


def sample_names():
    return json.loads((SAMPLE / "train.features.json").read_text())["feature_names"]


def test_csv_json_txt_and_directory_agree(tmp_path):
    names = sample_names()
    (tmp_path / "m.txt").write_text("\n".join(names) + "\n")
    loaded = [load_manifest(SAMPLE / "feature_manifest.csv"), load_manifest(SAMPLE / "train.features.json"),
              load_manifest(tmp_path / "m.txt"), load_manifest(SAMPLE)]
    assert all(list(m.names) == names for m in loaded)
    assert len(names) == 124 and loaded[-1].name == SAMPLE.name


@pytest.mark.skipif(not SHARED.exists(), reason="shared/ not laid beside the checkout")
def test_bundled_manifest_is_the_shared_sample():
    assert load_manifest(SAMPLE).names == load_manifest(SHARED).names


def test_directory_statistics_are_loaded(tmp_path):
    shutil.copy(SAMPLE / "feature_manifest.csv", tmp_path)
    (tmp_path / "feature_stats.json").write_text(json.dumps({"gc_content": {"median": 0.37},
                                                            "not_in_manifest": {"median": 1}}))
    m = load_manifest(tmp_path)
    assert m.median("gc_content") == 0.37 and m.median("gene_length") is None
    assert "not_in_manifest" not in m.stats


@pytest.mark.parametrize("lines, expected", [
    (["donor_score", "bogus_feature", "4mer_ACG"], ["bogus_feature", "4mer_ACG"]),
    (["donor_score", "gc_content", "donor_score"], ["named more than once: donor_score"]),
])
def test_bad_manifests_name_the_offenders(tmp_path, lines, expected):
    path = tmp_path / "m.txt"
    path.write_text("\n".join(lines))
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    for part in expected:
        assert part in str(err.value)
    assert str(path) in str(err.value)


def test_empty_manifest_and_missing_files(tmp_path):
    (tmp_path / "feature_manifest.csv").write_text("feature\n")
    with pytest.raises(ManifestError, match="names no features"):
        load_manifest(tmp_path / "feature_manifest.csv")
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "absent.csv")
    empty_dir = tmp_path / "model"
    empty_dir.mkdir()
    with pytest.raises(ManifestError, match="holds no manifest"):
        load_manifest(empty_dir)


def test_mixed_k_and_n_kmers_are_accepted(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("2mer_AC\n3mer_NNN\n6mer_ACGTAC\n1mer_G\n")
    assert load_manifest(path).names == ("2mer_AC", "3mer_NNN", "6mer_ACGTAC", "1mer_G")


def test_find_manifest_from_a_model_file(tmp_path):
    shutil.copy(SAMPLE / "train.features.json", tmp_path)
    (tmp_path / "model.json").write_text("{}")
    assert find_manifest(tmp_path / "model.json") == tmp_path
