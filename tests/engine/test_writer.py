"""The resumable Parquet writer and the staged exchange, without a cluster."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_enrich import storage
from dask_enrich.core import enrich, output_meta, output_schema
from dask_enrich.engine import exchange, writer
from dask_enrich.engine.partition import plan_partitions
from dask_enrich.errors import ConfigError, RunFailure
from dask_enrich.manifest import manifest_from_names

MANIFEST = manifest_from_names(["donor_score", "probability_entropy", "splice_probability"])


def _positions(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d, a = rng.random(n) * 0.5, rng.random(n) * 0.5
    return pd.DataFrame({"gene_id": pd.Series([f"G{i % 5}" for i in range(n)], dtype="str"),
                         "position": rng.integers(1, 1000, n), "donor_score": d,
                         "acceptor_score": a, "neither_score": 1 - d - a})


def test_parts_have_identical_schema_even_empty_or_one_row(tmp_path):
    frame = _positions(50)
    schema = output_schema(MANIFEST, frame.dtypes.to_dict())
    out = str(tmp_path / "out")
    writer.prepare_output(out, mode="new", run_fingerprint="f", run_record={}, n_bins=3)
    for bin_id, part in enumerate([frame, frame.iloc[:1], frame.iloc[:0]]):
        enriched, report = enrich(part, MANIFEST)
        record = writer.write_part(enriched, out, bin_id, schema, "f", report.to_dict())
        assert record["rows"] == len(part)
    files = writer.part_files(out)
    assert [f.rsplit("/", 1)[-1] for f in files] == [writer.part_name(b) for b in range(3)]
    schemas = [pq.read_schema(f) for f in files]
    assert all(s.equals(schema, check_metadata=False) for s in schemas)
    assert [pq.ParquetFile(f).metadata.num_rows for f in files] == [50, 1, 0]
    assert not any(writer.TMP_MARKER in p.name for p in (tmp_path / "out").iterdir())
    # the empty frame that the meta describes is written with the same schema too
    meta = output_meta(MANIFEST, frame.dtypes.to_dict())
    writer.write_part(meta, out, 3, schema, "f", {"rows": 0, "imputed": {}, "reasons": {}})
    assert pq.read_schema(writer.part_files(out)[3]).equals(schema, check_metadata=False)


def test_recorded_digest_is_that_of_the_written_file(tmp_path):
    """The CRC-32 and size recorded as the part is written equal those of the file on disk."""
    import zlib

    frame = _positions(5_000)
    schema = output_schema(MANIFEST, frame.dtypes.to_dict())
    out = str(tmp_path / "out")
    writer.prepare_output(out, mode="new", run_fingerprint="f", run_record={}, n_bins=1)
    enriched, report = enrich(frame, MANIFEST)
    record = writer.write_part(enriched, out, 0, schema, "f", report.to_dict())
    data = (tmp_path / "out" / writer.part_name(0)).read_bytes()
    assert (record[writer.HASH_KEY], record["bytes"]) == (f"{zlib.crc32(data):08x}", len(data))
    kept = json.loads((tmp_path / "out" / writer.PARTS_DIR / f"{writer.part_name(0)}.json").read_text())
    assert kept[writer.HASH_KEY] == record[writer.HASH_KEY]


def test_part_encodings_and_values(tmp_path):
    """Text columns as dictionaries, ``position`` delta-encoded, feature columns plain; the values
    read back equal the frame written."""
    frame = _positions(3_000)
    schema = output_schema(MANIFEST, frame.dtypes.to_dict())
    out = str(tmp_path / "out")
    writer.prepare_output(out, mode="new", run_fingerprint="f", run_record={}, n_bins=1)
    enriched, report = enrich(frame, MANIFEST)
    writer.write_part(enriched, out, 0, schema, "f", report.to_dict())
    meta = pq.ParquetFile(writer.part_files(out)[0]).metadata.row_group(0)
    columns = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in columns["gene_id"].encodings
    assert "DELTA_BINARY_PACKED" in columns["position"].encodings
    assert columns["position"].statistics.has_min_max
    assert not columns["probability_entropy"].has_dictionary_page
    # continuous derived features stored uncompressed (Feature.compress), the rest snappy
    assert columns["probability_entropy"].compression == "UNCOMPRESSED"
    assert columns["splice_probability"].compression == "UNCOMPRESSED"
    assert {columns[c].compression for c in ("gene_id", "position", "donor_score")} == {"SNAPPY"}
    back = pd.read_parquet(writer.part_files(out)[0])
    pd.testing.assert_frame_equal(back, enriched.reset_index(drop=True), check_dtype=False)


def test_schema_mismatch_is_a_run_failure(tmp_path):
    frame = _positions(5)
    schema = output_schema(MANIFEST, frame.dtypes.to_dict())
    enriched, _ = enrich(frame, MANIFEST)
    with pytest.raises(RunFailure, match="schema"):
        writer.write_part(enriched.drop(columns="donor_score"), str(tmp_path), 0, schema, "f", {})
    with pytest.raises(RunFailure, match="donor_score.*float32"):
        writer.write_part(enriched.astype({"donor_score": "float32"}), str(tmp_path), 0, schema, "f", {})
    with pytest.raises(RunFailure, match="gene_id"):
        writer.write_part(enriched.assign(gene_id=1), str(tmp_path), 0, schema, "f", {})
    table = writer.to_table(enriched, schema)  # values unchanged, cell by cell
    assert table.schema.equals(schema) and table.to_pandas().equals(enriched.reset_index(drop=True))


def test_prepare_refuses_overwrites_and_resumes(tmp_path):
    out = str(tmp_path / "out")
    frame = _positions(10)
    schema = output_schema(MANIFEST, frame.dtypes.to_dict())
    enriched, report = enrich(frame, MANIFEST)
    assert writer.prepare_output(out, mode="new", run_fingerprint="A", run_record={"x": 1}, n_bins=3) == {}
    for b in range(3):
        writer.write_part(enriched, out, b, schema, "A", report.to_dict())
    with pytest.raises(ConfigError, match="not empty.*--resume.*--overwrite"):
        writer.precheck_output(out, mode="new", run_fingerprint="A")
    with pytest.raises(ConfigError, match="not empty"):
        writer.prepare_output(out, mode="new", run_fingerprint="A", run_record={}, n_bins=3)
    with pytest.raises(ConfigError, match="other inputs"):
        writer.prepare_output(out, mode="resume", run_fingerprint="B", run_record={"x": 2}, n_bins=3)
    # resume: a truncated part, a leftover temporary file and a stale success file are cleaned up
    part1 = tmp_path / "out" / writer.part_name(1)
    part1.write_bytes(part1.read_bytes()[:100])
    (tmp_path / "out" / (writer.part_name(2) + writer.TMP_MARKER + "x")).write_bytes(b"junk")
    (tmp_path / "out" / writer.SUCCESS_FILE).write_text("{}")
    done = writer.prepare_output(out, mode="resume", run_fingerprint="A", run_record={}, n_bins=3)
    assert sorted(done) == [0, 2] and done[0]["rows"] == 10 and done[0]["report"]["rows"] == 10
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        writer.RUN_FILE, writer.PARTS_DIR, writer.part_name(0), writer.part_name(2)]
    assert sorted(p.name for p in (tmp_path / "out" / writer.PARTS_DIR).iterdir()) == [
        writer.part_name(0) + ".json", writer.part_name(2) + ".json"]
    # overwrite empties the directory
    assert writer.prepare_output(out, mode="overwrite", run_fingerprint="B", run_record={},
                                 n_bins=1) == {}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [writer.RUN_FILE]
    assert json.loads((tmp_path / "out" / writer.RUN_FILE).read_text())["fingerprint"] == "B"


def test_resume_refuses_a_directory_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="no _RUN.json"):
        writer.precheck_output(str(tmp_path), mode="resume", run_fingerprint="A")


def test_staged_exchange_regroups_rows_by_bin(tmp_path):
    """Split three input partitions, gather each bin: every row lands once, in its gene's bin."""
    frame = _positions(300, seed=4)
    frame["gene_id"] = pd.Series([f"G{i}" for i in np.random.default_rng(1).integers(0, 40, 300)],
                                 dtype="str")
    plan = plan_partitions(frame["gene_id"].value_counts(), 25)
    staging = str(tmp_path / "staging")
    parts = [frame.iloc[:100], frame.iloc[100:250], frame.iloc[250:]]
    splits = [exchange.split_part(p, i, "positions", plan, frozenset({1}), staging)
              for i, p in enumerate(parts)]
    bins = plan.bin_of(frame["gene_id"])
    for b in range(plan.n_bins):
        got = exchange.gather_bin(b, splits, frame.iloc[:0], "positions")
        want = frame[bins == b] if b != 1 else frame.iloc[:0]
        key = ["gene_id", "position", "donor_score"]
        pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                      want.sort_values(key).reset_index(drop=True))
    assert sum(s["rows"] for s in splits) == int((bins != 1).sum())


