"""Per-head statistics of attention, and a pattern label per head.

Attention maps invite reading patterns into them; these numbers say how strong a pattern really is. Each metric is
a mean over query rows of one head's ``[q, k]`` matrix ``a`` (rows sum to 1):

- ``entropy``: ``-sum_j a_ij log a_ij / log m_i`` where ``m_i`` is the number of keys row ``i`` may attend to
  (``i + 1`` under a causal mask, at most the layer's sliding window where it has one, else ``k``). 0 = all weight on
  one key, 1 = uniform over the allowed keys. Rows with a single allowed key (the first row under a causal mask)
  have no choice to make and are left out of the mean (0 if no row has a choice). On pruned traces the dropped
  weights are missing from the sum, so the value is a lower bound.
- ``distance``: mean attention distance ``sum_j a_ij |i - j|`` in tokens.
- ``self``, ``previous``, ``next``: weight on key ``i``, ``i - 1``, ``i + 1`` (``previous`` averages the rows that
  have a previous token, ``next`` those that have a next one).
- ``local``: weight on keys within ``LOCAL_WINDOW`` tokens of the query.
- ``first``: weight on the first key. ``special``: weight on special tokens (see :func:`is_special_token`).
  ``sink``: weight on the first key or any special token (each key counted once): the attention-sink mass.
- ``max``: the row's largest weight.

For cross-attention (queries and keys are different token streams) the positional metrics (distance, self,
previous, next, local) are NaN.

Labels (first rule that holds wins):

1. ``previous-token`` / ``next-token`` / ``self`` / ``sink/delimiter``: the largest of ``previous``, ``next``,
   ``self``, ``sink`` is at least ``PATTERN_MIN_MASS``;
2. ``broad``: ``entropy >= BROAD_MIN_ENTROPY``;
3. ``local``: ``local >= LOCAL_MIN_MASS``;
4. ``mixed``: none of the above.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..attention import PrunedAttention
from ..errors import require
from ..trace import Trace
from ._util import is_causal, resolve_kind, same_stream

#: Mass on one kind of key (previous, next, self, sink) that makes it the head's label.
PATTERN_MIN_MASS = 0.5
#: Normalised entropy at or above which a head is "broad".
BROAD_MIN_ENTROPY = 0.75
#: Keys within this many tokens of the query count as local.
LOCAL_WINDOW = 2
#: Mass within ``LOCAL_WINDOW`` at or above which a head is "local".
LOCAL_MIN_MASS = 0.7

_TINY = np.finfo(np.float32).tiny
#: Weights read at once when summing a dense head's diagonals (keeps temporaries at a few MB).
_BLOCK = 1 << 20

LABELS = ("previous-token", "next-token", "self", "sink/delimiter", "broad", "local", "mixed")

#: Special tokens recognised by name (in addition to the patterns below).
SPECIAL_TOKENS = frozenset({
    "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "<s>", "</s>", "<pad>", "<unk>", "<mask>", "<bos>", "<eos>",
    "<cls>", "<sep>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>",
})
_SPECIAL_PATTERNS = (
    re.compile(r"\[[A-Z][A-Z0-9_]*\]"),  # BERT style: [CLS], [SEP], [PAD], [unused-free upper-case names]
    re.compile(r"<\|[^|<>\s]+\|>"),  # <|endoftext|>, <|im_start|>, <|eot_id|>
    re.compile(r"</?[a-z][a-z0-9_]*>"),  # <s>, </s>, <pad>, <bos>, <start_of_turn>
)


def is_special_token(token: str) -> bool:
    """Whether a raw token string is a tokenizer's special token.

    The rule: one of :data:`SPECIAL_TOKENS`, or the whole string is an upper-case name in square brackets
    (``[CLS]``), a name between ``<|`` and ``|>`` (``<|endoftext|>``), or a lower-case name in angle brackets,
    optionally closing (``<s>``, ``</s>``, ``<pad>``). Text never tokenizes to such strings with BERT, GPT-2 or
    SentencePiece vocabularies, which split brackets from letters.
    """
    return token in SPECIAL_TOKENS or any(p.fullmatch(token) for p in _SPECIAL_PATTERNS)


def special_positions(tokens: Sequence[str]) -> np.ndarray:
    """Indices of the special tokens in a token list."""
    return np.array([i for i, t in enumerate(tokens) if is_special_token(t)], dtype=np.int64)


def head_metrics(trace: Trace, kind: str | None = None, *, layers: Sequence[int] | None = None,
                 heads: Sequence[int] | None = None, by: str | None = None, hide_sinks=None,
                 renormalize: bool = False) -> list[dict]:
    """One record per (layer, head) with the metrics and label described in this module's docstring.

    Keys: ``layer, head, entropy, distance, self, previous, next, local, first, special, sink, max, label``.
    Reads one head at a time, a block of query rows at a time: dense heads as they are, q/k heads recomputed
    exactly block by block, pruned heads straight from their kept weights (never made dense), so it works on traces
    of any length in memory that does not grow with ``q x k``. ``layers`` / ``heads`` restrict it to those indices
    (records in their order, layer-major). ``by``, ``hide_sinks`` and ``renormalize`` measure the trace as the views
    show it with those options: over words or sentences, without its sinks (:func:`attnscope.sinks.shown_trace`).
    """
    kind = resolve_kind(trace, kind)
    if by is not None or hide_sinks or renormalize:
        from ..sinks import shown_trace

        trace = shown_trace(trace, by=by or "token", hide_sinks=hide_sinks, renormalize=renormalize)
    L, H, q, k = trace.shape(kind)
    ctx = _Context(trace, kind, q, k)
    att = trace.attention[kind]
    records = []
    for layer in range(L) if layers is None else layers:
        ctx.layer(layer)
        for head in range(H) if heads is None else heads:
            if isinstance(att, PrunedAttention):
                rows = slice((layer * H + head) * q, (layer * H + head + 1) * q + 1)
                values = ctx.sparse_metrics(att.indptr[rows], att.indices, att.values)
            else:
                values = ctx.metrics(lambda start, stop, l=layer, h=head: att.rows(l, h, start, stop))
            rec: dict[str, Any] = {"layer": layer, "head": head, **values}
            rec["label"] = label(rec)
            records.append(rec)
    return records


def head_table(trace: Trace, kind: str | None = None):
    """:func:`head_metrics` as a pandas DataFrame (needs pandas: ``pip install 'attnscope[analysis]'``)."""
    pd = require("pandas", "analysis")
    return pd.DataFrame.from_records(head_metrics(trace, kind))


def label(record: dict) -> str:
    """The pattern label of one :func:`head_metrics` record (rules in this module's docstring)."""
    candidates = {
        "previous-token": record["previous"], "next-token": record["next"], "self": record["self"],
        "sink/delimiter": record["sink"],
    }
    best, mass = max(((name, v) for name, v in candidates.items() if not np.isnan(v)), key=lambda x: x[1])
    if mass >= PATTERN_MIN_MASS:
        return best
    if record["entropy"] >= BROAD_MIN_ENTROPY:
        return "broad"
    if not np.isnan(record["local"]) and record["local"] >= LOCAL_MIN_MASS:
        return "local"
    return "mixed"


class _Context:
    """What every head of one kind shares: entropy normalisers and special-key columns, all O(q + k).

    Nothing here is ``[q, k]``-sized: positional metrics come from each head's diagonal sums (dense heads) or from
    its kept entries (pruned heads), so a long pruned trace is read in memory proportional to what it holds.
    """

    def __init__(self, trace: Trace, kind: str, q: int, k: int):
        self.positional = same_stream(trace, kind)
        self.causal = self.positional and is_causal(trace, kind)
        self.windows = ((trace.meta.get("kinds") or {}).get(kind) or {}).get("windows") or []
        self.k = k
        key_tokens = trace.tokens[trace.streams(kind)[1]]
        self.special = special_positions(key_tokens)
        self.sink = np.union1d([0], self.special).astype(np.int64)
        self.rows = np.arange(q)
        self.is_sink = np.zeros(k, dtype=bool)
        self.is_sink[self.sink] = True
        self.is_special = np.zeros(k, dtype=bool)
        self.is_special[self.special] = True
        self.layer(0)

    def layer(self, layer: int) -> None:
        """Set the entropy normalisers for ``layer``: the keys each row may attend to (``i + 1`` under a causal
        mask, capped at the layer's sliding window, else ``k``)."""
        window = self.windows[layer] if layer < len(self.windows) else None
        allowed = np.arange(1, len(self.rows) + 1) if self.causal else np.full(len(self.rows), self.k)
        if window:
            allowed = np.minimum(allowed, window)
        self.choice = allowed > 1  # rows with more than one allowed key
        self.inv_log = (1.0 / np.log(np.maximum(allowed, 2))).astype(np.float32)

    def metrics(self, read) -> dict[str, float]:
        """Metrics of one head whose rows ``read(start, stop)`` gives as ``[stop - start, k]`` weights, read
        :data:`_BLOCK` weights at a time."""
        q, k = len(self.rows), len(self.is_sink)
        entropy = first = special = sink = largest = 0.0
        diagonals = np.zeros(2 * q - 1, dtype=np.float64)
        step = max(1, _BLOCK // max(1, k))
        for lo in range(0, q, step):
            hi = min(q, lo + step)
            a = read(lo, hi)
            logs = np.log(np.maximum(a, _TINY))  # 0 * log(tiny) = 0: no mask needed (masked logs are slow)
            ent = np.clip(-(a * logs).sum(1) * self.inv_log[lo:hi], 0.0, 1.0)
            entropy += float(ent[self.choice[lo:hi]].sum(dtype=np.float64))
            first += float(a[:, 0].sum(dtype=np.float64))
            special += float(a[:, self.special].sum(dtype=np.float64)) if self.special.size else 0.0
            sink += float(a[:, self.sink].sum(dtype=np.float64))
            largest += float(a.max(1).sum(dtype=np.float64))
            if self.positional:
                diagonals += _diagonal_sums(a, lo, q)
        choices = int(self.choice.sum())
        out = {
            "entropy": entropy / choices if choices else 0.0,
            "distance": np.nan, "self": np.nan, "previous": np.nan, "next": np.nan, "local": np.nan,
            "first": first / q, "special": special / q, "sink": sink / q, "max": largest / q,
        }
        if self.positional:
            out.update(_positional(diagonals, q))
        return out

    def sparse_metrics(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> dict[str, float]:
        """The same metrics as :meth:`metrics`, from one head's kept weights in CSR form: ``indptr`` ``[q + 1]``
        (offsets into the flat ``indices``/``values`` of the whole trace). Dropped weights count as 0."""
        q = len(indptr) - 1
        start, end = int(indptr[0]), int(indptr[-1])
        j = indices[start:end].astype(np.int64)
        a = values[start:end].astype(np.float32)
        counts = np.diff(indptr)
        i = np.repeat(self.rows, counts)
        ent = np.bincount(i, weights=-(a * np.log(np.maximum(a, _TINY))), minlength=q).astype(np.float32)
        entropy = np.clip(ent * self.inv_log, 0.0, 1.0)[self.choice]
        row_max = np.zeros(q, dtype=np.float32)
        kept = counts > 0
        if kept.any():
            row_max[kept] = np.maximum.reduceat(a, (indptr[:-1] - start)[kept])
        out = {
            "entropy": float(entropy.mean()) if entropy.size else 0.0,
            "distance": np.nan, "self": np.nan, "previous": np.nan, "next": np.nan, "local": np.nan,
            "first": float(a[j == 0].sum(dtype=np.float64) / q),
            "special": float(a[self.is_special[j]].sum(dtype=np.float64) / q) if self.special.size else 0.0,
            "sink": float(a[self.is_sink[j]].sum(dtype=np.float64) / q),
            "max": float(row_max.mean()),
        }
        if self.positional:
            out.update(_positional(np.bincount(j - i + q - 1, weights=a, minlength=2 * q - 1), q))
        return out


def _diagonal_sums(a: np.ndarray, start: int, q: int) -> np.ndarray:
    """Sum of each diagonal of rows ``start..`` of a square ``[q, q]`` head, ``out[d + q - 1]`` for key offset
    ``d = j - i``."""
    offset = np.arange(q)[None, :] - np.arange(start, start + len(a))[:, None] + (q - 1)
    return np.bincount(offset.ravel(), weights=a.ravel(), minlength=2 * q - 1)


def _positional(diagonals: np.ndarray, q: int) -> dict[str, float]:
    """distance, local, self, previous and next of one head from its diagonal sums (:func:`_diagonal_sums`)."""
    d = np.arange(-(q - 1), q)
    return {
        "distance": float((np.abs(d) * diagonals).sum() / q),
        "local": float(diagonals[np.abs(d) <= LOCAL_WINDOW].sum() / q),
        "self": float(diagonals[q - 1] / q),
        "previous": float(diagonals[q - 2] / (q - 1)) if q > 1 else 0.0,
        "next": float(diagonals[q] / (q - 1)) if q > 1 else 0.0,
    }
