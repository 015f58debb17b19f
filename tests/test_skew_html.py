"""The HTML skew report: self-contained, one histogram per differing feature, rendered by Chromium.

The Chromium tests install Debian's ``chromium`` with apt-get when it is absent and that is
possible (root, apt available), and skip cleanly otherwise.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dask_enrich.skew import compare_features, skew_check
from dask_enrich.skew_report import render_html, summary_lines, write_report

from .skew_data import MODEL_DIR, build_training_set
from .test_skew import flagged, perturb

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary: installed with apt-get when absent and possible, else skip."""
    found = find_chromium()
    if found:
        return found
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    try:
        done = subprocess.run(install, env=env, capture_output=True, timeout=900)
        if done.returncode != 0:  # stale package lists: refresh once, then try again
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
            subprocess.run(install, env=env, capture_output=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"chromium could not be installed: {exc}")
    found = find_chromium()
    if not found:
        pytest.skip("chromium could not be installed with apt-get")
    return found


@pytest.fixture(scope="module")
def damaged_report(tmp_path_factory):
    """The skew report of the perturbed real-gene training matrix, written to a directory."""
    directory = tmp_path_factory.mktemp("skew_html")
    training_set = build_training_set(directory)
    damaged, expected, _ = perturb(training_set.training, training_set.genes)
    path = directory / "training.tsv"
    damaged.to_csv(path, sep="\t", index=False)
    report = skew_check(path, MODEL_DIR, cache=str(training_set.cache_dir),
                        track=str(training_set.track_path), engine="local")
    assert flagged(report) == expected
    paths = write_report(report, directory / "report")
    return report, paths


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.feature_rows: list[list[str]] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.scripts = 0
        self._in_features = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)
        if tag == "table" and attrs.get("id") == "features":
            self._in_features = True
        if self._in_features and tag == "tr":
            self.feature_rows.append([])
        if self._in_features and tag == "td":
            self._cell = []
        if tag == "img":
            self.images.append(attrs.get("alt", ""))
        if tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_features = False
        if tag == "td" and self._cell is not None:
            self.feature_rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


def test_page_is_self_contained_with_a_row_per_feature_and_a_histogram_per_differing_one(damaged_report):
    report, paths = damaged_report
    page = paths["html"].read_text()
    found = parse(page)
    assert found.external == []  # no external resources: one file
    rows = [r for r in found.feature_rows if r]
    assert len(rows) == len(report.features) == 124
    differing = set(report.differing_features)
    shown = {r[0]: int(r[3].replace(",", "")) for r in rows}
    assert {name for name, count in shown.items() if count > 0} == differing
    # Differing features first, most rows first.
    counts = [int(r[3].replace(",", "")) for r in rows]
    assert counts == sorted(counts, reverse=True)
    assert sorted(found.images) == sorted(f"histogram of {n}" for n in differing)
    assert found.scripts == 1 and "SKEW:" in page
    for reason in set(report.unplaced["reason"]):
        assert reason in page


def test_histograms_are_pngs_of_the_differences(damaged_report):
    report, paths = damaged_report
    page = paths["html"].read_text()
    import base64
    import io

    import matplotlib.image as mpimg

    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(pngs) == len(report.differing_features)
    image = mpimg.imread(io.BytesIO(base64.b64decode(pngs[0])), format="png")
    assert image.shape[0] > 100 and image.shape[1] > 200 and float(np.std(image[..., :3])) > 0.05


@pytest.mark.parametrize("diffs", [[-0.5 - 1e-16, -0.5, -0.5 + 1e-16], [3.0], [1e-300, 2e-300],
                                   [-1e-7, 2e-7, 5e-7], [1e308, -1e308]])
def test_histogram_of_awkward_differences(diffs):
    from dask_enrich.skew import FeatureSkew
    from dask_enrich.skew_report import histogram_png

    feature = FeatureSkew("f", "g", 10, len(diffs), 0, 0, 1.0, 0.0, 1.0, diffs=np.array(diffs))
    assert len(histogram_png(feature)) > 1000


def test_terminal_summary(damaged_report):
    report, _ = damaged_report
    lines = summary_lines(report)
    n = len(report.differing_features)
    assert lines[0].startswith(f"skew check: SKEW  ({n} of 124 compared features differ")
    assert "  not placed: 2 row(s): position missing or not an integer" in lines
    assert any(line.startswith("  ... and ") for line in lines)  # long lists are cut


def small_report(bad: bool):
    frame = pd.DataFrame({"gene_id": ["A", "B"], "position": [1, 2], "f": [1.0, 2.0]})
    other = frame.assign(f=[1.0, 2.5 if bad else 2.0])
    return compare_features(frame, other, ["f"])


def test_match_page_without_matplotlib_still_written(monkeypatch, tmp_path):
    page, note = render_html(small_report(bad=False))
    assert "MATCH: all 1 compared features agree" in page and note == ""
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if not installed
    messages = []
    paths = write_report(small_report(bad=True), tmp_path, log=messages.append)
    page = paths["html"].read_text()
    assert "SKEW:" in page and "data:image/png" not in page
    assert "dask-enrich[report]" in page and "matplotlib" in messages[0]


def screenshot(chromium: str, url: str, png: Path, profile: Path) -> subprocess.CompletedProcess:
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
               "--window-size=1200,900", "--hide-scrollbars", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_chromium_renders_the_table(chromium, damaged_report, tmp_path):
    """A headless Chromium screenshot of the page is written and is not blank; the page's own
    sorting script runs (``#sort=0:asc`` sorts the feature table by name)."""
    report, paths = damaged_report
    png = paths["html"].parent / "skew_report.png"
    done = screenshot(chromium, paths["html"].resolve().as_uri(), png, tmp_path / "profile")
    assert png.is_file(), done.stderr[-2000:]
    assert png.stat().st_size > 20_000  # a rendered table and images, not a blank page
    import matplotlib.image as mpimg

    pixels = mpimg.imread(png)
    assert pixels.shape[:2] == (900, 1200)
    assert float(np.std(pixels[..., :3])) > 0.05
    # the red verdict banner is at the top left: a strongly red pixel must be there
    top = pixels[:200, :700, :3]
    assert ((top[..., 0] > 0.6) & (top[..., 1] < 0.35) & (top[..., 2] < 0.35)).any()

    # The inline script sorts: dump the DOM after it ran.
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
                          "--dump-dom", paths["html"].resolve().as_uri() + "#sort=0:asc"],
                         capture_output=True, text=True, timeout=120).stdout
    names = [r[0] for r in parse(dom).feature_rows if r]
    assert len(names) == 124 and names == sorted(names)
