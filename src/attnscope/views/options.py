"""View options: the one resolver every front end goes through, and the one snake_case -> camelCase mapping.

:func:`resolve` turns what a user passed (to a view function, :func:`attnscope.render`, a figure, the CLI's flags
or the web app's query string: all of them end here) into a frozen mapping of checked, normalised values, or
raises one InputError that says what to pass instead. The rules, the same for every view and front end:

- ``None`` means "not given"; the view then uses its default.
- Indices (``layer``, ``head``, ``query``, and the entries of ``heads``, ``include_layers``, ``include_heads``,
  ``exact_layers``) are whole numbers (``True`` is not one; numpy integers are), negative ones count from the end
  as in Python, and come back non-negative; a list keeps its first occurrence of each index.
- ``layer``/``heads``/``head`` must be among the layers and heads the file includes (``include_layers``,
  ``include_heads``); an unknown option name is refused with the list of the view's options
  (:data:`attnscope.views.registry.VIEWS`).
- Flags (``prettify``, ``picture``, ``sort``, ``renormalize``) are ``True`` or ``False``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..encode import DTYPES, check_metric
from ..errors import InputError, MissingDataError
from ..trace import Trace
from ._units import check_units
from .registry import VIEWS, Reads, has_vectors, spec

#: Options each view of traces accepts (snake_case, as in Python), from the registry.
VIEW_OPTIONS: dict[str, tuple[str, ...]] = {n: s.options for n, s in VIEWS.items() if s.options is not None}
#: Options that shape the payload in Python and never reach the JavaScript.
ENCODE_OPTIONS = frozenset({"include_layers", "include_heads", "dtype", "thumb_size", "budget_mb", "exact_layers"})
#: Options that shape the HTML around the view (views/_html.py) and never reach the JavaScript.
HTML_OPTIONS = frozenset({"picture"})
#: Options that are True or False.
FLAGS = ("prettify", "picture", "sort", "renormalize")

THEMES = ("auto", "light", "dark")


def js_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options the JavaScript view receives: ``None`` dropped, names camelCased (``thumb_size`` -> ``thumbSize``)."""
    return {_camel(k): v for k, v in options.items() if v is not None and k not in ENCODE_OPTIONS | HTML_OPTIONS}


def resolve(view: str, trace: Trace, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """``options`` for the view ``view`` of ``trace``, checked and normalised (module docstring), as a read-only
    mapping without the ``None`` values; or an InputError (a MissingDataError when the trace lacks what the view
    needs)."""
    opts = given(view, options, "trace")
    kind = opts.get("kind", trace.default_kind)
    if kind not in trace.attention:
        raise MissingDataError(f"this trace has no {kind!r} attention; pass kind= one of {trace.kinds}")
    if spec(view).vectors and not has_vectors(trace, kind):
        with_qkv = [k for k in trace.kinds if has_vectors(trace, k)]
        raise MissingDataError(
            f"the {view} view needs query/key vectors, and this trace has none for {kind!r} attention; "
            "capture with attnscope.capture(..., qkv=True)" + (f" or pick kind= one of {with_qkv}" if with_qkv else "")
        )
    L, H, q, _ = trace.shape(kind)
    layers = pick_shown(opts, "include_layers", L, "layers")
    heads = pick_shown(opts, "include_heads", H, "heads")
    pick_one(opts, "layer", L, "layers", shown=layers)
    pick_one(opts, "head", H, "heads", shown=heads)
    pick_one(opts, "query", q, "query tokens")
    if "heads" in opts:
        opts["heads"] = index_list(opts["heads"], H, "heads", "heads")
        hidden = [h for h in opts["heads"] if h not in heads]
        if hidden:
            raise InputError(f"heads {hidden} are not shown; choose among the shown heads {heads}")
    if "exact_layers" in opts:
        if trace.attention[kind].form != "qk":
            raise InputError("exact_layers applies to traces in the q/k form (capture(..., form='qk')); this one holds "
                             "its weights, so every layer is exact already")
        opts["exact_layers"] = index_list(opts["exact_layers"], L, "exact_layers", "layers", empty=True)
    check_common(opts)
    if "filter" in opts:
        opts["filter"] = _filter(opts["filter"], trace, kind)
    if "thumb_size" in opts and not (whole(opts["thumb_size"]) and 8 <= opts["thumb_size"] <= 1024):
        raise InputError(f"thumb_size must be a whole number of pixels from 8 to 1024; got {opts['thumb_size']!r}")
    budget = opts.get("budget_mb")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0):
        raise InputError(f"budget_mb must be a positive number of megabytes; got {budget!r}")
    check_metric(opts.get("metric"), opts.get("sort"))
    check_units(opts)
    return MappingProxyType(opts)


def given(view: str, options: Mapping[str, Any], reads: Reads | None = None) -> dict[str, Any]:
    """The options that are not ``None``; an InputError for a name the view ``view`` does not take (or for an
    unknown view, or one that does not read ``reads``)."""
    allowed = spec(view, reads).options or ()
    opts = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise InputError(f"the {view} view has no option(s) {unknown}; it takes {sorted(allowed)}")
    return opts


