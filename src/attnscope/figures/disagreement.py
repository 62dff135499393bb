"""Static disagreement view: for one query token, attention, its rollout and each measure as bars over the keys
(titled with their rank correlation with attention), beside the layer x head grid coloured by disagreement.

``figure("disagreement", explanation, layer=5, query=3)`` draws an
:class:`~attnscope.analysis.measures.explain.Explanation` with the options of
:func:`attnscope.views.disagreement_view` (which pick the same defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from ..analysis.measures.explain import ATTENTION, ROLLOUT, Explanation, Series
from ..errors import InputError
from ..tokens import prettify_tokens
from . import style


@dataclass(frozen=True)
class Options:
    layer: int
    query: int
    head: int | None
    measure: str
    rolled: bool
    theme: style.Theme
    prettify: bool


def resolve(explanation, *, layer=None, query=None, head=None, measure=None, rolled=None, theme=None,
            prettify=None) -> Options:
    """Check the options as the HTML view does (same defaults)."""
    from ..views.disagreement import check

    if not isinstance(explanation, Explanation):
        raise InputError(f"the disagreement figure draws an Explanation; got {type(explanation).__name__}. Make one "
                         "with attnscope.analysis.explain(model, text)")
    o = check(explanation, dict(layer=layer, query=query, head=head, measure=measure, rolled=rolled, theme=theme,
                                prettify=prettify))
    name = "light" if o.get("theme", "auto") == "auto" else o["theme"]
    return Options(o["layer"], o["query"], o.get("head"), o["measure"], o["rolled"], style.THEMES[name],
                   o.get("prettify", True))


def shown(e: Explanation, rolled: bool) -> list[Series]:
    """Attention and its rollout, then each measure per layer or (``rolled``) its rollout where it has one."""
    out = []
    for s in e.series.values():
        if s.name in (ATTENTION, ROLLOUT):
            out.append(s)
        elif s.rolled:
            if rolled:
                out.append(s)
        elif not rolled or s.name + "_rollout" not in e.series:
            out.append(s)
    return out


def default_size(e: Explanation, opts: Options) -> tuple[float, float]:
    L, H, n = e.shape
    rows = len(shown(e, opts.rolled))
    return float(np.clip(0.32 * n + 1.5, 5.5, 11.0)) + 4.4, float(np.clip(1.05 * rows + 2.0, 4.5, 14.0))


def draw(fig, e: Explanation, opts: Options) -> None:
    theme = opts.theme
    L, H, n = e.shape
    series = shown(e, opts.rolled)
    labels = prettify_tokens(list(e.tokens)) if opts.prettify else list(e.tokens)
    outer = fig.add_gridspec(1, 2, width_ratios=[3.2, 1.4], wspace=0.25)
    rows = outer[0].subgridspec(len(series), 1, hspace=0.9)
    visible = opts.query + 1 if e.causal else n
    x = np.arange(n)
    colors = style.head_colors(len(e.series) + 1)
    for r, s in enumerate(series):
        ax = fig.add_subplot(rows[r])
        values = s.row(opts.layer, opts.query, opts.head if s.per_head else None).astype(np.float64)
        values[visible:] = 0.0
        ax.axvspan(opts.query - 0.5, opts.query + 0.5, color=theme.gap, alpha=0.45, lw=0)
        color = theme.positive if s.name == ATTENTION else colors[list(e.series).index(s.name) % len(colors)]
        ax.bar(x, values, width=0.8, color=color)
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_ylim(0, max(float(values.max()), 1e-12) * 1.08)
        ax.tick_params(labelsize=6.5, length=2)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        title = s.label
        if s.name != ATTENTION:
            rho = e.correlations(opts.layer, opts.query, opts.head)[s.name]
            title += f"   \u03c1 {rho:.2f} vs attention" if np.isfinite(rho) else "   \u03c1 n/a"
        t = ax.set_title(title, fontsize=7.5, loc="left", pad=3)
        t.set_parse_math(False)
        if r == len(series) - 1:
            width = fig.get_size_inches()[0] * 0.65
            style.token_ticks(ax.xaxis, labels, width, rotation=60)
            for tick, label in zip(ax.get_xticklabels(), ax.get_xticks()):
                if round(label) == opts.query:
                    tick.set_fontweight("bold")
        else:
            ax.set_xticks([])
    right = outer[1].subgridspec(2, 1, height_ratios=[min(len(series), 4), max(len(series) - 4, 1)])
    _grid(fig.add_subplot(right[0]), fig, e, opts)
    head = "mean of heads" if opts.head is None else f"head {opts.head}"
    parts = [f"layer {opts.layer}", head, f"query {opts.query} \u201c{labels[opts.query]}\u201d"]
    fig.suptitle(style.title_of(e.trace, "disagreement view", parts), fontsize=10)


def _grid(ax, fig, e: Explanation, opts: Options) -> None:
    theme = opts.theme
    L, H, _ = e.shape
    d = e.disagreement(opts.measure)
    cmap = theme.heat_cmap().with_extremes(bad=theme.gap)
    ax.imshow(np.ma.masked_invalid(d), cmap=cmap, norm=Normalize(0.0, 1.0), interpolation="none", aspect="equal")
    if opts.head is None:
        box = Rectangle((-0.5, opts.layer - 0.5), H, 1, fill=False, edgecolor=theme.accent, lw=1.5)
    else:
        box = Rectangle((opts.head - 0.5, opts.layer - 0.5), 1, 1, fill=False, edgecolor=theme.accent, lw=1.5)
    ax.add_patch(box)
    ax.set_xlabel("head", fontsize=8)
    ax.set_ylabel("layer", fontsize=8)
    ax.tick_params(labelsize=6.5, length=2)
    t = ax.set_title(f"disagreement with attention:\n{e.series[opts.measure].label}", fontsize=8, pad=4)
    t.set_parse_math(False)
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=ax, shrink=0.8, aspect=20, pad=0.12,
                       orientation="horizontal")
    bar.outline.set_visible(False)
    bar.ax.tick_params(labelsize=6.5, length=2)
    bar.set_label("(1 \u2212 \u03c1) / 2: 0 same ranking, 1 reversed", fontsize=7)
