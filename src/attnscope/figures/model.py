"""Static model view: a layers x heads grid of attention heatmaps, painted as one image.

Every cell is the trace's block-max thumbnail of one head (``attention.pooled``), so a 4096-token input costs no
more to draw than a 96-token one and a sharp peak never vanishes when pooled. The colour scale is sqrt-shaped and
absolute (0 to 1), so cells can be compared with each other.

``metric="entropy"`` (any name in :data:`attnscope.encode.HEAD_METRICS`) frames every cell in a colour for that
head's value, with a second colour bar giving the range; ``sort=True`` orders each layer's cells by it, highest
first, and writes each cell's head index in its corner (the columns are then ranks, not heads).
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize, to_rgba

from ..encode import encode_metrics
from . import style
from .options import Options, head_block

THUMB = 96  # largest side of one cell's thumbnail, in image pixels (option thumb_size)
MIN_CELL = 48  # small thumbnails are enlarged (nearest) to at least this many pixels so gaps stay thin
#: Frame colours of a metric, low to high, per theme (as the HTML model view): more contrast = higher value.
METRIC_COLOURS = {
    "light": ("#fed976", "#fd8d3c", "#e31a1c", "#800026"),
    "dark": ("#6a1b3d", "#d7301f", "#fc8d59", "#fee08b"),
}


def default_size(trace, opts: Options) -> tuple[float, float]:
    L, H = len(opts.layers), len(opts.head_set)
    cell = float(np.clip(10.0 / max(L, H), 0.3, 0.9))
    extra = 0.6 if opts.metric else 0.0  # the metric's colour bar under the grid
    return float(np.clip(H * cell + 1.9, 4.0, 16.0)), float(np.clip(L * cell + 1.3 + extra, 3.0, 16.0))


def metric_cmap(theme) -> LinearSegmentedColormap:
    return LinearSegmentedColormap.from_list(f"attnscope-metric-{theme.name}", METRIC_COLOURS[theme.name])


def metric_norm(values: np.ndarray) -> Normalize:
    """The metric's colour range: its smallest to largest finite value (0 to 1 when none is finite)."""
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return Normalize(lo, hi if hi > lo else lo + 1.0)


def metric_grid(trace, opts: Options) -> np.ndarray:
    """``[layers, heads]`` values of ``opts.metric`` for the shown layers and heads (NaN where it does not apply)."""
    values = encode_metrics(trace, opts.kind, opts.layers, opts.head_set)["values"][opts.metric]
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=np.float64)


def order(values: np.ndarray | None, sort: bool, heads: int, layers: int) -> np.ndarray:
    """``[layers, heads]``: which head (position in the shown heads) each column of each row holds."""
    if values is None or not sort:
        return np.tile(np.arange(heads), (layers, 1))
    key = np.where(np.isnan(values), -np.inf, values)
    return np.argsort(-key, axis=1, kind="stable")  # highest first; NaN (does not apply) last


def mosaic(trace, opts: Options, values: np.ndarray | None = None) -> tuple[np.ndarray, tuple[int, int], int, int]:
    """The grid as one RGBA image ``[rows, cols, 4]``, the cell size ``(h, w)`` in pixels (frame included), the gap
    and the pool block. Cells follow :func:`order`; ``values`` (``[layers, heads]``) colour the cells' frames."""
    q, k = len(opts.query_labels), len(opts.key_labels)
    size = opts.thumb_size or THUMB
    block = max(1, math.ceil(max(q, k) / size))
    cmap, norm = opts.theme.heat_cmap(), style.heat_norm(1.0)
    first = head_block(trace, opts, opts.layers[0], opts.head_set[0], size)
    scale = max(1, math.ceil(MIN_CELL / max(first.shape)))
    th, tw = first.shape[0] * scale, first.shape[1] * scale
    frame = 0 if values is None else max(2, round(max(th, tw) / 14))
    ch, cw = th + 2 * frame, tw + 2 * frame
    gap = max(2, round(max(ch, cw) / 24))
    L, H = len(opts.layers), len(opts.head_set)
    image = np.empty((L * ch + (L + 1) * gap, H * cw + (H + 1) * gap, 4))
    image[:] = np.asarray(to_rgba(opts.theme.gap))
    cols = order(values, opts.sort, H, L)
    if values is not None:
        frames = metric_cmap(opts.theme)(metric_norm(values)(values))
        frames[np.isnan(values)] = to_rgba(opts.theme.muted)
    for r, layer in enumerate(opts.layers):
        for c in range(H):
            hi = int(cols[r, c])
            head = opts.head_set[hi]
            thumb = first if (r, hi) == (0, 0) else head_block(trace, opts, layer, head, size)
            cell = cmap(norm(np.clip(thumb, 0.0, 1.0)))
            cell = np.repeat(np.repeat(cell, scale, axis=0), scale, axis=1)
            y, x = gap + r * (ch + gap), gap + c * (cw + gap)
            if frame:
                image[y : y + ch, x : x + cw] = frames[r, hi]
            image[y + frame : y + frame + th, x + frame : x + frame + tw] = cell
    return image, (ch, cw), gap, block