def check_common(opts: dict[str, Any]) -> None:
    """The options whose rule does not depend on the trace: theme, dtype and the flags (in place)."""
    if opts.get("theme", "auto") not in THEMES:
        raise InputError(f"theme must be one of {list(THEMES)}; got {opts['theme']!r}")
    if opts.get("dtype", "uint8") not in DTYPES:
        raise InputError(f"dtype must be one of {list(DTYPES)}; got {opts['dtype']!r}")
    for name in FLAGS:
        if name in opts:
            opts[name] = flag(opts[name], name)


def flag(value: Any, name: str) -> bool:
    """``value`` as a bool: True or False (numpy's too); anything else is an InputError."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise InputError(f"{name} must be True or False; got {value!r}")


def whole(value: Any) -> bool:
    """Whether ``value`` is a whole number (``True`` and ``False`` are not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def index(value: Any, n: int, name: str, what: str) -> int:
    """One index into ``n`` items, negative ones counted from the end: returned in ``0..n-1``."""
    if not whole(value):
        raise InputError(f"{name} must be a whole number; got {value!r}")
    if not -n <= int(value) < n:
        raise InputError(f"{name}={value!r} is out of range: there are {n} {what} (0 to {n - 1}, or -{n} to -1 "
                         "from the end)")
    return int(value) % n


def index_list(values: Any, n: int, name: str, what: str, *, empty: bool = False) -> list[int]:
    """A list of indices into ``n`` items (one whole number counts as a list of one; numpy and torch arrays are
    lists): each checked by :func:`index`, the first occurrence of each kept, in the order given."""
    if whole(values):
        values = [values]
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InputError(f"{name} must be a list of whole numbers; got {values!r}")
    if not values and not empty:
        raise InputError(f"{name} is empty; give at least one of 0 to {n - 1}, or leave it out for all {what}")
    out = [index(v, n, name, what) for v in values]
    return list(dict.fromkeys(out))


def pick_shown(opts: dict[str, Any], name: str, n: int, what: str) -> list[int]:
    """``opts[name]`` (``include_layers``/``include_heads``) normalised in place; returns the shown indices."""
    if name not in opts:
        return list(range(n))
    opts[name] = index_list(opts[name], n, name, what)
    return opts[name]


def pick_one(opts: dict[str, Any], name: str, n: int, what: str, shown: list[int] | None = None) -> None:
    """``opts[name]`` (``layer``/``head``/``query``) normalised in place; it must be one of ``shown`` when given."""
    if name not in opts:
        return
    opts[name] = index(opts[name], n, name, what)
    if shown is not None and opts[name] not in shown:
        raise InputError(f"{name} {opts[name]} is not shown; choose one of {shown}")


def _filter(value: Any, trace: Trace, kind: str) -> str:
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


@dataclass(frozen=True)
class Focus:
    """What a view of one trace shows first, from its resolved options (the same for the page, its static picture
    and its figure): the attention ``kind``; the ``layers`` and ``head_set`` included; the ``layer`` and ``head``
    in focus (default: the first included); the ``heads`` the head view draws (default: all included); the
    query ``rows`` and key ``cols`` shown, ``(start, stop)`` (the whole streams, or the two segments of
    ``filter``)."""

    kind: str
    layers: list[int]
    head_set: list[int]
    layer: int
    head: int
    heads: list[int]
    rows: tuple[int, int]
    cols: tuple[int, int]
    filter: str

    @property
    def cropped(self) -> bool:
        """Whether a segment filter shows part of the tokens."""
        return self.filter != "All"


def focus(trace: Trace, opts: Mapping[str, Any]) -> Focus:
    """The :class:`Focus` of resolved options ``opts`` (:func:`resolve`) on ``trace``."""
    kind = opts.get("kind", trace.default_kind)
    L, H, q, k = trace.shape(kind)
    layers = list(opts.get("include_layers") or range(L))
    head_set = list(opts.get("include_heads") or range(H))
    chosen = opts.get("filter", "All")
    if chosen == "All":
        rows, cols = (0, q), (0, k)
    else:
        a, b = (trace.segments[name] for name in chosen.split("->"))
        rows, cols = (a.start, a.end), (b.start, b.end)
    return Focus(kind, layers, head_set, opts.get("layer", layers[0]), opts.get("head", head_set[0]),
                 list(opts.get("heads") or head_set), rows, cols, chosen)


def metrics_wanted(view: str, opts: Mapping[str, Any]) -> bool | None:
    """``encode``'s ``metrics=`` for a view: a view with metric frames always when a ``metric`` is chosen, else
    when cheap (``None``); other views never."""
    if not spec(view).metrics:
        return False
    return True if opts.get("metric") else None


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(p.capitalize() for p in rest)
