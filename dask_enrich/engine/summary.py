"""The end of a run on the client: the bins' results added up and checked (every bin exactly once,
with its plan's genes and rows; every row written or rejected), the outputs checked visible, and
the summary (:class:`RunSummary`, and the record ``_SUCCESS.json`` is written from).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import storage
from ..core import EnrichReport
from ..errors import AllRowsRejected, RunFailure
from ..features.registry import parse_kmer
from . import quarantine, writer
from .tasks import BinResult, check_row_counts


@dataclass
class RunSummary:
    """What a run did (also written, with more detail, to ``OUT/_SUCCESS.json``)."""

    out: str
    rows_in: int
    rows_written: int
    rows_rejected: int
    partitions: int
    partitions_resumed: int
    partitions_redone: dict[str, str]  # kept parts that failed verification: {path: why}
    imputed: dict[str, int]
    imputed_reasons: dict[str, str]
    seconds: float
    positions_per_second: float
    fingerprint: str
    success_file: str
    dashboard: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    track_rows: int | None = None
    warnings: dict[str, Any] = field(default_factory=dict)  # of the row checks (score sums, ...)
    track_rows_rejected: int = 0  # bad rows of a track read for context (quarantined)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _track_note(self) -> str:
        if self.track_rows is None:
            return ""
        if self.track_rows == self.rows_in:
            return "  (every track row)"
        return f"  (selected from {self.track_rows:,} track rows)"

    def lines(self) -> list[str]:
        """A one-screen human summary."""
        out = [
            f"output        {self.out}",
            f"rows in       {self.rows_in:,}" + self._track_note(),
            f"rows written  {self.rows_written:,}",
            f"rows rejected {self.rows_rejected:,}",
            *([f"track rows rejected {self.track_rows_rejected:,} (in {quarantine.TRACK_REJECTED_DIR}/)"]
              if self.track_rows_rejected else []),
            f"partitions    {self.partitions} ({self.partitions_resumed} resumed"
            + (f", {len(self.partitions_redone)} redone: failed verification" if self.partitions_redone
               else "") + ")",
            f"time          {self.seconds:.1f} s  ({self.positions_per_second:,.0f} positions/s)",
        ]
        if self.imputed:
            out.append(f"imputed       {len(self.imputed)} feature(s) (all listed in the summary file):")
            groups: dict[tuple[str, int], list[str]] = {}
            for name, count in self.imputed.items():
                groups.setdefault((self.imputed_reasons.get(name, ""), count), []).append(name)
            for (reason, count), names in groups.items():
                kmers = [n for n in names if parse_kmer(n) is not None]
                named = [n for n in names if n not in kmers]
                listed = named[:6] + (["..."] if len(named) > 6 else [])
                listed += [f"{len(kmers)} k-mers"] if kmers else []
                out.append(f"  {', '.join(listed)}: {count:,} rows ({reason})")
        else:
            out.append("imputed       none")
        out += warning_lines({"warnings": self.warnings})
        out.append(f"summary       {self.success_file}")
        return out


@dataclass(frozen=True)
class Totals:
    """The bins' results added up (kept bins included): rows, the merged report and check info."""

    rows_in: int
    written: int
    rejected: int
    report: EnrichReport
    checks: dict[str, Any]
    fresh: int  # bins written by this run

    @classmethod
    def of(cls, results: Sequence[BinResult]) -> "Totals":
        """Fresh bins in bin order first, then the kept ones (the order the reports merge in)."""
        report, checks = EnrichReport(), {}
        for r in results:
            report = report.merge(r.report)
            checks = quarantine.merge_info(checks, r.checks)
        return cls(sum(r.rows_in for r in results), sum(r.rows_written for r in results),
                   sum(r.rows_rejected for r in results), report, checks,
                   sum(not r.resumed for r in results))


def check_totals(totals: Totals, pos_rows: int | None) -> None:
    """RunFailure unless the rows that reached the bins are the positions read, each written or
    rejected exactly once."""
    if pos_rows is not None and totals.rows_in != pos_rows:
        raise RunFailure(f"rows lost or duplicated: {pos_rows:,} positions read but "
                         f"{totals.rows_in:,} reached the partitions")
    check_row_counts(totals.rows_in, totals.written, totals.rejected)


