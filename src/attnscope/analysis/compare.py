"""Comparing the attention of two inputs: which heads changed, and how the next-token prediction moved.

The probe behind it: "The doctor asked the nurse a question. She" vs "... He". :func:`compare` lines up the two
token lists (:mod:`attnscope.analysis.align`), compares every head row by row with the Jensen-Shannon divergence,
ranks the heads by it, and for causal language models adds the top next-token predictions of both inputs.

How rows are compared, per head:

- keys are pooled into the alignment's slots: a shared token keeps its own column; a differing span's columns are
  summed into one (so "She" and "He" face each other as one key);
- the query rows compared are the slots present in both inputs; a differing span's rows are averaged into one row;
  an inserted span (present on one side only) has no counterpart and is skipped as a query;
- rows are renormalised to sum to 1 (pruned traces keep less than all of a row) and compared with the
  Jensen-Shannon divergence in bits (base 2), which lies in [0, 1], is symmetric and is 0 for equal rows;
- in a causal decoder (kind ``"self"`` with a causal mask) the rows before the first difference see identical
  tokens, so their attention cannot differ; they are left out rather than diluting the mean with zeros.

A head's divergence is the mean over the compared rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, MissingDataError
from ..trace import Trace
from ._util import is_causal, resolve_kind
from .align import Alignment, align_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NextToken:
    """One predicted next token: its id, raw token string, decoded text, and probability under both inputs."""

    token_id: int
    token: str
    text: str
    prob: float  # under the input whose top-k list holds it
    other_prob: float  # under the other input


@dataclass(frozen=True, eq=False)
class Comparison:
    """The result of :func:`compare` (``L`` layers, ``H`` heads, ``R`` compared query rows).

    - ``kind``: the attention kind compared.
    - ``query_alignment`` / ``key_alignment``: how the query / key tokens line up (the same object for
      self-attention); see :class:`~attnscope.analysis.align.Alignment`.
    - ``rows``: indices into ``query_alignment.slots`` of the query slots compared ``[R]``.
    - ``divergence``: per head, the mean Jensen-Shannon divergence in bits over the compared rows ``[L, H]``.
    - ``row_divergence``: per head and compared row ``[L, H, R]``.
    - ``ranked``: every ``(layer, head, divergence)``, most changed first.
    - ``next_a`` / ``next_b``: the top-k next tokens after input A / B, each with its probability under both
      inputs; None unless a causal model was given.
    - ``trace_a`` / ``trace_b``: the two traces.
    """

    kind: str
    query_alignment: Alignment
    key_alignment: Alignment
    rows: tuple[int, ...]
    divergence: np.ndarray
    row_divergence: np.ndarray
    ranked: tuple[tuple[int, int, float], ...]
    next_a: tuple[NextToken, ...] | None
    next_b: tuple[NextToken, ...] | None
    trace_a: Trace = field(repr=False)
    trace_b: Trace = field(repr=False)

    def top(self, n: int = 10) -> list[dict]:
        """The ``n`` most changed heads as records ``{rank, layer, head, divergence}``."""
        return [{"rank": r + 1, "layer": layer, "head": head, "divergence": d}
                for r, (layer, head, d) in enumerate(self.ranked[:n])]

    def next_token_table(self) -> list[dict]:
        """Top-k next tokens of both inputs side by side: ``{rank, a_text, a_prob, a_prob_in_b, b_text, ...}``."""
        if self.next_a is None or self.next_b is None:
            raise MissingDataError("no next-token predictions: call compare(..., model=..., tokenizer=...) "
                                   "with the causal language model the traces came from")
        return [
            {"rank": r + 1, "a_token": x.token, "a_text": x.text, "a_prob": x.prob, "a_prob_in_b": x.other_prob,
             "b_token": y.token, "b_text": y.text, "b_prob": y.prob, "b_prob_in_a": y.other_prob}
            for r, (x, y) in enumerate(zip(self.next_a, self.next_b))
        ]


def compare(trace_a: Trace, trace_b: Trace, kind: str | None = None, top_k: int = 5, model=None,
            tokenizer=None) -> Comparison:
    """Compare the attention of two traces of the same model, head by head (rules in the module docstring).

    ``model``/``tokenizer``: the causal language model the traces came from (or its offline name, e.g.
    ``"smollm2"``, loaded once and cached) to add the ``top_k`` next-token predictions of both inputs.
    """
    kind = _check_pair(trace_a, trace_b, kind)
    if not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top_k must be a whole number >= 1; got {top_k!r}")
    qs, ks = trace_a.streams(kind)
    q_align = align_tokens(trace_a.tokens[qs], trace_b.tokens[qs])
    k_align = q_align if ks == qs else align_tokens(trace_a.tokens[ks], trace_b.tokens[ks])
    rows = [i for i, s in enumerate(q_align.slots) if s.in_both]
    if kind == "self" and is_causal(trace_a, kind) and is_causal(trace_b, kind) and not q_align.identical:
        rows = [i for i in rows if i >= q_align.first_difference]
    pool_a = _Pooler(q_align.slot_of("a"), k_align.slot_of("a"), rows, len(k_align.slots))
    pool_b = _Pooler(q_align.slot_of("b"), k_align.slot_of("b"), rows, len(k_align.slots))
    L, H = trace_a.shape(kind)[:2]
    row_div = np.zeros((L, H, len(rows)), dtype=np.float64)
    for layer in range(L):
        for head in range(H):
            row_div[layer, head] = js_divergence(pool_a(trace_a.head(layer, head, kind)),
                                                 pool_b(trace_b.head(layer, head, kind)))
    divergence = row_div.mean(-1) if rows else np.zeros((L, H))
    order = np.argsort(-divergence, axis=None, kind="stable")
    ranked = tuple((int(i // H), int(i % H), float(divergence.flat[i])) for i in order)
    next_a = next_b = None
    if model is not None:
        next_a, next_b = next_tokens(trace_a, trace_b, model, tokenizer, top_k)
    return Comparison(kind, q_align, k_align, tuple(rows), divergence.astype(np.float32),
                      row_div.astype(np.float32), ranked, next_a, next_b, trace_a, trace_b)


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in bits between distributions along the last axis (renormalised first).

    In [0, 1]: 0 for equal distributions, 1 for distributions with disjoint support; symmetric in ``p``, ``q``.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-300)
    q = q / np.maximum(q.sum(-1, keepdims=True), 1e-300)
    return np.clip(_entropy(0.5 * (p + q)) - 0.5 * (_entropy(p) + _entropy(q)), 0.0, 1.0)


def _entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits along the last axis (``0 log 0 = 0``)."""
    return -(p * np.log2(np.maximum(p, np.finfo(np.float64).tiny))).sum(-1)  # 0 * log(tiny) = 0


