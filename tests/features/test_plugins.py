"""Feature plugins: registered in Python or found through an entry point, used like built-ins."""
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich, output_meta, output_schema
from dask_enrich.errors import ManifestError, MissingFeatureError, PluginError
from dask_enrich.features import plugins, registry
from dask_enrich.features.registry import ANNOTATION, SCORES
from dask_enrich.manifest import manifest_from_names


@pytest.fixture
def frame():
    return pd.DataFrame({"gene_id": ["A", "A", "B"], "position": [10, 12, 30],
                         "donor_score": [0.2, 0.6, 0.1], "acceptor_score": [0.3, 0.1, 0.0],
                         "neither_score": [0.5, 0.3, 0.9]}, index=[7, 8, 9])


@pytest.fixture
def registered():
    names = []

    def register(name=None, **kw):
        plugins.register_feature(name, **kw)
        names.append(name or kw["pattern"])

    yield register
    for name in names:
        plugins.unregister(name)


def test_python_plugin_takes_part_in_manifest_schema_and_output(frame, registered):
    registered("splice_sum", kernel=lambda inputs, names: inputs.d + inputs.a,
               requires={SCORES}, doc="d + a")
    registered(pattern=r"scaled_donor_x\d+", requires={SCORES}, doc="donor score times k",
               kernel=lambda inputs, names: {n: inputs.d * int(n.rsplit("x", 1)[1]) for n in names})
    m = manifest_from_names(["splice_sum", "donor_score", "scaled_donor_x3", "scaled_donor_x10"])
    out, report = enrich(frame, m)
    np.testing.assert_allclose(out.splice_sum, [0.5, 0.7, 0.1])
    np.testing.assert_allclose(out.scaled_donor_x10, [2.0, 6.0, 1.0])
    assert list(out.columns[2:]) == list(m.names) and report.imputed == {}
    assert list(output_meta(m, frame.dtypes).columns) == list(out.columns)
    assert output_schema(m, frame.dtypes).field("scaled_donor_x3").type == "double"


def test_unknown_names_are_still_refused(registered):
    registered(pattern=r"scaled_donor_x\d+", kernel=lambda i, n: {}, doc="x")
    with pytest.raises(ManifestError, match="scaled_acceptor_x2"):
        manifest_from_names(["scaled_donor_x2", "scaled_acceptor_x2"])


def test_plugin_missing_rows_follow_the_policy(frame, registered):
    def kernel(inputs, names):
        out = inputs.d.copy()
        out[inputs.frame.gene_id.to_numpy() == "B"] = np.nan
        return out

    registered("donor_unless_b", kernel=kernel, requires={SCORES}, doc="d, missing for gene B")
    m = manifest_from_names(["donor_unless_b"], stats={"donor_unless_b": {"median": 0.42}})
    with pytest.raises(MissingFeatureError, match="donor_unless_b in 1 rows"):
        enrich(frame, m)
    out, report = enrich(frame, m, config=EnrichConfig(missing="impute"))
    assert out.donor_unless_b.tolist() == [0.2, 0.6, 0.42] and report.imputed == {"donor_unless_b": 1}


def test_plugin_needing_the_annotation_without_one(frame, registered):
    registered("needs_gtf", kernel=lambda i, n: np.zeros(len(i.frame)), requires={ANNOTATION}, doc="x")
    with pytest.raises(MissingFeatureError, match="--annotation"):
        enrich(frame, manifest_from_names(["needs_gtf"]))


@pytest.mark.parametrize("kernel, message", [
    (lambda i, n: 1 / 0, "failed computing bad_feature: ZeroDivisionError"),
    (lambda i, n: np.zeros(2), "returned 2 values for feature 'bad_feature', the partition has 3 rows"),
    (lambda i, n: np.zeros(3, dtype=np.float32), "returned dtype float32 for feature 'bad_feature'"),
])
def test_bad_plugins_fail_naming_plugin_and_feature(frame, registered, kernel, message):
    registered("bad_feature", kernel=kernel, plugin="acme_plugin", doc="broken on purpose")
    with pytest.raises(PluginError, match="feature plugin 'acme_plugin'") as err:
        enrich(frame, manifest_from_names(["bad_feature"]))
    assert message in str(err.value)


def test_builtin_names_cannot_be_taken(registered):
    with pytest.raises(ValueError, match="already declared"):
        registered("gc_content", kernel=lambda i, n: None, doc="x")


def test_entry_point_plugin_is_found_without_code_changes(tmp_path, frame, monkeypatch):
    """A small package 'installed' on sys.path with a dask_enrich.features entry point."""
    (tmp_path / "acme_features.py").write_text(textwrap.dedent('''
        from dask_enrich.features.plugins import feature

        def register():
            @feature("acme_log_donor", dtype="float64", doc="ln(d + 1)", requires={"scores"})
            def acme_log_donor(inputs, names):
                import numpy as np
                return np.log1p(inputs.d)
    '''))
    info = tmp_path / "acme_features-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-features\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dask_enrich.features]\nacme = acme_features:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)  # the plugin tables live there
    try:
        out, _ = enrich(frame, manifest_from_names(["acme_log_donor"]))
        np.testing.assert_allclose(out.acme_log_donor, np.log1p([0.2, 0.6, 0.1]))
        assert "acme_log_donor" in {f.name for f in plugins.plugin_features()}
    finally:
        plugins.unregister("acme_log_donor")
        sys.modules.pop("acme_features", None)
