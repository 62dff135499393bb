"""The options every figure accepts, checked once against the trace (the same names as the HTML views)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..attention import block_max
from ..encode import check_metric
from ..errors import InputError, MissingDataError
from ..tokens import prettify_tokens
from ..views._options import VIEW_OPTIONS
from .style import THEMES, Theme

if TYPE_CHECKING:
    from .diff import DiffOptions

# Options each figure takes are VIEW_OPTIONS, those of each HTML view, so ``View.save("x.png")`` passes its options
# on as they are. ``include_layers``/``include_heads`` only choose the model grid's rows and columns; ``dtype`` and
# ``budget_mb`` (the HTML payload's precision and size) are accepted and have no effect on a figure.


@dataclass(frozen=True)
class Options:
    """Resolved options: indices are in range and non-negative, ``None`` defaults are filled in.

    ``layer``/``head``: the one layer and head a view focuses on (default 0); ``query``: the query token the neuron
    view explains and the matrix view outlines (``None``: not given; the neuron view then takes token 0).
    ``heads``: heads drawn by the head view; ``layers``/``head_set``: rows and columns of the model grid.
    ``rows``/``cols``: the query and key tokens shown (all, or two segments picked by ``filter="A->B"``);
    ``filter`` names them (``"All"``, ``"A->B"``); ``query_labels``/``key_labels`` are their display strings.
    ``metric``/``sort``: what the model grid's frames are coloured by and whether each row is ordered by it.
    """

    kind: str
    layer: int
    head: int
    query: int | None
    heads: list[int]
    layers: list[int]
    head_set: list[int]
    rows: slice
    cols: slice
    filter: str
    theme: Theme
    query_labels: list[str]
    key_labels: list[str]
    thumb_size: int | None
    metric: str | None = None
    sort: bool = False

    @property
    def cropped(self) -> bool:
        return self.rows != slice(None) or self.cols != slice(None)


def resolve(view: str, trace, **options) -> Options | DiffOptions:
    """Check ``options`` for ``view`` against ``trace`` and fill in defaults; bad ones raise InputError.

    ``None`` means "not given" for every option, so defaults live only here.
    """
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(VIEW_OPTIONS[view]))
    if unknown:
        raise InputError(f"the {view} figure has no option(s) {unknown}; it takes {sorted(VIEW_OPTIONS[view])}")
    if view == "diff":
        from .diff import resolve as resolve_diff

        return resolve_diff(trace, **options)
    return _resolve(trace, **options)


def _resolve(trace, *, kind=None, layer=None, heads=None, include_layers=None, include_heads=None, query=None,
             head=None, filter=None, theme=None, prettify=None, thumb_size=None, dtype=None,
             budget_mb=None, metric=None, sort=None) -> Options:
    """``theme="auto"`` (an HTML view option) draws light; ``dtype`` does nothing here (see VIEW_OPTIONS)."""
    if kind is None:
        kind = trace.default_kind
    elif kind not in trace.attention:
        raise MissingDataError(f"this trace has no {kind!r} attention; pick kind= one of {trace.kinds}")
    L, H, Q, _ = trace.shape(kind)
    theme = "light" if theme in (None, "auto") else theme
    if theme not in THEMES:
        raise InputError(f"unknown theme {theme!r}; expected one of {', '.join(THEMES)} (or 'auto')")
    if thumb_size is not None and (not isinstance(thumb_size, numbers.Integral) or thumb_size < 8):
        raise InputError(f"thumb_size must be a whole number >= 8 (pixels); got {thumb_size!r}")
    check_metric(metric, sort)
    query_stream, key_stream = trace.streams(kind)
    rows, cols, filter = _spans(trace, kind, filter)
    shown = list if prettify is False else prettify_tokens
    return Options(
        kind=kind,
        layer=_index(layer, L, "layer", "layers"),
        head=_index(head, H, "head", "heads"),
        query=None if query is None else _index(query, Q, "query", "query tokens"),
        heads=_indices(heads, H, "heads", "heads"),
        layers=_indices(include_layers, L, "include_layers", "layers"),
        head_set=_indices(include_heads, H, "include_heads", "heads"),
        rows=rows,
        cols=cols,
        filter=filter,
        theme=THEMES[theme],
        query_labels=shown(trace.tokens[query_stream])[rows],
        key_labels=shown(trace.tokens[key_stream])[cols],
        thumb_size=None if thumb_size is None else int(thumb_size),
        metric=metric,
        sort=bool(sort),
    )


def head_block(trace, opts: Options, layer: int, head: int, size: int | None = None) -> np.ndarray:
    """The shown part of one head's weights, block-max pooled to at most ``size`` per side when given.

    Uncropped, this is the trace's own ``pooled`` thumbnail (cheap at any length); with a segment filter the
    head is cut to the two segments first.
    """
    att = trace.attention[opts.kind]
    if not opts.cropped:
        return att.head(layer, head) if size is None else att.pooled(layer, head, size)
    block = att.head(layer, head)[opts.rows, opts.cols]
    return block if size is None else block_max(block, size)


def _spans(trace, kind: str, value) -> tuple[slice, slice, str]:
    """``filter`` ``None``/``"All"`` or ``"X->Y"`` (X a segment of the query stream, Y of the key stream)."""
    if value is None or str(value).strip().lower() == "all":
        return slice(None), slice(None), "All"
    text = str(value).replace("\u2192", "->").replace(" ", "")
    qs, ks = trace.streams(kind)
    pick = text.split("->")
    segs = trace.segments
    if len(pick) == 2 and pick[0] in segs and pick[1] in segs and segs[pick[0]].stream == qs \
            and segs[pick[1]].stream == ks:
        return segs[pick[0]].slice(), segs[pick[1]].slice(), text
    choices = ["All"] + [f"{a}->{b}" for a, sa in segs.items() for b, sb in segs.items()
                         if sa.stream == qs and sb.stream == ks]
    raise InputError(f"filter {value!r} does not fit this trace; choose one of {choices}")


def _index(value, n: int, name: str, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a whole number; got {value!r}")
    if not -n <= int(value) < n:
        raise InputError(f"{name}={value} is out of range: this trace has {n} {what} (0 to {n - 1})")
    return int(value) % n


def _indices(values, n: int, name: str, what: str) -> list[int]:
    if values is None:
        return list(range(n))
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = [values]
    if hasattr(values, "tolist"):  # numpy / torch
        values = values.tolist()
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InputError(f"{name} must be a list of whole numbers; got {values!r}")
    if not values:
        raise InputError(f"{name} is empty; give at least one of 0 to {n - 1}, or leave it out for all {what}")
    out = [_index(v, n, name, what) for v in values]
    return sorted(set(out), key=out.index)


def boundaries(trace, opts: Options) -> tuple[list[int], list[int]]:
    """Where segments start inside the shown query and key tokens (local indices, the first token excluded)."""
    qs, ks = trace.streams(opts.kind)
    out = []
    for stream, span, n in ((qs, opts.rows, len(opts.query_labels)), (ks, opts.cols, len(opts.key_labels))):
        first = span.start or 0
        out.append(sorted({s.start - first for s in trace.segments.values()
                           if s.stream == stream and 0 < s.start - first < n}))
    return out[0], out[1]
