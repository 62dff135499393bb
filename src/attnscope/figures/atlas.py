"""Static atlas view: a corpus atlas's layer x head grid coloured by one metric's statistic over the texts.

``figure("atlas", atlas, metric="previous")`` draws the mean (``stat="p50"``... for a quantile) with the model
view's metric colours; each head's most frequent pattern label is written in its cell when the cells are large
enough. With ``other=`` a second atlas, ``show="delta"`` (the default) draws ``B - A`` on a diverging scale and
numbers the ten heads that moved most; ``show="a"``/``"b"`` draws either atlas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from ..errors import InputError
from . import style
from .model import metric_cmap, metric_norm

#: Abbreviations of the pattern labels written in the cells.
SHORT = {"previous-token": "prev", "next-token": "next", "self": "self", "sink/delimiter": "sink", "broad": "broad",
         "local": "local", "mixed": ""}
MOVED = 10


@dataclass(frozen=True)
class Options:
    metric: str
    stat: str
    show: str
    other: Any  # the Atlas compared with (B), or None
    theme: style.Theme


def resolve(atlas, *, metric=None, stat=None, show=None, other=None, theme=None, prettify=None) -> Options:
    """Check the atlas figure's options (those of :func:`attnscope.views.atlas_view`)."""
    from ..corpus import Atlas
    from ..views.atlas import check

    if not isinstance(atlas, Atlas):
        raise InputError(f"the atlas figure draws an attnscope.corpus.Atlas; got {type(atlas).__name__}. Open one "
                         "with attnscope.corpus.load(ATLAS_DIR)")
    opts = check(atlas, other, {"metric": metric, "stat": stat, "show": show, "theme": theme})
    name = "light" if opts.get("theme", "auto") == "auto" else opts["theme"]
    return Options(opts["metric"], opts["stat"], opts.get("show", "a"), other, style.THEMES[name])


def default_size(atlas, opts: Options) -> tuple[float, float]:
    L, H = atlas.shape
    cell = float(np.clip(9.0 / max(L, H), 0.2, 0.55))
    return float(np.clip(H * cell + 2.4, 4.0, 16.0)), float(np.clip(L * cell + 1.4, 3.0, 16.0))


def values(atlas, opts: Options) -> np.ndarray:
    """``[layers, heads]``: what the grid shows (NaN where the metric does not apply)."""
    a = atlas.grid(opts.metric, opts.stat)
    if opts.show == "a":
        return a
    b = opts.other.grid(opts.metric, opts.stat)
    return b if opts.show == "b" else b - a


def draw(fig, atlas, opts: Options) -> None:
    grid = values(atlas, opts)
    L, H = grid.shape
    ax = fig.add_subplot()
    if opts.show == "delta":
        m = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
        norm, cmap = Normalize(-max(m, 1e-9), max(m, 1e-9)), opts.theme.diverging_cmap()
    else:
        norm, cmap = metric_norm(grid), metric_cmap(opts.theme)
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap.with_extremes(bad=opts.theme.muted), norm=norm, aspect="equal",
              interpolation="nearest")
    ax.set_xticks(range(H), [str(h) for h in range(H)], fontsize=min(8.0, style.token_fontsize(H, 6.0)))
    ax.set_yticks(range(L), [str(la) for la in range(L)], fontsize=min(8.0, style.token_fontsize(L, 6.0)))
    ax.tick_params(length=0, pad=2)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    for side in ax.spines.values():
        side.set_visible(False)
    width_in = fig.get_size_inches()[0]
    if opts.show == "delta":
        _moved(ax, grid, opts)
    elif width_in / H >= 0.45:  # room for a word per cell
        _labels(ax, atlas if opts.show == "a" else opts.other, grid, norm, opts)
    counts = atlas.manifest.get("counts", {})
    what = {"mean": "mean", "p10": "10th percentile", "p50": "median", "p90": "90th percentile"}[opts.stat]
    if opts.show == "delta":
        title = f"{_name(opts.other)} − {_name(atlas)} · {what} {opts.metric}"
    else:
        shown = atlas if opts.show == "a" else opts.other
        n = (shown.manifest.get("counts") or counts).get("measured", 0)
        title = f"{_name(shown)} · atlas · {what} {opts.metric} over {n} texts"
    ax.set_title(title, pad=6)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=ax, shrink=0.7, aspect=30, pad=0.02)
    bar.set_label(("change in " if opts.show == "delta" else "") + opts.metric, fontsize=8)
    bar.outline.set_visible(False)
    bar.ax.tick_params(labelsize=7, length=2)


def _name(atlas) -> str:
    return str(atlas.model).rstrip("/").split("/")[-1]


def _labels(ax, atlas, grid: np.ndarray, norm, opts: Options) -> None:
    """Each head's most frequent label, abbreviated, in a colour that reads on its cell."""
    labels = atlas.summary.sort_values(["layer", "head"])["label"].to_numpy(dtype=object).reshape(grid.shape)
    for (la, h), label in np.ndenumerate(labels):
        text = SHORT.get(label, "") if isinstance(label, str) else ""
        if text:
            dark = np.isfinite(grid[la, h]) and norm(grid[la, h]) > 0.55
            ax.text(h, la, text, ha="center", va="center", fontsize=5.5,
                    color="#ffffff" if dark == (opts.theme.name == "light") else "#000000")


def _moved(ax, grid: np.ndarray, opts: Options) -> None:
    """Number the heads that moved most (largest |B - A|), 1 = most."""
    flat = np.where(np.isfinite(grid), np.abs(grid), -1.0).ravel()
    order = np.argsort(-flat, kind="stable")[:MOVED]
    for rank, i in enumerate(order, 1):
        if flat[i] <= 0:
            break
        la, h = divmod(int(i), grid.shape[1])
        ax.text(h, la, str(rank), ha="center", va="center", fontsize=6, color=opts.theme.text, fontweight="bold")
