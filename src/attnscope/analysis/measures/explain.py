"""Attention beside the measures that correct it, and where they disagree.

:func:`explain` runs a model once and measures the input with several methods; the :class:`Explanation` holds, for
every layer, query token and head:

- the series to compare over the keys: raw attention (a head, or the mean of the heads), attention rollout
  (Abnar & Zuidema 2020) and each measure (its rollout too, for layer-level ones);
- ``rho[name]`` ``[L, H + 1, n]``: Spearman's rank correlation of series ``name``'s row with attention's row
  (head ``h``, or index ``H``: the mean of the heads) over the keys the query may see (NaN for rows with fewer
  than :data:`MIN_KEYS` keys or a constant row);
- :meth:`Explanation.disagreement`: per layer and head, ``(1 - rho) / 2`` averaged over the query rows: 0 when a
  measure ranks the keys as the head's weights do, 0.5 when unrelated, 1 when reversed.

The disagreement view (:func:`attnscope.views.disagreement_view`) and its figure draw an Explanation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ...trace import Trace
from ..rollout import rollout as attention_rollout
from . import METHODS, check_method, measure, rollout_layers, run
from ._forward import KIND

#: The measures :func:`explain` runs by default.
DEFAULT_METHODS = ("alti", "value_zeroing", "norm", "grad_attention")
#: Rows with fewer keys than this get no rank correlation.
MIN_KEYS = 3
#: Display names of the series that are not measures.
ATTENTION, ROLLOUT = "attention", "rollout"


@dataclass(frozen=True)
class Series:
    """One thing compared over the keys: ``values`` ``[L, H, n, n]`` (per head) or ``[L, 1, n, n]`` (per layer)."""

    name: str
    label: str
    values: np.ndarray
    rolled: bool = False  # a rollout across layers

    @property
    def per_head(self) -> bool:
        return self.values.shape[1] > 1

    def row(self, layer: int, query: int, head: int | None = None) -> np.ndarray:
        """``[n]`` over the keys: head ``head`` (per-head series; None: the mean of the heads)."""
        if not self.per_head:
            return self.values[layer, 0, query]
        if head is None:
            return self.values[layer, :, query].mean(0)
        return self.values[layer, head, query]


@dataclass(frozen=True)
class Explanation:
    """Raw attention, its rollout and measures of one input (see the module docstring)."""

    trace: Trace  # the captured attention (q/k/v, verified)
    measures: dict[str, Trace]  # method -> the contributions trace
    series: dict[str, Series]  # attention, rollout, each measure and each layer-level measure's rollout
    rho: dict[str, np.ndarray]  # series name -> [L, H + 1, n]

    @property
    def tokens(self) -> list[str]:
        return self.trace.tokens["input"]

    @property
    def shape(self) -> tuple[int, int, int]:
        L, H, n, _ = self.trace.shape(KIND)
        return L, H, n

    @property
    def causal(self) -> bool:
        return bool(self.trace.meta.get("kinds", {}).get(KIND, {}).get("causal", False))

    def correlations(self, layer: int, query: int, head: int | None = None) -> dict[str, float]:
        """Each series' rank correlation with attention (head ``head``; None: the mean) for one query row."""
        col = self.shape[1] if head is None else head
        return {name: float(r[layer, col, query]) for name, r in self.rho.items()}

    def disagreement(self, name: str) -> np.ndarray:
        """``[L, H]``: ``(1 - rho) / 2`` of series ``name`` against each head, averaged over query rows (NaN
        where no row has a correlation)."""
        if name not in self.rho:
            raise InputError(f"no series {name!r} in this explanation; it has {sorted(self.rho)}")
        d = (1.0 - self.rho[name][:, :-1]) / 2.0  # [L, H, n]
        counted = np.isfinite(d).sum(-1)
        total = np.nansum(d, axis=-1)
        return np.divide(total, counted, out=np.full(total.shape, np.nan), where=counted > 0).astype(np.float32)


