"""The views' ``by``, ``hide_sinks`` and ``renormalize`` options, and what their Units and Hide sinks controls need.

The views of weights (head, model, matrix) draw words, sentences or paragraphs and hide sinks in the browser
(``web/units.js``), from the token-level weights they carry: the options set the controls' first state, and
:func:`units_payload` makes (and :func:`merge_units` puts in the payload, within its size budget) under
``payload["units"]``:

- ``levels``: the unit levels offered besides tokens (each that differs from the level below it);
- ``streams[stream][level]``: ``{"spans": [[start, end], ...], "labels": [...]}`` (:mod:`attnscope.units`), and
  ``"apart"`` (the same with each sink token a unit of its own) where that differs;
- ``sinks``: ``{"positions": {stream: [...]}, "labels": [...]}``: the tokens "Hide sinks" leaves out;

and per kind ``sinkHeld[layer][head]`` (the share those tokens held, :func:`attnscope.sinks.held_share`) and, for a
learned sink, ``learned[layer][head]`` (each row's ``1 - row sum``, base64 sqrt8 bytes). A trace in the q/k form
past the dense limit carries no weights to sum in the browser: its options are applied here
(:func:`attnscope.sinks.shown_trace`) and the view draws that trace without the controls.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..aggregate import split_apart, unit_labels
from ..encode import DENSE_MAX, quantize
from ..errors import InputError
from ..sinks import LEARNED_MIN, WHICH, held_share, learned_share, row_totals, shown_trace, sink_labels, sink_positions
from ..trace import Trace
from ..units import LEVELS, unit_spans
from .registry import UNIT_OPTIONS, VIEWS

#: The views that draw weights and have the Units and Hide sinks controls (the registry's ``units=True``).
UNIT_VIEWS = tuple(name for name, spec in VIEWS.items() if spec.units)
BY = ("token", *LEVELS)


def check_units(opts: dict[str, Any]) -> None:
    """Validate :data:`UNIT_OPTIONS` in a view's (None-free) options, in place."""
    by = opts.get("by")
    if by is not None and by not in BY:
        raise InputError(f"by must be one of {list(BY)}; got {by!r}")
    hide = opts.get("hide_sinks")
    if hide is not None and not (isinstance(hide, bool) or hide in WHICH or (
            isinstance(hide, (list, tuple)) and all(isinstance(x, (int, str)) for x in hide))):
        raise InputError(f"hide_sinks must be True, False, one of {list(WHICH)}, or a list of token positions and "
                         f"strings; got {hide!r}")
    if "renormalize" in opts:
        opts["renormalize"] = bool(opts["renormalize"])
        if opts["renormalize"] and not opts.get("hide_sinks"):
            raise InputError("renormalize=True spreads what hidden sinks held over the rest of each row; pass "
                             "hide_sinks=True (or the tokens to hide) with it")


def browser_side(trace: Trace) -> bool:
    """Whether the browser can sum this trace's weights itself: it travels dense or pruned (not q/k only)."""
    att = trace.attention.values()
    weights = sum(a.shape[0] * a.shape[1] * a.shape[2] * a.shape[3] for a in att)
    return not any(a.form == "qk" for a in att) or weights <= DENSE_MAX


def trace_for(name: str, trace: Trace, opts: Mapping[str, Any]) -> Trace:
    """The trace the payload of view ``name`` is built from: ``trace`` (the browser applies the options), or for
    a long q/k trace the options applied here."""
    if name not in UNIT_VIEWS or browser_side(trace):
        return trace
    hide = opts.get("hide_sinks")
    return shown_trace(trace, by=opts.get("by") or "token", hide_sinks=hide, renormalize=opts.get("renormalize", False))


