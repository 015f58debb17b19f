"""Random access to plain or bgzip FASTA through a samtools-compatible ``.fai`` (and ``.gzi``).

An existing ``.fai``/``.gzi`` is read (and checked against the FASTA before a sequence is first
used); when absent they are built and written into ``index_dir`` when given (the genomic cache
passes its own directory, so a build never writes into its inputs' folders), else beside the FASTA
if that directory is writable, else kept in memory. The ``.fai`` written here is byte-identical to
the one ``samtools faidx`` writes; the ``.gzi`` uses the ``bgzip -r`` layout (a little-endian uint64
count, then one (compressed offset, uncompressed offset) pair per BGZF block after the first).

:meth:`IndexedFasta.fetch` returns upper-cased ASCII codes (soft-masked bases upper-cased) for
1-based inclusive coordinates and reads only the bytes (plain) or BGZF blocks (bgzip) it needs.
"""
from __future__ import annotations

import gzip
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import InputError

#: Byte -> byte table that upper-cases ASCII letters and leaves every other byte alone.
UPPER = np.arange(256, dtype=np.uint8)
UPPER[ord("a"):ord("z") + 1] -= 32

_COMPLEMENT_PAIRS = ["AT", "CG", "RY", "KM", "BV", "DH", "SS", "WW", "NN"]
#: Byte -> complement byte (IUPAC aware, lowercase complemented to uppercase, other bytes unchanged).
COMPLEMENT = np.arange(256, dtype=np.uint8)
for _a, _b in _COMPLEMENT_PAIRS:
    for _x, _y in ((_a, _b), (_b, _a)):
        COMPLEMENT[ord(_x)] = ord(_y)
        COMPLEMENT[ord(_x.lower())] = ord(_y)

_BGZF_EOF_ISIZE = 0


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of an ASCII uint8 array (IUPAC aware; lowercase comes back upper-cased)."""
    return COMPLEMENT[np.asarray(codes, dtype=np.uint8)[::-1]]


@dataclass(frozen=True)
class FaiRecord:
    """One ``.fai`` line: name, length, offset of the first base, bases per line, bytes per line."""

    name: str
    length: int
    offset: int
    linebases: int
    linewidth: int

    def byte_offset(self, pos0: np.ndarray | int) -> np.ndarray | int:
        """Uncompressed byte offset of 0-based base ``pos0``."""
        return self.offset + (pos0 // self.linebases) * self.linewidth + pos0 % self.linebases


def is_plain_gzip(path: str | Path) -> bool:
    """Whether ``path`` is gzip-compressed but not bgzip (so it can only be read from start to end)."""
    return _is_bgzf(Path(path)) is None


_UPPER_BYTES = bytes(UPPER)
_STREAM_BLOCK = 1 << 24


def stream_fasta(path: str | Path, want: Callable[[str], bool] = lambda name: True
                 ) -> Iterator[tuple[str, int, np.ndarray | None]]:
    """Each sequence of a FASTA (plain, gzip or bgzip), read once from start to end: (name, length,
    upper-cased ASCII codes, or None when ``want(name)`` is false, which keeps only its length).

    Gives the bases :meth:`IndexedFasta.fetch` gives (line ends removed, soft-masking upper-cased);
    empty sequences are left out, as from a ``.fai``.
    """
    path = Path(path)
    opener = gzip.open if _is_bgzf(path) is not False else open
    seen: set[str] = set()
    state: dict = {"name": None, "parts": None, "length": 0}

    def finish() -> tuple[str, int, np.ndarray | None] | None:
        name, parts, length = state["name"], state["parts"], state["length"]
        if name is None or length == 0:
            return None
        seq = None if parts is None else np.frombuffer(b"".join(parts), dtype=np.uint8)
        return name, length, seq

    def lines(data: bytes) -> Iterator[tuple[str, int, np.ndarray | None]]:
        pos = 0
        while pos < len(data):
            if data[pos] == 62:  # '>'
                nl = data.find(b"\n", pos)
                nl = len(data) if nl < 0 else nl
                done = finish()
                if done is not None:
                    yield done
                words = data[pos + 1:nl].split()
                if not words:
                    raise InputError(f"{path}: empty sequence name in a '>' header")
                name = words[0].decode()
                if name in seen:
                    raise InputError(f"{path}: duplicate sequence name {name!r}")
                seen.add(name)
                state.update(name=name, parts=[] if want(name) else None, length=0)
                pos = nl + 1
            else:
                nxt = data.find(b"\n>", pos)
                stop = len(data) if nxt < 0 else nxt + 1
                seg = data[pos:stop].translate(_UPPER_BYTES, b"\r\n")
                if state["name"] is None:
                    if seg.strip():
                        raise InputError(f"{path}: sequence before the first '>' header")
                else:
                    state["length"] += len(seg)
                    if state["parts"] is not None:
                        state["parts"].append(seg)
                pos = stop

    try:
        with opener(path, "rb") as fh:
            rest = b""
            while True:
                block = fh.read(_STREAM_BLOCK)
                if not block:
                    break
                data = rest + block
                cut = data.rfind(b"\n") + 1  # whole lines only: a header is never cut
                rest = data[cut:]
                yield from lines(data[:cut])
            yield from lines(rest)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read the FASTA: {exc}") from exc
    done = finish()
    if done is not None:
        yield done
    if not seen:
        raise InputError(f"{path}: no '>' sequence header: not a FASTA file")


def _is_bgzf(path: Path) -> bool | None:
    """True for BGZF, False for plain text, None for gzip that is not BGZF."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return False
    if len(head) >= 18 and head[3] & 4 and head[12:14] == b"BC":
        return True
    return None


