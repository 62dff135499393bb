"""What the pages draw: the views' own payloads, whole for short inputs, fetched head by head for long ones.

A short input gets exactly what a saved view holds (:meth:`attnscope.views.View.data`). When that payload would
pass ``Settings.lazy_bytes``, the page gets a *skeleton* instead: the same layout (tokens, segments, shapes,
form, kept mass, model-view thumbnails) with ``null`` where each head's data goes; the page fills a head in from
:func:`head_payload` (``GET /api/traces/{id}/head``) the first time a view reads it. A trace in the q/k form gets
its ``"qk"`` entry with no queries or keys (thumbnails and the mask rule only): the views fetch the blocks of rows
they draw from :func:`rows_payload` (``GET /api/traces/{id}/rows``) as they come into view, never a whole head.
Both sides use the layout documented in :mod:`attnscope.encode`, so the JavaScript views are the very ones a saved
file uses.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..attention import PrunedAttention
from ..encode import DTYPES, _encode_thumbs, encode, quantize
from ..encode_qk import MINIMAP_SIZE, head_vectors, qk_spec
from ..errors import InputError
from ..qk import QKAttention
from ..trace import Trace
from ..views import View
from ..views.options import js_options, metrics_wanted
from .store import Entry

THUMB_SIZE = 64
#: The most weights one rows request may ask for (all its heads together): 4 MB of float16. A window, a whole row
#: or a whole column of a long input fits; a whole head of one does not.
ROWS_MAX = 1 << 21
#: The most weights one rows request may compute (forms other than q/k read whole rows to cut a block from them).
ROWS_COMPUTED_MAX = 1 << 23


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


def rows_payload(trace: Trace, kind: str | None, layer: int, heads: list[int] | None, rows: tuple[int, int],
                 keys: tuple[int, int] | None) -> dict:
    """Weights of query rows ``rows[0]..rows[1]-1`` at keys ``keys[0]..keys[1]-1`` (default: all) of some heads of
    one layer (``heads=None``: all of them): ``{"kind", "layer", "heads", "rows", "keys", "dtype": "f16", "data"}``,
    ``data[n]`` base64 float16 ``[rows, keys]`` row-major for ``heads[n]``. Exact: a q/k trace computes only those
    cells (:meth:`attnscope.qk.QKAttention.weights`). At most :data:`ROWS_MAX` weights a request."""
    kind = kind or trace.default_kind
    if kind not in trace.attention:
        raise InputError(f"this trace has no {kind!r} attention; it has {trace.kinds}")
    att = trace.attention[kind]
    L, H, q, k = att.shape
    heads = list(range(H)) if heads is None else heads
    (r0, r1), (c0, c1) = rows, keys if keys is not None else (0, k)
    if not 0 <= layer < L:
        raise InputError(f"layer must be in 0..{L - 1}; got {layer}")
    if not heads or any(not 0 <= h < H for h in heads):
        raise InputError(f"heads must be in 0..{H - 1}; got {heads}")
    if not (0 <= r0 < r1 <= q and 0 <= c0 < c1 <= k):
        raise InputError(f"rows {r0}..{r1} x keys {c0}..{c1} are not a block of the {q} x {k} weights (start < stop, "
                         "stop at most the length)")
    size = (r1 - r0) * (c1 - c0) * len(heads)
    computed = size if att.form == "qk" else (r1 - r0) * k * len(heads)
    if size > ROWS_MAX or computed > ROWS_COMPUTED_MAX:
        raise InputError(f"{len(heads)} heads x rows {r0}..{r1} x keys {c0}..{c1} are {size} weights; ask for at most "
                         f"{ROWS_MAX} at once (a window, a row or a column of a head, not a whole long head)")

    def block(h: int) -> np.ndarray:
        if isinstance(att, QKAttention):
            return att.weights(layer, h, r0, r1, c0, c1)
        return att.rows(layer, h, r0, r1)[:, c0:c1]

    return {"kind": kind, "layer": layer, "heads": heads, "rows": [r0, r1], "keys": [c0, c1], "dtype": "f16",
            "data": [base64.b64encode(quantize(block(h), "f16")).decode("ascii") for h in heads]}


def vectors_payload(trace: Trace, kind: str | None, layer: int, head: int) -> dict:
    """``{"kind", "layer", "head", "query", "key", "lse"}``: one head's vectors of a trace in the q/k form
    (:func:`attnscope.encode_qk.head_vectors`)."""
    kind = kind or trace.default_kind
    att = trace.attention.get(kind)
    if att is None or att.form != "qk":
        raise InputError(f"{kind!r} attention of this trace is not in the q/k form; read its query/key vectors with "
                         "GET /head?qkv=1")
    L, H, _, _ = att.shape
    if not (0 <= layer < L and 0 <= head < H):
        raise InputError(f"layer and head must be in 0..{L - 1} and 0..{H - 1}; got {layer} and {head}")
    return {"kind": kind, "layer": layer, "head": head, **head_vectors(att, layer, head)}


def estimate_bytes(trace: Trace, view: str, opts: Mapping[str, Any]) -> int:
    """Roughly how many bytes the view's full payload would take (base64 included)."""
    total = 0
    per_value = 2 if _dtype(view, opts) == "float16" else 1
    for kind in _kinds(trace, view):
        L, H, q, k = trace.shape(kind)
        n_heads = len(opts.get("include_layers") or range(L)) * len(opts.get("include_heads") or range(H))
        att = trace.attention[kind]
        if view == "neuron" and isinstance(att, QKAttention):
            per_head: float = 2 * (q + k) * int(att.query.shape[-1]) + 4 * q
        elif view == "neuron":
            d = int(trace.qkv[kind]["query"].shape[-1])
            per_head = 2 * (q + k) * d + (2 * q * k if kind in trace.bias else 0)
        else:
            if isinstance(att, PrunedAttention):
                index_bytes = 2 if k <= 65536 else 4
                per_head = att.values.size / (L * H) * (per_value + index_bytes) + 4 * (q + 1)
            else:
                per_head = q * k * per_value
        total += int(n_heads * per_head)
    return total * 4 // 3


