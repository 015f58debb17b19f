"""Writing a :class:`~dask_enrich.skew.SkewReport`: JSON, a self-contained HTML page, a terminal summary.

Files written to the report directory:

    skew_report.json     the whole report (verdict, per-feature counts and examples, unplaced rows, ...)
    skew_report.html     one page, no external resources: a sortable feature table (inline JS), a
                         histogram per differing feature (matplotlib PNG embedded as base64), the
                         examples, the features not compared and the rows not placed
    differing_rows.tsv   every differing value: row, gene_id, position, feature, training, recomputed
    unplaced_rows.tsv    every training row that could not be placed, with the reason

The histograms need matplotlib (``pip install 'dask-enrich[report]'``); without it the page is
still written, with a note where the histograms would be.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .skew import FeatureSkew, SkewReport

#: Histograms drawn at most (the k-mers of a whole manifest can all differ).
MAX_HISTOGRAMS = 150
#: Unplaced rows shown on the page (all are in unplaced_rows.tsv).
MAX_UNPLACED_SHOWN = 100
#: Differing features listed in the terminal summary.
MAX_SUMMARY_FEATURES = 25

FILES = {"json": "skew_report.json", "html": "skew_report.html",
         "differing": "differing_rows.tsv", "unplaced": "unplaced_rows.tsv"}


def write_report(report: SkewReport, out: str | Path, *, log: Callable[[str], None] | None = None
                 ) -> dict[str, Path]:
    """Write the report files into directory ``out`` (created); returns {kind: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / name for kind, name in FILES.items()}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=1, allow_nan=False))
    report.differing.to_csv(paths["differing"], sep="\t", index=False)
    report.unplaced.to_csv(paths["unplaced"], sep="\t", index=False)
    page, note = render_html(report)
    if note and log:
        log(note)
    paths["html"].write_text(page, encoding="utf-8")
    return paths


