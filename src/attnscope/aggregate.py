"""Attention between words, sentences or paragraphs instead of tokens: ``trace.aggregate(by="word")``.

A word split into pieces ("un", "##believ", "##ably") shows as pieces in every token-level view. The rule of Clark
et al. 2019 ("What does BERT look at?") gives attention between the words themselves and keeps rows distributions:

- attention **to** a unit is the **sum** of the weights on its pieces;
- attention **from** a unit is the **mean** of its pieces' rows.

For units ``A`` (queries) and ``B`` (keys) of token weights ``W``: ``U[A, B] = 1/|A| sum_{i in A} sum_{j in B} W[i, j]``.
A unit row then sums to the mean of its pieces' row sums: 1 for softmax rows, the kept mass for pruned rows, below
1 where a learned sink took its share. Units come from :mod:`attnscope.units` (or are given as token spans).

The result is a new :class:`~attnscope.Trace` whose tokens are the unit texts (joined from the token strings by
:func:`attnscope.tokens.join_tokens`), with the segments (sentence A/B, prompt/generated) carried over as unit
spans, so every view, figure, analysis, comparison and tracker reads it unchanged. Its attention is dense (pruned,
keeping every non-zero weight, when the source was pruned: the unit rows keep their pieces' mean kept mass); q/k/v
vectors, position biases and token ids belong to tokens and are not carried. ``meta["units"]`` records
``{"by": ..., "spans": {stream: [[start, end], ...]}}``: each unit's token range in the source trace.

Every attention form is read a block of query rows at a time (:data:`BLOCK_WEIGHTS` weights): dense rows as they
are, pruned heads from their kept weights, q/k heads recomputed exactly block by block over only the keys the mask
allows, so a 16k-token q/k trace is aggregated to sentences without a tokens x tokens matrix ever existing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .attention import DenseAttention, PrunedAttention
from .errors import InputError
from .tokens import join_tokens, token_scheme
from .trace import Segment, Trace
from .units import LEVELS, check_spans, unit_spans

#: Token weights read at once (a block of query rows x the keys they may attend to): 16 MB of float32.
BLOCK_WEIGHTS = 1 << 22
#: The largest aggregated attention made, in bytes of float32 (as capture's dense limit): past it, aggregate by a
#: coarser unit.
DENSE_MAX_BYTES = 2 * 2**30


class Units:
    """The units of one stream: ``starts`` ``[U + 1]`` (token index where each unit starts, then the stream's length)
    and ``unit_of`` ``[n]`` (the unit of each token)."""

    def __init__(self, spans: Sequence[tuple[int, int]], n: int):
        self.spans = [(int(s), int(e)) for s, e in spans]
        self.starts = np.array([s for s, _ in self.spans] + [n], dtype=np.int64)
        self.lengths = np.diff(self.starts)
        self.unit_of = np.repeat(np.arange(len(self.spans)), self.lengths)

    def __len__(self) -> int:
        return len(self.spans)

    def sum_over(self, block: np.ndarray, lo: int, hi: int, axis: int) -> tuple[int, np.ndarray]:
        """``(first unit, sums)``: ``block``'s entries along ``axis`` (token positions ``lo..hi-1``) summed per unit
        (in ``block``'s precision); units cut by the range get the part inside it."""
        u0, u1 = int(self.unit_of[lo]), int(self.unit_of[hi - 1])
        cuts = np.concatenate([[0], self.starts[u0 + 1 : u1 + 1] - lo])
        return u0, np.add.reduceat(block, cuts, axis=axis)


def aggregate(trace: Trace, by: str | Sequence[tuple[int, int]] | Mapping[str, Any] = "word", *,
              apart: Mapping[str, Sequence[int]] | None = None) -> Trace:
    """The trace over units instead of tokens (module docstring): ``by`` is ``"word"``, ``"sentence"``,
    ``"paragraph"``, a list of ``(start, end)`` token spans (one-stream traces; tokens outside every span stay
    units of their own), or a mapping stream -> either. ``"token"`` returns the trace as it is. ``apart``: stream ->
    token positions that stay units of their own (attention sinks, so they can be hidden: :mod:`attnscope.sinks`)."""
    if isinstance(by, str) and by == "token" and not apart:
        return trace
    if "units" in trace.meta:
        raise InputError(f"this trace is already aggregated by {trace.meta['units'].get('by')!r}; aggregate the "
                         "token-level trace instead (units of units would lose which tokens they hold)")
    units = {stream: Units(split_apart(_spans(trace, stream, by), (apart or {}).get(stream, ())), len(toks))
             for stream, toks in trace.tokens.items()}
    for name, seg in trace.segments.items():
        u = units[seg.stream]
        if seg.end > seg.start and (u.starts[u.unit_of[seg.start]] != seg.start
                                    or u.starts[u.unit_of[seg.end - 1] + 1] != seg.end):
            raise InputError(f"a unit crosses the boundary of segment {name!r} [{seg.start}, {seg.end}); give spans "
                             "that start and end at its boundaries")
    attention = {}
    for kind, att in trace.attention.items():
        qs, ks = trace.streams(kind)
        L, H = att.shape[:2]
        size = 4 * L * H * len(units[qs]) * len(units[ks])
        if size > DENSE_MAX_BYTES:
            raise InputError(f"{kind!r} attention over {len(units[qs])} x {len(units[ks])} units would take "
                             f"{size / 2**30:.1f} GiB; aggregate by a coarser unit (by='sentence' or 'paragraph') "
                             "or capture a shorter text")
        attention[kind] = _aggregate_kind(att, units[qs], units[ks])
    level = by if isinstance(by, str) else "spans"
    tokens = {stream: unit_labels(trace, stream, units[stream].spans) for stream in trace.tokens}
    segments = {name: _unit_segment(seg, units[seg.stream]) for name, seg in trace.segments.items()}
    meta = {k: v for k, v in trace.meta.items() if k not in ("words", "offsets")}
    if "kinds" in meta:  # a causal mask stays causal over units; windows and scaling are token-level facts
        meta["kinds"] = {k: {"causal": bool(v.get("causal", False))} for k, v in meta["kinds"].items()}
    meta["units"] = {"by": level, "spans": {s: [list(p) for p in u.spans] for s, u in units.items()}}
    return replace(trace, tokens=tokens, attention=attention, token_ids={}, segments=segments, qkv={}, bias={},
                   meta=meta)


def _spans(trace: Trace, stream: str, by) -> list[tuple[int, int]]:
    """The units of ``stream`` that ``by`` asks for (see :func:`aggregate`)."""
    n = len(trace.tokens[stream])
    if isinstance(by, Mapping):
        unknown = sorted(set(by) - set(trace.tokens))
        if unknown:
            raise InputError(f"by names streams {unknown} this trace lacks; it has {sorted(trace.tokens)}")
        by = by.get(stream, "token")
    elif not isinstance(by, str) and len(trace.tokens) > 1:
        raise InputError(f"this trace has several token streams {sorted(trace.tokens)}: give spans as a mapping "
                         "stream -> [(start, end), ...]")
    if not isinstance(by, str):
        return check_spans(by, n, "by")
    if by == "token":
        return [(i, i + 1) for i in range(n)]
    if by not in LEVELS:
        raise InputError(f"by must be 'token', one of {list(LEVELS)}, or (start, end) token spans; got {by!r}")
    return unit_spans(trace, stream, by)


def unit_labels(trace: Trace, stream: str, spans: Sequence[tuple[int, int]]) -> list[str]:
    """The display text of each unit: its tokens joined by :func:`attnscope.tokens.join_tokens` (with the spacing
    the character offsets record, where the trace has them)."""
    toks = trace.tokens[stream]
    scheme, spaced = token_scheme(toks), _spaced(trace, stream)
    return [join_tokens(toks[s:e], scheme, spaced and spaced[s:e]) or toks[s] for s, e in spans]


def split_apart(spans: list[tuple[int, int]], apart: Sequence[int]) -> list[tuple[int, int]]:
    """``spans`` with each position of ``apart`` cut out as a unit of its own."""
    cut = set(int(p) for p in apart)
    out = []
    for s, e in spans:
        start = s
        for p in range(s, e):
            if p in cut:
                out += [(start, p)] if p > start else []
                out.append((p, p + 1))
                start = p + 1
        out += [(start, e)] if e > start else []
    return out


def _spaced(trace: Trace, stream: str) -> list[bool] | None:
    """Whether a space came before each token, from the character offsets capture records (None without them)."""
    offsets = (trace.meta.get("offsets") or {}).get(stream)
    if not isinstance(offsets, list) or len(offsets) != len(trace.tokens[stream]):
        return None
    out, end = [], None
    for o in offsets:
        out.append(o is None or end is None or o[0] > end)
        end = None if o is None else o[1]
    return out


def _unit_segment(seg: Segment, units: Units) -> Segment:
    if seg.end == seg.start:
        at = int(units.unit_of[seg.start]) if seg.start < len(units.unit_of) else len(units)
        return Segment(seg.stream, at, at)
    return Segment(seg.stream, int(units.unit_of[seg.start]), int(units.unit_of[seg.end - 1]) + 1)


def _aggregate_kind(att, rows: Units, cols: Units):
    """One kind's attention over units: dense, or pruned (every non-zero kept) when the source was pruned."""
    L, H = att.shape[:2]
    if not att.pruned:
        out = np.empty((L, H, len(rows), len(cols)), dtype=np.float32)
        for layer in range(L):
            for head in range(H):
                out[layer, head] = unit_head(att, layer, head, rows, cols)
        return DenseAttention(out)
    counts, indices, values, mass = [], [], [], np.empty((L, H, len(rows)), dtype=np.float32)
    for layer in range(L):
        for head in range(H):
            u = unit_head(att, layer, head, rows, cols)
            nz = u != 0
            counts.append(nz.sum(1))
            indices.append(np.nonzero(nz)[1].astype(np.int32))
            values.append(u[nz].astype(np.float32))
            mass[layer, head] = np.add.reduceat(att.mass[layer, head], rows.starts[:-1], dtype=np.float64) / rows.lengths
    indptr = np.zeros(sum(len(c) for c in counts) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(counts), out=indptr[1:])
    return PrunedAttention((L, H, len(rows), len(cols)), indptr, np.concatenate(indices), np.concatenate(values),
                           np.clip(mass, 0.0, 1.0))


def unit_head(att, layer: int, head: int, rows: Units, cols: Units) -> np.ndarray:
    """One head over units ``[len(rows), len(cols)]`` float64 (the rule in the module docstring), read a block of
    query rows at a time from any attention form."""
    _, H, q, k = att.shape
    out = np.zeros((len(rows), len(cols)), dtype=np.float64)
    if att.pruned:  # straight from the kept weights
        r0 = (layer * H + head) * q
        ptr = att.indptr[r0 : r0 + q + 1]
        a, b = int(ptr[0]), int(ptr[-1])
        i = np.repeat(rows.unit_of, np.diff(ptr))
        cell = i * len(cols) + cols.unit_of[att.indices[a:b]]
        sums = np.bincount(cell, weights=att.values[a:b], minlength=out.size).reshape(out.shape)
        return sums / rows.lengths[:, None]
    step = max(1, BLOCK_WEIGHTS // max(1, k))
    for lo in range(0, q, step):
        hi = min(q, lo + step)
        if att.form == "qk":  # recomputed exactly over the keys these rows may attend to (causal: none after them)
            klo, khi = att.rule.key_range(layer, lo, hi, k)
            if khi <= klo:
                continue
            block = att.weights(layer, head, lo, hi, klo, khi)
        else:
            klo, khi = 0, k
            block = att.rows(layer, head, lo, hi)
        c0, per_col = cols.sum_over(block, klo, khi, axis=1)  # [rows, units]: sums over each key unit
        r0, per_cell = rows.sum_over(per_col.astype(np.float64), lo, hi, axis=0)  # [units, units], float64
        out[r0 : r0 + per_cell.shape[0], c0 : c0 + per_cell.shape[1]] += per_cell
    return out / rows.lengths[:, None]
