"""Static matrix view: one head's attention as a heatmap, queries down, keys across, with token labels.

Inputs longer than the figure has pixels are block-max pooled (``attention.pooled``) to about one block per pixel,
so a 4096-token head is drawn from a small image and no peak is lost; labels are thinned to fit.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.patches import Rectangle

from . import style
from .options import Options, boundaries, head_block


def default_size(trace, opts: Options) -> tuple[float, float]:
    n = max(len(opts.query_labels), len(opts.key_labels))
    side = float(np.clip(0.2 * n + 2.0, 4.5, 10.0))
    return side + 0.9, side


def draw(fig, trace, opts: Options) -> None:
    q, k = len(opts.query_labels), len(opts.key_labels)
    width, height = fig.get_size_inches()
    size = max(64, int((min(width, height) - 2.0) * fig.dpi))  # about the axes' side in pixels
    image = head_block(trace, opts, opts.layer, opts.head, size)  # [ceil(q/b), ceil(k/b)]
    block = max(1, math.ceil(max(q, k) / size))
    norm, cmap = style.heat_norm(float(image.max())), opts.theme.heat_cmap()
    ax = fig.add_subplot()
    aspect = "equal" if 0.5 <= q / k <= 2.0 else "auto"
    # at most one cell per pixel, so no resampling: crisp cells, and SVG/PDF embed the small image as it is
    ax.imshow(image, cmap=cmap, norm=norm, aspect=aspect, interpolation="none",
              extent=(-0.5, image.shape[1] * block - 0.5, image.shape[0] * block - 0.5, -0.5))
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_ylim(q - 0.5, -0.5)
    for side in ax.spines.values():
        side.set_visible(False)
    style.token_ticks(ax.xaxis, opts.key_labels, width - 2.2, rotation=90)
    style.token_ticks(ax.yaxis, opts.query_labels, height - 1.8)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    _segment_rules(ax, trace, opts)
    row = None if opts.query is None else opts.query - (opts.rows.start or 0)
    if row is not None and 0 <= row < q:
        ax.add_patch(Rectangle((-0.5, row - 0.5), k, 1, fill=False, edgecolor=opts.theme.accent, lw=1.2))
    parts = [f"layer {opts.layer}", f"head {opts.head}"] + style.kind_and_filter(trace, opts)
    if block > 1:
        parts.append(f"{block}x{block} block max")
    ax.set_title(style.title_of(trace, "matrix", parts), pad=6)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=ax, shrink=0.7, aspect=30, pad=0.02)
    bar.set_label("attention weight", fontsize=8)
    bar.outline.set_visible(False)
    bar.ax.tick_params(labelsize=7, length=2)


def _segment_rules(ax, trace, opts: Options) -> None:
    """Thin rules where segments meet (sentence A | B, prompt | generated), across and down."""
    query_bounds, key_bounds = boundaries(trace, opts)
    for b in key_bounds:
        ax.axvline(b - 0.5, color=opts.theme.muted, lw=0.8)
    for b in query_bounds:
        ax.axhline(b - 0.5, color=opts.theme.muted, lw=0.8)