class _Pooler:
    """Pools one input's ``[q, k]`` head into ``[R, slots]``: key columns summed per slot, query rows averaged."""

    def __init__(self, q_slot: np.ndarray, k_slot: np.ndarray, rows: list[int], n_slots: int):
        self.n_slots = n_slots
        self.identity = (np.array_equal(q_slot, np.arange(len(q_slot))) and rows == list(range(len(q_slot)))
                         and n_slots == len(k_slot) and np.array_equal(k_slot, np.arange(n_slots)))
        self.k_starts = _run_starts(k_slot)
        self.k_targets = k_slot[self.k_starts]
        q_starts = _run_starts(q_slot)
        groups = {int(q_slot[s]): g for g, s in enumerate(q_starts)}
        self.q_starts = q_starts
        self.q_pick = np.array([groups[r] for r in rows], dtype=np.int64)
        sizes = np.diff(np.r_[q_starts, len(q_slot)])
        self.q_sizes = sizes[self.q_pick][:, None].astype(np.float64)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        if self.identity:  # identical tokens, every row compared: nothing to pool
            return a.astype(np.float64)
        cols = np.zeros((a.shape[0], self.n_slots), dtype=np.float64)
        cols[:, self.k_targets] = np.add.reduceat(a, self.k_starts, axis=1)
        return np.add.reduceat(cols, self.q_starts, axis=0)[self.q_pick] / self.q_sizes


def _run_starts(slot_of: np.ndarray) -> np.ndarray:
    """Start index of each run of equal slot numbers (slots are contiguous and in order)."""
    return np.flatnonzero(np.r_[True, slot_of[1:] != slot_of[:-1]])


# --------------------------------------------------------------------------- reading a Comparison
def aligned_head(comparison: Comparison, side: str, layer: int, head: int) -> np.ndarray:
    """One head of input ``side`` (``"a"``/``"b"``) on the aligned slots ``[Sq, Sk]``: key weights summed per slot,
    query rows averaged per slot (the pooling :func:`compare` measures with); rows of slots that input lacks are 0
    (see :meth:`Alignment.present <attnscope.analysis.align.Alignment.present>`)."""
    trace = comparison.trace_a if side == "a" else comparison.trace_b
    weights = trace.head(layer, head, comparison.kind).astype(np.float64)  # [q, k]
    q_slot = comparison.query_alignment.slot_of(side)
    k_slot = comparison.key_alignment.slot_of(side)
    n_q, n_k = len(comparison.query_alignment.slots), len(comparison.key_alignment.slots)
    out = np.zeros((n_q, n_k), dtype=np.float32)
    if weights.size == 0:
        return out
    k_starts = _run_starts(k_slot)
    cols = np.zeros((weights.shape[0], n_k))
    cols[:, k_slot[k_starts]] = np.add.reduceat(weights, k_starts, axis=1)
    q_starts = _run_starts(q_slot)
    sizes = np.diff(np.r_[q_starts, len(q_slot)])[:, None]
    out[q_slot[q_starts]] = np.add.reduceat(cols, q_starts, axis=0) / sizes
    return out