def skeleton(entry: Entry, view: str, opts: Mapping[str, Any]) -> dict[str, Any]:
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

        att = trace.attention[kind]
        if att.form == "qk":  # the rule (and thumbnails): the page fetches the rows and vectors it draws
            spec.update(form="qk", dtype="f16", keptMass=1.0, minKeptMass=1.0, pruning=None,
                        qk=qk_spec(att, layers, heads, 0, []))
            if view != "neuron":
                size = min(int(opts.get("thumb_size", THUMB_SIZE)) if view == "model" else MINIMAP_SIZE, max(spec["shape"]))
                spec.update(thumbSize=size, thumb=_thumbs(entry, kind, att, layers, heads, size))
            continue
        if view == "neuron":
            d = int(trace.qkv[kind]["query"].shape[-1])
            scaling = trace.meta.get("kinds", {}).get(kind, {}).get("scaling", d**-0.5)
            spec["qkv"] = {"d": d, "scaling": float(scaling), "query": nulls(), "key": nulls(),
                           "bias": nulls() if kind in trace.bias else None}
            continue
        spec.update(form="pruned" if att.pruned else "dense", dtype=DTYPES[_dtype(view, opts)], data=nulls(),
                    keptMass=1.0, minKeptMass=1.0)
        if isinstance(att, PrunedAttention):
            mass = att.row_mass()[np.ix_(layers, heads)]
            spec.update(indexBytes=2 if spec["shape"][1] <= 65536 else 4,
                        keptMass=round(float(mass.mean(dtype=np.float64)), 6), minKeptMass=round(float(mass.min()), 6))
        if view == "model":
            size = min(int(opts.get("thumb_size", THUMB_SIZE)), max(spec["shape"]))
            spec["thumb"] = _thumbs(entry, kind, att, layers, heads, size)
            spec["thumbSize"] = size
    return payload


def _thumbs(entry: Entry, kind: str, att, layers: list[int], heads: list[int], size: int) -> dict[str, Any]:
    """The thumbnails of ``layers`` x ``heads`` (kept with the trace when they are every head's)."""
    if len(layers) != att.shape[0] or len(heads) != att.shape[1]:
        return _encode_thumbs(att, layers, heads, size)  # a subset: for this request only (subsets are unbounded)
    key = ("thumb", kind, size)
    if key not in entry.parts:
        entry.parts[key] = _encode_thumbs(att, layers, heads, size)
    return entry.parts[key]


def _kinds(trace: Trace, view: str) -> list[str]:
    if view == "neuron":
        return [k for k in trace.kinds if trace.has_qkv(k) or trace.attention[k].form == "qk"]
    return list(trace.kinds)


def _dtype(view: str, opts: Mapping[str, Any]) -> str:
    return opts.get("dtype", "float16" if view == "matrix" else "uint8")
