"""Matrix view: one head's weights as a heatmap with token labels and exact values on hover."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Trace
from ._view import View


def matrix_view(
    trace: Trace,
    *,
    kind: str | None = None,
    layer: int | None = None,
    head: int | None = None,
    query: int | None = None,
    filter: str | None = None,
    include_layers: Sequence[int] | None = None,
    include_heads: Sequence[int] | None = None,
    theme: str | None = None,
    prettify: bool | None = None,
    dtype: str | None = None,
    budget_mb: float | None = None,
    exact_layers: Sequence[int] | None = None,
    picture: bool | None = None,
    by: str | None = None,
    hide_sinks: bool | str | Sequence[int | str] | None = None,
    renormalize: bool | None = None,
) -> View:
    """Queries as rows, keys as columns, colour = weight on a square-root scale; hover a cell for its value.

    Weights travel as float16 by default (``dtype="uint8"`` for a smaller file); ``query`` highlights one row.
    Long inputs show a pooled overview of the whole head beside a window of exact cells: click or drag on the
    overview (or scroll over the window) to move it. Other options as in :func:`head_view`.
    ``by``, ``hide_sinks`` and ``renormalize`` set the Units and Hide sinks controls as in :func:`head_view`.
    """
    return View("matrix", trace, dict(
        kind=kind, layer=layer, head=head, query=query, filter=filter, include_layers=include_layers,
        include_heads=include_heads, theme=theme, prettify=prettify, dtype=dtype, budget_mb=budget_mb,
        exact_layers=exact_layers, picture=picture, by=by, hide_sinks=hide_sinks, renormalize=renormalize,
    ))
