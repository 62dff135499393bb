"""Publication figures: static PNG / SVG / PDF versions of the views, drawn with matplotlib.

>>> fig = figure("model", trace, theme="dark")           # a matplotlib Figure, to adjust or embed
>>> save_figure("head", trace, "head.svg", layer=2)      # the format follows the suffix

Views: ``"head"`` (token columns joined by lines, one colour per head), ``"model"`` (layers x heads grid of
heatmaps), ``"neuron"`` (query/key vectors, q·k and softmax for one query token; needs a trace captured with
``qkv=True``) and ``"matrix"`` (one head's heatmap with token labels); and of two traces, ``"diff"`` (pass a
:class:`~attnscope.analysis.Comparison`, or the first trace and ``other=`` the second). Options are those of the HTML views:
``kind, layer, heads, include_layers, include_heads, query, head, filter ("A->B"), theme ("light"|"dark"),
prettify, thumb_size`` (which view takes which: :data:`VIEW_OPTIONS`).

Figures never touch pyplot or the global rcParams. Text stays text in SVG and PDF (searchable, editable), and the
output is deterministic: the same trace and options give the same SVG bytes. ``figure()`` builds under the
package's settings; save with :func:`save_figure` (or inside :func:`attnscope.figures.style.rc_context`) to keep
the text-as-text and determinism settings when writing the file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from .._files import atomic_write
from ..errors import InputError
from ..text import clean_text
from ..views import _units as units
from ..views.options import VIEW_OPTIONS
from ..views.registry import VIEWS as REGISTRY
from ..views.registry import Reads, spec

# _matplotlib first: without matplotlib installed, importing it raises the error that names the [figures] extra
from . import _matplotlib, style  # noqa: F401
from .options import resolve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


def _modules(reads: Reads) -> dict:
    """The figure module of each registered view that reads ``reads`` (``figures/<view>.py``)."""
    return {name: import_module(f".{name}", __name__) for name, s in REGISTRY.items() if s.reads == reads}


#: Views of one trace: name -> figure module.
VIEWS = _modules("trace")
#: Views of two traces: ``trace`` is a Comparison, or the first Trace with the second as ``other=``.
PAIR_VIEWS = _modules("pair")
#: Views of a corpus atlas (``attnscope.corpus.Atlas``, ``other=`` a second one); their options are their own.
ATLAS_VIEWS = _modules("atlas")
#: Views of an Explanation (``attnscope.analysis.explain``): attention beside context-mixing measures.
EXPLAIN_VIEWS = _modules("explanation")
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
#: metadata that would otherwise carry the time of writing (the rest is fixed by matplotlib's version)
_STABLE_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}, "png": {}}

__all__ = ["ATLAS_VIEWS", "EXPLAIN_VIEWS", "FORMATS", "PAIR_VIEWS", "VIEWS", "VIEW_OPTIONS", "figure", "save_figure"]


def figure(view: str, trace, *, size: Sequence[float] | None = None, dpi: float = 150, **options) -> Figure:
    """Draw ``view`` of ``trace`` as a matplotlib Figure of ``size`` (width, height) inches.

    ``size=None`` picks a size from the number of tokens, layers and heads. ``dpi`` sets the pixel density that
    PNG output and thumbnail resolution use. See the module docstring for the views and options.
    """
    module = import_module(f".{spec(view).name}", __name__)
    own = spec(view).options is None  # views of other inputs than traces (atlas, explanation) check their own options
    if not own:  # by= / hide_sinks= / renormalize=: the trace the view's first state shows (views/_units.py)
        trace, options = units.figure_input(trace, options, view)
    opts = module.resolve(trace, **options) if own else resolve(view, trace, **options)
    size = _size(size) if size is not None else module.default_size(trace, opts)
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not 10 <= dpi <= 2400:
        raise InputError(f"dpi must be a number between 10 and 2400; got {dpi!r}")
    with style.rc_context(opts.theme):
        fig = style.new_figure(size, float(dpi))
        module.draw(fig, trace, opts)
        note = units.figure_note(trace, view, getattr(opts, "layer", None), getattr(opts, "head", None),
                                 getattr(opts, "kind", None))
        if note:  # what the hidden sinks held, under the figure
            fig.text(0.01, 0.004, note, fontsize=7, color=opts.theme.muted, va="bottom")
    _encodable_text(fig)
    return fig


def save_figure(view: str, trace, path: str | Path, *, dpi: float = 150, size: Sequence[float] | None = None,
                **options) -> Path:
    """Draw ``view`` of ``trace`` and write it to ``path``; the suffix picks the format (.png, .svg or .pdf).

    Returns the path written. PNG images are ``size * dpi`` pixels; SVG and PDF keep text as text. The file
    appears whole or not at all: if drawing or writing fails, a file already at ``path`` stays as it was.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"cannot write a figure as {path.suffix or 'a file without suffix'!r} ({str(path)!r}); "
            f"use one of {', '.join(FORMATS)} (or .html through attnscope.views)"
        )
    fig = figure(view, trace, size=size, dpi=dpi, **options)
    with style.rc_context(style.THEMES.get(options.get("theme") or "light", style.THEMES["light"])):
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, metadata=_STABLE_METADATA[fmt]))
    log.debug("wrote %s figure to %s", view, path)
    return path


def _encodable_text(fig: Figure) -> None:
    """Put U+FFFD in place of lone surrogates in every text of ``fig`` (tokens or metadata made outside attnscope
    may hold them; no font and no SVG or PDF file can), so the figure always saves."""
    from matplotlib.text import Text
    from matplotlib.ticker import FixedFormatter, FuncFormatter

    for text in fig.findobj(Text):
        text.set_text(clean_text(text.get_text()))
    for ax in fig.axes:  # tick labels take their text from the axis' formatter again at each draw
        for formatter in (ax.xaxis.get_major_formatter(), ax.yaxis.get_major_formatter(),
                          ax.xaxis.get_minor_formatter(), ax.yaxis.get_minor_formatter()):
            if isinstance(formatter, FixedFormatter):
                formatter.seq = [clean_text(str(label)) for label in formatter.seq]
            elif isinstance(formatter, FuncFormatter):
                def relabel(x, pos, label=formatter.func) -> str:
                    return clean_text(str(label(x, pos)))

                formatter.func = relabel


def _size(size) -> tuple[float, float]:
    try:
        w, h = (float(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"size must be (width, height) in inches; got {size!r}") from None
    if not (0.5 <= w <= 100 and 0.5 <= h <= 100):
        raise InputError(f"size must be between 0.5 and 100 inches per side; got {size!r}")
    return w, h
