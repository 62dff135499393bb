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
    hide_sinks: bool | str | Sequence[int | str] | None = None,
) -> View:
    """For one layer, head and query token: the query vector, every key vector, their element-wise product,
    the scaled dot product and the softmax weights as colour bars (blue positive, orange negative), with lines
    weighted by attention.

    Needs a trace captured with ``qkv=True`` (vectors are taken after rotary embedding, with grouped key/value
    heads repeated), else raises :class:`~attnscope.errors.MissingDataError`. ``query`` is a token index.

    ``hide_sinks`` (as in :func:`~attnscope.views.head_view`: True, ``"first"``, ``"special"`` or the tokens to
    hide) sets the view's Hide sinks control: the sink keys are left out of the lines and the softmax bars (their
    rows say "hidden"), the bars' colours scale to the largest weight shown, and the view says what share of the
    query's attention the hidden keys held. Units (``by=``) do not apply: query and key vectors belong to single
    tokens, and a word has no vector of its own.
    """
    return View("neuron", trace, dict(
        kind=kind, layer=layer, head=head, query=query, include_layers=include_layers,
        include_heads=include_heads, theme=theme, prettify=prettify, picture=picture, hide_sinks=hide_sinks,
    ))
