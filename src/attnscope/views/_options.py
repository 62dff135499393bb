"""View options: which view takes which option, checking them, and the one snake_case -> camelCase mapping."""

from __future__ import annotations

from typing import Any

from ..encode import check_metric
from ..errors import InputError, MissingDataError
from ..trace import Trace
from ._units import UNIT_OPTIONS, UNIT_VIEWS, check_units

_COMMON = ("kind", "include_layers", "include_heads", "theme", "prettify", "picture")

#: Options each view accepts (snake_case, as in Python).
VIEW_OPTIONS: dict[str, tuple[str, ...]] = {
    "head": _COMMON + ("layer", "heads", "filter", "dtype", "budget_mb", "exact_layers"),
    "model": _COMMON + ("filter", "dtype", "thumb_size", "budget_mb", "metric", "sort", "exact_layers"),
    "neuron": _COMMON + ("layer", "head", "query"),
    "matrix": _COMMON + ("layer", "head", "query", "filter", "dtype", "budget_mb", "exact_layers"),
    "diff": _COMMON + ("layer", "head", "top", "dtype", "other"),  # attnscope.views.diff checks these itself
}

#: Units and sinks (views/_units.py): the views of weights, and the diff view, which applies them to both traces.
for _view in (*UNIT_VIEWS, "diff"):
    VIEW_OPTIONS[_view] += UNIT_OPTIONS

#: Options that shape the payload in Python and never reach the JavaScript.
ENCODE_OPTIONS = frozenset({"include_layers", "include_heads", "dtype", "thumb_size", "budget_mb", "exact_layers"})
#: Options that shape the HTML around the view (views/_html.py) and never reach the JavaScript.
HTML_OPTIONS = frozenset({"picture"})

THEMES = ("auto", "light", "dark")


def js_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options the JavaScript view receives: ``None`` dropped, names camelCased (``thumb_size`` -> ``thumbSize``)."""
    return {_camel(k): v for k, v in options.items() if v is not None and k not in ENCODE_OPTIONS | HTML_OPTIONS}


def check(view: str, trace: Trace, options: dict[str, Any]) -> dict[str, Any]:
    """Validate ``options`` for ``view`` against ``trace``; returns them with ``None`` values dropped."""
    if view not in VIEW_OPTIONS:
        raise InputError(f"unknown view {view!r}; expected one of {sorted(VIEW_OPTIONS)}")
    allowed = VIEW_OPTIONS[view]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"the {view} view has no option(s) {unknown}; it takes {sorted(allowed)}")
    opts = {k: v for k, v in options.items() if v is not None}
    kind = opts.get("kind", trace.default_kind)
    if kind not in trace.attention:
        raise MissingDataError(f"this trace has no {kind!r} attention; pass kind= one of {trace.kinds}")
    if view == "neuron" and not trace.has_qkv(kind) and trace.attention[kind].form != "qk":
        with_qkv = [k for k in trace.kinds if trace.has_qkv(k) or trace.attention[k].form == "qk"]
        raise MissingDataError(
            f"the neuron view needs query/key vectors, and this trace has none for {kind!r} attention; "
            "capture with attnscope.capture(..., qkv=True)" + (f" or pick kind= one of {with_qkv}" if with_qkv else "")
        )
    L, H, q, _ = trace.shape(kind)
    layers = _indices(opts.get("include_layers"), L, "include_layers", "layer")
    heads = _indices(opts.get("include_heads"), H, "include_heads", "head")
    if "exact_layers" in opts:
        if trace.attention[kind].form != "qk":
            raise InputError("exact_layers applies to traces in the q/k form (capture(..., form='qk')); this one holds "
                             "its weights, so every layer is exact already")
        opts["exact_layers"] = _indices(opts["exact_layers"], L, "exact_layers", "layer", empty=True)
    if "layer" in opts and opts["layer"] not in layers:
        raise InputError(f"layer {opts['layer']!r} is not shown; choose one of {layers}")
    if "heads" in opts:
        chosen = [int(h) for h in opts["heads"]]
        if not chosen or not set(chosen) <= set(heads):
            raise InputError(f"heads {opts['heads']!r} must be a non-empty subset of the shown heads {heads}")
        opts["heads"] = chosen
    if "head" in opts and opts["head"] not in heads:
        raise InputError(f"head {opts['head']!r} is not shown; choose one of {heads}")
    if "query" in opts and not (isinstance(opts["query"], int) and 0 <= opts["query"] < q):
        raise InputError(f"query must be a token index in 0..{q - 1}; got {opts['query']!r}")
    if opts.get("theme", "auto") not in THEMES:
        raise InputError(f"theme must be one of {list(THEMES)}; got {opts['theme']!r}")
    if "filter" in opts:
        opts["filter"] = _filter(opts["filter"], trace, kind)
    if "thumb_size" in opts and not (isinstance(opts["thumb_size"], int) and opts["thumb_size"] >= 8):
        raise InputError(f"thumb_size must be an int >= 8 (pixels); got {opts['thumb_size']!r}")
    budget = opts.get("budget_mb")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0):
        raise InputError(f"budget_mb must be a positive number of megabytes; got {budget!r}")
    if "prettify" in opts:
        opts["prettify"] = bool(opts["prettify"])
    if "picture" in opts and not isinstance(opts["picture"], bool):
        raise InputError(f"picture must be True (a static picture of the view in its HTML, the default) or False; "
                         f"got {opts['picture']!r}")
    check_metric(opts.get("metric"), opts.get("sort"))
    check_units(opts)
    return opts


def _indices(chosen, n: int, name: str, what: str, empty: bool = False) -> list[int]:
    if chosen is None:
        return list(range(n))
    picked = [int(i) for i in chosen]
    if (not picked and not empty) or any(not 0 <= i < n for i in picked):
        raise InputError(f"{name} must list {what} indices in 0..{n - 1}; got {list(chosen)}")
    return picked


def metrics_wanted(view: str, opts: dict[str, Any]) -> bool | None:
    """``encode``'s ``metrics=`` for a view: the model view always when a ``metric`` is chosen, else when cheap
    (``None``); other views never."""
    if view != "model":
        return False
    return True if opts.get("metric") else None


def _filter(value: str, trace: Trace, kind: str) -> str:
    """``"All"`` or ``"X->Y"`` (``"A->B"``; ``→`` accepted) with X a segment of the query stream, Y of the key
    (pairs a causal mask leaves empty are not offered)."""
    text = str(value).replace("\u2192", "->").replace(" ", "")
    if text.lower() == "all":
        return "All"
    qs, ks = trace.streams(kind)
    rows = [(n, s) for n, s in trace.segments.items() if s.stream == qs]
    cols = [(n, s) for n, s in trace.segments.items() if s.stream == ks]
    causal = qs == ks and trace.meta.get("kinds", {}).get(kind, {}).get("causal", False)
    # under a causal mask a segment never sees one that starts after it ends: that pair would be empty
    choices = ["All"] + [f"{a}->{b}" for a, sa in rows for b, sb in cols if not (causal and sa.end <= sb.start)]
    if text not in choices:
        raise InputError(f"filter {value!r} does not fit this trace; choose one of {choices}")
    return text


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(p.capitalize() for p in rest)
