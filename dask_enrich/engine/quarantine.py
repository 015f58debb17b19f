"""Quarantine: the per-bin row checks on the worker and the rejected-rows files.

:func:`check_bin` runs :func:`dask_enrich.validate.split_bad_rows` on one bin on the worker, before
``core.enrich``: with ``--on-bad-rows error`` a bad row fails the run
(:func:`dask_enrich.validate.raise_for_bad_rows`); with ``quarantine`` the bad rows (input columns +
``reason`` + ``source``) go to ``OUT/_rejected/part-NNNNN.parquet`` (temporary name, then rename,
written before the bin's part file, so a complete part always has its rejected file). The client
side: which checks a run makes (:func:`bin_checks`, :func:`track_checks`), the rejected files of a
resumed run (:func:`prepare_rejected`, :func:`kept_without_rejects`), and the merging of the bins'
check infos (:func:`merge_info`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import storage, validate
from ..config import EnrichConfig
from ..gene_codes import GeneCodes
from ..io import InputSource
from ..options import ON_BAD_ROWS, OnBadRows  # noqa: F401 (declared once there)
from . import writer

#: The int32 column of each row's input file (index into the input's files), carried from the read
#: to the row checks when the positions come from several files.
FILE_COLUMN = "_source_file"
#: Bad rows (``--on-bad-rows quarantine``), one file per bin; the underscore makes Parquet dataset
#: readers of OUT skip it, so OUT reads as exactly the written rows.
REJECTED_DIR = writer.REJECTED_DIR
#: Bad rows of a track read for context (``--on-bad-rows quarantine``), one file per bin.
TRACK_REJECTED_DIR = writer.TRACK_REJECTED_DIR
#: The key of a bin's check info that counts its track's rejected rows by reason.
TRACK_REJECTED_KEY = "track_rejected"

#: The key of a part's footer report holding the bin's check info.
CHECKS_KEY = "checks"


def source_name(source: InputSource) -> str:
    """The file a message names: the file itself for one-file inputs, else the input path."""
    return source.files[0] if len(source.files) == 1 else source.path


@dataclass(frozen=True)
class BinChecks:
    """What the per-bin row checks need (shipped in the run's context)."""

    on_bad_rows: str = "error"
    source: str = ""
    need_sequence: bool = False  # reject genes whose chromosome the FASTA lacks
    #: check rows against the annotation (gene present, position inside its span): only when a
    #: feature reads the gene's annotation, sequence or neighbours, or positions are gene-relative
    need_annotation: bool = True
    files: tuple[str, ...] = ()  # the input's files when rows carry FILE_COLUMN (several files)


def annotation_checks(checks: BinChecks, config: EnrichConfig, genomic: Any) -> dict[str, Any]:
    """The annotation and genome arguments of ``validate.split_bad_rows`` for a bin's rows
    (``gene_table`` None: rows are not checked against the annotation)."""
    use_annotation = checks.need_annotation or config.coordinates == "gene_relative"
    gene_table = genomic.gene_table if genomic is not None and use_annotation else None
    has_sequence = bool(checks.need_sequence and gene_table is not None
                        and getattr(genomic, "has_sequence", False))
    report = getattr(genomic, "report", None) or {}
    return {"gene_table": gene_table, "has_sequence_for": True if has_sequence else None,
            "genome_names": report.get("seq_names_mapped"),
            "missing_sequences": report.get("missing_sequences") if has_sequence else None}


def check_bin(positions: pd.DataFrame, checks: BinChecks, *, bin_id: int, config: EnrichConfig,
              genomic: Any, out: str, fingerprint: str,
              storage_options: dict[str, Any] | None = None, rejected_dir: str = REJECTED_DIR,
              genes: GeneCodes | None = None) -> tuple[pd.DataFrame, int, dict[str, Any]]:
    """Split the bad rows off one bin: (good rows with int64 positions, rows rejected, info).
    ``genes``: the rows' gene ids already factorised (``validate.split_bad_rows``).

    ``info`` is JSON-able: ``{"warnings": {...}, "rejected": {reason code: rows}}``. With
    ``on_bad_rows == "error"`` a bad row raises InputError (file, reason codes, example rows); with
    ``quarantine`` the bad rows are written to ``OUT/<rejected_dir>/part-NNNNN.parquet``.
    """
    file_of_row = None
    if FILE_COLUMN in positions.columns:
        file_of_row = positions[FILE_COLUMN].to_numpy()
        positions = positions.drop(columns=FILE_COLUMN)
    good, rejected, warnings = validate.split_bad_rows(
        positions, source=checks.source, config=config, genes=genes,
        **annotation_checks(checks, config, genomic))
    info: dict[str, Any] = {"warnings": warnings, "rejected": {}}
    if len(rejected):
        source = checks.source
        if file_of_row is not None and checks.files:  # name the file of each bad row
            names = np.asarray(checks.files, dtype=object)[
                file_of_row[positions.index.get_indexer(rejected.index)]]
            rejected[validate.SOURCE] = pd.Series(names, index=rejected.index, dtype="str")
            shown = list(dict.fromkeys(names.tolist()))
            source = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more file(s)"
                                              if len(shown) > 3 else "")
        if checks.on_bad_rows != "quarantine":
            validate.raise_for_bad_rows(rejected, source)
        codes = validate.reason_code(rejected[validate.REASON]).value_counts()
        info["rejected"] = {str(k): int(v) for k, v in codes.items()}
        write_rejected(rejected, out, bin_id, fingerprint, storage_options, rejected_dir)
    if good["position"].dtype != np.int64:  # every kept position is a whole number
        good = good.assign(position=good["position"].to_numpy().astype(np.int64))
    return good, int(len(rejected)), info


