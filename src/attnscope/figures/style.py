"""Look and layout shared by every figure: themes, colour maps, rc settings, token labels.

All matplotlib settings live here and are applied with :func:`rc_context` around building and saving a figure,
so the caller's global ``rcParams`` are never read or changed: the same trace and options give the same bytes on
any machine with the same matplotlib.
"""

from __future__ import annotations

import colorsys
import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap, PowerNorm, to_rgba
from matplotlib.figure import Figure


@dataclass(frozen=True)
class Theme:
    """Colours of one theme. ``positive``/``negative`` colour q/k vector values (blue / orange)."""

    name: str
    background: str
    text: str
    muted: str  # secondary text, separators
    gap: str  # the gaps between heatmap cells
    heat: tuple[str, ...]  # sequential colour ramp of attention weight, from 0 to max
    positive: str
    negative: str
    accent: str  # highlighted query row, softmax bars

    def heat_cmap(self) -> LinearSegmentedColormap:
        return LinearSegmentedColormap.from_list(f"attnscope-heat-{self.name}", self.heat)

    def diverging_cmap(self) -> LinearSegmentedColormap:
        """Negative (orange) -> background -> positive (blue), for q/k vectors and their products."""
        return LinearSegmentedColormap.from_list(
            f"attnscope-div-{self.name}", [self.negative, self.background, self.positive]
        )


THEMES: dict[str, Theme] = {
    "light": Theme(
        name="light", background="#ffffff", text="#1f2328", muted="#8c959f", gap="#d0d7de",
        heat=("#ffffff", "#c6dbef", "#6baed6", "#2171b5", "#08306b"),
        positive="#1f77b4", negative="#ff7f0e", accent="#d62728",
    ),
    "dark": Theme(
        name="dark", background="#0d1117", text="#e6edf3", muted="#7d8590", gap="#30363d",
        heat=("#0d1117", "#1d3f6e", "#2f7ec9", "#8cc8ff", "#f0f8ff"),
        positive="#58a6ff", negative="#f0883e", accent="#ff7b72",
    ),
}

#: sqrt colour scale: structure in small weights stays visible without hiding the large ones.
GAMMA = 0.5
FONT = "DejaVu Sans"  # ships with matplotlib, so output does not depend on the fonts installed
TOKEN_FONT_MAX, TOKEN_FONT_MIN = 9.0, 5.5  # points


def rc_params(theme: Theme) -> dict:
    """Local matplotlib settings: text stays text in SVG/PDF, deterministic SVG ids, theme colours."""
    return {
        "svg.fonttype": "none",
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "svg.hashsalt": "attnscope",
        "svg.image_inline": True,
        "font.family": "sans-serif",
        "font.sans-serif": [FONT],
        "font.size": 9.0,
        "text.usetex": False,
        "text.color": theme.text,
        "axes.labelcolor": theme.text,
        "axes.edgecolor": theme.muted,
        "axes.facecolor": theme.background,
        "axes.titlesize": 10.0,
        "axes.titlecolor": theme.text,
        "xtick.color": theme.muted,
        "ytick.color": theme.muted,
        "xtick.labelcolor": theme.text,
        "ytick.labelcolor": theme.text,
        "figure.facecolor": theme.background,
        "savefig.facecolor": theme.background,
        "legend.frameon": False,
        "legend.labelcolor": theme.text,
        "image.interpolation": "nearest",
        "path.simplify": False,
    }


@contextlib.contextmanager
def rc_context(theme: Theme) -> Iterator[None]:
    """Apply :func:`rc_params` for the duration (the global rcParams are restored afterwards)."""
    with matplotlib.rc_context(rc_params(theme)):
        yield


def new_figure(size: tuple[float, float], dpi: float) -> Figure:
    """A Figure with an Agg canvas and constrained layout, made without pyplot (no global figure registry)."""
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def heat_norm(vmax: float = 1.0) -> PowerNorm:
    return PowerNorm(GAMMA, vmin=0.0, vmax=max(float(vmax), 1e-12))


def head_colors(n: int) -> list[tuple[float, float, float, float]]:
    """One distinct colour per head: d3's category10 up to 10 heads, evenly spaced hues beyond."""
    if n <= 10:
        return [to_rgba(matplotlib.colormaps["tab10"](i)) for i in range(n)]
    return [(*colorsys.hsv_to_rgb(i / n, 0.72, 0.88), 1.0) for i in range(n)]


# --------------------------------------------------------------------------- token labels
def token_fontsize(n: int, length_in: float) -> float:
    """Largest font (points) up to 9 pt at which ``n`` labels fit along ``length_in`` inches, at least 5.5 pt."""
    fit = length_in * 72.0 / max(n, 1) / 1.15
    return float(np.clip(fit, TOKEN_FONT_MIN, TOKEN_FONT_MAX))


def thin(n: int, length_in: float, fontsize: float) -> list[int]:
    """Indices of the labels to draw so that none overlap: all of them, or every ``step``-th one."""
    capacity = max(1, int(length_in * 72.0 / (fontsize * 1.15)))
    step = max(1, math.ceil(n / capacity))
    return list(range(0, n, step))


def token_ticks(axis, labels: Sequence[str], length_in: float, *, rotation: float = 0.0,
                positions: np.ndarray | None = None) -> None:
    """Put token labels on an x/y axis, thinned to fit ``length_in`` inches, as plain text.

    Token ``i`` sits at ``positions[i]`` (default: at ``i``, as in a heatmap).
    """
    fs = token_fontsize(len(labels), length_in)
    idx = thin(len(labels), length_in, fs)
    at = [float(positions[i]) for i in idx] if positions is not None else idx
    axis.set_ticks(at, [labels[i] for i in idx], fontsize=fs, rotation=rotation)
    for text in axis.get_ticklabels():
        text.set_parse_math(False)  # a token such as "$x$" must not become mathtext
    axis.set_tick_params(length=0, pad=2)


def title_of(trace, view: str, parts: Sequence[str]) -> str:
    """``"minilm · head view · layer 2"``: the model (if known, without its hub owner), the view and the parts."""
    model = str(trace.meta.get("model") or "").rstrip("/").split("/")[-1]
    return " · ".join([model] * bool(model) + [view] + list(parts))


def kind_and_filter(trace, opts) -> list[str]:
    """Title parts naming the attention kind (when the trace has several) and the segment filter (when cropped)."""
    parts = [opts.kind] if len(trace.kinds) > 1 else []
    if opts.cropped:
        parts.append(opts.filter.replace("->", " → "))
    return parts