def draw(fig, trace, opts: Options) -> None:
    values = metric_grid(trace, opts) if opts.metric else None
    image, (ch, cw), gap, block = mosaic(trace, opts, values)
    ax = fig.add_subplot()
    width, height = fig.get_size_inches()
    fits = image.shape[1] <= (width - 1.9) * fig.dpi and image.shape[0] <= (height - 1.3) * fig.dpi
    # embedded as it is when it fits (crisp, small SVG/PDF); smoothed when it must shrink
    ax.imshow(image, extent=(0, image.shape[1], image.shape[0], 0), interpolation="none" if fits else "antialiased")
    for side in ax.spines.values():
        side.set_visible(False)
    sorted_ = values is not None and opts.sort
    ranks = list(range(1, len(opts.head_set) + 1))
    _index_ticks(ax.xaxis, ranks if sorted_ else opts.head_set, cw, gap, width - 1.9)
    _index_ticks(ax.yaxis, opts.layers, ch, gap, height - 1.3)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel(f"heads by {opts.metric}, highest first (corner: head)" if sorted_ else "head")
    ax.set_ylabel("layer")
    if sorted_:
        _head_numbers(ax, opts, order(values, True, len(opts.head_set), len(opts.layers)), (ch, cw), gap)
    parts = style.kind_and_filter(trace, opts)
    if block > 1:
        parts.append(f"{block}x{block} block max")
    ax.set_title(style.title_of(trace, "model view", parts), pad=6)
    bar = fig.colorbar(ScalarMappable(style.heat_norm(1.0), opts.theme.heat_cmap()), ax=ax, shrink=0.6,
                       aspect=30, pad=0.02)
    bar.set_label("attention weight", fontsize=8)
    bar.outline.set_visible(False)
    bar.ax.tick_params(labelsize=7, length=2)
    if values is not None:
        _metric_bar(fig, ax, opts, values)


def _head_numbers(ax, opts: Options, cols: np.ndarray, cell: tuple[int, int], gap: int) -> None:
    """Each sorted cell's head index, in its top-left corner (inside the frame) on a small background patch."""
    ch, cw = cell
    inset = max(ch, cw) / 10
    fs = float(np.clip(ch / 9.0 * 72.0 / ax.figure.dpi * 2.0, 4.0, 7.0))
    box = {"boxstyle": "square,pad=0.1", "facecolor": opts.theme.background, "edgecolor": "none", "alpha": 0.8}
    for r in range(cols.shape[0]):
        for c in range(cols.shape[1]):
            x, y = gap + c * (cw + gap) + inset, gap + r * (ch + gap) + inset
            ax.text(x, y, str(opts.head_set[int(cols[r, c])]), fontsize=fs, ha="left", va="top",
                    color=opts.theme.text, bbox=box)


def _metric_bar(fig, ax, opts: Options, values: np.ndarray) -> None:
    bar = fig.colorbar(ScalarMappable(metric_norm(values), metric_cmap(opts.theme)), ax=ax,
                       location="bottom", shrink=0.5, aspect=40, pad=0.02)
    missing = " (grey: does not apply)" if not np.isfinite(values).all() else ""
    bar.set_label(f"frame: {opts.metric}{missing}", fontsize=8)
    bar.outline.set_visible(False)
    bar.ax.tick_params(labelsize=7, length=2)


def _index_ticks(axis, indices: list[int], cell: int, gap: int, length_in: float) -> None:
    fs = min(8.0, style.token_fontsize(len(indices), length_in))
    keep = style.thin(len(indices), length_in, fs)
    axis.set_ticks([gap + i * (cell + gap) + cell / 2 for i in keep], [str(indices[i]) for i in keep], fontsize=fs)
    axis.set_tick_params(length=0, pad=2)
