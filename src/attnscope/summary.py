"""What a trace holds, as JSON-able facts: the one summary ``attnscope info`` prints and the web app shows."""

from __future__ import annotations

from typing import Any

from .trace import Trace


def describe(trace: Trace) -> dict[str, Any]:
    """Facts about ``trace``: its model and texts, each attention kind's shape, form, kept mass and mask, token
    counts, segments, query/key head sizes, position biases, the verified-capture result and the views that can
    draw it (:func:`attnscope.views.registry.views_of`)."""
    from .views.registry import views_of

    meta = trace.meta
    kinds = {}
    for kind in trace.kinds:
        att = trace.attention[kind]
        L, H, q, k = att.shape
        rule = meta.get("kinds", {}).get(kind, {})
        kinds[kind] = {"layers": L, "heads": H, "queries": q, "keys": k, "form": att.form, "dtype": str(att.dtype),
                       "kept_mass": round(trace.kept_mass(kind), 6), "causal": bool(rule.get("causal", False)),
                       "scaling": rule.get("scaling")}
    return {
        **{f: meta.get(f) for f in ("model", "architecture", "created", "version", "text", "pair", "target")},
        "generate": meta.get("generate", 0),
        "kinds": kinds,
        "default_kind": trace.default_kind,
        "tokens": {stream: len(tokens) for stream, tokens in trace.tokens.items()},
        "segments": {n: {"stream": s.stream, "start": s.start, "end": s.end} for n, s in trace.segments.items()},
        "qkv": {kind: int(parts["query"].shape[-1]) for kind, parts in trace.qkv.items()},
        "bias": sorted(trace.bias),
        "verified": meta.get("verified"),
        "views": views_of(trace),
    }
