"""Sequence features of the spec (gc_content, sequence_length, sequence_complexity, k-mer counts).

Pure numpy: no dask, no files. The caller supplies ``bases`` (upper-case ASCII codes, e.g. the
genomic cache's memory-mapped concatenation of gene spans, forward strand) and, per position, the
half-open window ``[lo, hi)`` into ``bases`` plus whether the window is read as its reverse
complement (minus-strand genes). :func:`window_bounds` computes those windows from genomic positions.

Window (FEATURES.md): ``seq[i-250 : i+250]`` of the gene's sequence in transcript orientation,
clipped at the gene's ends. With ``j = position - gene_start`` (forward, 0-based) and ``L`` the gene
length, that is forward ``[j-250, j+250)`` on the plus strand; on the minus strand ``i = L-1-j``
and the reverse-complemented slice ``[i-250, i+250)`` is the forward slice ``[j-249, j+251)``,
both clipped to ``[0, L)``.

Counts on the minus strand are counts in the reverse-complemented window, i.e. counts of the
reverse-complement k-mer in the forward window. A k-mer containing N is counted only when a column
names it (e.g. ``3mer_NNN``); a k-mer containing any other non-ACGT letter is never counted.
``sequence_complexity`` is the Shannon entropy (bits) over the characters present in the window
(N and IUPAC letters count as characters); it and gc_content do not depend on the orientation.

Speed: overlapping windows are merged into segments and only those bases are gathered (memory is
bounded by the gathered length, or twice it when the windows are dense and one range is read);
k-mer codes (3 bits per base) are computed once per k. Counting is chunked over windows sorted by
start: in a chunk the window bounds cut the bases into intervals, one ``bincount`` over
(target, interval) plus one prefix sum gives every target's count in every window, i.e.
O(bases + windows x targets) with no per-window or per-target pass over the bases. When there are
more targets than bases per window (e.g. all 4096 6-mers) each window is counted directly instead.
Character composition (gc_content, sequence_complexity) uses the same machinery over characters.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..errors import InputError
from ..options import SEQUENCE_FLANK
from ..validate import place
from .registry import COUNT, FLOAT, INT, SEQUENCE, Computed, Feature, builtin_features, declare, \
    declare_pattern, lookup, parse_kmer

#: Longest supported k (3 bits per base in an int64 code).
MAX_K = 21

#: ASCII -> 3-bit base code: A C G T = 0..3, N = 4, anything else 7 (never part of a counted k-mer).
_BASE_CODE = np.full(256, 7, dtype=np.uint8)
for _i, _c in enumerate("ACGTN"):
    _BASE_CODE[ord(_c)] = _i
    _BASE_CODE[ord(_c.lower())] = _i
_UPPER = np.arange(256, dtype=np.uint8)
_UPPER[ord("a"):ord("z") + 1] -= 32
_RC = str.maketrans("ACGTN", "TGCAN")


def window_bounds(position: np.ndarray, gene_start: np.ndarray, gene_end: np.ndarray,
                  minus: np.ndarray, flank: int = SEQUENCE_FLANK) -> tuple[np.ndarray, np.ndarray]:
    """Half-open window ``[lo, hi)`` per position, in 0-based forward coordinates local to the gene
    (0 = gene_start). Positions are 1-based genomic; a position outside its gene raises InputError."""
    position = np.asarray(position, dtype=np.int64)
    gene_start = np.asarray(gene_start, dtype=np.int64)
    gene_end = np.asarray(gene_end, dtype=np.int64)
    minus = np.asarray(minus, dtype=bool)
    outside = (position < gene_start) | (position > gene_end)
    if np.any(outside):
        rows = np.flatnonzero(np.broadcast_to(outside, np.broadcast(position, gene_start).shape))
        raise InputError(f"{len(rows)} position(s) outside their gene's span (rows {rows[:5].tolist()})")
    j = position - gene_start
    length = gene_end - gene_start + 1
    shift = minus.astype(np.int64)  # minus strand: [j-flank+1, j+flank+1)
    lo = np.maximum(j - flank + shift, 0)
    hi = np.minimum(j + flank + shift, length)
    return lo, hi


def kmer_code(kmer: str) -> int:
    """3-bit packed code of a k-mer over ACGTN (the codes :func:`sequence_features` compares)."""
    code = 0
    for ch in kmer:
        code = (code << 3) | int(_BASE_CODE[ord(ch)])
    return code


def _code_dtype(k: int) -> np.dtype:
    return np.dtype(np.int16 if k <= 5 else np.int32 if k <= 10 else np.int64)


def _kmer_codes(base_codes: np.ndarray, k: int) -> np.ndarray:
    """Packed code of every k-mer starting at 0 .. len-k (3 bits per base, first base highest)."""
    n = len(base_codes) - k + 1
    dtype = _code_dtype(k)
    codes = np.zeros(max(n, 0), dtype=dtype)
    if n <= 0:
        return codes
    for j in range(k):
        codes <<= 3
        codes |= base_codes[j:j + n]
    return codes


def _merge_windows(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """Merge overlapping windows; returns (seg_lo, seg_len, glo, ghi, order) where glo/ghi index the
    concatenation of the segments and ``order`` sorts the windows by start (in both coordinates)."""
    if len(lo) > 1 and np.any(lo[1:] < lo[:-1]):
        order = np.argsort(lo, kind="stable")
    else:
        order = None
    lo_s = lo if order is None else lo[order]
    hi_s = hi if order is None else hi[order]
    run_max = np.maximum.accumulate(hi_s)
    new = np.ones(len(lo_s), dtype=bool)
    new[1:] = lo_s[1:] > run_max[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(lo_s)) - 1
    seg_lo = lo_s[first]
    seg_len = run_max[last] - seg_lo
    goff = np.concatenate([[0], np.cumsum(seg_len)[:-1]])
    seg = np.cumsum(new) - 1
    shift = goff[seg] - seg_lo[seg]
    glo_s = lo_s + shift
    ghi_s = hi_s + shift
    if order is None:
        return seg_lo, seg_len, glo_s, ghi_s, np.arange(len(lo))
    glo = np.empty_like(glo_s)
    ghi = np.empty_like(ghi_s)
    glo[order] = glo_s
    ghi[order] = ghi_s
    return seg_lo, seg_len, glo, ghi, order


def check_names(names: list[str]) -> list[str]:
    """The names that are not sequence features (empty list when all are)."""
    return [n for n in names if n not in SEQUENCE_NAMES and parse_kmer(n) is None]


def sequence_features(bases: np.ndarray, lo: np.ndarray, hi: np.ndarray, minus: np.ndarray,
                      names: list[str]) -> dict[str, np.ndarray]:
    """Columns ``name -> array`` (registry dtypes) for the windows ``bases[lo:hi]`` (reverse
    complemented where ``minus``) and the requested sequence feature / k-mer names."""
    bad = check_names(names)
    if bad:
        raise ValueError(f"not sequence features: {bad}")
    too_long = [n for n in names if (parse_kmer(n) or (0, ""))[0] > MAX_K]
    if too_long:
        raise ValueError(f"k-mers longer than {MAX_K} are not supported: {too_long[:3]}")
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    minus = np.asarray(minus, dtype=bool)
    n = len(lo)
    if not (len(hi) == n and len(minus) == n):
        raise ValueError("lo, hi and minus must have the same length")
    out: dict[str, np.ndarray] = {}
    if n == 0:
        return {name: np.zeros(0, dtype=lookup(name).dtype) for name in names}
    if lo.min() < 0 or hi.max() > len(bases) or np.any(hi <= lo):
        raise ValueError("windows must satisfy 0 <= lo < hi <= len(bases)")

    seg_lo, seg_len, glo, ghi, order = _merge_windows(lo, hi)
    total = int(seg_len.sum())
    first, stop = int(seg_lo[0]), int(seg_lo[-1] + seg_len[-1])
    if stop - first <= 2 * total:
        # dense windows: read the whole range once (bases between segments are never counted)
        gathered = np.asarray(bases[first:stop])
        glo, ghi = lo - first, hi - first
    else:
        goff = np.concatenate([[0], np.cumsum(seg_len)[:-1]])
        idx = np.repeat(seg_lo - goff, seg_len) + np.arange(total, dtype=np.int64)
        gathered = np.asarray(bases[idx])
    # lowercase (soft-masked) bases are folded into upper case by the lookup tables below
    length = ghi - glo

    wanted = set(names)
    if "sequence_length" in wanted:
        out["sequence_length"] = length.astype(lookup("sequence_length").dtype)
    if "gc_content" in wanted or "sequence_complexity" in wanted:
        out.update(_composition(gathered, glo, ghi, order, wanted))

    by_k: dict[int, list[str]] = defaultdict(list)
    for name in names:
        parsed = parse_kmer(name)
        if parsed is not None:
            by_k[parsed[0]].append(name)
    if by_k:
        base_codes = _BASE_CODE[gathered]
    for k, cols in by_k.items():
        kmers = list(dict.fromkeys(parse_kmer(name)[1] for name in cols))
        counts = _count_kmers(base_codes, glo, ghi, minus, order, k, kmers)
        for name in cols:
            out[name] = counts[parse_kmer(name)[1]]
    return {name: out[name] for name in names}


#: Size (bytes) of a chunk's count histogram: small enough to stay in the CPU cache (measured: a
#: 4 MB histogram is about twice as fast as a 32 MB one for 64 3-mers).
CHUNK_BUDGET = 4 << 20


#: Count k-mers window by window (:func:`_direct_counts`) when DIRECT_FACTOR * targets exceeds the
#: mean window length, else through interval histograms (:func:`_interval_counts`).
DIRECT_FACTOR = 2.0


def _interval_counts(labels_of, a_all: np.ndarray, e_all: np.ndarray, order: np.ndarray, t: int):
    """Per chunk of windows (taken in ``order``), the count of every label in every window.

    ``labels_of(q0, q1)`` gives, for positions q0..q1-1, the label (0..t-1) of the item starting
    there, or t for none (int32). Yields ``(rows, counts)`` with ``counts[c, i]`` = number of
    positions p in ``[a, e)`` of window ``rows[i]`` whose label is c (int32, t x len(rows)). The
    window bounds split the chunk's positions into intervals; one ``bincount`` of (label, interval)
    and one prefix sum give every count: O(positions + windows * labels), memory bounded by the chunk.
    """
    n = len(order)
    chunk = int(max(1024, CHUNK_BUDGET // (16 * max(t, 1))))
    for c0 in range(0, n, chunk):  # loop over chunks of windows (bounded memory)
        rows = order[c0:c0 + chunk]
        if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
            rows = slice(int(rows[0]), int(rows[-1]) + 1)
        a, e = a_all[rows], e_all[rows]
        w = len(a)
        q, inv = np.unique(np.concatenate([a, e]), return_inverse=True)
        ia, ie = inv[:w], inv[w:]
        q0, q1 = int(q[0]), int(q[-1])
        stride = len(q) + 1
        if q1 <= q0 or t == 0:
            yield rows, np.zeros((t, w), dtype=np.int32)
            continue
        # interval of each position p in [q0, q1): #(q <= p), so that p < q_i  <=>  interval <= i
        keys = labels_of(q0, q1)
        keys *= stride  # label-major keys (label * stride + interval) fit int32 by the chunk size
        keys += np.repeat(np.arange(1, len(q), dtype=np.int32), np.diff(q))
        hist = np.bincount(keys, minlength=(t + 1) * stride)[:t * stride]  # drop the "none" label
        cum = np.cumsum(hist, dtype=np.int32).reshape(t, stride)
        yield rows, np.take(cum, ie, axis=1) - np.take(cum, ia, axis=1)


def _direct_counts(labels_at, a_all: np.ndarray, e_all: np.ndarray, order: np.ndarray, t: int):
    """Same contract as :func:`_interval_counts`, counting each window's items directly (one
    ``bincount`` of (window, label) over every position of every window): cheaper when there are
    more labels than positions per window (e.g. all 4096 6-mers). ``labels_at(p)`` labels positions p."""
    n = len(order)
    mean_len = max(1.0, float(np.mean(e_all[order] - a_all[order]))) if n else 1.0
    chunk = int(max(64, min(CHUNK_BUDGET // (8 * (t + 1)), 4 * CHUNK_BUDGET // (8 * mean_len))))
    for c0 in range(0, n, chunk):  # loop over chunks of windows (bounded memory)
        rows = order[c0:c0 + chunk]
        a, e = a_all[rows], e_all[rows]
        lens = e - a
        w = len(rows)
        total = int(lens.sum())
        starts = np.cumsum(lens) - lens
        pos = np.repeat(a - starts, lens) + np.arange(total, dtype=np.int64)
        keys = labels_at(pos).astype(np.int64)
        keys += np.repeat(np.arange(w, dtype=np.int64) * (t + 1), lens)
        hist = np.bincount(keys, minlength=w * (t + 1)).reshape(w, t + 1)[:, :t]
        yield rows, hist.T.astype(np.int32)


def _composition(gathered: np.ndarray, glo: np.ndarray, ghi: np.ndarray, order: np.ndarray,
                 wanted: set[str]) -> dict[str, np.ndarray]:
    """gc_content and sequence_complexity from per-window character counts."""
    n = len(glo)
    raw = np.bincount(gathered, minlength=256)
    folded = np.bincount(_UPPER, weights=raw, minlength=256)  # counts after upper-casing
    present = np.flatnonzero(folded)
    lut = np.full(256, len(present), dtype=np.int32)
    lut[present] = np.arange(len(present), dtype=np.int32)
    lut = lut[_UPPER]  # a lowercase byte gets its uppercase letter's label
    gc_idx = [int(lut[ord(ch)]) for ch in "GC" if lut[ord(ch)] < len(present)]
    gc = np.zeros(n, dtype=np.float64)
    entropy = np.zeros(n, dtype=np.float64)
    length = ghi - glo
    # entropy = log2 L - (1/L) * sum over characters of c log2 c, with c log2 c from a table
    counts_range = np.arange(int(length.max()) + 1, dtype=np.float64)
    clog = np.zeros_like(counts_range)
    clog[1:] = counts_range[1:] * np.log2(counts_range[1:])
    for rows, counts in _interval_counts(lambda q0, q1: lut[gathered[q0:q1]], glo, ghi, order, len(present)):
        w_len = length[rows]
        if "sequence_complexity" in wanted:
            h = np.log2(w_len) - clog[counts].sum(axis=0) / w_len
            h[h < 1e-12] = 0.0  # one character only (the smallest true entropy is ~log2(L)/L)
            entropy[rows] = h
        if gc_idx:
            gc[rows] = counts[gc_idx].sum(axis=0) / w_len
    out = {}
    if "gc_content" in wanted:
        out["gc_content"] = gc
    if "sequence_complexity" in wanted:
        out["sequence_complexity"] = entropy
    return out


def _count_kmers(base_codes: np.ndarray, glo: np.ndarray, ghi: np.ndarray, minus: np.ndarray,
                 order: np.ndarray, k: int, kmers: list[str]) -> dict[str, np.ndarray]:
    """Counts of each k-mer (of its reverse complement where ``minus``) in every window.

    Plus-strand and minus-strand windows are counted separately (a gene's positions share one
    strand, so the two groups read disjoint bases): plus windows count the k-mers, minus windows
    their reverse complements.
    """
    n = len(glo)
    codes = _kmer_codes(base_codes, k)
    m = len(codes)
    dtype = lookup(f"{k}mer_{kmers[0]}").dtype
    result = np.zeros((len(kmers), n), dtype=dtype)
    a_all = np.minimum(glo, m)  # k-mer starts p with glo <= p and p + k <= ghi
    e_all = np.maximum(np.minimum(ghi - k + 1, m), a_all)
    minus_sorted = minus[order]
    for strand_minus in (False, True):
        sub = order[minus_sorted == strand_minus]
        if len(sub) == 0:
            continue
        wanted = [x.translate(_RC)[::-1] if strand_minus else x for x in kmers]
        want_codes = np.array([kmer_code(x) for x in wanted], dtype=np.int64)
        targets, col = np.unique(want_codes, return_inverse=True)
        t = len(targets)
        identity = t == len(kmers) and np.array_equal(col, np.arange(t))
        if k <= 7:
            lut = np.full(8 ** k, t, dtype=np.int32)
            lut[targets] = np.arange(t, dtype=np.int32)

            def label(piece: np.ndarray, lut=lut) -> np.ndarray:
                return lut[piece]
        else:
            def label(piece: np.ndarray, targets=targets, t=t) -> np.ndarray:
                pos = np.minimum(np.searchsorted(targets, piece), t - 1)
                return np.where(targets[pos] == piece, pos, t).astype(np.int32)

        mean_len = float(np.mean(e_all[sub] - a_all[sub]))
        if DIRECT_FACTOR * t > mean_len:  # many targets, short windows: count window by window
            counter = _direct_counts(lambda p, label=label: label(codes[p]), a_all, e_all, sub, t)
        else:
            counter = _interval_counts(lambda q0, q1, label=label: label(codes[q0:q1]), a_all, e_all, sub, t)
        for rows, counts in counter:
            result[:, rows] = counts if identity else counts[col]  # (the only copy of the counts)
    return {x: result[i] for i, x in enumerate(kmers)}


# --- Declarations and the kernel ----------------------------------------------------------------
def sequence_kernel(inputs, names: list[str]) -> Computed:
    """Sequence features and k-mer counts of each row's window, from the genomic cache's bases;
    rows whose gene, chromosome or position cannot be placed are missing."""
    n = len(inputs.frame)
    offset = np.where(inputs.in_annotation, inputs.gene_column("seq_offset"), -1)
    placement = place(inputs.genomic.gene_table, inputs.gene_row, inputs.positions, has_sequence_for=True)
    start, end = placement.start, placement.end
    valid = placement.placed & inputs.strand_known
    reason = ("gene absent from the annotation, its chromosome absent from the genome, or the "
              "position outside the gene span")
    if not valid.any():
        return Computed(dict.fromkeys(names), ~valid, reason)
    lo, hi = window_bounds(inputs.positions[valid], start[valid], end[valid], inputs.minus[valid],
                           inputs.config.sequence_flank)
    computed = sequence_features(inputs.genomic.bases, lo + offset[valid], hi + offset[valid],
                                 inputs.minus[valid], names)
    out = {}
    for name in names:
        column = np.zeros(n, dtype=lookup(name).dtype)
        column[valid] = computed[name]
        out[name] = column
    return Computed(out, ~valid, reason)


declare("gc_content", "sequence", FLOAT, {SEQUENCE},
        "(G + C) / window length, window of +-250 nt in transcript orientation", sequence_kernel)
declare("sequence_length", "sequence", INT, {SEQUENCE},
        "window length (500 unless clipped at a gene end)", sequence_kernel)
declare("sequence_complexity", "sequence", FLOAT, {SEQUENCE},
        "Shannon entropy (bits) of the window's character composition", sequence_kernel)
#: The named sequence features (k-mers are a pattern, see :func:`kmer_feature`).
SEQUENCE_NAMES = tuple(f.name for f in builtin_features() if f.kernel is sequence_kernel)


def kmer_feature(name: str) -> Feature | None:
    """The k-mer count feature called ``name`` (``{k}mer_{KMER}``), or None if it is not one."""
    parsed = parse_kmer(name)
    if parsed is None:
        return None
    k, kmer = parsed
    return Feature(name, "kmer", COUNT, frozenset({SEQUENCE}),
                   f"count of overlapping {kmer} in the window (k={k}, raw count, strand-specific)",
                   kernel=sequence_kernel)


declare_pattern(kmer_feature)