def test_checksum_sink_writes_every_byte_to_a_file_that_takes_few_at_a_time():
    """A raw file may take fewer bytes than given (a short write): the sink writes the rest."""
    import io
    import zlib

    class Trickle(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, b):
            chunk = bytes(memoryview(b)[:7])
            self.data += chunk
            return len(chunk)

    raw = Trickle()
    sink = writer.ChecksumSink(raw)
    payload = bytes(range(256)) * 40
    assert sink.write(payload[:1000]) == 1000  # the bytes of this call, as a file's write returns
    assert sink.write(memoryview(payload)[1000:]) == len(payload) - 1000
    assert bytes(raw.data) == payload
    assert sink.digest == (f"{zlib.crc32(payload):08x}", len(payload))


def test_overwrite_removes_the_success_file_first_then_the_rest(tmp_path, monkeypatch):
    """A previous output is deleted _SUCCESS.json first (interrupted, it never looks complete),
    then its parts and records (in threads); its lock is left."""
    out = tmp_path / "out"
    out.mkdir()
    frame = _positions(10)
    schema = output_schema(MANIFEST, frame.dtypes.to_dict())
    enriched, report = enrich(frame, MANIFEST)
    for b in range(6):
        writer.write_part(enriched, str(out), b, schema, "A", report.to_dict())
    writer.write_success(str(out), {"rows": 60})
    (out / writer.LOCK_FILE).write_text("{}")
    fs, root = storage.url_to_fs(str(out))
    removed: list[str] = []
    rm = fs.rm

    def recorded(path, recursive=False):
        removed.append(path.rsplit("/", 1)[-1])
        rm(path, recursive=recursive)

    monkeypatch.setattr(fs, "rm", recorded)  # fsspec's instance is shared: undone after
    writer.remove_own(fs, root)
    assert removed[0] == writer.SUCCESS_FILE
    assert sorted(removed[1:]) == sorted([writer.PARTS_DIR] + [writer.part_name(b) for b in range(6)])
    assert [p.name for p in out.iterdir()] == [writer.LOCK_FILE]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["G1", "G2", "G10", "", None]), max_size=40),
       st.integers(1, 3), st.booleans(), st.booleans())