# --- histograms ----------------------------------------------------------------------------------
def histogram_png(feature: FeatureSkew, figure: Any = None) -> str:
    """A base64 PNG histogram of the feature's signed differences (training - recomputed) over its
    differing rows. ``figure``: a figure from :func:`new_figure` to draw on (reused: faster).
    Raises ImportError when matplotlib is not installed."""
    fig = figure if figure is not None else new_figure()
    ax = fig.axes[0]
    ax.cla()
    diffs = feature.diffs[np.isfinite(feature.diffs)]
    xlabel = "training - recomputed"
    if len(diffs):
        # binned in units of the largest |difference| (no overflow or underflow at the extremes)
        scale = float(np.max(np.abs(diffs))) or 1.0
        scaled = diffs / scale
        lo, hi = float(scaled.min()), float(scaled.max())
        bins = min(40, max(5, int(math.sqrt(len(diffs))) + 1))
        if hi - lo <= 1e-9:  # one value, up to rounding
            middle = (lo + hi) / 2
            lo, hi, bins = middle - 0.05, middle + 0.05, 5
        counts, edges = np.histogram(scaled, bins=bins, range=(lo, hi))
        with np.errstate(over="ignore"):
            wide = not np.isfinite(edges[-1] * scale - edges[0] * scale)
        if not wide:  # else the axis stays in units of the scale (matplotlib cannot span it)
            edges = edges * scale
            xlabel = "training - recomputed"
        else:
            xlabel = f"(training - recomputed) / {scale:.3g}"
        ax.stairs(counts, edges, fill=True, color="#c62828")
    else:
        ax.text(0.5, 0.5, "no finite differences", ha="center", va="center", transform=ax.transAxes)
    extra = f", {feature.nan_mismatches} NaN vs value" if feature.nan_mismatches else ""
    ax.set_title(f"{feature.name}: {len(diffs)} finite{extra}", fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("rows", fontsize=8)
    ax.tick_params(labelsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def new_figure() -> Any:
    """A small matplotlib figure (Agg, no pyplot state) with one axes, for :func:`histogram_png`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 2.4), dpi=80)
    fig.subplots_adjust(left=0.15, right=0.97, top=0.88, bottom=0.2)
    fig.add_subplot()
    return fig


# --- HTML ----------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 12px} h2{font-size:17px;margin:26px 0 8px} h3{font-size:14px;margin:14px 0 6px}
.verdict{display:inline-block;padding:8px 14px;border-radius:6px;font-weight:600;color:#fff}
.verdict.skew{background:#c62828}.verdict.match{background:#2e7d32}
table{border-collapse:collapse;font-size:13px;margin:4px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;background:#eceff1;user-select:none}
table.sortable th[data-dir=asc]:after{content:" \\25B2"} table.sortable th[data-dir=desc]:after{content:" \\25BC"}
tr.bad td{background:#fdecea} .muted{color:#666} .facts td:first-child{color:#555}
.hist{display:inline-block;vertical-align:top;margin:0 18px 12px 0}
"""

_JS = r"""
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var asc = th.getAttribute('data-dir') !== 'asc';
    function key(r) { var c = r.cells[col], v = c.getAttribute('data-v');
      return v === null ? c.textContent : (v === '' ? -Infinity : parseFloat(v)); }
    rows.sort(function (a, b) { var x = key(a), y = key(b);
      var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
      return asc ? c : -c; });
    th.closest('tr').querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
// A link to the page may ask for a sort: skew_report.html#sort=<column>:<asc|desc>
var wanted = /sort=(\d+):(asc|desc)/.exec(location.hash);
if (wanted) {
  var th = document.querySelectorAll('#features th')[+wanted[1]];
  if (th) { if (wanted[2] === 'desc') th.setAttribute('data-dir', 'asc'); th.click(); }
}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, fmt: str = "{:.4g}") -> str:
    """A numeric table cell: the shown text and its sort value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '<td class="n" data-v="">&ndash;</td>'
    text = f"{value:,}" if isinstance(value, (int, np.integer)) else fmt.format(value)
    return f'<td class="n" data-v="{float(value)!r}">{_e(text)}</td>'


def _value(value: Any) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def render_html(report: SkewReport) -> tuple[str, str]:
    """(the self-contained HTML page, a note for the user or '' when all went well)."""
    data = report.to_dict(max_unplaced_rows=MAX_UNPLACED_SHOWN)
    rows = data["rows"]
    bad = [f for f in report.features if f.differs]
    note = ""
    parts: list[str] = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
                        "<title>Train/serve skew report</title>", f"<style>{_CSS}</style></head><body>",
                        "<h1>Train/serve skew report</h1>"]
    if report.ok:
        headline = (f"MATCH: all {len(report.features)} compared features agree within tolerance "
                    f"on {rows['compared']:,} rows")
    else:
        headline = (f"SKEW: {len(bad)} of {len(report.features)} compared features differ beyond "
                    f"tolerance, in {rows['with_differences']:,} of {rows['compared']:,} rows")
    parts.append(f"<div class='verdict {report.verdict}' id='verdict'>{_e(headline)}</div>")
    settings = report.settings
    facts = [
        ("training rows", f"{rows['training']:,}"),
        ("rows compared", f"{rows['compared']:,}"),
        ("rows not placed", f"{rows['unplaced']:,}"),
        ("features compared", f"{len(report.features)} of {settings.get('manifest_features', '?')}"),
        ("features not compared", f"{len(report.not_compared)}"),
        ("tolerance", f"rtol={report.rtol:g}, atol={report.atol:g}: differs when |t - r| > atol + "
                      "rtol * max(|t|, |r|); NaN vs value differs"),
        ("training file", settings.get("training")),
        ("manifest", f"{settings.get('manifest')} ({settings.get('model')})"),
        ("coordinates", settings.get("coordinates")),
        ("context source", settings.get("context_source")),
        ("engine", settings.get("engine")),
    ]
    parts.append("<table class='facts'>" + "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in facts) + "</table>")

    # The sortable feature table, differing features first.
    parts.append("<h2>Features</h2><p class='muted'>Click a column header to sort.</p>")
    head = ["feature", "group", "rows compared", "rows differing", "NaN vs value", "max |diff|",
            "median |diff|", "median |diff| of differing", "imputed at recompute"]
    parts.append("<table class='sortable' id='features'><thead><tr>"
                 + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>")
    ordered = sorted(report.features, key=lambda f: (-f.rows_differing, f.name))
    for f in ordered:
        cls = " class='bad'" if f.differs else ""
        parts.append(
            f"<tr{cls}><td><a href='#f-{_e(f.name)}'>{_e(f.name)}</a></td>" if f.differs else
            f"<tr{cls}><td>{_e(f.name)}</td>")
        parts.append(f"<td>{_e(f.group)}</td>" + _num(f.rows_compared) + _num(f.rows_differing)
                     + _num(f.nan_mismatches) + _num(f.max_abs_diff) + _num(f.median_abs_diff)
                     + _num(f.median_abs_diff_differing) + _num(f.imputed_rows) + "</tr>")
    parts.append("</tbody></table>")

    # One section per differing feature: histogram and examples.
    if bad:
        parts.append("<h2>Differing features</h2>")
        drawn = 0
        figure = None
        for f in sorted(bad, key=lambda f: (-f.rows_differing, f.name)):
            parts.append(f"<section id='f-{_e(f.name)}'><h3>{_e(f.name)}: {f.rows_differing:,} of "
                         f"{f.rows_compared:,} rows differ</h3>")
            if f.imputed_rows:
                parts.append(f"<p class='muted'>The recompute imputed {f.imputed_rows:,} row(s): "
                             f"{_e(f.imputed_reason)}</p>")
            if drawn < MAX_HISTOGRAMS and not note:
                try:
                    figure = figure if figure is not None else new_figure()
                    png = histogram_png(f, figure)
                    parts.append(f"<div class='hist'><img alt='histogram of {_e(f.name)}' "
                                 f"src='data:image/png;base64,{png}'></div>")
                    drawn += 1
                except ImportError:
                    note = ("histograms left out: matplotlib is not installed "
                            "(pip install 'dask-enrich[report]')")
            examples = f.examples
            if examples:
                cols = ["row", "gene_id", "position"] + (
                    ["genomic_position"] if "genomic_position" in examples[0] else []) + [
                    "training", "recomputed", "abs_diff"]
                parts.append("<div class='hist'><table><thead><tr>" + "".join(
                    f"<th>{_e(c)}</th>" for c in cols) + "</tr></thead><tbody>")
                for ex in examples:
                    parts.append("<tr>" + "".join(f"<td>{_e(_value(ex.get(c)))}</td>" for c in cols)
                                 + "</tr>")
                parts.append("</tbody></table></div>")
            parts.append("</section>")
        if note:
            parts.append(f"<p class='muted'>{_e(note)}</p>")
        elif len(bad) > MAX_HISTOGRAMS:
            parts.append(f"<p class='muted'>Histograms drawn for the first {MAX_HISTOGRAMS} of "
                         f"{len(bad)} differing features.</p>")

    # Rows with differences, most differing features first.
    if bad:
        table = report.rows_with_differences(MAX_UNPLACED_SHOWN)
        parts.append(f"<h2>Rows with differences</h2><p class='muted'>{len(table):,} of "
                     f"{rows['with_differences']:,} shown; every differing value is in "
                     f"{FILES['differing']}.</p>")
        if report.zero_kmer_rows:
            listed = ", ".join(map(str, report.zero_kmer_rows[:20]))
            more = " ..." if len(report.zero_kmer_rows) > 20 else ""
            parts.append(f"<p><b>{len(report.zero_kmer_rows):,} row(s) have every k-mer at 0 in the "
                         f"training file</b> where the genome gives k-mers (zero-filled k-mers?): "
                         f"rows {_e(listed)}{more}</p>")
        parts.append("<table class='sortable'><thead><tr><th>row</th><th>gene_id</th><th>position</th>"
                     "<th>features differing</th><th>features</th></tr></thead><tbody>")
        for r in table.itertuples(index=False):
            parts.append(f"<tr>{_num(int(r.row))}<td>{_e(r.gene_id)}</td><td>{_e(r.position)}</td>"
                         f"{_num(int(r.features_differing))}<td>{_e(r.features)}</td></tr>")
        parts.append("</tbody></table>")

    # What was not compared, and why.
    parts.append("<h2>Features not compared</h2>")
    if report.not_compared:
        parts.append("<table class='sortable'><thead><tr><th>feature</th><th>reason</th></tr></thead><tbody>"
                     + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>"
                               for k, v in report.not_compared.items()) + "</tbody></table>")
    else:
        parts.append("<p>None: every manifest feature was compared.</p>")
    parts.append("<h2>Training rows not placed</h2>")
    unplaced = data["unplaced_rows"]
    if unplaced["count"]:
        parts.append("<table><thead><tr><th>reason</th><th>rows</th></tr></thead><tbody>" + "".join(
            f"<tr><td>{_e(k)}</td>{_num(v)}</tr>" for k, v in unplaced["by_reason"].items())
            + "</tbody></table>")
        parts.append(f"<p class='muted'>{unplaced['listed']:,} of {unplaced['count']:,} shown; all are in "
                     f"{FILES['unplaced']}.</p><table class='sortable'><thead><tr><th>row</th>"
                     "<th>gene_id</th><th>position</th><th>reason</th></tr></thead><tbody>")
        for r in unplaced["rows"]:
            parts.append(f"<tr>{_num(r['row'])}<td>{_e(r['gene_id'])}</td><td>{_e(r['position'])}</td>"
                         f"<td>{_e(r['reason'])}</td></tr>")
        parts.append("</tbody></table>")
    else:
        parts.append("<p>None: every training row was placed and recomputed.</p>")
    if report.ignored_columns:
        parts.append("<h2>Training columns ignored</h2><p>"
                     + _e(", ".join(report.ignored_columns)) + "</p>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "".join(parts), note


# --- terminal ------------------------------------------------------------------------------------
def summary_lines(report: SkewReport, paths: dict[str, Path] | None = None) -> list[str]:
    """A one-screen summary for the terminal."""
    data = report.to_dict(max_unplaced_rows=0)
    rows = data["rows"]
    bad = sorted((f for f in report.features if f.differs), key=lambda f: (-f.rows_differing, f.name))
    lines = [
        f"skew check: {report.verdict.upper()}  ({len(bad)} of {len(report.features)} compared "
        f"features differ beyond tolerance; rtol={report.rtol:g} atol={report.atol:g})",
        f"rows: {rows['training']:,} training, {rows['compared']:,} compared, {rows['unplaced']:,} "
        f"not placed, {rows['with_differences']:,} with differences",
    ]
    for reason, count in data["unplaced_rows"]["by_reason"].items():
        lines.append(f"  not placed: {count:,} row(s): {reason}")
    if bad:
        lines.append(f"  {'feature':<32} {'differing':>10} {'compared':>10} {'max |diff|':>12} "
                     f"{'NaN vs value':>12}")
        for f in bad[:MAX_SUMMARY_FEATURES]:
            lines.append(f"  {f.name:<32} {f.rows_differing:>10,} {f.rows_compared:>10,} "
                         f"{_value(f.max_abs_diff):>12} {f.nan_mismatches:>12,}")
        if len(bad) > MAX_SUMMARY_FEATURES:
            lines.append(f"  ... and {len(bad) - MAX_SUMMARY_FEATURES} more differing feature(s)")
    if report.zero_kmer_rows:
        lines.append(f"  {len(report.zero_kmer_rows):,} row(s) have every k-mer at 0 in the training "
                     "file where the genome gives k-mers (zero-filled k-mers?)")
    if report.not_compared:
        lines.append(f"not compared: {len(report.not_compared)} feature(s)")
        for name, why in list(report.not_compared.items())[:10]:
            lines.append(f"  {name}: {why}")
        if len(report.not_compared) > 10:
            lines.append(f"  ... and {len(report.not_compared) - 10} more (see the report)")
    if paths:
        lines.append(f"report: {paths['html']}  (JSON: {paths['json']})")
    return lines
