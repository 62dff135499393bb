"""The diff view's Units and Hide sinks controls: both inputs compared at every state the controls offer.

The other views of weights sum words and hide sinks in the browser from the token weights they carry
(``web/units.js``). The diff view cannot: a state changes which tokens line up (``She`` and ``He`` are one slot of
tokens, one slot of words, and at the sentence level the whole sentence differs) and every head's divergence, so
each state is a comparison of its own, made here with :func:`attnscope.sinks.shown_trace` on both traces and
:func:`attnscope.analysis.compare`. :func:`diff_units` puts under ``payload["units"]``:

- ``levels``: the unit levels offered besides tokens (each that differs from the level below it in A or in B and
  still lines up: two inputs that differ in their only sentence share no sentence to compare);
- ``state``: the state of the payload around it, ``"LEVEL|HIDE|RENORM"`` (``"word|1|0"``: words, sinks hidden, rows
  not renormalised);
- ``variants``: ``{state: diff payload}`` for the other states, as many as fit :data:`VARIANT_BYTES` (the rest are
  listed in ``missing`` with the reason, and the controls say to pass the options from Python instead);
- ``sinks``: null when neither input has a sink to hide, else ``{"labels": {"a": [...], "b": [...]}, "held":
  {"a": [[share]], "b": [[share]]}}``: what Hide sinks leaves out of each input and the share of each included
  head's attention it held there (measured on the tokens, so the same at every level).

A payload hiding sinks also says ``scaled: true``: its weight panels scale colours to the largest weight shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..analysis import Comparison, compare
from ..errors import AttnscopeError
from ..sinks import held_share, shown_trace, sink_labels, sink_positions
from ..trace import Trace
from ..units import LEVELS, unit_spans

#: Most bytes of weights (before base64) the other states' payloads may add to a diff view.
VARIANT_BYTES = 24 * 2**20


def state_key(by: str, hide: bool, renorm: bool) -> str:
    """``"word|1|0"``: how payloads name a state of the controls."""
    return f"{by}|{int(bool(hide))}|{int(bool(renorm))}"


def diff_units(a: Trace, b: Trace, kind: str | None, units: dict[str, Any], layers: list[int], heads: list[int],
               build: Callable[[Comparison], dict[str, Any]]) -> dict[str, Any] | None:
    """``payload["units"]`` for the diff view of traces ``a`` and ``b`` (module docstring); ``units`` the view's
    ``by`` / ``hide_sinks`` / ``renormalize`` options (the payload's own state), ``layers`` / ``heads`` the
    included ones and ``build`` the payload of a comparison. None when the traces are already aggregated or
    without their sinks (nothing to switch back to)."""
    if any("units" in t.meta or "hidden_sinks" in t.meta for t in (a, b)):
        return None
    hide = units.get("hide_sinks")
    which = "auto" if hide in (None, True, False) else hide
    try:
        positions = {"a": sink_positions(a, which), "b": sink_positions(b, which)}
    except AttnscopeError:
        positions = {"a": {}, "b": {}}
    labels = {side: [n for s, p in positions[side].items() for n in sink_labels(t.tokens[s], p)]
              for side, t in (("a", a), ("b", b))}
    sinks = None
    if labels["a"] or labels["b"]:
        sinks = {"labels": {side: list(dict.fromkeys(v)) for side, v in labels.items()},
                 "held": {side: _held(t, positions[side], kind, layers, heads) for side, t in (("a", a), ("b", b))}}
    own = state_key(units.get("by") or "token", bool(hide), bool(units.get("renormalize")))
    levels = _levels(a, b)
    if own.split("|")[0] not in ("token", *levels):  # asked for, though no finer level differs from it
        levels = [level for level in LEVELS if level in levels or own.startswith(level + "|")]
    states = [state_key(level, h, r) for level in ("token", *levels) for h, r in
              ((False, False), *(((True, False), (True, True)) if sinks else ()))]
    variants: dict[str, Any] = {}
    missing: dict[str, str] = {}
    spent = 0
    for state in states:
        if state == own:
            continue
        by, h, r = state.split("|")
        if spent > VARIANT_BYTES:
            missing[state] = "too large to carry every state in one page"
            continue
        hidden = which if h == "1" else None
        try:
            comparison = compare(shown_trace(a, by=by, hide_sinks=hidden, renormalize=r == "1"),
                                 shown_trace(b, by=by, hide_sinks=hidden, renormalize=r == "1"), kind=kind)
            if not any(s.shared for s in comparison.query_alignment.slots):
                raise AttnscopeError(f"the inputs share no {by}")
            payload = build(comparison)
        except AttnscopeError as exc:
            missing[state] = str(exc).split(";")[0]
            continue
        if h == "1":
            payload["scaled"] = True
        spent += _weight_bytes(payload)
        variants[state] = payload
    offered = [level for level in levels if any(s.startswith(level + "|") for s in (*variants, own))]
    return {"levels": offered, "state": own, "variants": variants, "missing": missing, "sinks": sinks}


def _levels(a: Trace, b: Trace) -> list[str]:
    """The unit levels whose units differ from the level below in at least one stream of either trace."""
    out = []
    previous = {(side, s): [(i, i + 1) for i in range(len(toks))]
                for side, t in (("a", a), ("b", b)) for s, toks in t.tokens.items()}
    for level in LEVELS:
        spans = {(side, s): unit_spans(t, s, level) for side, t in (("a", a), ("b", b)) for s in t.tokens}
        if any(spans[key] != previous[key] for key in spans):
            out.append(level)
            previous = spans
    return out


def _held(trace: Trace, positions: dict[str, list[int]], kind: str | None, layers: list[int],
          heads: list[int]) -> list[list[float]]:
    held = held_share(trace, positions, kind)
    return [[round(float(held[layer, head]), 6) for head in heads] for layer in layers]


def _weight_bytes(payload: dict[str, Any]) -> int:
    return sum(len(x) for side in ("a", "b") for row in payload[side] for x in row) * 3 // 4
