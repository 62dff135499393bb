"""What the pages draw: the views' own payloads, whole for short inputs, fetched head by head for long ones.

A short input gets exactly what a saved view holds (:meth:`attnscope.views.View.data`). When that payload would
pass ``Settings.lazy_bytes``, the page gets a *skeleton* instead: the same layout (tokens, segments, shapes,
form, kept mass, model-view thumbnails) with ``null`` where each head's data goes; the page fills a head in from
:func:`head_payload` (``GET /api/traces/{id}/head``) the first time a view reads it. Both sides use the layout
documented in :mod:`attnscope.encode`, so the JavaScript views are the very ones a saved file uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..encode import DTYPES, _encode_thumbs, encode
from ..trace import Trace
from ..views import View
from ..views._options import js_options, metrics_wanted
from .store import Entry

THUMB_SIZE = 64


def view_data(entry: Entry, view: str, options: dict[str, Any], *, lazy: bool | None, lazy_bytes: int) -> dict:
    """``{"view", "options", "payload", "lazy"}`` for one view of a held trace (options checked by the view).

    ``lazy=None`` decides by size: a payload estimated above ``lazy_bytes`` is sent as a skeleton.
    """
    v = View(view, entry.trace, options)
    if lazy is None:
        lazy = estimate_bytes(entry.trace, view, v.options) > lazy_bytes
    if not lazy:
        return {**v.data(), "lazy": False}
    return {"view": view, "options": js_options(v.options), "payload": skeleton(entry, view, v.options),
            "lazy": True, "dtype": _dtype(view, v.options)}


def head_payload(trace: Trace, kind: str, layer: int, heads: list[int] | None, *, dtype: str, qkv: bool) -> dict:
    """The payload of some heads of one layer (``heads=None``: all of them): their attention, or with
    ``qkv=True`` the query/key vectors the neuron view needs. One head: ``heads=[h]``."""
    return encode(trace, kinds=[kind], include_layers=[layer], include_heads=heads, dtype=dtype,
                  attention=not qkv, qkv=qkv)


def estimate_bytes(trace: Trace, view: str, opts: dict[str, Any]) -> int:
    """Roughly how many bytes the view's full payload would take (base64 included)."""
    total = 0
    per_value = 2 if _dtype(view, opts) == "float16" else 1
    for kind in _kinds(trace, view):
        L, H, q, k = trace.shape(kind)
        n_heads = len(opts.get("include_layers") or range(L)) * len(opts.get("include_heads") or range(H))
        if view == "neuron":
            d = int(trace.qkv[kind]["query"].shape[-1])
            per_head = 2 * (q + k) * d + (2 * q * k if kind in trace.bias else 0)
        else:
            att = trace.attention[kind]
            if att.pruned:
                index_bytes = 2 if k <= 65536 else 4
                per_head = att.values.size / (L * H) * (per_value + index_bytes) + 4 * (q + 1)
            else:
                per_head = q * k * per_value
        total += int(n_heads * per_head)
    return total * 4 // 3


def skeleton(entry: Entry, view: str, opts: dict[str, Any]) -> dict[str, Any]:
    """The view's payload with every head's data left ``null`` (see the module docstring)."""
    trace = entry.trace
    kinds = _kinds(trace, view)
    payload = encode(trace, kinds=kinds, attention=False, include_layers=opts.get("include_layers"),
                     include_heads=opts.get("include_heads"), metrics=metrics_wanted(view, opts))
    for kind in kinds:
        spec = payload["kinds"][kind]
        layers, heads = spec["layers"], spec["heads"]

        def nulls() -> list[list[None]]:
            return [[None] * len(heads) for _ in layers]  # noqa: B023 - used at once, in this iteration

        if view == "neuron":
            d = int(trace.qkv[kind]["query"].shape[-1])
            scaling = trace.meta.get("kinds", {}).get(kind, {}).get("scaling", d**-0.5)
            spec["qkv"] = {"d": d, "scaling": float(scaling), "query": nulls(), "key": nulls(),
                           "bias": nulls() if kind in trace.bias else None}
            continue
        att = trace.attention[kind]
        spec.update(form="pruned" if att.pruned else "dense", dtype=DTYPES[_dtype(view, opts)], data=nulls(),
                    keptMass=1.0, minKeptMass=1.0)
        if att.pruned:
            mass = att.row_mass()[np.ix_(layers, heads)]
            spec.update(indexBytes=2 if spec["shape"][1] <= 65536 else 4,
                        keptMass=round(float(mass.mean(dtype=np.float64)), 6), minKeptMass=round(float(mass.min()), 6))
        if view == "model":
            size = min(int(opts.get("thumb_size", THUMB_SIZE)), max(spec["shape"]))
            key = ("thumb", kind, size)
            every = len(layers) == att.shape[0] and len(heads) == att.shape[1]
            if not every:  # a subset: made for this request only (caching every subset could grow without end)
                spec["thumb"] = _encode_thumbs(att, layers, heads, size)
            elif key in entry.parts:
                spec["thumb"] = entry.parts[key]
            else:
                spec["thumb"] = entry.parts[key] = _encode_thumbs(att, layers, heads, size)
            spec["thumbSize"] = size
    return payload


def _kinds(trace: Trace, view: str) -> list[str]:
    return [k for k in trace.kinds if trace.has_qkv(k)] if view == "neuron" else list(trace.kinds)


def _dtype(view: str, opts: dict[str, Any]) -> str:
    return opts.get("dtype", "float16" if view == "matrix" else "uint8")