def test_gene_rows_digest_of_a_dictionary_column_is_the_pandas_one(genes, chunks, extra, repeat):
    """From the indices of a dictionary column (chunks with their own dictionaries, values the rows
    do not use, a repeated value: the string path) the digest ``verify`` recomputes from pandas."""
    want = writer.gene_rows_digest(pd.Series(genes, dtype="str"))
    cut = np.array_split(np.arange(len(genes)), chunks)
    parts = []
    for rows in cut:
        values = sorted({g for g in genes if g is not None}) + (["unused"] if extra else [])
        values += values[:1] if repeat and values else []
        last = {v: i for i, v in enumerate(values)}  # a repeated value's rows: either copy
        indices = [None if genes[i] is None else values.index(genes[i]) if i % 2 else last[genes[i]]
                   for i in rows]
        parts.append(pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(values, pa.string())))
    column = pa.chunked_array(parts, type=pa.dictionary(pa.int32(), pa.string()))
    assert writer.gene_rows_digest(column) == want
    assert writer.gene_rows_digest(column.cast(pa.string())) == want


#: Every dtype an output column can have: the registry's (float64, int64, int32), kept columns'
#: (int8, int16, float32, bool) and the identifying text columns.
_DTYPES = {"i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
           "f32": np.float32, "f64": np.float64, "flag": np.bool_}


