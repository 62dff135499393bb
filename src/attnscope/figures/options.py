"""The options every figure accepts, checked once against the trace (the same names as the HTML views)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError, MissingDataError
from ..tokens import prettify_tokens
from .style import THEMES, Theme

OPTION_NAMES = ("kind", "layer", "heads", "include_layers", "include_heads", "query", "head", "theme", "prettify")


@dataclass(frozen=True)
class Options:
    """Resolved options: indices are in range and non-negative, ``None`` defaults are filled in.

    ``layer``/``head``: the one layer and head a view focuses on (default 0); ``query``: the query token the neuron
    view explains and the matrix view outlines (``None``: not given; the neuron view then takes token 0).
    ``heads``: heads drawn by the head view; ``layers``/``head_set``: rows and columns of the model grid.
    """

    kind: str
    layer: int
    head: int
    query: int | None
    heads: list[int]
    layers: list[int]
    head_set: list[int]
    theme: Theme
    query_labels: list[str]
    key_labels: list[str]


def resolve(trace, *, kind=None, layer=None, heads=None, include_layers=None, include_heads=None, query=None,
            head=None, theme=None, prettify=None, **unknown) -> Options:
    """Check the options against ``trace`` and fill in defaults; bad values raise InputError saying what is valid."""
    if unknown:
        raise InputError(
            f"unknown figure option(s) {sorted(unknown)}; the options are: {', '.join(OPTION_NAMES)}"
        )
    if kind is None:
        kind = trace.default_kind
    elif kind not in trace.attention:
        raise MissingDataError(f"this trace has no {kind!r} attention; pick kind= one of {trace.kinds}")
    L, H, Q, _ = trace.shape(kind)
    theme = "light" if theme is None else theme
    if theme not in THEMES:
        raise InputError(f"unknown theme {theme!r}; expected one of {', '.join(THEMES)}")
    query_stream, key_stream = trace.streams(kind)
    shown = list if prettify is False else prettify_tokens
    return Options(
        kind=kind,
        layer=_index(layer, L, "layer", "layers"),
        head=_index(head, H, "head", "heads"),
        query=None if query is None else _index(query, Q, "query", "query tokens"),
        heads=_indices(heads, H, "heads", "heads"),
        layers=_indices(include_layers, L, "include_layers", "layers"),
        head_set=_indices(include_heads, H, "include_heads", "heads"),
        theme=THEMES[theme],
        query_labels=shown(trace.tokens[query_stream]),
        key_labels=shown(trace.tokens[key_stream]),
    )


def _index(value, n: int, name: str, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a whole number; got {value!r}")
    if not -n <= value < n:
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