def write_rejected(rejected: pd.DataFrame, out: str, bin_id: int, fingerprint: str,
                   storage_options: dict[str, Any] | None = None,
                   rejected_dir: str = REJECTED_DIR) -> str:
    """Write one bin's rejected rows to ``OUT/_rejected/part-NNNNN.parquet`` (temporary name, then
    rename); the footer records the run fingerprint, the bin and the row count. Returns the path."""
    fs, root = storage.url_to_fs(out, storage_options)
    directory = f"{root}/{rejected_dir}"
    fs.makedirs(directory, exist_ok=True)
    table = pa.Table.from_pandas(rejected.reset_index(drop=True), preserve_index=False)
    record = {"fingerprint": fingerprint, "bin": int(bin_id), "rows": int(table.num_rows)}
    table = table.replace_schema_metadata({writer.META_KEY: json.dumps(record).encode()})
    return writer.write_table_atomic(fs, table, directory, bin_id, compression="snappy",
                                     write_page_checksum=True)


def prepare_rejected(out: str, done: Mapping[int, Any],
                     storage_options: dict[str, Any] | None = None) -> None:
    """Before a (resumed) run: keep the rejected files of complete bins only; delete temporary
    files and the files of bins that will be redone (they are written again)."""
    fs, root = storage.url_to_fs(out, storage_options)
    for directory in (f"{root}/{REJECTED_DIR}", f"{root}/{TRACK_REJECTED_DIR}"):
        if not fs.exists(directory):
            continue
        for name in storage.listing(fs, directory):
            match = writer.PART_PATTERN.match(name)
            if writer.TMP_MARKER in name or not match or int(match.group(1)) not in done:
                fs.rm(f"{directory}/{name}")


def kept_without_rejects(out: str, done: Mapping[int, Mapping[str, Any]],
                         storage_options: dict[str, Any] | None = None) -> dict[int, str]:
    """The kept (resumed) bins whose rejected rows are not all in their ``_rejected/`` (or
    ``_rejected-track/``) file: {bin: why}. Such a bin is redone, so no rejected row is lost."""
    fs, root = storage.url_to_fs(out, storage_options)
    problems: dict[int, str] = {}
    for b, record in done.items():
        checks = (record.get("report") or {}).get(CHECKS_KEY) or {}
        wanted = ((REJECTED_DIR, int(record.get("rows_rejected", 0))),
                  (TRACK_REJECTED_DIR, int(sum((checks.get(TRACK_REJECTED_KEY) or {}).values()))))
        for directory, rows in wanted:
            if rows:
                found = writer.read_part_record(fs, f"{root}/{directory}/{writer.part_name(b)}")
                if found is None or found.get("rows") != rows:
                    problems[b] = f"its {rows:,} rejected row(s) are not all in {directory}/"
    return problems


def merge_info(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two bins' check infos together (warnings merged, rejected counts added, of the rows and of
    the track's rows)."""
    merged = {"warnings": validate.merge_warnings(a.get("warnings", {}), b.get("warnings", {}))}
    for key in ("rejected", TRACK_REJECTED_KEY):
        counts = dict(a.get(key, {}))
        for code, count in b.get(key, {}).items():
            counts[code] = int(counts.get(code, 0)) + int(count)
        if counts or key == "rejected":
            merged[key] = counts
    return merged


def track_checks(run_record: Mapping[str, Any], source: InputSource | None) -> BinChecks:
    """The row checks of a track read for context: values only (gene id, position, scores, strand,
    repeats); its rows outside a gene's span are never read, so the annotation is not checked."""
    if source is None:
        return BinChecks()
    settings = run_record.get("settings", {}) or {}
    return BinChecks(on_bad_rows=str(settings.get("on_bad_rows", "error")),
                     source=source_name(source), need_annotation=False,
                     files=tuple(source.files) if len(source.files) > 1 else ())


def with_track_info(info: Mapping[str, Any], track_info: Mapping[str, Any]) -> dict[str, Any]:
    """A bin's check info with that of its track's rows: rejected counts under
    ``track_rejected``, warnings under ``track_<code>`` with messages that say so."""
    if not track_info:
        return dict(info)
    warnings = {f"track_{code}": {**item, "message": f"{item.get('message', code)} (track rows)"}
                for code, item in track_info.get("warnings", {}).items()}
    merged = merge_info(info, {"warnings": warnings})
    if track_info.get("rejected"):
        merged[TRACK_REJECTED_KEY] = dict(track_info["rejected"])
    return merged


def bin_checks(run_record: Mapping[str, Any], manifest: Any, source: InputSource | None,
               cache_path: str | None) -> BinChecks:
    """The per-bin checks of a run: ``--on-bad-rows`` from the run's settings, the input's name,
    whether genes without sequence are rejected (a cache with a genome and a manifest with
    sequence features), and whether rows are checked against the annotation at all (not for a
    manifest of score-only features, which never read it)."""
    from ..features.registry import ANNOTATION, CONTEXT, SEQUENCE

    settings = run_record.get("settings", {}) or {}
    features = getattr(manifest, "features", ())
    need_sequence = cache_path is not None and any(SEQUENCE in f.requires for f in features)
    need_annotation = any(f.requires & {ANNOTATION, SEQUENCE, CONTEXT} for f in features)
    return BinChecks(on_bad_rows=str(settings.get("on_bad_rows", "error")),
                     source=source_name(source) if source is not None else "",
                     need_sequence=bool(need_sequence), need_annotation=need_annotation,
                     files=tuple(source.files) if source is not None and len(source.files) > 1
                     else ())


def pop_checks(report: dict[str, Any], total: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the enrichment report without the bin's check info, ``total`` merged with it)."""
    report = dict(report)
    info = report.pop(CHECKS_KEY, None) or {}
    return report, merge_info(total, info)
