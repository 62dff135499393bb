"""Compact coding of pruned attention rows for the views' payload: cutting rows, gap-coded indices, deflate, z85.

One head's kept weights travel as ``{"nnz", "countBytes", "counts", "gaps", "far", "values"}``; each of the four
strings is a raw-deflate stream (Python's ``zlib``; the views inflate it with their own decoder in
``web/core.js``) written in :func:`z85` text:

- ``counts``: per query row, how many keys it keeps (``countBytes`` = 1, 2 or 4 bytes each, little-endian);
- ``gaps`` and ``far``: per row, its key indices in increasing order as gaps (the first one from 0), each an
  unsigned LEB128 varint whose *first* byte goes to ``gaps`` (one byte per kept weight) and whose further bytes,
  for gaps of 128 and more, go to ``far``. Neighbouring keys cost a byte; the split lets deflate model the two
  kinds of bytes apart (~9% smaller than plain varints);
- ``values``: the weights in the same order, quantized (``sqrt8``: one byte each, ``f16``: two).

Each stream is Huffman-coded only (zlib's ``Z_HUFFMAN_ONLY``): per-stream code tables are where the gain is.

Rows are cut here, never in the browser: :func:`cut` keeps each row's largest weights until a fraction of the
row's *full* attention is reached (for an already pruned trace, the full mass is known from its kept fraction),
at most ``top_k`` of them, and never drops the row's maximum.

``z85`` is base 85 over an alphabet without ``" & ' < > \\ ` `` (so JSON inside ``<script>`` needs no escapes):
5 characters per 4 bytes, 6% smaller than base64 and still plain ASCII.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .attention import PruneSpec, prune_rows

Z85 = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in "\"&'<>\\`")[:85]
_Z85_BYTES = np.frombuffer(Z85.encode("ascii"), dtype=np.uint8)
_Z85_VALUE = np.full(128, 255, dtype=np.uint8)
_Z85_VALUE[_Z85_BYTES] = np.arange(85, dtype=np.uint8)
_POW85 = 85 ** np.arange(4, -1, -1, dtype=np.int64)


@dataclass(frozen=True)
class Rows:
    """Kept entries of one head's rows, grouped by row, largest weight first within a row.

    ``counts`` [q] int64, ``indices`` [nnz] int32, ``values`` [nnz] float32, ``totals`` [q] float64 (each row's
    full attention, pruned or not, so kept fractions are fractions of what the model gave).
    """

    counts: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    totals: np.ndarray

    @property
    def nnz(self) -> int:
        return len(self.values)

    def starts(self) -> np.ndarray:
        return np.cumsum(self.counts) - self.counts

    def sums(self) -> np.ndarray:
        """Sum of each row's kept weights ``[q]``."""
        out = np.zeros(len(self.counts), dtype=np.float64)
        nonempty = self.counts > 0
        if self.nnz:
            out[nonempty] = np.add.reduceat(self.values.astype(np.float64), self.starts()[nonempty])
        return out

    def kept(self) -> np.ndarray:
        """Fraction of each row's full attention these entries hold ``[q]`` (1.0 for rows with nothing to hold)."""
        return np.where(self.totals > 0, self.sums() / np.where(self.totals > 0, self.totals, 1.0), 1.0)


