"""The view registry: one :class:`ViewSpec` per view, the one place that says what each view is.

Every list of views in attnscope is read from :data:`VIEWS`: the view functions and :func:`attnscope.render`, the
options each view takes (:mod:`attnscope.views.options`), the JavaScript and CSS inlined into its HTML
(:mod:`attnscope.views._html`), its figure module (:mod:`attnscope.figures`), the CLI's ``--view`` choices, the web
app's view routes and selector, and the notebook widget. Adding a view is one Python wrapper (``views/<name>.py``),
one JavaScript file (``web/<name>.js``), one figure module (``figures/<name>.py``) and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..errors import InputError

if TYPE_CHECKING:
    from ..trace import Trace

#: What a view draws: one Trace, two traces (a Comparison), a corpus Atlas, or an Explanation.
Reads = Literal["trace", "pair", "atlas", "explanation"]

#: Options every view of traces takes.
COMMON_OPTIONS = ("kind", "include_layers", "include_heads", "theme", "prettify", "picture")
#: Units and sinks (:mod:`attnscope.views._units`): taken by the views of weights and by the diff view.
UNIT_OPTIONS = ("by", "hide_sinks", "renormalize")
#: The scripts every view of traces loads first (shared drawing code, payload decoding, controls).
_BASE = ("core.js", "decode.js", "recompute.js", "controls.js")


@dataclass(frozen=True)
class ViewSpec:
    """One view: its name and title, what it reads, the options it takes, the files its page inlines and how its
    payload is built.

    ``vectors``: the view draws from query/key vectors (it needs a trace captured with ``qkv=True`` or in the q/k
    form, and its payload carries the vectors, not the weights); ``dtype``: the payload's default precision
    (``"uint8"`` square-root bytes or ``"float16"``); ``thumb_size``: the payload carries the model grid's
    thumbnails, pooled to at most that many pixels a side unless the ``thumb_size`` option says otherwise (None: none);
    ``metrics``: the payload carries head metrics (the model view's frames); ``units``: the page has the Units and
    Hide sinks controls (``web/units.js``). ``options`` is ``None`` for views whose own module checks its options
    (the atlas and disagreement views, which read other inputs than traces).
    """

    name: str
    reads: Reads
    scripts: tuple[str, ...]
    options: tuple[str, ...] | None = None
    styles: tuple[str, ...] = ()
    vectors: bool = False
    dtype: str = "uint8"
    thumb_size: int | None = None
    metrics: bool = False
    units: bool = False

    @property
    def title(self) -> str:
        """``"head view"``: how pages, titles and messages name it."""
        return f"{self.name} view"

    def draws(self, trace: Trace, kind: str | None = None) -> bool:
        """Whether this view can draw ``trace`` (``kind`` attention, or any kind): a view of vectors needs them."""
        if self.reads != "trace":
            return False
        kinds = trace.kinds if kind is None else [kind]
        return not self.vectors or any(has_vectors(trace, k) for k in kinds)


def has_vectors(trace: Trace, kind: str) -> bool:
    """Whether ``kind`` attention of ``trace`` holds its query/key vectors (``qkv=True``, or the q/k form)."""
    return trace.has_qkv(kind) or trace.attention[kind].form == "qk"


_WEIGHTS = ("filter", "dtype", "budget_mb", "exact_layers", *UNIT_OPTIONS)
_HEAD_SCRIPTS = (*_BASE, "window.js", "minimap.js", "head.js")
_MODEL_SCRIPTS = (*_HEAD_SCRIPTS, "fit.js", "model.js", "units.js")

#: Every view, by name (the order menus list them in).
VIEWS: dict[str, ViewSpec] = {s.name: s for s in (
    ViewSpec("head", "trace", (*_HEAD_SCRIPTS, "units.js"), (*COMMON_OPTIONS, "layer", "heads", *_WEIGHTS), units=True),
    ViewSpec("model", "trace", _MODEL_SCRIPTS, (*COMMON_OPTIONS, "thumb_size", "metric", "sort", *_WEIGHTS),
          thumb_size=64, metrics=True, units=True),
    ViewSpec("neuron", "trace", (*_BASE, "window.js", "fit.js", "neuron.js"),
          (*COMMON_OPTIONS, "layer", "head", "query", "hide_sinks"), vectors=True),
    ViewSpec("matrix", "trace", (*_BASE, "minimap.js", "matrix.js", "units.js"),
          (*COMMON_OPTIONS, "layer", "head", "query", *_WEIGHTS), dtype="float16", units=True),
    ViewSpec("diff", "pair", (*_BASE, "diff.js", "units.js"), (*COMMON_OPTIONS, "layer", "head", "top", "dtype", "other",
                                                 *UNIT_OPTIONS), styles=("diff.css",)),
    # the atlas colours its grid with the model view's ramp and opens exemplar texts in the head view
    ViewSpec("atlas", "atlas", (*_MODEL_SCRIPTS, "atlas.js"), styles=("atlas.css",)),
    ViewSpec("disagreement", "explanation", ("core.js", "decode.js", "controls.js", "disagreement.js"),
          styles=("disagreement.css",)),
)}

#: The views of one trace (what ``attnscope render --view``, the web app and the widget offer).
TRACE_VIEWS = tuple(name for name, s in VIEWS.items() if s.reads == "trace")


def spec(name: str, reads: Reads | None = None) -> ViewSpec:
    """The spec of the view ``name`` (of those that read ``reads``, when given); an InputError lists the names."""
    found = VIEWS.get(name) if isinstance(name, str) else None
    if found is None or (reads is not None and found.reads != reads):
        names = [n for n, s in VIEWS.items() if reads is None or s.reads == reads]
        raise InputError(f"unknown view {name!r}; expected one of {', '.join(names)}")
    return found


def views_of(trace: Trace) -> list[str]:
    """The names of the views that can draw ``trace`` (the neuron view only when it holds query/key vectors)."""
    return [name for name in TRACE_VIEWS if VIEWS[name].draws(trace)]
