"""Static diff view: one head of two inputs on aligned tokens (A, B and B - A), the most changed heads, next tokens.

``figure("diff", comparison)`` draws a :class:`~attnscope.analysis.Comparison`; ``figure("diff", trace_a,
other=trace_b)`` compares first. Tokens are the aligned slots of :mod:`attnscope.analysis.compare` (a differing span is
one slot, labelled ``she → he``); A and B share one square-root colour scale, the difference is orange where A
attends more and purple where B does. Below: the heads ranked by Jensen-Shannon divergence (the shown one
highlighted) and, when the comparison holds them, the next-token predictions after each input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import FuncNorm, LinearSegmentedColormap

from ..analysis import Comparison
from ..analysis.compare import aligned_head, ranked_heads
from ..sinks import pair_note
from ..tokens import prettify_tokens
from ..views.diff import check, pair
from ..views.options import given
from . import style
from .style import THEMES, Theme

#: Ends of the difference colour map (ColorBrewer PuOr): A attends more, B attends more.
DIFF_INK = {"light": ("#e66101", "#5e3c99"), "dark": ("#fdb863", "#b2abd2")}
#: Orange of the labels of differing slots.
CHANGED = {"light": "#bc4c00", "dark": "#f0883e"}


@dataclass(frozen=True)
class DiffOptions:
    """Resolved options of the diff figure: the comparison, the head shown, the ranked heads listed."""

    comparison: Comparison
    layer: int
    head: int
    ranked: list[tuple[int, int]]
    theme: Theme
    prettify: bool


def resolve(trace, *, other=None, kind=None, **options) -> DiffOptions:
    """Check the options as the HTML diff view does (:func:`attnscope.views.diff.check`); ``dtype`` and
    ``picture`` (of the HTML page) have no effect on a figure."""
    comparison = pair(trace, other, kind)
    opts = check(comparison, given("diff", options))
    ranked = ranked_heads(comparison, opts["include_layers"], opts["include_heads"], opts["top"])
    theme = opts.get("theme", "auto")
    return DiffOptions(comparison, opts["layer"], opts["head"], ranked, THEMES["light" if theme == "auto" else theme],
                       opts.get("prettify", True))


def default_size(trace, opts: DiffOptions) -> tuple[float, float]:
    side, bottom = _heights(opts)
    return 3 * side + 2.6, side + 1.6 + bottom


def _heights(opts: DiffOptions) -> tuple[float, float]:
    """Inches of one heatmap's side and of the bottom row (ranked heads, next tokens) at the default size."""
    c = opts.comparison
    n = max(len(c.query_alignment.slots), len(c.key_alignment.slots))
    bottom = float(np.clip(0.2 * len(opts.ranked) + 0.9, 1.6, 4.0))
    if c.next_a is not None:
        bottom = max(bottom, 0.2 * len(c.next_a) + 1.0)
    return float(np.clip(0.17 * n + 1.0, 2.4, 4.6)), bottom


