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
) -> View:
    """Lines from each query token (left) to the key tokens (right), one colour per head, opacity = weight.

    ``kind`` picks self/encoder/decoder/cross attention; ``layer`` and ``heads`` (original indices) are selected
    at start; ``filter`` is ``"All"`` or a segment pair such as ``"A->B"``; ``include_layers``/``include_heads``
    keep only those in the file; ``theme`` is ``"auto"``, ``"light"`` or ``"dark"``; ``prettify=False`` shows raw
    tokens (Ġ, ▁, ##, </w>); ``dtype="float16"`` keeps exact weights instead of sqrt-scaled bytes.
    In the view: click head swatches to toggle (double click: solo), hover a token for only its lines, click to
    pin it.
    """
    return View("head", trace, dict(
        kind=kind, layer=layer, heads=heads, filter=filter, include_layers=include_layers,
        include_heads=include_heads, theme=theme, prettify=prettify, dtype=dtype,
    ))
