"""What the pages draw: the views' own payloads, whole for short inputs, fetched head by head for long ones.

A short input gets exactly what a saved view holds (:meth:`attnscope.views.View.data`). When that payload would
pass ``Settings.lazy_bytes``, the page gets the view's *deferred* payload instead (:mod:`attnscope.encode_deferred`:
the same layout with ``null`` where each head's data goes); the views ask the page for the heads they draw, and the
page fetches them from :func:`head_payload` (``GET /api/traces/{id}/head``) asynchronously, the views drawing again
when they arrive. A trace in the q/k form gets its ``"qk"`` entry with no queries or keys (thumbnails and the mask
rule only): the views fetch the blocks of rows they draw from :func:`rows_payload` (``GET /api/traces/{id}/rows``)
as they come into view, never a whole head. Both sides use the layout documented in :mod:`attnscope.encode`, so the
JavaScript views are the very ones a saved file uses.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from ..encode import encode, quantize
from ..encode_deferred import deferred, estimate_bytes
from ..encode_qk import head_vectors
from ..errors import InputError
from ..qk import QKAttention
from ..trace import Trace
from ..views import View
from ..views.options import js_options, metrics_wanted
from ..views.registry import has_vectors, spec
from .store import Entry

#: The most weights one rows request may ask for (all its heads together): 4 MB of float16. A window, a whole row
#: or a whole column of a long input fits; a whole head of one does not.
ROWS_MAX = 1 << 21
#: The most weights one rows request may compute (forms other than q/k read whole rows to cut a block from them).
ROWS_COMPUTED_MAX = 1 << 23


def view_data(entry: Entry, view: str, options: dict[str, Any], *, lazy: bool | None, lazy_bytes: int) -> dict:
    """``{"view", "options", "payload", "lazy"}`` for one view of a held trace (options checked by the view).

    ``lazy=None`` decides by size: a payload estimated above ``lazy_bytes`` is sent deferred (heads left out).
    """
    v, trace, about = View(view, entry.trace, options), entry.trace, spec(view)
    opts = v.options
    picked: dict[str, Any] = {
        "kinds": [k for k in trace.kinds if not about.vectors or has_vectors(trace, k)],
        "include_layers": opts.get("include_layers"), "include_heads": opts.get("include_heads"),
        "dtype": opts.get("dtype", about.dtype), "vectors": about.vectors,
    }
    if lazy is None:
        lazy = estimate_bytes(trace, **picked) > lazy_bytes
    if not lazy:
        return {**v.data(), "lazy": False}
    payload = deferred(trace, **picked, thumb_size=opts.get("thumb_size", about.thumb_size) if about.thumb_size else None,
                       metrics=metrics_wanted(view, opts), cache=entry.parts)
    return {"view": view, "options": js_options(opts), "payload": payload, "lazy": True, "dtype": picked["dtype"]}


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
