"""Head view: the attention of one layer's heads as lines between the tokens."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Trace
from ._view import View


def head_view(
    trace: Trace,
    *,
    kind: str | None = None,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
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
    """Lines from each query token (left) to the key tokens (right), one colour per head, opacity = weight.

    ``kind`` picks self/encoder/decoder/cross attention; ``layer`` and ``heads`` (original indices) are selected
    at start; ``filter`` is ``"All"`` or a segment pair such as ``"A->B"``; ``include_layers``/``include_heads``
    keep only those in the file; ``theme`` is ``"auto"``, ``"light"`` or ``"dark"``; ``prettify=False`` shows raw
    tokens (Ġ, ▁, ##, </w>); ``dtype="float16"`` keeps exact weights instead of sqrt-scaled bytes;
    ``budget_mb`` (default 100) caps the file's attention data: long inputs keep each row's largest weights up to
    95% of its attention, less if the budget demands it, and the view states the mass it kept. A trace in the q/k form
    (``capture(..., form="qk")``) keeps every weight: the file carries the queries and keys of as many layers as
    ``budget_mb`` allows (or ``exact_layers``), the browser recomputes their rows as they come into view, and the
    other layers show their overview (the view says which). ``picture=False`` leaves out the static picture of the
    view's first state that the HTML carries for places where scripts do not run (and the notebook output's PNG).
    In the view: click head swatches to toggle (double click: solo), hover a token for only its lines, click to
    pin it. Long inputs show a scrolling window of tokens (lines between the tokens on screen; a focused token's
    lines to tokens off screen end at the window's edge) and a search box that jumps to a token.
    A trace captured with ``generate=N`` gets a step slider (keyboard, previous/next, play; "All" leaves it): step
    ``s`` shows the prompt and the first ``s`` generated tokens and draws the row of the last of them, i.e. what it
    attended to when the model chose the next token (shown beside the slider).
    ``by`` (``"token"``, ``"word"``, ``"sentence"``, ``"paragraph"``) sets the view's Units control: attention to a
    unit sums its pieces, attention from a unit averages them. ``hide_sinks`` sets its Hide sinks control (``True``:
    the first and the special tokens; ``"first"``, ``"special"``, or token positions and strings): they leave what is
    shown, the view says how much attention they held, colours scale to what is shown, ``renormalize=True`` divides
    each row by what is shown (see :mod:`attnscope.views._units`).
    """
    return View("head", trace, dict(
        kind=kind, layer=layer, heads=heads, filter=filter, include_layers=include_layers,
        include_heads=include_heads, theme=theme, prettify=prettify, dtype=dtype, budget_mb=budget_mb,
        exact_layers=exact_layers, picture=picture, by=by, hide_sinks=hide_sinks, renormalize=renormalize,
    ))
