"""Static model view: a layers x heads grid of attention heatmaps, painted as one image.

Every cell is the trace's block-max thumbnail of one head (``attention.pooled``), so a 4096-token input costs no
more to draw than a 96-token one and a sharp peak never vanishes when pooled. The colour scale is sqrt-shaped and
absolute (0 to 1), so cells can be compared with each other.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import to_rgba

from . import style
from .options import Options, head_block

THUMB = 96  # largest side of one cell's thumbnail, in image pixels (option thumb_size)
MIN_CELL = 48  # small thumbnails are enlarged (nearest) to at least this many pixels so gaps stay thin


def default_size(trace, opts: Options) -> tuple[float, float]:
    L, H = len(opts.layers), len(opts.head_set)
    cell = float(np.clip(10.0 / max(L, H), 0.3, 0.9))
    return float(np.clip(H * cell + 1.9, 4.0, 16.0)), float(np.clip(L * cell + 1.3, 3.0, 16.0))


def mosaic(trace, opts: Options) -> tuple[np.ndarray, tuple[int, int], int, int]:
    """The grid as one RGBA image ``[rows, cols, 4]``, the cell size ``(h, w)`` in pixels, the gap, the pool block."""
    q, k = len(opts.query_labels), len(opts.key_labels)
    size = opts.thumb_size or THUMB
    block = max(1, math.ceil(max(q, k) / size))
    cmap, norm = opts.theme.heat_cmap(), style.heat_norm(1.0)
    first = head_block(trace, opts, opts.layers[0], opts.head_set[0], size)
    scale = max(1, math.ceil(MIN_CELL / max(first.shape)))
    ch, cw = first.shape[0] * scale, first.shape[1] * scale
    gap = max(2, round(max(ch, cw) / 24))
    L, H = len(opts.layers), len(opts.head_set)
    image = np.empty((L * ch + (L + 1) * gap, H * cw + (H + 1) * gap, 4))
    image[:] = np.asarray(to_rgba(opts.theme.gap))
    for r, layer in enumerate(opts.layers):
        for c, head in enumerate(opts.head_set):
            thumb = first if (r, c) == (0, 0) else head_block(trace, opts, layer, head, size)
            cell = cmap(norm(np.clip(thumb, 0.0, 1.0)))
            cell = np.repeat(np.repeat(cell, scale, axis=0), scale, axis=1)
            y, x = gap + r * (ch + gap), gap + c * (cw + gap)
            image[y : y + ch, x : x + cw] = cell
    return image, (ch, cw), gap, block


def draw(fig, trace, opts: Options) -> None:
    image, (ch, cw), gap, block = mosaic(trace, opts)
    ax = fig.add_subplot()
    width, height = fig.get_size_inches()
    fits = image.shape[1] <= (width - 1.9) * fig.dpi and image.shape[0] <= (height - 1.3) * fig.dpi
    # embedded as it is when it fits (crisp, small SVG/PDF); smoothed when it must shrink
    ax.imshow(image, extent=(0, image.shape[1], image.shape[0], 0), interpolation="none" if fits else "antialiased")
    for side in ax.spines.values():
        side.set_visible(False)
    _index_ticks(ax.xaxis, opts.head_set, cw, gap, width - 1.9)
    _index_ticks(ax.yaxis, opts.layers, ch, gap, height - 1.3)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    parts = style.kind_and_filter(trace, opts)
    if block > 1:
        parts.append(f"{block}x{block} block max")
    ax.set_title(style.title_of(trace, "model view", parts), pad=6)
    bar = fig.colorbar(ScalarMappable(style.heat_norm(1.0), opts.theme.heat_cmap()), ax=ax, shrink=0.6,
                       aspect=30, pad=0.02)
    bar.set_label("attention weight", fontsize=8)
    bar.outline.set_visible(False)
    bar.ax.tick_params(labelsize=7, length=2)


def _index_ticks(axis, indices: list[int], cell: int, gap: int, length_in: float) -> None:
    fs = min(8.0, style.token_fontsize(len(indices), length_in))
    keep = style.thin(len(indices), length_in, fs)
    axis.set_ticks([gap + i * (cell + gap) + cell / 2 for i in keep], [str(indices[i]) for i in keep], fontsize=fs)
    axis.set_tick_params(length=0, pad=2)