def draw(fig, trace, opts: DiffOptions) -> None:
    c, theme = opts.comparison, opts.theme
    shown = prettify_tokens if opts.prettify else list
    q_labels, k_labels = c.query_alignment.slot_labels(shown), c.key_alignment.slot_labels(shown)
    a = aligned_head(c, "a", opts.layer, opts.head).astype(np.float64)
    b = aligned_head(c, "b", opts.layer, opts.head).astype(np.float64)
    has_a, has_b = c.query_alignment.present("a"), c.query_alignment.present("b")
    a[~has_a], b[~has_b] = np.nan, np.nan
    delta = b - a
    width, height = fig.get_size_inches()
    bottom_in = height * _heights(opts)[1] / default_size(trace, opts)[1]
    gs = fig.add_gridspec(2, 3, height_ratios=[max(height - bottom_in, 1.0), bottom_in])
    heat = theme.heat_cmap().with_extremes(bad=theme.gap)
    vmax = float(np.nanmax(np.r_[a.ravel(), b.ravel(), 1e-12]))
    m = float(np.nanmax(np.r_[np.abs(delta).ravel(), 1e-12]))
    neg, pos = DIFF_INK[theme.name]
    diverging = LinearSegmentedColormap.from_list(f"attnscope-diff-{theme.name}",
                                                  [neg, theme.background, pos]).with_extremes(bad=theme.gap)
    sqrt_norm = FuncNorm((lambda x: np.sign(x) * np.sqrt(np.abs(x)), lambda y: np.sign(y) * y * y), vmin=-m, vmax=m)
    panels = [("A", a, heat, style.heat_norm(vmax)), ("B", b, heat, style.heat_norm(vmax)),
              ("B \u2212 A", delta, diverging, sqrt_norm)]
    changed_q = [not s.shared for s in c.query_alignment.slots]
    changed_k = [not s.shared for s in c.key_alignment.slots]
    axes = []
    for i, (name, image, cmap, norm) in enumerate(panels):
        ax = fig.add_subplot(gs[0, i])
        ax.imshow(np.ma.masked_invalid(image), cmap=cmap, norm=norm, interpolation="none", aspect="equal")
        for spine in ax.spines.values():
            spine.set_visible(False)
        side = min(width / 3 - 0.9, height - bottom_in - 1.4)
        style.token_ticks(ax.xaxis, k_labels, side, rotation=90)
        _mark_changed(ax.xaxis, changed_k, CHANGED[theme.name])
        if i == 0:
            style.token_ticks(ax.yaxis, q_labels, side)
            _mark_changed(ax.yaxis, changed_q, CHANGED[theme.name])
        else:
            ax.set_yticks([])
        ax.set_title(name, fontsize=9, pad=4)
        axes.append(ax)
    for group, (_, _, cmap, norm), label in ((axes[:2], panels[0], "attention weight"),
                                             (axes[2:], panels[2], "B \u2212 A (orange: A more)")):
        bar = fig.colorbar(ScalarMappable(norm, cmap), ax=group, shrink=0.8, aspect=25, pad=0.02)
        bar.outline.set_visible(False)
        bar.ax.tick_params(labelsize=7, length=2)
        bar.set_label(label, fontsize=8)
    has_next = c.next_a is not None and c.next_b is not None
    _ranked_bars(fig.add_subplot(gs[1, :2] if has_next else gs[1, :]), opts)
    if has_next:
        _next_table(fig.add_subplot(gs[1, 2]), c, opts)
    parts = [f"layer {opts.layer}", f"head {opts.head}", f"JS {c.divergence[opts.layer, opts.head]:.3f} bits"]
    if len(c.trace_a.kinds) > 1:
        parts.append(c.kind)
    fig.suptitle(style.title_of(c.trace_a, "diff view", parts), fontsize=10)
    note = pair_note(c.trace_a, c.trace_b, opts.layer, opts.head, c.kind)
    if note:  # what the hidden sinks held in each input, under the figure
        fig.text(0.01, 0.004, note, fontsize=7, color=theme.muted, va="bottom")


def _mark_changed(axis, changed: list[bool], color: str) -> None:
    """Colour the tick labels of differing slots."""
    for loc, text in zip(axis.get_ticklocs(), axis.get_ticklabels()):
        if changed[round(loc)]:
            text.set_color(color)
            text.set_fontweight("bold")


def _ranked_bars(ax, opts: DiffOptions) -> None:
    c, theme = opts.comparison, opts.theme
    names = [f"L{la} H{h}" for la, h in opts.ranked]
    values = [float(c.divergence[la, h]) for la, h in opts.ranked]
    colors = [theme.accent if (la, h) == (opts.layer, opts.head) else theme.positive for la, h in opts.ranked]
    y = np.arange(len(values))
    ax.barh(y, values, color=colors, height=0.7)
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    for t in ax.get_yticklabels():
        t.set_parse_math(False)
    top = max(values, default=0.0)
    for yi, v in zip(y, values):
        ax.text(v + top * 0.01, yi, f"{v:.3f}", va="center", fontsize=6.5, color=theme.text)
    ax.set_xlim(0, max(top * 1.15, 1e-6))
    ax.set_xlabel("Jensen-Shannon divergence (bits)", fontsize=8)
    ax.set_title(f"most changed heads (top {len(values)})", fontsize=9, pad=4)
    ax.tick_params(labelsize=7, length=2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _next_table(ax, c: Comparison, opts: DiffOptions) -> None:
    theme = opts.theme
    ax.axis("off")
    shown = prettify_tokens if opts.prettify else list
    next_a, next_b = c.next_a or (), c.next_b or ()  # both given (the caller checked)
    a_tok, b_tok = shown([t.token for t in next_a]), shown([t.token for t in next_b])
    rows = [[ta, f"{x.prob:.3f}", tb, f"{y.prob:.3f}"] for ta, tb, x, y in zip(a_tok, b_tok, next_a, next_b)]
    table = ax.table(cellText=rows, colLabels=["after A", "p", "after B", "p"], loc="upper center",
                     cellLoc="right", colLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    for (r, _), cell in table.get_celld().items():
        cell.set_edgecolor(theme.gap)
        cell.set_facecolor(theme.background)
        cell.get_text().set_color(theme.muted if r == 0 else theme.text)
        cell.get_text().set_parse_math(False)
    ax.set_title("next-token predictions", fontsize=9, pad=4)
