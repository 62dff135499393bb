"""Deferred payloads: the layout of :mod:`attnscope.encode` with every head left out, for pages that fetch heads.

A view of a long input can be too large to send at once. Its *deferred* payload holds everything but the heads
(tokens and labels, segments, shapes, form, kept mass, head metrics and, when asked, the model grid's thumbnails)
and ``null`` where each head's data goes: ``data[layer][head]``, or with ``vectors=True`` (the neuron view)
``qkv["query"|"key"|"bias"][layer][head]``. The page gives the views a source (``payload.fetchHeads``, see
``web/core.js``): a view asks it for the heads it draws, draws a placeholder, and draws again when they arrive (the
web app answers from ``GET /api/traces/{id}/head``, the payload of those heads made by :func:`attnscope.encode.encode`).
A trace in the q/k form gets its ``qk`` entry without queries and keys (the mask rule, and the overview as
thumbnails): views stream the rows they draw (``spec.fetchRows``, ``web/recompute.js``).

:func:`estimate_bytes` says roughly how large the whole payload would be, to choose between the two.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import numpy as np

from .attention import PrunedAttention
from .encode import DTYPES, encode, thumbnails
from .encode_qk import MINIMAP_SIZE, qk_spec
from .qk import QKAttention
from .trace import Trace


def deferred(
    trace: Trace,
    *,
    kinds: Sequence[str] | None = None,
    include_layers: Sequence[int] | None = None,
    include_heads: Sequence[int] | None = None,
    dtype: str = "uint8",
    vectors: bool = False,
    thumb_size: int | None = None,
    metrics: bool | None = False,
    cache: MutableMapping[Any, Any] | None = None,
) -> dict[str, Any]:
    """The payload :func:`attnscope.encode.encode` would make with these arguments, each head's data ``null``
    (module docstring). ``vectors=True``: the heads are query/key vectors (the neuron view), else weights in
    ``dtype``; ``thumb_size``: the model grid's thumbnails travel, pooled to at most that many pixels a side (q/k
    traces always carry their overview, at :data:`~attnscope.encode_qk.MINIMAP_SIZE` without ``thumb_size``).
    ``cache``: where the thumbnails of every head of a kind are kept between calls (the web app keeps one per trace).
    """
    payload = encode(trace, kinds=kinds, include_layers=include_layers, include_heads=include_heads,
                     attention=False, metrics=metrics)
    for kind, spec in payload["kinds"].items():
        layers, heads, att = spec["layers"], spec["heads"], trace.attention[kind]
        nulls = [[None] * len(heads) for _ in layers]
        if isinstance(att, QKAttention):  # the rule (and overview): the page fetches the rows and vectors it draws
            spec.update(form="qk", dtype="f16", keptMass=1.0, minKeptMass=1.0, pruning=None,
                        qk=qk_spec(att, layers, heads, 0, []))
            if not vectors:
                size = min(thumb_size or MINIMAP_SIZE, max(spec["shape"]))
                spec.update(thumbSize=size, thumb=_thumbs(att, kind, layers, heads, size, cache))
        elif vectors:
            d = int(trace.qkv[kind]["query"].shape[-1])
            scaling = trace.meta.get("kinds", {}).get(kind, {}).get("scaling", d**-0.5)
            spec["qkv"] = {"d": d, "scaling": float(scaling), "query": nulls, "key": [row[:] for row in nulls],
                           "bias": [row[:] for row in nulls] if kind in trace.bias else None}
        else:
            spec.update(form="pruned" if att.pruned else "dense", dtype=DTYPES[dtype], data=nulls, keptMass=1.0,
                        minKeptMass=1.0, pruning={"source": "trace"} if att.pruned else None)
            if isinstance(att, PrunedAttention):
                mass = att.row_mass()[np.ix_(layers, heads)]
                spec.update(keptMass=round(float(mass.mean(dtype=np.float64)), 6), minKeptMass=round(float(mass.min()), 6))
            if thumb_size is not None:
                size = min(thumb_size, max(spec["shape"]))
                spec.update(thumbSize=size, thumb=_thumbs(att, kind, layers, heads, size, cache))
    return payload


def estimate_bytes(
    trace: Trace,
    *,
    kinds: Sequence[str] | None = None,
    include_layers: Sequence[int] | None = None,
    include_heads: Sequence[int] | None = None,
    dtype: str = "uint8",
    vectors: bool = False,
) -> int:
    """Roughly how many bytes the heads of the whole payload would take (base64 included): the weights in
    ``dtype``, or with ``vectors=True`` the float16 query/key vectors (and position bias)."""
    per_value = 2 if dtype == "float16" else 1
    total = 0
    for kind in trace.kinds if kinds is None else kinds:
        L, H, q, k = trace.shape(kind)
        n_heads = len(include_layers or range(L)) * len(include_heads or range(H))
        att = trace.attention[kind]
        per_head: float
        if vectors and isinstance(att, QKAttention):
            per_head = 2 * (q + k) * int(att.query.shape[-1]) + 4 * q
        elif vectors:
            d = int(trace.qkv[kind]["query"].shape[-1])
            per_head = 2 * (q + k) * d + (2 * q * k if kind in trace.bias else 0)
        elif isinstance(att, PrunedAttention):
            index_bytes = 2 if k <= 65536 else 4
            per_head = att.values.size / (L * H) * (per_value + index_bytes) + 4 * (q + 1)
        else:
            per_head = q * k * per_value
        total += int(n_heads * per_head)
    return total * 4 // 3


def _thumbs(att, kind: str, layers: list[int], heads: list[int], size: int,
            cache: MutableMapping[Any, Any] | None) -> dict[str, Any]:
    """The thumbnails of ``layers`` x ``heads``, kept in ``cache`` when they are every head's (subsets are many)."""
    if cache is None or len(layers) != att.shape[0] or len(heads) != att.shape[1]:
        return thumbnails(att, layers, heads, size)
    key = ("thumb", kind, size)
    if key not in cache:
        cache[key] = thumbnails(att, layers, heads, size)
    return cache[key]


__all__ = ["deferred", "estimate_bytes"]