def _scan_bgzf_blocks(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(compressed offsets, uncompressed sizes) of every BGZF block, read from the block headers."""
    coffs: list[int] = []
    isizes: list[int] = []
    size = path.stat().st_size
    with open(path, "rb") as fh:
        pos = 0
        while pos < size:
            fh.seek(pos)
            head = fh.read(12)
            if len(head) < 12 or head[:2] != b"\x1f\x8b" or not head[3] & 4:
                raise InputError(f"{path}: not a valid BGZF block at byte {pos}")
            xlen = struct.unpack("<H", head[10:12])[0]
            extra = fh.read(xlen)
            bsize = None
            i = 0
            while i + 4 <= len(extra):
                si1, si2, slen = extra[i], extra[i + 1], struct.unpack("<H", extra[i + 2:i + 4])[0]
                if si1 == 66 and si2 == 67 and slen == 2:
                    bsize = struct.unpack("<H", extra[i + 4:i + 6])[0]
                i += 4 + slen
            if bsize is None:
                raise InputError(f"{path}: BGZF block at byte {pos} has no BC field (not bgzip)")
            fh.seek(pos + bsize + 1 - 4)
            isize = struct.unpack("<I", fh.read(4))[0]
            coffs.append(pos)
            isizes.append(isize)
            pos += bsize + 1
    return np.array(coffs, dtype=np.int64), np.array(isizes, dtype=np.int64)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _writable_dir(directory: Path) -> bool:
    return directory.is_dir() and os.access(directory, os.W_OK | os.X_OK)


class IndexedFasta:
    """Random access to a plain or bgzip FASTA.

    ``index_dir`` is where missing indexes are written (an index already beside the FASTA or in
    ``index_dir`` is used); without it they are written beside the FASTA when that is writable.
    """

    def __init__(self, path: str | Path, index_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"genome FASTA not found: {self.path}")
        kind = _is_bgzf(self.path)
        if kind is None:
            raise InputError(
                f"{self.path}: gzip-compressed but not bgzip, so it cannot be read at random; the "
                "genomic cache (`dask-enrich build-cache`, `run --genome`) reads it as it is, from start "
                "to end; for random access recompress it with `bgzip` (htslib) or decompress it")
        self.bgzip = kind
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self._validated: set[str] = set()
        if self.bgzip:
            self._coffs, self._uoffs, self.gzi_path = self._load_or_build_gzi()
        self.records, self.fai_path = self._load_or_build_fai()
        self._total = self._uncompressed_size()
        if self.records:  # cheap global check: the last sequence must end inside the file
            self._validate(next(reversed(self.records.values())).name)

    # --- index files -----------------------------------------------------------------------------
    def _candidates(self, suffix: str) -> list[Path]:
        out = [self.path.with_name(self.path.name + suffix)]
        if self.index_dir is not None:
            out.append(self.index_dir / (self.path.name + suffix))
        return out

    def _write_index(self, suffix: str, data: bytes) -> Path | None:
        # a given index_dir comes first: a cache build never writes into its inputs' folders (which
        # may be an installed package's data or a read-only reference directory)
        for candidate in reversed(self._candidates(suffix)):
            if _writable_dir(candidate.parent):
                try:
                    _write_atomic(candidate, data)
                    return candidate
                except OSError:
                    continue
        return None

    def _load_or_build_gzi(self) -> tuple[np.ndarray, np.ndarray, Path | None]:
        for candidate in self._candidates(".gzi"):
            if candidate.is_file():
                raw = np.fromfile(candidate, dtype="<u8")
                if len(raw) < 1 or len(raw) != 1 + 2 * int(raw[0]):
                    raise InputError(f"{candidate}: malformed .gzi index of {self.path}")
                pairs = raw[1:].reshape(-1, 2).astype(np.int64)
                coffs = np.concatenate([[0], pairs[:, 0]])
                uoffs = np.concatenate([[0], pairs[:, 1]])
                size = self.path.stat().st_size
                if np.any(np.diff(coffs) <= 0) or np.any(np.diff(uoffs) < 0) or coffs[-1] >= size:
                    raise InputError(f"{candidate}: .gzi index does not match {self.path} (bad offsets)")
                with open(self.path, "rb") as fh:
                    fh.seek(int(coffs[-1]))
                    if fh.read(2) != b"\x1f\x8b":
                        raise InputError(f"{candidate}: .gzi index does not match {self.path} "
                                         f"(no BGZF block at byte {coffs[-1]})")
                return coffs, uoffs, candidate
        coffs, isizes = _scan_bgzf_blocks(self.path)
        uoffs = np.concatenate([[0], np.cumsum(isizes)[:-1]])
        keep = isizes > 0
        keep[0] = True
        coffs, uoffs = coffs[keep], uoffs[keep]
        body = np.empty(1 + 2 * (len(coffs) - 1), dtype="<u8")
        body[0] = len(coffs) - 1
        body[1:] = np.column_stack([coffs[1:], uoffs[1:]]).ravel()
        return coffs, uoffs, self._write_index(".gzi", body.tobytes())

    def _load_or_build_fai(self) -> tuple[dict[str, FaiRecord], Path | None]:
        for candidate in self._candidates(".fai"):
            if candidate.is_file():
                records: dict[str, FaiRecord] = {}
                for number, line in enumerate(candidate.read_text().splitlines(), start=1):
                    if not line.strip():
                        continue
                    fields = line.split("\t")
                    try:
                        rec = FaiRecord(fields[0], *(int(f) for f in fields[1:5]))
                    except (ValueError, TypeError, IndexError):
                        raise InputError(f"{candidate}: malformed .fai line {number}: {line[:80]!r}") from None
                    if rec.length < 0 or rec.offset < 0 or rec.linebases <= 0 or rec.linewidth < rec.linebases:
                        raise InputError(f"{candidate}: impossible values on .fai line {number} for {self.path}")
                    records[rec.name] = rec
                return records, candidate
        records = self._build_fai()
        text = "".join(f"{r.name}\t{r.length}\t{r.offset}\t{r.linebases}\t{r.linewidth}\n" for r in records.values())
        return records, self._write_index(".fai", text.encode())

    def _build_fai(self) -> dict[str, FaiRecord]:
        opener = gzip.open if self.bgzip else open
        records: dict[str, FaiRecord] = {}
        cur: dict | None = None

        def finish() -> None:
            if cur is not None and cur["length"] > 0:  # samtools leaves empty sequences out
                lb = cur["lb"] or 0
                lw = cur["lw"] or 0
                records[cur["name"]] = FaiRecord(cur["name"], cur["length"], cur["offset"], lb, lw)

        offset = 0
        with opener(self.path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                width = len(line)
                if line[:1] == b">":
                    finish()
                    words = line[1:].split()
                    if not words:
                        raise InputError(f"{self.path}: empty sequence name on line {number}")
                    name = words[0].decode()
                    if name in records or (cur is not None and cur["name"] == name):
                        raise InputError(f"{self.path}: duplicate sequence name {name!r} on line {number}")
                    cur = {"name": name, "length": 0, "offset": offset + width, "lb": None, "lw": None,
                           "short": False, "blank": False}
                else:
                    nbases = len(line.rstrip(b"\r\n"))
                    if cur is None:
                        if nbases:
                            raise InputError(f"{self.path}: sequence before the first '>' header (line {number})")
                    elif nbases == 0:
                        cur["blank"] = True
                    else:
                        if cur["blank"] or cur["short"]:
                            raise InputError(f"{self.path}: different line length in sequence {cur['name']!r} "
                                             f"(line {number}); reformat it, e.g. with `samtools faidx`/`seqkit seq`")
                        if cur["lb"] is None:
                            cur["lb"], cur["lw"] = nbases, width
                        elif nbases > cur["lb"] or (nbases == cur["lb"] and width != cur["lw"] and line.endswith(b"\n")):
                            raise InputError(f"{self.path}: different line length in sequence {cur['name']!r} "
                                             f"(line {number})")
                        elif nbases < cur["lb"]:
                            cur["short"] = True
                        cur["length"] += nbases
                offset += width
        finish()
        if not records:
            raise InputError(f"{self.path}: no '>' sequence header: not a FASTA file")
        return records

    # --- raw access ------------------------------------------------------------------------------
    def _uncompressed_size(self) -> int:
        if not self.bgzip:
            return self.path.stat().st_size
        with open(self.path, "rb") as fh:
            fh.seek(int(self._coffs[-1]))
            tail = fh.read()
        # the last indexed block(s): decompress to know their total size
        return int(self._uoffs[-1]) + len(_inflate_members(tail, self.path))

    def _read(self, start: int, end: int) -> bytes:
        """Uncompressed bytes [start, end) of the FASTA file."""
        if start >= end:
            return b""
        if not self.bgzip:
            with open(self.path, "rb") as fh:
                fh.seek(start)
                return fh.read(end - start)
        i0 = int(np.searchsorted(self._uoffs, start, side="right")) - 1
        i1 = int(np.searchsorted(self._uoffs, end - 1, side="right")) - 1
        c0 = int(self._coffs[i0])
        with open(self.path, "rb") as fh:
            fh.seek(c0)
            if i1 + 1 < len(self._coffs):
                raw = fh.read(int(self._coffs[i1 + 1]) - c0)
            else:
                raw = fh.read()
        data = _inflate_members(raw, self.path)
        base = int(self._uoffs[i0])
        return data[start - base:end - base]

    def _validate(self, name: str) -> None:
        """Check that the ``.fai`` record of ``name`` matches the FASTA bytes (header, line ends, end)."""
        if name in self._validated:
            return
        rec = self.records[name]
        where = f"{self.fai_path or 'index'} does not match {self.path} for sequence {name!r}"
        end_off = rec.byte_offset(rec.length - 1) if rec.length else rec.offset
        if rec.offset <= 0 or end_off >= self._total + (rec.length == 0):
            raise InputError(f"{where}: offsets beyond the end of the file (rebuild the index)")
        head = self._read(max(0, rec.offset - 4096), rec.offset)
        gt = head.rfind(b">")
        if not head.endswith(b"\n") or gt < 0 or (head[gt + 1:].split() or [b""])[0].decode(errors="replace") != name:
            raise InputError(f"{where}: the offset does not follow the sequence's '>' header (rebuild the index)")
        if rec.length > rec.linebases:
            nl = self._read(rec.offset + rec.linebases, rec.offset + rec.linewidth)
            if nl.strip(b"\r\n") or not nl.endswith(b"\n"):
                raise InputError(f"{where}: line length differs from the index (rebuild the index)")
        if rec.length:
            tail = self._read(end_off, min(self._total, end_off + 4))
            after = tail[1:].lstrip(b"\r\n")
            if tail[:1] in (b"", b"\n", b"\r", b">") or (after and not after.startswith(b">")):
                raise InputError(f"{where}: the sequence length differs from the index (rebuild the index)")
        self._validated.add(name)

    # --- public API ------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Sequence names in file order."""
        return list(self.records)

    def length(self, seqname: str) -> int:
        """Length of sequence ``seqname``."""
        return self._record(seqname).length

    def _record(self, seqname: str) -> FaiRecord:
        try:
            return self.records[seqname]
        except KeyError:
            raise InputError(f"{self.path}: no sequence named {seqname!r}") from None

    def fetch(self, seqname: str, start: int, end: int) -> np.ndarray:
        """Upper-cased ASCII codes (uint8) of ``seqname``:start..end, 1-based inclusive."""
        rec = self._record(seqname)
        if not 1 <= start <= end <= rec.length:
            raise InputError(f"{self.path}: {seqname}:{start}-{end} is outside 1..{rec.length}")
        self._validate(seqname)
        b0 = rec.byte_offset(start - 1)
        b1 = rec.byte_offset(end - 1) + 1
        raw = np.frombuffer(self._read(b0, b1), dtype=np.uint8)
        if rec.linewidth != rec.linebases:
            raw = raw[(raw != 10) & (raw != 13)]
        if len(raw) != end - start + 1:
            raise InputError(f"{self.fai_path or 'index'} does not match {self.path}: "
                             f"{seqname}:{start}-{end} read {len(raw)} bases (rebuild the index)")
        return UPPER[raw]


def _inflate_members(raw: bytes, path: Path) -> bytes:
    """Concatenated content of consecutive complete gzip members (BGZF blocks) in ``raw``."""
    out = []
    while raw:
        d = zlib.decompressobj(31)
        try:
            out.append(d.decompress(raw))
        except zlib.error as exc:
            raise InputError(f"{path}: corrupt BGZF block: {exc}") from exc
        if not d.eof:
            raise InputError(f"{path}: truncated BGZF block")
        raw = d.unused_data
    return b"".join(out)