def _cast_write(frame, schema: pa.Schema, path, record: dict) -> None:
    """The part a cast writes (the writer before text columns were written as dictionaries):
    ``frame`` cast to ``schema`` (plain strings), the Parquet writer hashing every text value."""
    table = frame.cast(schema) if isinstance(frame, pa.Table) else writer.to_table(frame, schema)
    table = table.replace_schema_metadata({writer.META_KEY: json.dumps(record).encode()})
    pq.write_table(table, str(path), **writer.parquet_options(schema))


def _assert_reads_as_cast(got, want) -> None:
    """The files ``got`` and ``want`` read back the same: table, schema with its metadata, pandas
    dtypes, footer key-value metadata; their columns have the same encodings, codecs and
    statistics (and ``got`` passes the page checksums)."""
    table = pq.read_table(got, page_checksum_verification=True)
    assert table.equals(pq.read_table(want), check_metadata=True)
    assert pq.read_schema(got).equals(pq.read_schema(want), check_metadata=True)
    assert not any(pa.types.is_dictionary(f.type) for f in table.schema)
    pd.testing.assert_frame_equal(pd.read_parquet(got), pd.read_parquet(want))
    a, b = pq.ParquetFile(got).metadata, pq.ParquetFile(want).metadata
    assert a.metadata == b.metadata and list(a.metadata) == list(b.metadata)
    assert json.loads(a.metadata[writer.META_KEY])["rows"] == a.num_rows
    assert a.schema.equals(b.schema) and a.num_row_groups == b.num_row_groups
    for g in range(a.num_row_groups):
        for c in range(a.num_columns):
            x, y = a.row_group(g).column(c), b.row_group(g).column(c)
            assert (x.encodings, x.compression, x.statistics) == (y.encodings, y.compression, y.statistics)


@st.composite
def _text_frames(draw):
    """Rows with text columns (missing values, genes in runs or scattered) and a column of each
    numeric dtype."""
    n = draw(st.integers(0, 60))
    pool = ["G1", "G2", "G10", "", "Gé"]
    genes = draw(st.lists(st.sampled_from(pool + [None]), min_size=n, max_size=n))
    if draw(st.booleans()):
        genes = sorted(genes, key=lambda g: (g is None, g or ""))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    frame = pd.DataFrame({"gene_id": pd.Series(genes, dtype="str"),
                          "chrom": pd.Series(rng.choice(["chr1", "chrX"], n), dtype="str"),
                          "strand": pd.Series(rng.choice(["+", "-", None], n), dtype="str")})
    for name, dtype in _DTYPES.items():
        frame[name] = (rng.random(n) > 0.5) if dtype is np.bool_ else \
            (rng.random(n) * 100).astype(dtype)
    return frame