def head_rows(att, layer: int, head: int, first: PruneSpec) -> Rows:
    """One head's rows: a pruned trace's own entries as they are, or the rows of a dense or q/k head pruned to
    ``first``, read a block of rows at a time (a long q/k head is never made dense)."""
    if att.pruned:
        return _descending(pruned_head(att, layer, head))
    q, k = att.shape[2:]
    parts = []
    step = max(1, _ROWS_AT_ONCE // max(1, k))
    for lo in range(0, q, step):
        w = att.rows(layer, head, lo, min(q, lo + step))
        parts.append(prune_rows(w, first) + (w.sum(1, dtype=np.float64),))
    counts, indices, values, totals = (np.concatenate(x) for x in zip(*parts))
    return Rows(counts, indices.astype(np.int32), values, totals)


def pruned_head(att, layer: int, head: int) -> Rows:
    """One head of a pruned trace, its entries as stored (only that head's are read); ``totals``: each row's full
    attention, its kept sum over the fraction kept (the kept sum where the row's kept fraction is 0)."""
    _, H, q, _ = att.shape
    r0 = (layer * H + head) * q
    ptr = att.indptr[r0 : r0 + q + 1]
    a, b = int(ptr[0]), int(ptr[-1])
    counts, indices, values = np.diff(ptr).astype(np.int64), att.indices[a:b], att.values[a:b].astype(np.float32)
    sums, mass = Rows(counts, indices, values, np.ones(q)).sums(), att.mass[layer, head].astype(np.float64)
    return Rows(counts, indices, values, np.where(mass > 0, sums / np.where(mass > 0, mass, 1.0), sums))


#: Weights of a dense or q/k head read at once while pruning it for a payload.
_ROWS_AT_ONCE = 1 << 22


def _descending(rows: Rows) -> Rows:
    """``rows`` with each row's entries sorted by decreasing weight (only a check when they already are)."""
    v = rows.values
    if len(v) < 2:
        return rows
    row_start = np.zeros(len(v), dtype=bool)
    row_start[rows.starts()[rows.counts > 0]] = True
    if np.all((v[1:] <= v[:-1]) | row_start[1:]):
        return rows
    order = np.lexsort((-v, np.repeat(np.arange(len(rows.counts)), rows.counts)))
    return Rows(rows.counts, rows.indices[order], v[order], rows.totals)


def cut(rows: Rows, mass: float | None, top_k: int | None) -> Rows:
    """Keep each row's largest entries until ``mass`` of its full attention is reached, at most ``top_k``, and
    always the first (its maximum). ``mass=None, top_k=None`` keeps everything."""
    if (mass is None and top_k is None) or rows.nnz == 0:
        return rows
    starts = rows.starts()
    keep = _keep(rows, *_ranks(rows), mass, top_k)
    counts = np.zeros_like(rows.counts)
    nonempty = rows.counts > 0
    counts[nonempty] = np.add.reduceat(keep.astype(np.int64), starts[nonempty])
    return Rows(counts, rows.indices[keep], rows.values[keep], rows.totals)


def kept_counts(rows: Rows, steps: list[tuple[float | None, int | None]]) -> np.ndarray:
    """How many entries :func:`cut` keeps at each ``(mass, top_k)`` step, without building the cut rows."""
    if rows.nnz == 0:
        return np.zeros(len(steps), dtype=np.int64)
    ranks = _ranks(rows)
    return np.array([rows.nnz if m is None and t is None else int(_keep(rows, *ranks, m, t).sum())
                     for m, t in steps], dtype=np.int64)


def _ranks(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """Per entry: its rank in its row (0 = largest) and the row's kept mass before it."""
    starts = rows.starts()
    rank = np.arange(rows.nnz) - np.repeat(starts, rows.counts)
    v = rows.values.astype(np.float64)
    c = np.cumsum(v)
    before = c - v - np.repeat(c[starts] - v[starts], rows.counts)
    return rank, before


def _keep(rows: Rows, rank: np.ndarray, before: np.ndarray, mass: float | None, top_k: int | None) -> np.ndarray:
    within = rank < top_k if top_k is not None else np.ones(rows.nnz, dtype=bool)
    if mass is not None:
        within &= before < np.repeat(rows.totals * mass, rows.counts) - 1e-7
    return within | (rank == 0)


# ----------------------------------------------------------------------------- one head's item


def pack(rows: Rows, code: str, quantize) -> dict:
    """One head's payload item (module docstring); ``quantize(weights, code) -> bytes``."""
    n = len(rows.counts)
    row = np.repeat(np.arange(n, dtype=np.int64), rows.counts)
    order = np.argsort(row * (int(rows.indices.max(initial=0)) + 1) + rows.indices, kind="stable")
    idx = rows.indices[order].astype(np.int64)
    starts = rows.starts()[rows.counts > 0]
    gaps = np.diff(idx, prepend=0)
    gaps[starts] = idx[starts]
    first, far = split_varint(gaps)
    top = int(rows.counts.max(initial=0))
    count_bytes = 1 if top < 2**8 else 2 if top < 2**16 else 4
    return {
        "nnz": rows.nnz,
        "countBytes": count_bytes,
        "counts": deflate85(rows.counts.astype(f"<u{count_bytes}").tobytes(), huffman=True),
        "gaps": deflate85(first, huffman=True),
        "far": deflate85(far, huffman=True),
        "values": deflate85(quantize(rows.values[order], code), huffman=True),
    }


def unpack(item: dict, q: int, value_bytes: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    """Inverse of :func:`pack`: ``(counts [q], key indices [nnz] increasing within rows, value bytes)``."""
    cb, nnz = item["countBytes"], item["nnz"]
    counts = np.frombuffer(inflate85(item["counts"])[: q * cb], dtype=f"<u{cb}").astype(np.int64)
    first = np.frombuffer(inflate85(item["gaps"]), dtype=np.uint8)
    gaps = join_varint(first, np.frombuffer(inflate85(item["far"]), dtype=np.uint8))
    values = inflate85(item["values"])
    if len(gaps) != nnz or len(values) != nnz * value_bytes or counts.sum() != nnz:
        raise ValueError("a pruned head's streams do not match its counts")
    c = np.cumsum(gaps)
    starts = np.cumsum(counts) - counts
    nonempty = counts > 0
    base = np.zeros(q, dtype=np.int64)
    base[nonempty] = c[starts[nonempty]] - gaps[starts[nonempty]]
    return counts, c - np.repeat(base, counts), values


def split_varint(values: np.ndarray) -> tuple[bytes, bytes]:
    """Unsigned LEB128 of non-negative integers (7 bits a byte, high bit set on all but a number's last byte),
    as (every number's first byte, all further bytes in order)."""
    v = np.asarray(values, dtype=np.uint64)
    size = np.ones(len(v), dtype=np.int64)
    for shift in (7, 14, 21, 28, 35):
        size += v >= (1 << shift)
    out = np.zeros(int(size.sum()), dtype=np.uint8)
    pos = np.cumsum(size) - size
    for b in range(int(size.max(initial=0))):
        m = size > b
        part = (v[m] >> np.uint64(7 * b)) & np.uint64(127)
        more = (size[m] > b + 1).astype(np.uint64) << np.uint64(7)
        out[pos[m] + b] = (part | more).astype(np.uint8)
    is_first = np.zeros(len(out), dtype=bool)
    is_first[pos] = True
    return out[is_first].tobytes(), out[~is_first].tobytes()


def join_varint(first: np.ndarray, far: np.ndarray) -> np.ndarray:
    """Inverse of :func:`split_varint`, as int64."""
    size = np.ones(len(first), dtype=np.int64)
    more = first >= 128
    if more.any():  # the further bytes of each long number: count them by their own high bits
        ends = np.flatnonzero(far < 128)
        size[more] += np.diff(np.r_[-1, ends])
    data = np.zeros(int(size.sum()), dtype=np.uint8)
    pos = np.cumsum(size) - size
    is_first = np.zeros(len(data), dtype=bool)
    is_first[pos] = True
    data[is_first], data[~is_first] = first, far
    part = (data & 127).astype(np.int64) << (7 * (np.arange(len(data)) - np.repeat(pos, size)))
    return np.add.reduceat(part, pos) if len(data) else np.zeros(0, dtype=np.int64)


# ----------------------------------------------------------------------------- text coding


def deflate85(data: bytes, *, huffman: bool = False, level: int = 6) -> str:
    """Raw deflate, then :func:`z85`. ``huffman=True`` skips string matching: on attention rows' streams it is
    5x faster and within 2% of level 6 (smaller for values, which have few repeats); thumbnails, with their runs of
    zeros, use matching."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_HUFFMAN_ONLY if huffman else zlib.Z_DEFAULT_STRATEGY)
    return z85(c.compress(data) + c.flush())


def inflate85(text: str) -> bytes:
    return zlib.decompressobj(-15).decompress(unz85(text))


def z85(data: bytes) -> str:
    """Base 85 over :data:`Z85`: each 4 bytes (big-endian, the last group zero-padded) as 5 digits."""
    pad = -len(data) % 4
    groups = np.frombuffer(data + b"\0" * pad, dtype=">u4").astype(np.int64)
    digits = (groups[:, None] // _POW85[None, :]) % 85
    return _Z85_BYTES[digits.ravel()].tobytes().decode("ascii")


def unz85(text: str) -> bytes:
    """Inverse of :func:`z85` (with the padding: deflate streams end on their own)."""
    codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    digits = _Z85_VALUE[codes].astype(np.int64)
    if len(digits) % 5 or (digits == 255).any():
        raise ValueError("not z85 text")
    return (digits.reshape(-1, 5) @ _POW85).astype(">u4").tobytes()


# ----------------------------------------------------------------------------- thumbnails


def pooled(att, layer: int, head: int, size: int) -> np.ndarray:
    """Block-max thumbnail of one head as sqrt8 bytes ``[ceil(q/b), ceil(k/b)]``, square blocks of ``b`` tokens so
    the longer side is at most ``size`` (``att.pooled``: a pruned head is pooled from its entries, no dense copy)."""
    return sqrt8(att.pooled(layer, head, size))


def sqrt8(weights: np.ndarray) -> np.ndarray:
    """Weights in ``[0, 1]`` as ``uint8`` on a square-root scale: ``round(sqrt(w) * 255)``."""
    w = np.clip(np.asarray(weights, dtype=np.float32), 0.0, 1.0)
    return np.rint(np.sqrt(w) * 255.0).astype(np.uint8)
