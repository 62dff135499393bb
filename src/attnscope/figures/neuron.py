"""Static neuron view: how one query token's attention comes out of query and key vectors.

For one layer, head and query token ``i``: the query vector ``q_i`` (top), every key vector ``k_j`` and the
elementwise product ``q_i * k_j`` as colour bars (positive blue, negative orange), then the score
``q_i·k_j x scaling`` (+ the model's position bias, if any) and the softmax weight the model actually used.
Keys hidden by a causal mask are drawn grey. Needs a trace captured with ``qkv=True``. With ``hide_sinks=`` the
sink keys (:func:`attnscope.sinks.sink_positions`) are drawn grey too, the softmax bars scale to the largest weight
shown, and a line says what share of this query's attention the sinks held (as the HTML view's Hide sinks does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize

from ..errors import InputError, MissingDataError
from ..sinks import sink_labels, sink_note, sink_positions
from . import style
from .options import Options


def default_size(trace, opts: Options) -> tuple[float, float]:
    n = len(opts.key_labels)
    return 9.0, float(np.clip(0.2 * n + 2.2, 3.5, 11.0))


@dataclass(frozen=True)
class Explained:
    """One query token's attention taken apart (``d`` head size, ``k`` keys)."""

    index: int  # the query token
    query: np.ndarray  # [d]
    key: np.ndarray  # [k, d]
    product: np.ndarray  # [k, d] query * key, elementwise
    score: np.ndarray  # [k] q·k x scaling (+ position bias)
    weight: np.ndarray  # [k] the softmax weights the model used
    masked: np.ndarray  # [k] bool, hidden by the causal mask
    sinks: np.ndarray  # [k] bool, left out by hide_sinks
    note: str  # what the sinks held ("" when none are hidden)


def explain(trace, opts: Options) -> Explained:
    """Take apart the attention of ``opts.query`` (default token 0) in ``opts.layer``/``opts.head``."""
    if not trace.has_qkv(opts.kind):
        raise MissingDataError(
            f"the neuron view needs query/key vectors, and this trace has none for {opts.kind!r} attention; capture "
            "with qkv=True: attnscope.capture(model, tokenizer, text, qkv=True), or on the command line "
            "`attnscope capture MODEL TEXT --qkv` (`attnscope show --view neuron` does it for you)"
        )
    if opts.cropped:
        raise InputError("the neuron view shows every key of one query token; it takes no filter (pass query=)")
    qkv = trace.qkv[opts.kind]
    i = 0 if opts.query is None else opts.query
    query = np.asarray(qkv["query"][opts.layer, opts.head, i], dtype=np.float32)  # [d]
    key = np.asarray(qkv["key"][opts.layer, opts.head], dtype=np.float32)  # [k, d]
    info = trace.meta.get("kinds", {}).get(opts.kind, {})
    scaling = float(info.get("scaling", query.shape[0] ** -0.5))
    score = key @ query * scaling
    if opts.kind in trace.bias:
        score = score + trace.bias[opts.kind][opts.layer, opts.head, i]
    masked = np.zeros(len(score), dtype=bool)
    if info.get("causal"):
        masked[i + 1 :] = True
    weight = trace.row(opts.layer, opts.head, i, opts.kind)
    sinks, note = np.zeros(len(score), dtype=bool), ""
    if opts.hide_sinks:
        which = "auto" if opts.hide_sinks is True else opts.hide_sinks
        key_stream = trace.streams(opts.kind)[1]
        positions = sink_positions(trace, which).get(key_stream, [])
        sinks[positions] = True
        if positions:
            names = sink_labels(trace.tokens[key_stream], positions)
            note = sink_note(names, float(weight[positions].sum())).replace("this head's", "this query's") + \
                " · bars scale to the largest weight shown"
    return Explained(i, query, key, key * query, score, weight, masked, sinks, note)