def _dictionaries(column: pd.Series, chunks: int, unused: bool) -> pa.ChunkedArray:
    """``column`` as a dictionary column as a scan keeps a track's: ``chunks`` chunks, each with its
    own dictionary (sorted values, ``unused``: values no row has)."""
    parts = []
    for rows in np.array_split(np.arange(len(column)), chunks):
        values = sorted(set(column.iloc[rows].dropna())) + (["unused", "zz"] if unused else [])
        index = {v: i for i, v in enumerate(values)}
        indices = [None if pd.isna(v) else index[v] for v in column.iloc[rows]]
        parts.append(pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()),
                                                    pa.array(values, pa.string())))
    return pa.chunked_array(parts, type=pa.dictionary(pa.int32(), pa.string()))


@settings(max_examples=40, deadline=None)
@given(_text_frames(), st.integers(1, 3), st.booleans(), st.booleans())
def test_text_columns_written_as_dictionaries_read_back_as_a_cast_writes_them(
        tmp_path_factory, frame, chunks, unused, arrow):
    """A part whose text columns the writer takes as dictionaries (an Arrow table's, as the
    selective path keeps a track's; or ``gene_id`` from its GeneCodes) reads back exactly as the
    part of the same rows cast to the schema: plain strings (no categoricals in pandas), the same
    footer record and key-value metadata, the same encodings, codecs and statistics, every dtype."""
    from dask_enrich.gene_codes import GeneCodes

    tmp = tmp_path_factory.mktemp("dict")
    schema = pa.schema([pa.field(n, pa.string()) for n in ("gene_id", "chrom", "strand")]
                       + [pa.field(n, pa.from_numpy_dtype(np.dtype(d))) for n, d in _DTYPES.items()])
    codes = None
    if arrow:
        given_ = pa.table({n: _dictionaries(frame[n], chunks, unused) if n in ("gene_id", "chrom", "strand")
                           else pa.array(frame[n].to_numpy()) for n in schema.names})
    else:
        given_, codes = frame, GeneCodes.of(frame["gene_id"])
    out = str(tmp / "out")
    writer.prepare_output(out, mode="new", run_fingerprint="f", run_record={}, n_bins=1)
    record = writer.write_part(given_, out, 0, schema, "f", {"rows": len(frame)}, gene_codes=codes)
    _cast_write(given_, schema, tmp / "cast.parquet", {k: v for k, v in record.items()
                                                      if k not in (writer.HASH_KEY, "bytes")})
    part = writer.part_files(out)[0]
    _assert_reads_as_cast(part, str(tmp / "cast.parquet"))
    assert record["gene_rows"] == writer.gene_rows_digest(frame["gene_id"])
    assert writer.file_digest(*storage.url_to_fs(part)) == (record[writer.HASH_KEY], record["bytes"])
    assert writer.verify_part(*storage.url_to_fs(out), writer.part_name(0))[1] == ""


def test_a_selective_part_is_written_from_its_dictionaries(tmp_path, monkeypatch):
    """The Parquet writer is given the table's dictionaries (not strings to hash again), with the
    dictionary entries the rows use in order of first appearance, and the file still reads back
    as the cast one (as the property test above checks, in one case)."""
    genes = pd.Series(["B", "B", "A", None, "C", "A"], dtype="str")
    table = pa.table({"gene_id": _dictionaries(genes, 2, True), "x": pa.array(np.arange(6.0))})
    schema = pa.schema([("gene_id", pa.string()), ("x", pa.float64())])
    written = []
    real = pq.ParquetWriter.write_table

    def spy(self, table, *args, **kwargs):
        written.append(table)
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", spy)
    out = str(tmp_path / "out")
    writer.prepare_output(out, mode="new", run_fingerprint="f", run_record={}, n_bins=1)
    record = writer.write_part(table, out, 0, schema, "f", {})
    (column,) = written[0].column("gene_id").chunks
    assert column.dictionary.to_pylist() == ["B", "A", "C"]
    assert column.indices.to_pylist() == [0, 0, 1, None, 2, 1]
    _cast_write(table, schema, tmp_path / "cast.parquet",
                {k: v for k, v in record.items() if k not in (writer.HASH_KEY, "bytes")})
    _assert_reads_as_cast(writer.part_files(out)[0], str(tmp_path / "cast.parquet"))


