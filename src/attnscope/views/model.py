"""Model view: every layer x head of a model as a heatmap thumbnail; click one for its head view."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Trace
from ._view import View


def model_view(
    trace: Trace,
    *,
    kind: str | None = None,
    filter: str | None = None,
    include_layers: Sequence[int] | None = None,
    include_heads: Sequence[int] | None = None,
    theme: str | None = None,
    prettify: bool | None = None,
    dtype: str | None = None,
    budget_mb: float | None = None,
    thumb_size: int | None = None,
    metric: str | None = None,
    sort: bool | None = None,
    exact_layers: Sequence[int] | None = None,
    picture: bool | None = None,
    by: str | None = None,
    hide_sinks: bool | str | Sequence[int | str] | None = None,
    renormalize: bool | None = None,
) -> View:
    """A grid of layers (rows) x heads (columns), each head drawn as a heatmap of its weights (sqrt scale).

    Click a thumbnail to open it as a head view beside the grid. ``thumb_size`` (default 64) caps a thumbnail's
    side in pixels: longer inputs are block-max pooled to it, so the grid stays light at any length; a clicked head
    is decoded only then. Other options (``budget_mb`` too) as in :func:`head_view`.

    ``metric`` colours each thumbnail's frame by a per-head statistic of
    :func:`attnscope.analysis.head_metrics`: ``"entropy"``, ``"distance"``, ``"self"``, ``"previous"``, ``"next"``,
    ``"local"``, ``"first"``, ``"special"``, ``"sink"`` or ``"max"`` (a legend gives the range); ``sort=True``
    orders the heads of each layer by it, highest first (each cell then shows its head's index). Both can be
    changed in the view ("Colour by", "Sort"); hovering a head shows its pattern label and metrics. The metrics
    travel with the view when computing them reads at most ``attnscope.encode.METRICS_AUTO_MAX`` weights (pruned
    heads count only their kept weights: 4096 tokens x 32 layers x 32 heads pruned to 95 % mass take 1.2 s) or
    when ``metric`` is given.
    """
    return View("model", trace, dict(
        kind=kind, filter=filter, include_layers=include_layers, include_heads=include_heads, theme=theme,
        prettify=prettify, dtype=dtype, budget_mb=budget_mb, thumb_size=thumb_size, metric=metric, sort=sort,
        exact_layers=exact_layers, picture=picture, by=by, hide_sinks=hide_sinks, renormalize=renormalize,
    ))
