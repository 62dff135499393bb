"""Diff view: how the attention of two inputs differs (the "She" / "He" bias probe), head by head.

For one head it shows input A's and input B's attention side by side on *aligned* tokens and their difference
``B - A`` (blue: B attends more, orange: A attends more), beside it each compared query row's Jensen-Shannon
divergence, a list of the heads ranked by divergence (click one to show it), and for causal language models the
top next-token predictions of both inputs.

Tokens are lined up by :func:`attnscope.analysis.align_tokens`: each token the inputs share is one slot, each
differing span one slot (shown ``She → He``). A slot's key weight is the sum of its keys' weights and its query
row the mean of its rows, the rules :func:`attnscope.analysis.compare` measures with (the math, head ranking
included, lives in :mod:`attnscope.analysis.compare`; this module builds the payload); a slot an input lacks (an
insertion) has no row on that side.

Payload (``format == "attnscope-diff"``; arrays as base64, JSON only for small metadata):

- ``query`` / ``key``: ``{"a": raw tokens of A, "b": of B, "aLabels" / "bLabels": their display labels
  (:func:`attnscope.encode.token_labels`), "slots": [[a_start, a_end, b_start, b_end, shared]]}``
  (``key`` is null when keys are the query tokens); ``shape``: ``[query slots, key slots]``.
- ``layers`` / ``heads``: original indices included; ``a[li][hi]`` / ``b[li][hi]``: the aligned ``[Sq, Sk]``
  weights of each input in ``dtype`` (``"sqrt8"`` or ``"f16"``, see :mod:`attnscope.encode`).
- ``rows``: the compared query slots ``[R]``; ``rowDivergence[li][hi]``: float16 ``[R]`` divergence per row;
  ``rowMax``: the largest of them (the colour scale of the row strip).
- ``divergence``: float32 ``[len(layers) * len(heads)]`` mean divergence in bits; ``ranked``: ``[[li, hi], ...]``,
  the ``top`` most changed heads first.
- ``next``: null, or ``{"a": [...], "b": [...]}`` of ``{token, label, text, prob, other}`` (``label``: the token's
  display label, :func:`attnscope.tokens.prettify_tokens`; probability after this input and after the other).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..analysis import Comparison, compare
from ..analysis.align import Alignment
from ..analysis.compare import aligned_head, most_changed_head, ranked_heads
from ..encode import DTYPES, _b64, quantize, token_labels
from ..errors import InputError
from ..tokens import prettify_tokens
from ..trace import Trace
from ._diff_units import diff_units
from ._view import View
from .options import check_common, given, js_options, pick_one, pick_shown, whole

PAYLOAD_FORMAT = "attnscope-diff"
PAYLOAD_VERSION = 1
#: Most changed heads listed by default.
TOP = 10
#: Largest payload (bytes of weights, before base64) the view builds; more asks for fewer heads.
MAX_BYTES = 64 * 2**20
#: Options the JavaScript reads.
_JS_OPTIONS = ("layer", "head", "theme", "prettify")
_FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
_HTML_SUFFIXES = (".html", ".htm")


def diff_view(
    a: Trace | Comparison,
    other: Trace | None = None,
    *,
    kind: str | None = None,
    layer: int | None = None,
    head: int | None = None,
    top: int | None = None,
    include_layers: Sequence[int] | None = None,
    include_heads: Sequence[int] | None = None,
    theme: str | None = None,
    prettify: bool | None = None,
    dtype: str | None = None,
    picture: bool | None = None,
    by: str | None = None,
    hide_sinks: bool | str | Sequence[int | str] | None = None,
    renormalize: bool | None = None,
) -> DiffView:
    """Compare two traces of one model (or show a :class:`~attnscope.analysis.Comparison`) as a diff view.

    ``diff_view(a, b)`` compares ``kind`` attention (default: the traces' first kind); ``diff_view(comparison)``
    shows the result of :func:`attnscope.analysis.compare`, including its next-token predictions when it was made
    with the model. ``layer``/``head`` pick the head shown at start (default: the most changed one, within the
    given layer or head); ``top`` is how many of the most changed heads the list shows (default 10);
    ``include_layers``/``include_heads`` keep only those heads in the file; ``theme``, ``prettify`` and ``dtype``
    (``"uint8"`` default, ``"float16"`` exact) and ``picture`` as in the other views. ``by``, ``hide_sinks`` and
    ``renormalize`` (as in :func:`~attnscope.views.head_view`) compare both traces as shown: over words or
    sentences, without their sinks (:func:`attnscope.sinks.shown_trace`); they set the first state of the view's
    Units and Hide sinks controls, which compare both inputs again at each state (:mod:`._diff_units`; a view of a
    Comparison has no such controls).
    """
    units = {k: v for k, v in dict(by=by, hide_sinks=hide_sinks, renormalize=renormalize).items() if v is not None}
    sources = (a, other, kind, units) if isinstance(a, Trace) and isinstance(other, Trace) else None
    if units:
        a, other = shown_pair(a, other, units)
    return DiffView(pair(a, other, kind), dict(
        layer=layer, head=head, top=top, include_layers=include_layers, include_heads=include_heads, theme=theme,
        prettify=prettify, dtype=dtype, picture=picture,
    ), controls=sources)


def render_diff(a: Trace | Comparison, options: dict[str, Any]) -> DiffView:
    """``render("diff", a, **options)``: unknown option names are refused with the list of known ones."""
    return diff_view(a, **given("diff", options))


def shown_pair(a, other, units: dict[str, Any]) -> tuple[Trace, Trace | None]:
    """Both traces with ``by=`` / ``hide_sinks=`` / ``renormalize=`` applied (a Comparison is made already)."""
    from ..sinks import shown_trace
    from ._units import check_units

    check_units(units)
    if not isinstance(a, Trace):
        raise InputError("by=, hide_sinks= and renormalize= apply to the two traces of a diff view: pass the traces, "
                         "not a Comparison")
    return shown_trace(a, **units), shown_trace(other, **units) if isinstance(other, Trace) else other


def pair(a: Trace | Comparison, other: Trace | None, kind: str | None) -> Comparison:
    """The Comparison to draw: ``a`` itself, or ``compare(a, other, kind)``; refuses inputs that cannot line up."""
    if isinstance(a, Comparison):
        if other is not None:
            raise InputError("pass either a Comparison or two traces to the diff view, not a Comparison and a trace")
        if kind is not None and kind != a.kind:
            raise InputError(f"this comparison is of {a.kind!r} attention; kind={kind!r} needs compare(..., "
                             f"kind={kind!r}) first")
        result = a
    elif isinstance(a, Trace):
        if other is None:
            raise InputError("the diff view compares two traces; pass the second one: diff_view(a, b), "
                             "or attnscope.render('diff', a, other=b)")
        if not isinstance(other, Trace):
            raise InputError(f"the second input of the diff view must be a Trace; got {type(other).__name__}")
        result = compare(a, other, kind=kind)
    else:
        raise InputError(f"the diff view takes two Traces or a Comparison; got {type(a).__name__}. Make traces "
                         "with attnscope.capture(...) or a comparison with attnscope.analysis.compare(a, b)")
    for axis, al in (("query", result.query_alignment), ("key", result.key_alignment)):
        if not any(s.shared for s in al.slots):
            raise InputError(f"the two inputs share no {axis} tokens, so their attention cannot be lined up; "
                             "compare inputs that differ in a word or a span (e.g. 'She' vs 'He')")
    return result


class DiffView(View):
    """The diff view of a :class:`~attnscope.analysis.Comparison`: displays itself, saves as HTML or a figure.

    ``comparison`` holds both traces (``comparison.trace_a`` / ``trace_b``); ``trace`` is input A's. ``controls``:
    ``(trace a, trace b, kind, unit options)`` as given, before the unit options were applied: the payload then
    carries the other states of the Units and Hide sinks controls (:func:`._diff_units.diff_units`).
    """

    def __init__(self, comparison: Comparison, options: dict[str, Any], controls: tuple | None = None):
        self.name = "diff"
        self.comparison = comparison
        self.controls = controls
        self.trace = comparison.trace_a
        self.options = check(comparison, options)
        self._payload: dict[str, Any] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        if self._payload is None:
            payload = build_payload(self.comparison, self.options)
            if self.controls is not None:
                a, b, kind, units = self.controls
                extra = diff_units(a, b, kind, units, payload["layers"], payload["heads"],
                                   lambda comparison: build_payload(comparison, self.options))
                if extra is not None:
                    payload["units"] = extra
                    payload["scaled"] = bool(units.get("hide_sinks"))
            self._payload = payload
        return self._payload

    def data(self) -> dict[str, Any]:
        opts = js_options({k: v for k, v in self.options.items() if k in _JS_OPTIONS})
        return {"view": self.name, "options": opts, "payload": self.payload}

    def figure_input(self) -> Comparison:
        return self.comparison

    def __repr__(self) -> str:
        L, H = self.comparison.divergence.shape
        model = self.trace.meta.get("model", "trace")
        return (f"<attnscope diff view: {model}, {L} layers x {H} heads, {self.comparison.kind} attention, "
                f"{len(self.comparison.query_alignment.slots)} aligned tokens>")


# --------------------------------------------------------------------------- options
def check(comparison: Comparison, options: dict[str, Any]) -> dict[str, Any]:
    """Validate the diff view's options by the rules of :mod:`attnscope.views.options`; fills in ``layer``/``head``
    (the most changed shown head) and ``top``, and ``include_layers``/``include_heads`` as lists."""
    opts = {k: v for k, v in options.items() if v is not None}
    L, H = comparison.divergence.shape
    layers = pick_shown(opts, "include_layers", L, "layers")
    heads = pick_shown(opts, "include_heads", H, "heads")
    pick_one(opts, "layer", L, "layers", shown=layers)
    pick_one(opts, "head", H, "heads", shown=heads)
    opts["layer"], opts["head"] = most_changed_head(comparison, layers, heads, opts.get("layer"), opts.get("head"))
    top = opts.get("top", TOP)
    if not whole(top) or top < 1:
        raise InputError(f"top must be a whole number >= 1 (heads listed); got {top!r}")
    opts["top"] = int(top)
    check_common(opts)
    opts["include_layers"], opts["include_heads"] = layers, heads
    return opts


# --------------------------------------------------------------------------- payload
def build_payload(comparison: Comparison, opts: Mapping[str, Any]) -> dict[str, Any]:
    """The diff view's payload (layout in the module docstring)."""
    layers, heads = opts["include_layers"], opts["include_heads"]
    code = DTYPES[opts.get("dtype", "uint8")]
    n_q, n_k = len(comparison.query_alignment.slots), len(comparison.key_alignment.slots)
    size = 2 * len(layers) * len(heads) * n_q * n_k * (2 if code == "f16" else 1)
    if size > MAX_BYTES:
        raise InputError(
            f"the diff view would hold {size / 2**20:.0f} MB of weights ({len(layers)} layers x {len(heads)} heads "
            f"x {n_q} x {n_k} aligned tokens, both inputs); keep fewer heads with include_layers= / include_heads=")
    a_trace, b_trace = comparison.trace_a, comparison.trace_b
    same_axis = comparison.key_alignment is comparison.query_alignment
    grid = comparison.divergence[np.ix_(layers, heads)].astype("<f4")
    where = {(la, h): (li, hi) for li, la in enumerate(layers) for hi, h in enumerate(heads)}
    return {
        "format": PAYLOAD_FORMAT,
        "version": PAYLOAD_VERSION,
        "kind": comparison.kind,
        "meta": {**{k: str(a_trace.meta[k]) for k in ("model", "model_type", "architecture") if a_trace.meta.get(k)},
                 **_verified(a_trace, b_trace)},
        "texts": {"a": _text(a_trace), "b": _text(b_trace)},
        "query": _axis(comparison.query_alignment),
        "key": None if same_axis else _axis(comparison.key_alignment),
        "shape": [n_q, n_k],
        "layers": layers,
        "heads": heads,
        "dtype": code,
        "a": [[_b64(quantize(aligned_head(comparison, "a", la, h), code)) for h in heads] for la in layers],
        "b": [[_b64(quantize(aligned_head(comparison, "b", la, h), code)) for h in heads] for la in layers],
        "rows": list(comparison.rows),
        "rowDivergence": [[_b64(comparison.row_divergence[la, h].astype("<f2").tobytes()) for h in heads]
                          for la in layers],
        "rowMax": round(float(comparison.row_divergence[np.ix_(layers, heads)].max(initial=0.0)), 6),
        "divergence": _b64(grid.tobytes()),
        "ranked": [list(where[lh]) for lh in ranked_heads(comparison, layers, heads, opts.get("top", TOP))],
        "next": _next(comparison),
    }


def _verified(a: Trace, b: Trace) -> dict[str, Any]:
    """The footer's verified-capture note when both inputs were checked: the first failed one (named), else the
    larger difference (see :mod:`attnscope.capture.verify`)."""
    from ..capture.verify import summary

    found: dict[str, Any] = {"A": summary(a.meta), "B": summary(b.meta)}
    if any(s is None for s in found.values()):
        return {}
    failed = [(side, s) for side, s in found.items() if s["ok"] is not True]
    if failed:
        side, s = failed[0]
        return {"verified": {**s, "problem": f"input {side}: {s['problem'] or 'not checked'}"}}
    return {"verified": max(found.values(), key=lambda s: s["maxAbsDiff"] or 0.0)}


def _axis(alignment: Alignment) -> dict[str, Any]:
    return {
        "a": list(alignment.tokens_a),
        "b": list(alignment.tokens_b),
        "aLabels": token_labels(alignment.tokens_a),
        "bLabels": token_labels(alignment.tokens_b),
        "slots": [[s.a_start, s.a_end, s.b_start, s.b_end, int(s.shared)] for s in alignment.slots],
    }


def _text(trace: Trace) -> str:
    text = trace.meta.get("text")
    if isinstance(text, str) and text:
        return text
    stream = trace.streams(trace.default_kind)[0]
    return " ".join(trace.tokens[stream])


def _next(comparison: Comparison) -> dict[str, list[dict]] | None:
    if comparison.next_a is None or comparison.next_b is None:
        return None

    def rows(items) -> list[dict]:
        labels = prettify_tokens([t.token for t in items])
        return [{"token": t.token, "label": label, "text": t.text, "prob": round(t.prob, 6),
                 "other": round(t.other_prob, 6)} for t, label in zip(items, labels)]

    return {"a": rows(comparison.next_a), "b": rows(comparison.next_b)}


__all__ = ["DiffView", "diff_view", "pair", "render_diff"]
