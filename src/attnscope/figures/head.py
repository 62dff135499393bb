"""Static head view: query tokens on the left, key tokens on the right, one line per weight, coloured per head.

A line's opacity is its weight. Long inputs would give ``heads x n x n`` lines, so only the strongest are drawn:
weights below :data:`MIN_WEIGHT` are invisible anyway, and at most :data:`MAX_LINES` of the rest (the largest)
are kept, shared evenly between the heads. Token labels are thinned so they never overlap.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from . import style
from .options import Options, boundaries, head_block

MIN_WEIGHT = 0.02
MAX_LINES = 6000


def default_size(trace, opts: Options) -> tuple[float, float]:
    n = max(len(opts.query_labels), len(opts.key_labels))
    return 5.0, float(np.clip(0.2 * n + 1.4, 3.5, 11.0))


def strongest(weights: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(query, key, weight)`` of the at most ``budget`` largest weights >= MIN_WEIGHT, weakest first."""
    flat = weights.ravel()
    idx = np.flatnonzero(flat >= MIN_WEIGHT)
    if len(idx) > budget:
        idx = idx[np.argpartition(-flat[idx], budget - 1)[:budget]]
    idx = idx[np.lexsort((idx, flat[idx]))]  # weakest first so strong lines are drawn on top; ties by position
    q, k = np.divmod(idx, weights.shape[1])
    return q, k, flat[idx]


def draw(fig, trace, opts: Options) -> None:
    nq, nk = len(opts.query_labels), len(opts.key_labels)
    ax = fig.add_subplot()
    colors = style.head_colors(trace.shape(opts.kind)[1])
    budget = max(1, MAX_LINES // len(opts.heads))
    segments, rgba = [], []
    for h in opts.heads:
        q, k, w = strongest(head_block(trace, opts, opts.layer, h), budget)
        yq, yk = _positions(nq)[q], _positions(nk)[k]
        segments.append(np.stack([np.stack([np.zeros_like(yq), yq], 1), np.stack([np.ones_like(yk), yk], 1)], 1))
        c = np.tile(np.asarray(colors[h]), (len(w), 1))
        c[:, 3] = np.clip(w, 0.0, 1.0)
        rgba.append(c)
    width = float(np.clip(1.6 - 0.25 * np.log10(max(nq, nk)), 0.5, 1.4))
    # matplotlib's stubs ask for a list of lines; one [n, 2, 2] array is what it really takes, and faster
    ax.add_collection(LineCollection(np.concatenate(segments), colors=np.concatenate(rgba),  # type: ignore[arg-type]
                                     linewidths=width, capstyle="round"))
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(1, 0)
    for side in ax.spines.values():
        side.set_visible(False)
    height = fig.get_figheight() - 1.2
    _label_axis(ax.yaxis, opts.query_labels, height)
    right = ax.twinx()
    right.set_ylim(1, 0)
    for side in right.spines.values():
        side.set_visible(False)
    _label_axis(right.yaxis, opts.key_labels, height)
    ax.set_xticks([])
    _segment_marks(ax, trace, opts)
    heads = "all heads" if len(opts.heads) == trace.shape(opts.kind)[1] else f"heads {_ranges(opts.heads)}"
    parts = [f"layer {opts.layer}", heads] + style.kind_and_filter(trace, opts)
    ax.set_title(style.title_of(trace, "head view", parts), loc="center", pad=8)
    handles = [Line2D([], [], color=colors[h], lw=2.5, label=str(h)) for h in opts.heads]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 12), fontsize=7,
               handlelength=1.0, columnspacing=0.8, title="head", title_fontsize=7)


def _positions(n: int) -> np.ndarray:
    """Vertical position of each of ``n`` tokens in [0, 1], so streams of different length span the same height."""
    return (np.arange(n) + 0.5) / n


def _label_axis(axis, labels: list[str], height: float) -> None:
    style.token_ticks(axis, labels, height, positions=_positions(len(labels)))


def _segment_marks(ax, trace, opts: Options) -> None:
    """Short rules beside the labels where one segment (sentence A/B, prompt/generated) ends and the next starts."""
    query_bounds, key_bounds = boundaries(trace, opts)
    for x0, x1, bounds, n in ((-0.02, 0.02, query_bounds, len(opts.query_labels)),
                              (0.98, 1.02, key_bounds, len(opts.key_labels))):
        for b in bounds:
            ax.plot([x0, x1], [b / n] * 2, color=opts.theme.muted, lw=1.0)


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)
