"""Disagreement view: raw attention beside the measures that correct it, for one query token, and where they part.

For a chosen layer and query token it draws one bar chart over the keys per series: attention (the mean of the
heads, or one head), attention rollout, and each context-mixing measure of an
:class:`~attnscope.analysis.measures.explain.Explanation` (``rolled=True`` shows the layer-level measures rolled out
across layers), each titled with its Spearman rank correlation with attention. Beside them, the layer x head grid
is coloured by how much one measure disagrees with each head's attention (``(1 - rho) / 2`` averaged over query
rows); click a cell to show that layer and head.

Payload (``format == "attnscope-disagreement"``; arrays as base64, JSON only for small metadata):

- ``tokens`` (raw) and ``labels`` (display labels, :func:`attnscope.encode.token_labels`), ``meta`` (model, the
  verified-capture summary), ``causal``, ``layers``, ``heads``, ``n``;
- ``series``: ``[{name, label, perHead, rolled, values}]``, ``values[layer]`` (per layer) or ``values[layer][head]``
  (per head) float16 ``[n * n]``;
- ``rho``: ``{name: float32 [L * (H + 1) * n]}`` rank correlation with attention (head ``H``: the heads' mean),
  NaN where undefined; ``grid``: ``{name: float32 [L * H]}`` the disagreement of each head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.measures.explain import ATTENTION, ROLLOUT, Explanation
from ..capture.verify import summary as verify_summary
from ..encode import _b64, token_labels
from ..errors import InputError
from ._view import View
from .options import THEMES

PAYLOAD_FORMAT = "attnscope-disagreement"
PAYLOAD_VERSION = 1
#: Largest payload (bytes of series values, before base64) the view builds.
MAX_BYTES = 64 * 2**20
#: Options the JavaScript reads (snake_case here, camelCase there).
JS_OPTIONS = ("layer", "query", "head", "measure", "rolled", "theme", "prettify")


def disagreement_view(
    explanation: Explanation,
    *,
    layer: int | None = None,
    query: int | None = None,
    head: int | None = None,
    measure: str | None = None,
    rolled: bool | None = None,
    theme: str | None = None,
    prettify: bool | None = None,
) -> DisagreementView:
    """The disagreement view of an Explanation (made by :func:`attnscope.analysis.explain`).

    ``layer`` (default: the last), ``query`` (default: the row where the grid's measure and the heads' mean
    attention disagree most), ``head`` (default: the mean of the heads) pick the bars; ``measure`` colours the grid
    (default: the first measure); ``rolled=True`` shows layer-level measures rolled out across layers.
    """
    return DisagreementView(explanation, dict(layer=layer, query=query, head=head, measure=measure, rolled=rolled,
                                              theme=theme, prettify=prettify))


class DisagreementView(View):
    """Displays itself in notebooks; saves as HTML or a figure (PNG/SVG/PDF)."""

    def __init__(self, explanation: Explanation, options: dict[str, Any]):
        if not isinstance(explanation, Explanation):
            raise InputError(f"the disagreement view draws an Explanation; got {type(explanation).__name__}. Make "
                             "one with attnscope.analysis.explain(model, text)")
        self.name = "disagreement"
        self.explanation = explanation
        self.trace = explanation.trace
        self.options = check(explanation, options)
        self._payload: dict[str, Any] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        if self._payload is None:
            self._payload = build_payload(self.explanation)
        return self._payload

    def data(self) -> dict[str, Any]:
        from .options import js_options

        opts = {k: v for k, v in self.options.items() if k in JS_OPTIONS}
        return {"view": self.name, "options": js_options(opts), "payload": self.payload}

    def html(self, *, id: str | None = None) -> str:
        from . import _html

        model = self.trace.meta.get("model") or "attention"
        return _html.document(self.name, self.data(), title=f"{model} · disagreement view · attnscope", id=id)

    def save(self, path: str | Path, **figure_options: Any) -> Path:
        path = Path(path)
        if path.suffix.lower() in (".png", ".svg", ".pdf"):
            from ..figures import save_figure

            return save_figure("disagreement", self.explanation, path, **{**self.options, **figure_options})
        return super().save(path, **figure_options)

    def figure_input(self) -> Explanation:
        return self.explanation

    def __repr__(self) -> str:
        L, H, n = self.explanation.shape
        model = self.trace.meta.get("model", "trace")
        measures = ", ".join(self.explanation.measures)
        return f"<attnscope disagreement view: {model}, {L} layers x {H} heads, {n} tokens; {measures}>"


def check(e: Explanation, options: dict[str, Any]) -> dict[str, Any]:
    """Validate the options; fills in ``layer``, ``measure`` and ``query`` (see :func:`disagreement_view`)."""
    opts = {k: v for k, v in options.items() if v is not None}
    L, H, n = e.shape
    measures = [m for m in e.rho if m != ROLLOUT]
    for name, value, size in (("layer", opts.get("layer"), L), ("head", opts.get("head"), H),
                              ("query", opts.get("query"), n)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or not 0 <= value < size):
            raise InputError(f"{name} must be a whole number in 0..{size - 1}; got {value!r}")
    opts["layer"] = int(opts.get("layer", L - 1))
    opts["measure"] = opts.get("measure", measures[0] if measures else ROLLOUT)
    if opts["measure"] not in e.rho:
        raise InputError(f"measure {opts['measure']!r} is not in this explanation; choose one of {sorted(e.rho)}")
    if "query" not in opts:
        rho = e.rho[opts["measure"]][opts["layer"], H]  # [n]: against the mean of the heads
        opts["query"] = int(np.nanargmin(rho)) if np.isfinite(rho).any() else n - 1
    opts["query"], opts["layer"] = int(opts["query"]), int(opts["layer"])
    if "head" in opts:
        opts["head"] = int(opts["head"])
    opts["rolled"] = bool(opts.get("rolled", False))
    if opts.get("theme", "auto") not in THEMES:
        raise InputError(f"theme must be one of {list(THEMES)}; got {opts['theme']!r}")
    if "prettify" in opts:
        opts["prettify"] = bool(opts["prettify"])
    return opts


def build_payload(e: Explanation) -> dict[str, Any]:
    """The view's payload (layout in the module docstring)."""
    L, H, n = e.shape
    size = sum(s.values.size for s in e.series.values()) * 2
    if size > MAX_BYTES:
        raise InputError(f"the disagreement view would hold {size / 2**20:.0f} MB of float16 values ({L} layers x "
                         f"{H} heads x {n} x {n} tokens, {len(e.series)} series); explain a shorter text")
    series = []
    for s in e.series.values():
        values = s.values.astype("<f2")
        data = ([[_b64(values[la, h].tobytes()) for h in range(H)] for la in range(L)] if s.per_head
                else [_b64(values[la, 0].tobytes()) for la in range(L)])
        series.append({"name": s.name, "label": s.label, "perHead": s.per_head, "rolled": s.rolled, "values": data})
    meta: dict[str, Any] = {k: str(e.trace.meta[k]) for k in ("model", "model_type", "architecture") if e.trace.meta.get(k)}
    verified = verify_summary(e.trace.meta)
    if verified is not None:
        meta["verified"] = verified
    return {
        "format": PAYLOAD_FORMAT,
        "version": PAYLOAD_VERSION,
        "tokens": list(e.tokens),
        "labels": token_labels(e.tokens),
        "meta": meta,
        "causal": e.causal,
        "layers": L,
        "heads": H,
        "n": n,
        "attention": ATTENTION,
        "series": series,
        "rho": {name: _b64(r.astype("<f4").tobytes()) for name, r in e.rho.items()},
        "grid": {name: _b64(e.disagreement(name).astype("<f4").tobytes()) for name in e.rho},
    }


__all__ = ["DisagreementView", "build_payload", "check", "disagreement_view"]