def draw(fig, trace, opts: Options) -> None:
    v = explain(trace, opts)
    theme, n, i = opts.theme, len(v.score), v.index
    height = fig.get_figheight()
    grid = fig.add_gridspec(2, 4, height_ratios=[0.35, max(height - 2.2, 0.5)], width_ratios=[3, 3, 1.3, 1.3])
    diverging = theme.diverging_cmap()
    vlim = float(max(np.abs(v.key).max(), np.abs(v.query).max(), 1e-12))
    plim = float(max(np.abs(v.product).max(), 1e-12))
    vec_norm, prod_norm = Normalize(-vlim, vlim), Normalize(-plim, plim)

    top = fig.add_subplot(grid[0, 0])
    top.imshow(v.query[None, :], cmap=diverging, norm=vec_norm, aspect="auto")
    top.set_yticks([0], [opts.query_labels[i]], fontsize=8)
    top.get_yticklabels()[0].set_parse_math(False)
    top.set_xticks([])
    top.set_title("query q", fontsize=9, loc="left")
    info = fig.add_subplot(grid[0, 1:])
    info.axis("off")
    info.text(0.0, 0.5, style.title_of(trace, "neuron view", [f"layer {opts.layer}", f"head {opts.head}",
                                                                f"query {i}"]),
              va="center", fontsize=10, parse_math=False)

    keys = fig.add_subplot(grid[1, 0])
    keys.imshow(v.key, cmap=diverging, norm=vec_norm, aspect="auto", interpolation="nearest")
    style.token_ticks(keys.yaxis, opts.key_labels, height - 2.2)
    if trace.streams(opts.kind)[0] == trace.streams(opts.kind)[1]:
        for tick, label in zip(keys.yaxis.get_ticklocs(), keys.yaxis.get_ticklabels()):
            if tick == i:
                label.set_color(theme.accent)  # the query token among the keys
    keys.set_title("key k", fontsize=9, loc="left")
    prod = fig.add_subplot(grid[1, 1], sharey=keys)
    prod.imshow(v.product, cmap=diverging, norm=prod_norm, aspect="auto", interpolation="nearest")
    prod.set_title("q × k (elementwise)", fontsize=9, loc="left")
    for ax in (top, keys, prod):
        _dimension_ticks(ax, len(v.query), ax is not top)
        for side in ax.spines.values():
            side.set_visible(False)
    prod.tick_params(labelleft=False)

    score_title = "q·k × scale" + (" + bias" if opts.kind in trace.bias else "")
    score_colors = np.where(v.score >= 0, theme.positive, theme.negative)
    grey = v.masked | v.sinks
    _bars(fig.add_subplot(grid[1, 2], sharey=keys), v.score, np.where(grey, theme.muted, score_colors),
          score_title, theme)
    shown = np.where(v.sinks, 0.0, v.weight)  # hidden sinks: no bar, the scale set by what is shown
    _bars(fig.add_subplot(grid[1, 3], sharey=keys), shown, [theme.heat[3]] * n, "softmax", theme)
    if v.note:
        fig.text(0.01, 0.004, v.note, fontsize=7, color=theme.muted, va="bottom")
    keys.set_ylim(n - 0.5, -0.5)
    for ax, norm, label in ((keys, vec_norm, "q, k value"), (prod, prod_norm, "product")):
        bar = fig.colorbar(ScalarMappable(norm, diverging), ax=ax, location="bottom", shrink=0.8, aspect=30,
                           pad=0.01)
        bar.set_label(label, fontsize=7)
        bar.outline.set_visible(False)
        bar.ax.tick_params(labelsize=6, length=2)


def _dimension_ticks(ax, d: int, bottom: bool) -> None:
    step = max(1, d // 8)
    ax.set_xticks(range(0, d, step) if bottom else [])
    ax.tick_params(axis="x", labelsize=6, length=2)
    ax.tick_params(axis="y", length=0)


def _bars(ax, values: np.ndarray, colors, title: str, theme) -> None:
    """Horizontal bars, one per key, drawn as one collection (fast and small at thousands of keys)."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64))
    rows = np.arange(len(values), dtype=np.float64)
    half = 0.4 if len(values) <= 200 else 0.5
    polys = np.stack([np.stack([np.zeros_like(values), rows - half], 1), np.stack([values, rows - half], 1),
                      np.stack([values, rows + half], 1), np.stack([np.zeros_like(values), rows + half], 1)], 1)
    # matplotlib's stubs ask for a list of polygons; one [n, 4, 2] array is what it really takes, and faster
    ax.add_collection(PolyCollection(polys, facecolors=list(colors), edgecolors="none"))  # type: ignore[arg-type]
    lo, hi = min(0.0, float(values.min())), max(0.0, float(values.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad * (lo < 0), hi + pad)
    ax.axvline(0.0, color=theme.muted, lw=0.6)
    ax.set_title(title, fontsize=9, loc="left")
    ax.tick_params(labelleft=False, axis="y", length=0)
    ax.tick_params(axis="x", labelsize=6, length=2)
    for side in ax.spines.values():
        side.set_visible(False)