def most_changed_head(comparison: Comparison, layers: list[int], heads: list[int], layer: int | None = None,
                      head: int | None = None) -> tuple[int, int]:
    """``(layer, head)``: the given head, else the most changed among ``layers`` x ``heads`` (with ``layer`` or
    ``head`` fixed when only one is given); ties go to the first in layer-major order."""
    rows = [layer] if layer is not None else layers
    cols = [head] if head is not None else heads
    block = comparison.divergence[np.ix_(rows, cols)]
    r, c = np.unravel_index(int(np.argmax(block)), block.shape)
    return int(rows[r]), int(cols[c])


def ranked_heads(comparison: Comparison, layers: list[int], heads: list[int], top: int) -> list[tuple[int, int]]:
    """``(layer, head)`` of the ``top`` most changed heads among ``layers`` x ``heads``, most changed first."""
    keep_l, keep_h = set(layers), set(heads)
    return [(la, h) for la, h, _ in comparison.ranked if la in keep_l and h in keep_h][:top]


def _check_pair(a: Trace, b: Trace, kind: str | None) -> str:
    """The kind to compare, after checking that both traces have it with the same layers and heads."""
    resolve_kind(a, None)
    resolve_kind(b, None)
    if kind is None:
        if a.kinds != b.kinds:
            raise InputError(f"the traces hold different attention kinds ({a.kinds} vs {b.kinds}); "
                             "pass kind= to compare one they share")
        kind = a.default_kind
    for name, t in (("trace_a", a), ("trace_b", b)):
        if kind not in t.attention:
            raise MissingDataError(f"{name} has no {kind!r} attention; it has {t.kinds}")
    (La, Ha, *_), (Lb, Hb, *_) = a.shape(kind), b.shape(kind)
    if (La, Ha) != (Lb, Hb):
        raise InputError(f"cannot compare {La} layers x {Ha} heads with {Lb} layers x {Hb} heads; "
                         "capture both inputs with the same model")
    if a.meta.get("model") != b.meta.get("model"):
        log.info("comparing traces of different models: %r and %r", a.meta.get("model"), b.meta.get("model"))
    return kind


def predicts_next(model, *traces: Trace) -> bool:
    """Whether :func:`compare` can add next-token predictions for ``traces`` of ``model``: a one-stack model that
    writes text (a causal language model with its head, :func:`attnscope.capture.families.generates`) and traces
    of its causal self-attention."""
    from ..capture.families import generates, is_encoder_decoder

    return (not is_encoder_decoder(model.config) and generates(model)
            and all("self" in t.attention and is_causal(t, "self") for t in traces))


def next_tokens(trace_a: Trace, trace_b: Trace, model, tokenizer=None,
                top_k: int = 5) -> tuple[tuple[NextToken, ...], tuple[NextToken, ...]]:
    """Top-k next tokens after each input's last token, each with its probability under both inputs.

    Runs the causal language model once per input on the trace's token ids. ``model`` may be an offline name.
    """
    import torch

    from ..capture.families import is_encoder_decoder

    if isinstance(model, str):
        from ..capture.models import load_cached

        model, loaded_tok = load_cached(model)
        tokenizer = tokenizer or loaded_tok
    if tokenizer is None:
        raise InputError("next-token predictions need the tokenizer too: compare(..., model=model, tokenizer=tok)")
    if is_encoder_decoder(getattr(model, "config", None)):
        raise InputError("next-token predictions are for decoder-only causal models; this is an encoder-decoder")
    probs = []
    for name, t in (("trace_a", trace_a), ("trace_b", trace_b)):
        ids = t.token_ids.get("input")
        if not ids:
            raise MissingDataError(f"{name} holds no token ids (made from arrays?); capture it with attnscope.capture")
        if "self" not in t.attention or not is_causal(t, "self"):
            raise InputError(f"{name} is not from a causal language model, so it has no next token to predict; "
                             "pass model=None to compare attention only")
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(input_ids=torch.tensor([ids]), use_cache=False)
        finally:
            model.train(training)
        logits = getattr(out, "logits", None)
        if logits is None:
            raise InputError(f"{type(model).__name__} returned no logits: it has no language-model head. Load it "
                             "with attnscope.load_model(name), which adds the head for causal models")
        probs.append(torch.softmax(logits[0, -1].float(), -1).numpy())

    def top(p, other):
        best = np.argsort(-p, kind="stable")[:top_k]
        return tuple(NextToken(int(i), str(tokenizer.convert_ids_to_tokens(int(i))), tokenizer.decode([int(i)]),
                               float(p[i]), float(other[i])) for i in best)

    return top(probs[0], probs[1]), top(probs[1], probs[0])
