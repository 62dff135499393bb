"""Neuron view: how one query token's attention is computed from query and key vectors."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Trace
from ._view import View


def neuron_view(
    trace: Trace,
    *,
    kind: str | None = None,
    layer: int | None = None,
    head: int | None = None,
    query: int | None = None,
    include_layers: Sequence[int] | None = None,
    include_heads: Sequence[int] | None = None,
    theme: str | None = None,
    prettify: bool | None = None,
    picture: bool | None = None,
) -> View:
    """For one layer, head and query token: the query vector, every key vector, their element-wise product,
    the scaled dot product and the softmax weights as colour bars (blue positive, orange negative), with lines
    weighted by attention.

    Needs a trace captured with ``qkv=True`` (vectors are taken after rotary embedding, with grouped key/value
    heads repeated), else raises :class:`~attnscope.errors.MissingDataError`. ``query`` is a token index.
    """
    return View("neuron", trace, dict(
        kind=kind, layer=layer, head=head, query=query, include_layers=include_layers,
        include_heads=include_heads, theme=theme, prettify=prettify, picture=picture,
    ))
