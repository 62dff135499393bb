"""The View object every view function returns: it displays itself in notebooks and saves itself to files."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._files import atomic_write
from ..encode import BUDGET_MB, encode, script_json
from ..errors import InputError
from ..text import clean_text
from ..trace import Trace
from . import _html
from ._units import merge_units, sinks_payload, trace_for, units_payload
from .options import js_options, metrics_wanted, resolve
from .picture import Picture
from .picture import picture as picture_of
from .registry import has_vectors, spec

_FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
_HTML_SUFFIXES = (".html", ".htm")


class View:
    """One interactive view of a :class:`~attnscope.Trace`.

    In a notebook it displays itself (``_repr_mimebundle_``: the HTML view, its static picture as ``image/png``
    and a text line); ``html()`` gives a standalone document that opens from disk without any network;
    ``save("x.html")`` writes that document and ``save("x.png")`` (``.svg``, ``.pdf``) a static figure through
    :func:`attnscope.figures.save_figure`. The HTML carries a picture of the view's initial state, shown where
    scripts do not run (GitHub, untrusted notebooks, sanitizers, e-mail); ``picture=False`` leaves it out.
    """

    _picture: Picture | None = None  # built on first use

    def __init__(self, name: str, trace: Trace, options: dict[str, Any]):
        self.name = name
        self.trace = trace
        self.options = resolve(name, trace, options)
        self._payload: dict[str, Any] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        """The encoded data the JavaScript reads (built once, on first use)."""
        if self._payload is None:
            self._payload = _build_payload(self.name, self.trace, self.options)
        return self._payload

    def data(self) -> dict[str, Any]:
        """What the page's JSON block holds: view name, JavaScript options (camelCase) and payload."""
        return {"view": self.name, "options": js_options(self.options), "payload": self.payload}

    def picture(self) -> Picture | None:
        """The static picture of the view's initial state (None with ``picture=False``; built once)."""
        if self.options.get("picture", True) is False:
            return None
        if self._picture is None:
            self._picture = picture_of(self)
        return self._picture

    def _repr_html_(self) -> str:
        return self.fragment()

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict[str, str], dict[str, Any]]:
        """Notebook output: the HTML view, its picture as ``image/png`` (for front ends and exporters that show no
        HTML), and a text line."""
        data, meta = {"text/html": self.fragment(), "text/plain": repr(self)}, {}
        pic = self.picture()
        if pic is not None:
            data["image/png"] = base64.b64encode(pic.png).decode("ascii")
            meta["image/png"] = {"width": pic.width, "height": pic.height}
        return data, meta

    def fragment(self, *, id: str | None = None) -> str:
        """The HTML to embed in a page of your own (as shown in notebooks); ``id`` pins the element id."""
        return _html.fragment(self.name, self.data(), id=id, picture=self.picture())

    def html(self, *, id: str | None = None) -> str:
        """A standalone HTML document holding this view; ``id`` pins the element id (for snapshot tests).

        Lone surrogates in the model name become U+FFFD in the page title (no UTF-8 page can hold them); in
        tokens and metadata they travel as JSON ``\\ud800`` escapes, which the page shows as U+FFFD.
        """
        model = clean_text(str(self.trace.meta.get("model") or "attention"))
        return _html.document(self.name, self.data(), title=f"{model} · {spec(self.name).title} · attnscope", id=id,
                              picture=self.picture())

    def save(self, path: str | Path, **figure_options: Any) -> Path:
        """Write ``.html``/``.htm`` (interactive) or ``.png``/``.svg``/``.pdf`` (a figure; extra keywords such as
        ``dpi`` go to :func:`attnscope.figures.save_figure`). The file appears whole or not at all: if building or
        writing fails, a file already at ``path`` stays as it was."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in _HTML_SUFFIXES:
            if figure_options:
                raise InputError(f"{sorted(figure_options)} only apply to figures (.png/.svg/.pdf), not {suffix}")
            return atomic_write(path, self.html())
        if suffix in _FIGURE_SUFFIXES:
            from ..figures import save_figure

            return save_figure(self.name, self.figure_input(), path, **{**self.options, **figure_options})
        raise InputError(
            f"cannot save a view as {path.name!r}; use .html (interactive) or .png, .svg, .pdf (figure)"
        )

    def figure_input(self) -> Any:
        """What this view's figure draws: the trace (a Comparison for the diff view)."""
        return self.trace

    def __repr__(self) -> str:
        L, H, q, k = self.trace.shape(self.options.get("kind"))
        model = self.trace.meta.get("model", "trace")
        return f"<attnscope {spec(self.name).title}: {model}, {L} layers x {H} heads, {q}x{k} tokens>"


def _build_payload(name: str, trace: Trace, opts: Mapping[str, Any]) -> dict[str, Any]:
    view = spec(name)
    common: dict[str, Any] = {"include_layers": opts.get("include_layers"), "include_heads": opts.get("include_heads")}
    if view.vectors:  # q/k only: the view recomputes the weights (the resolver made sure they exist)
        kinds = [k for k in trace.kinds if has_vectors(trace, k)]
        if any(trace.attention[k].form == "qk" for k in kinds):  # the "qk" form holds the vectors (and each LSE)
            vectors = encode(trace, kinds=kinds, qkv=any(trace.has_qkv(k) for k in kinds), recompute=True, **common)
        else:
            vectors = encode(trace, kinds=kinds, attention=False, qkv=True, **common)
        vectors["sinks"] = sinks_payload(trace, opts)  # the keys its Hide sinks leaves out (views/_units.py)
        return vectors
    dtype = opts.get("dtype", view.dtype)
    thumb = opts.get("thumb_size", view.thumb_size) if view.thumb_size else None
    trace = trace_for(name, trace, opts)  # by= / hide_sinks= of a long q/k trace are applied here (views/_units.py)
    units = units_payload(trace, opts)  # what the Units and Hide sinks controls need (web/units.js), in the budget
    budget = opts.get("budget_mb", BUDGET_MB)
    if units is not None and len(script_json(units)) > budget * 1e6 / 4:
        units = None  # spans and labels would crowd out the weights: no controls
    budget -= len(script_json(units)) / 1e6 if units is not None else 0.0
    payload = encode(trace, dtype=dtype, thumb_size=thumb, metrics=metrics_wanted(name, opts), budget_mb=budget,
                     exact_layers=opts.get("exact_layers"), **common)
    merge_units(payload, units)
    return payload