def test_a_dictionary_of_other_values_or_repeated_values_is_cast_as_before(tmp_path):
    """Dictionaries the writer cannot pass on as they are (integer values, a value twice, a null
    entry) are cast as before; so is a pandas ``gene_id`` that is not text."""
    schema = pa.schema([("gene_id", pa.string()), ("n", pa.string())])
    twice = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2], pa.int32()), pa.array(["a", "b", "a"]))
    numbers = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], pa.int32()), pa.array([5, 6]))
    table = writer.writable_table(pa.table({"gene_id": twice, "n": numbers}), schema)
    assert table.schema.equals(schema)
    assert table.column("gene_id").to_pylist() == ["a", "b", "a"]
    from dask_enrich.gene_codes import GeneCodes

    frame = pd.DataFrame({"gene_id": pd.Series([1, 2], dtype=object), "n": ["x", "y"]})
    with pytest.raises((pa.ArrowTypeError, pa.ArrowInvalid)):
        writer.writable_table(frame, schema, GeneCodes.of(frame["gene_id"]))
    out = str(tmp_path / "out")
    writer.prepare_output(out, mode="new", run_fingerprint="f", run_record={}, n_bins=1)
    with pytest.raises(RunFailure, match="gene codes of 1 rows given for 2 rows"):
        writer.write_part(frame.astype({"gene_id": "str"}), out, 0, schema, "f", {},
                          gene_codes=GeneCodes.of(frame["gene_id"].iloc[:1]))


def test_gene_codes_of_other_rows_are_refused_not_written(tmp_path):
    """Codes of as many rows but other gene ids (another bin's, the rows reordered) are refused
    before they would be written as the part's gene ids."""
    from dask_enrich.gene_codes import GeneCodes

    frame = pd.DataFrame({"gene_id": pd.Series(["a", "a", "b", "c"], dtype="str"), "x": np.arange(4.0)})
    schema = pa.schema([("gene_id", pa.string()), ("x", pa.float64())])
    out = str(tmp_path / "out")
    writer.prepare_output(out, mode="new", run_fingerprint="f", run_record={}, n_bins=1)
    for other in (["c", "a", "a", "b"], ["a", "a", "b", "b"]):
        with pytest.raises(RunFailure, match="not those of the frame's gene_id"):
            writer.write_part(frame, out, 0, schema, "f", {},
                              gene_codes=GeneCodes.of(pd.Series(other, dtype="str")))
    assert writer.part_files(out) == []


def test_gene_codes_of_a_column_of_several_arrow_chunks(tmp_path):
    """A bin's ``gene_id`` made of several pieces' rows is a column of several Arrow chunks: its
    codes are checked and written as for one chunk (the check once compared a chunked array with
    an array and failed the bin)."""
    from dask_enrich.gene_codes import GeneCodes

    chunked = pa.chunked_array([pa.array(["a", "a"]), pa.array(["b", "c"])])
    frame = pd.DataFrame({"gene_id": pd.Series(pd.arrays.ArrowStringArray(chunked)),
                          "x": np.arange(4.0)})
    assert isinstance(pa.array(frame["gene_id"], type=pa.string(), from_pandas=True), pa.ChunkedArray)
    schema = pa.schema([("gene_id", pa.string()), ("x", pa.float64())])
    out = str(tmp_path / "out")
    writer.prepare_output(out, mode="new", run_fingerprint="f", run_record={}, n_bins=1)
    writer.write_part(frame, out, 0, schema, "f", {}, gene_codes=GeneCodes.of(frame["gene_id"]))
    back = pq.read_table(writer.part_files(out)[0])
    assert back.column("gene_id").to_pylist() == ["a", "a", "b", "c"]
    assert back.schema.field("gene_id").type == pa.string()