def units_payload(trace: Trace, opts: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"units": ..., "kinds": {kind: {"sinkHeld", "learned"}}}``: what :func:`merge_units` adds to the payload of
    ``trace`` (module docstring), for the layers and heads the options include; None when the browser cannot use it
    (a long q/k trace, or one already aggregated or without its sinks)."""
    if "units" in trace.meta or "hidden_sinks" in trace.meta or not browser_side(trace):
        return None
    hide = opts.get("hide_sinks")
    positions = sink_positions(trace, "auto" if hide in (None, True, False) else hide)
    streams: dict[str, dict[str, Any]] = {s: {} for s in trace.tokens}
    levels = []
    previous = {s: [(i, i + 1) for i in range(len(t))] for s, t in trace.tokens.items()}
    for level in LEVELS:
        spans = {s: unit_spans(trace, s, level) for s in streams}
        if all(spans[s] == previous[s] for s in streams):
            continue  # the same units as the level below (every word one token; one sentence a paragraph)
        levels.append(level)
        for stream, mine in spans.items():
            entry: dict[str, Any] = {"spans": [list(p) for p in mine], "labels": unit_labels(trace, stream, mine)}
            apart = split_apart(mine, positions.get(stream, ()))
            if apart != mine:
                entry["apart"] = {"spans": [list(p) for p in apart], "labels": unit_labels(trace, stream, apart)}
            streams[stream][level] = entry
        previous = spans
    labels = [name for s, p in positions.items() for name in sink_labels(trace.tokens[s], p)]
    units = {"levels": levels, "streams": streams,
             "sinks": {"positions": positions, "labels": list(dict.fromkeys(labels))} if labels else None}
    kinds: dict[str, dict[str, Any]] = {}
    for kind in trace.kinds:
        att = trace.attention[kind]
        L, H = att.shape[:2]
        layers = list(opts.get("include_layers") or range(L))
        heads = list(opts.get("include_heads") or range(H))
        held = held_share(trace, positions, kind)
        kinds[kind] = {"sinkHeld": [[round(float(held[layer, h]), 6) for h in heads] for layer in layers]}
        if learned_share(trace, kind).max(initial=0.0) > LEARNED_MIN:
            kinds[kind]["learned"] = [[_b64(quantize(np.clip(1.0 - row_totals(att, layer, h), 0.0, 1.0), "sqrt8"))
                                       for h in heads] for layer in layers]
    return {"units": units, "kinds": kinds}


def sinks_payload(trace: Trace, opts: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{"positions": {stream: [...]}, "labels": [...]}``: the keys the neuron view's Hide sinks leaves out of one
    query's softmax (the view sums what they held from the weights it computes); None when there are none."""
    hide = opts.get("hide_sinks")
    positions = sink_positions(trace, "auto" if hide in (None, True, False) else hide)
    labels = [name for s, p in positions.items() for name in sink_labels(trace.tokens[s], p)]
    return {"positions": positions, "labels": list(dict.fromkeys(labels))} if labels else None


def merge_units(payload: dict[str, Any], extra: dict[str, Any] | None) -> None:
    """Put :func:`units_payload`'s entries into a view's payload."""
    if extra is None:
        return
    payload["units"] = extra["units"]
    for kind, spec in payload["kinds"].items():
        spec.update(extra["kinds"].get(kind, {}))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def figure_input(trace, options: dict[str, Any], view: str | None = None) -> tuple[Any, dict[str, Any]]:
    """A figure's trace (and ``other=``) with :data:`UNIT_OPTIONS` applied (:func:`attnscope.sinks.shown_trace`),
    and the options without them: figures draw what the view's first state shows. A figure of vectors (the neuron
    view's) keeps every key and ``hide_sinks=``, and greys the sink keys itself (:mod:`attnscope.figures.neuron`)."""
    mine = {k: options[k] for k in UNIT_OPTIONS if options.get(k) is not None}
    rest = {k: v for k, v in options.items() if k not in UNIT_OPTIONS}
    if not mine:
        return trace, rest
    check_units(mine)
    if view is not None and VIEWS[view].vectors:
        return trace, options
    if not isinstance(trace, Trace):
        raise InputError(f"by=, hide_sinks= and renormalize= apply to traces; this figure draws a "
                         f"{type(trace).__name__}: compare the shown traces instead (attnscope.sinks.shown_trace)")
    if isinstance(rest.get("other"), Trace):
        rest["other"] = shown_trace(rest["other"], **mine)
    return shown_trace(trace, **mine), rest


def figure_note(trace, view: str, layer: int | None, head: int | None, kind: str | None) -> str:
    """The line a figure adds under a trace whose sinks are hidden (:func:`attnscope.sinks.trace_note`)."""
    from ..sinks import trace_note

    if not isinstance(trace, Trace) or "hidden_sinks" not in trace.meta or view == "diff":
        return ""  # the diff figure says what each input's sinks held itself (attnscope.sinks.pair_note)
    if view == "matrix":
        return trace_note(trace, layer, head, kind)
    return trace_note(trace, layer if view == "head" else None, None, kind)