def explain(source, text: str | None = None, *, methods=DEFAULT_METHODS, model=None, tokenizer=None,
            pair: str | None = None, target=None, position: int | None = None) -> Explanation:
    """Capture ``text`` once and measure it with ``methods`` (see :func:`attnscope.analysis.contributions` for
    ``source``, ``model``, ``tokenizer``, ``pair``; ``target``/``position`` go to ``grad_attention``)."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not methods or len(set(methods)) != len(methods):
        raise InputError(f"methods must name one or more distinct measures of {', '.join(METHODS)}; got {methods!r}")
    for m in methods:
        check_method(m)
    if "grad_attention" not in methods and (target is not None or position is not None):
        raise InputError("target= and position= choose what grad_attention explains; add it to methods")
    model, tokenizer, ref = run(source, text, model=model, tokenizer=tokenizer, pair=pair)
    measured = {m: measure(ref, model, tokenizer, m, **({"target": target, "position": position}
                                                          if m == "grad_attention" else {})) for m in methods}
    return build(ref.trace, measured)


def build(trace: Trace, measured: dict[str, Trace]) -> Explanation:
    """The Explanation of ``trace`` (its captured attention) and already measured contributions traces."""
    attention = trace.dense(KIND)
    series = {ATTENTION: Series(ATTENTION, "attention", attention),
              ROLLOUT: Series(ROLLOUT, "attention rollout (Abnar & Zuidema 2020)",
                              attention_rollout(trace, KIND)[:, None], rolled=True)}
    for name, t in measured.items():
        label = METHODS[name][0]
        series[name] = Series(name, label, t.dense(KIND))
        if METHODS[name][1] == "layer":
            series[name + "_rollout"] = Series(name + "_rollout", label + ", rolled out",
                                               rollout_layers(t.dense(KIND)[:, 0])[:, None], rolled=True)
    causal = bool(trace.meta.get("kinds", {}).get(KIND, {}).get("causal", False))
    rho = {name: correlations(s.values, attention, causal) for name, s in series.items() if name != ATTENTION}
    return Explanation(trace, measured, series, rho)


def correlations(values: np.ndarray, attention: np.ndarray, causal: bool) -> np.ndarray:
    """``[L, H + 1, n]``: Spearman's rho of ``values``'s rows (``[L, 1 or H, n, n]``) with attention's rows
    (``[L, H, n, n]``), per head and (last) against the mean of the heads, over the keys each query may see."""
    L, H, n, _ = attention.shape
    att = np.concatenate([attention, attention.mean(1, keepdims=True)], axis=1)  # [L, H + 1, n, n]
    if values.shape[1] == 1:
        other = np.broadcast_to(values, att.shape)
    else:
        other = np.concatenate([values, values.mean(1, keepdims=True)], axis=1)
    out = np.full((L, H + 1, n), np.nan, dtype=np.float32)
    for i in range(n):
        keys = i + 1 if causal else n
        if keys < MIN_KEYS:
            continue
        out[:, :, i] = spearman(att[:, :, i, :keys].reshape(-1, keys),
                                other[:, :, i, :keys].reshape(-1, keys)).reshape(L, H + 1)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each row of ``a`` with the same row of ``b`` (``[R, m]`` -> ``[R]``; ties
    share their average rank; NaN for a constant row)."""
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean(-1, keepdims=True)
    rb -= rb.mean(-1, keepdims=True)
    den = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    num = (ra * rb).sum(-1)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the last axis of ``[R, m]``: every row at once, by searching all rows in one
    sorted array after moving row ``r`` up by ``r`` times more than any row's spread."""
    x = np.asarray(x, dtype=np.float64)
    R, m = x.shape
    spread = float(np.ptp(x)) + 1.0 if x.size else 1.0
    shifted = x + (np.arange(R) * spread)[:, None]
    flat = np.sort(shifted, axis=-1).reshape(-1)  # rows stay in order: globally sorted
    lo = np.searchsorted(flat, shifted, side="left")
    hi = np.searchsorted(flat, shifted, side="right")
    return (lo + hi - 1) / 2.0 - (np.arange(R) * m)[:, None] + 1.0

