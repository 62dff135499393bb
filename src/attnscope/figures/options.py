"""The options every figure accepts, checked once against the trace (the same names as the HTML views)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..attention import block_max
from ..tokens import prettify_tokens
from ..views.options import focus
from ..views.options import resolve as resolve_view_options
from ..views.registry import spec
from .style import THEMES, Theme

if TYPE_CHECKING:
    from .diff import DiffOptions

# Options each figure takes are those of its HTML view (attnscope.views.VIEW_OPTIONS), checked by the same resolver,
# so ``View.save("x.png")`` passes its options on as they are. ``include_layers``/``include_heads`` choose the model
# grid's rows and columns and the heads the others may show; ``dtype``, ``budget_mb``, ``exact_layers`` and
# ``picture`` (the HTML payload's precision, size and picture) are accepted and have no effect on a figure.


@dataclass(frozen=True)
class Options:
    """Resolved options: indices are in range and non-negative, ``None`` defaults are filled in.

    ``layer``/``head``: the one layer and head a view focuses on (default: the first shown); ``query``: the query token the neuron
    view explains and the matrix view outlines (``None``: not given; the neuron view then takes token 0).
    ``heads``: heads drawn by the head view; ``layers``/``head_set``: rows and columns of the model grid.
    ``rows``/``cols``: the query and key tokens shown (all, or two segments picked by ``filter="A->B"``);
    ``filter`` names them (``"All"``, ``"A->B"``); ``query_labels``/``key_labels`` are their display strings.
    ``metric``/``sort``: what the model grid's frames are coloured by and whether each row is ordered by it.
    ``hide_sinks``: the neuron figure's sink keys (the option as given; the other figures draw a trace with its
    sinks hidden already).
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
    hide_sinks: Any = None

    @property
    def cropped(self) -> bool:
        return self.filter != "All"


def resolve(view: str, trace, **options) -> Options | DiffOptions:
    """Check ``options`` for ``view`` against ``trace`` with the views' resolver (:func:`attnscope.views.options.resolve`,
    so a figure takes and refuses exactly what the HTML view does) and fill in what the figure draws."""
    if spec(view).reads == "pair":
        from .diff import resolve as resolve_diff

        return resolve_diff(trace, **options)
    return _figure_options(trace, resolve_view_options(view, trace, options))


def _figure_options(trace, opts: Mapping[str, Any]) -> Options:
    """The figure's fields from resolved view options (``theme="auto"`` draws light; the payload's ``dtype``,
    ``budget_mb`` and ``exact_layers`` do not apply to a figure)."""
    f = focus(trace, opts)
    query_stream, key_stream = trace.streams(f.kind)
    rows, cols = slice(*f.rows), slice(*f.cols)
    shown = list if opts.get("prettify") is False else prettify_tokens
    theme = opts.get("theme", "auto")
    return Options(
        kind=f.kind,
        layer=f.layer,
        head=f.head,
        query=opts.get("query"),
        heads=f.heads,
        layers=f.layers,
        head_set=f.head_set,
        rows=rows,
        cols=cols,
        filter=f.filter,
        theme=THEMES["light" if theme == "auto" else theme],
        query_labels=shown(trace.tokens[query_stream])[rows],
        key_labels=shown(trace.tokens[key_stream])[cols],
        thumb_size=opts.get("thumb_size"),
        metric=opts.get("metric"),
        sort=bool(opts.get("sort", False)),
        hide_sinks=opts.get("hide_sinks"),
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


def boundaries(trace, opts: Options) -> tuple[list[int], list[int]]:
    """Where segments start inside the shown query and key tokens (local indices, the first token excluded)."""
    qs, ks = trace.streams(opts.kind)
    out = []
    for stream, span, n in ((qs, opts.rows, len(opts.query_labels)), (ks, opts.cols, len(opts.key_labels))):
        first = span.start or 0
        out.append(sorted({s.start - first for s in trace.segments.values()
                           if s.stream == stream and 0 < s.start - first < n}))
    return out[0], out[1]