def check_not_all_rejected(totals: Totals, out: str) -> None:
    """AllRowsRejected when every row failed the input checks (nothing enriched)."""
    if totals.rows_in and not totals.written and totals.rejected == totals.rows_in:
        reasons = ", ".join(f"{code} ({count:,})"
                            for code, count in totals.checks.get("rejected", {}).items())
        raise AllRowsRejected(f"every row ({totals.rejected:,}) failed the input checks and was set "
                              f"aside in {out}/{quarantine.REJECTED_DIR}/ ({reasons}): nothing was "
                              "enriched, so the run did not succeed")


def redone_lines(redone: dict[str, str]) -> list[str]:
    """The lines saying which kept parts failed verification (they are written again)."""
    if not redone:
        return []
    shown = [f"  {Path(path).name}: {why}" for path, why in list(redone.items())[:8]]
    more = [f"  and {len(redone) - 8} more"] if len(redone) > 8 else []
    return [f"resume: {len(redone)} part(s) failed verification and are redone:", *shown, *more]


def _check_each_bin_once(plan: Any, results: Sequence[BinResult], exact_rows: bool
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Every bin of the plan exactly once; with ``exact_rows`` its rows those of its genes.
    Returns the rows in and written per bin."""
    bins = np.fromiter((r.bin for r in results), np.int64, len(results))
    seen = np.bincount(bins, minlength=plan.n_bins)
    if len(seen) > plan.n_bins or (seen != 1).any():
        wrong = np.flatnonzero(seen != 1)
        b = int(wrong[0])
        raise RunFailure(f"partition {b} was written {int(seen[b])} times (a partition must be written "
                         f"exactly once; {len(wrong)} partition(s) wrong)")
    rows_in = np.zeros(plan.n_bins, np.int64)
    written = np.zeros(plan.n_bins, np.int64)
    rows_in[bins] = [r.rows_in for r in results]
    written[bins] = [r.rows_written for r in results]
    if exact_rows and plan.rows is not None:
        expected = np.bincount(plan.bins, weights=plan.rows, minlength=plan.n_bins).astype(np.int64)
        wrong = np.flatnonzero(expected != rows_in)
        if len(wrong):
            b = int(wrong[0])
            raise RunFailure(f"partition {b}: {rows_in[b]:,} input row(s) reached it but its genes "
                             f"have {expected[b]:,} (rows lost or duplicated)")
    return rows_in, written


def check_bins(plan: Any, results: Sequence[BinResult], targets: Any, exact_rows: bool,
               storage_options: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """The run's final check, per bin and per gene: every bin of the plan written (or kept) exactly
    once; with ``exact_rows``, each bin's input rows those the plan counted for its genes; and
    every target's part records (``_parts/``) those of this plan's bins (gene list and rows per
    gene, fingerprint), with the rows written. Returns each target's files ({out: [entry]}) for
    ``_SUCCESS.json``."""
    _, written = _check_each_bin_once(plan, results, exact_rows)
    digests = [plan.bin_digest(b) for b in range(plan.n_bins)]
    files: dict[str, list[dict[str, Any]]] = {}
    for t in targets:
        entries = writer.part_records(t.out, plan.n_bins, storage_options)
        for b, entry in enumerate(entries):
            problem = ("no record" if entry is None
                       else "another run" if entry.get("fingerprint") != t.fingerprint
                       else "other genes" if entry.get("genes") != digests[b]
                       else "other rows" if entry.get("rows") != written[b] else "")
            if problem:
                raise RunFailure(f"{t.out}/{writer.part_name(b)}: its record ({writer.PARTS_DIR}/) "
                                 f"does not match partition {b} of this run ({problem})")
        files[t.out] = [{k: e[k] for k in ("file", "bin", "rows", "bytes", writer.HASH_KEY, "gene_rows")}
                        for e in entries]
    return files


def check_parts_visible(out: str, n_bins: int, storage_options: dict[str, Any] | None = None) -> None:
    """RunFailure when OUT does not hold every part file the workers reported written (the workers
    wrote to another filesystem than the one the client sees at that path)."""
    fs, root = storage.url_to_fs(out, storage_options)
    present = set(storage.listing(fs, root)) if fs.exists(root) else set()
    missing = [writer.part_name(b) for b in range(n_bins) if writer.part_name(b) not in present]
    if missing:
        raise RunFailure(
            f"OUT {out} lacks {len(missing)} of the {n_bins} part file(s) the workers wrote (e.g. "
            f"{missing[0]}): OUT is not on a filesystem shared with the workers. Give an OUT that the "
            "client and every worker see at the same path (a shared mount, or a URL such as s3://)")


def output_dirs(ctx: Any) -> list[str]:
    """The directories a run writes part files to (one per target, else OUT)."""
    targets = getattr(ctx, "targets", ()) or ()
    return [t.out for t in targets] or [ctx.out]


def check_outputs_visible(ctx: Any) -> None:
    """At the end of a run, before ``_SUCCESS.json``: delete the temporary files that writers
    killed mid-write left behind (their bins were written again elsewhere), then
    :func:`check_parts_visible` for every output directory of the run."""
    for out in output_dirs(ctx):
        remove_temporaries(out, ctx.storage_options)
        check_parts_visible(out, ctx.plan.n_bins, ctx.storage_options)
    for directory in (quarantine.REJECTED_DIR, quarantine.TRACK_REJECTED_DIR):
        remove_temporaries(f"{str(ctx.out).rstrip('/')}/{directory}", ctx.storage_options)


def remove_temporaries(directory: str, storage_options: dict[str, Any] | None = None) -> None:
    """Delete the files of ``directory`` whose names mark them temporary (errors ignored)."""
    fs, root = storage.url_to_fs(directory, storage_options)
    try:
        names = storage.listing(fs, root) if fs.exists(root) else []
    except Exception:
        return
    for name in names:
        if writer.TMP_MARKER in name:
            try:
                fs.rm(f"{root}/{name}")
            except Exception:
                pass


def cache_warnings(cache_path: str | None) -> dict[str, Any]:
    """The warnings of the genomic cache's build report that a run repeats in its summary and
    ``_SUCCESS.json`` (genes with exons outside their gene line)."""
    if cache_path is None:
        return {}
    from ..genome.cache import load_cached

    genes = (load_cached(cache_path).report or {}).get("genes_with_exons_outside_gene_line") or []
    if not genes:
        return {}
    shown = ", ".join(genes[:5]) + (", ..." if len(genes) > 5 else "")
    return {"exons_outside_gene_line": {
        "count": len(genes), "genes": genes[:50],
        "message": f"{len(genes)} gene(s) of the annotation with exons outside their gene line "
                   f"({shown}): their span is the gene line's, their splice sites the exons'"}}


def warning_lines(checks: Mapping[str, Any]) -> list[str]:
    """One ``warning: ...`` line per warning of the run's row checks."""
    return [f"warning: {item.get('message', code)}"
            for code, item in (checks.get("warnings", {}) or {}).items()]


def success_record(job: Any, ctx: Any, totals: Totals, summary: RunSummary,
                   files: Mapping[str, list[dict[str, Any]]], redone: Mapping[str, str],
                   track_rows: int | None) -> dict[str, Any]:
    """The run's ``_SUCCESS.json`` (before each target's own fields): counts, imputed features,
    partitions and files, inputs and settings, timings, warnings, rejected rows."""
    from datetime import datetime, timezone

    from .._version import __version__

    checks = totals.checks
    track_rejected = checks.get(quarantine.TRACK_REJECTED_KEY, {})
    targets = ctx.targets
    return {
        "version": __version__,
        "fingerprint": job.fingerprint,
        "started": job.started,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": {"in": totals.rows_in, "written": totals.written, "rejected": totals.rejected,
                 **({"track": track_rows} if track_rows is not None else {})},
        "imputed": dict(sorted(totals.report.imputed.items())),
        "imputed_reasons": dict(sorted(totals.report.reasons.items())),
        "partitions": {"count": ctx.plan.n_bins, "written": totals.fresh, "resumed": len(ctx.done),
                       "redone": {Path(k).name: v for k, v in redone.items()},
                       "files": files[targets[0].out] if targets else [],
                       "plan": ctx.plan.summary()},
        "inputs": job.record["inputs"],
        "settings": job.record["settings"],
        "manifest": {"source": job.manifest.source, "name": job.manifest.name,
                     "features": len(job.manifest.names)},
        "timings_s": summary.timings,
        "positions_per_second": round(summary.positions_per_second, 1),
        "warnings": checks.get("warnings", {}),
        "rejected": {"on_bad_rows": ctx.checks.on_bad_rows, "rows": totals.rejected,
                     "reasons": checks.get("rejected", {}),
                     **({"dir": quarantine.REJECTED_DIR} if totals.rejected else {}),
                     **({"track_rows": summary.track_rows_rejected, "track_reasons": track_rejected,
                         "track_dir": quarantine.TRACK_REJECTED_DIR} if track_rejected else {})},
    }
