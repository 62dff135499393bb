"""Trace -> compact payload for the HTML views.

A payload is a small JSON document (tokens, segments, shapes, options) whose arrays travel as base64 strings of
quantized bytes, one string per head, so the browser decodes only the head it is looking at:

- ``"sqrt8"`` (default): ``uint8`` holding ``round(sqrt(w) * 255)``; the square-root scale keeps small weights
  apart (1/256 decodes to 0.00394) at a quarter of float32's size.
- ``"f16"``: little-endian float16, for exact values (the matrix view's default).

Layout, for each attention kind under ``payload["kinds"][kind]`` (``q``/``k`` query/key tokens):

- ``layers`` / ``heads``: the original indices of the layers and heads that were included.
- ``form == "dense"``: ``data[layer][head]`` is one base64 string of ``q*k`` values, row-major.
- ``form == "pruned"``: ``data[layer][head]`` is ``{"indptr", "indices", "values"}``: per-head CSR with ``indptr``
  uint32 ``[q+1]`` (offsets into this head's entries), ``indices`` uint16 (uint32 when k > 65536) and ``values``
  in ``dtype``. ``keptMass`` is the fraction of attention kept, averaged over rows (as
  :meth:`Trace.kept_mass`; 1.0 for dense), ``minKeptMass`` the worst row's; views state them.
- ``thumbSize`` (model view): thumbnails are block-max pooled to at most this many pixels a side. The browser
  pools them itself from dense weights; pruned or very large payloads ship them as ``thumb``:
  ``thumb["data"][layer][head]`` sqrt8 bytes of ``thumb["shape"]``, square blocks of ``thumb["block"]`` tokens.
- ``qkv`` (neuron view): ``qkv["query"][layer][head]`` float16 ``[q, d]``, ``qkv["key"][layer][head]`` ``[k, d]``,
  ``qkv["bias"]`` ``[q, k]`` or null (T5's position bias), with ``scaling`` and ``causal`` beside them.

JSON never holds an array of floats; :func:`script_json` serialises a payload for a ``<script>`` block.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from .attention import PrunedAttention
from .errors import InputError, MissingDataError
from .trace import Trace

PAYLOAD_FORMAT = "attnscope-payload"
PAYLOAD_VERSION = 1
DTYPES = {"uint8": "sqrt8", "float16": "f16"}
#: Dense payloads with more weights than this ship pooled thumbnails instead of letting the browser pool them.
POOL_IN_BROWSER = 2**24


def encode(
    trace: Trace,
    *,
    kinds: Sequence[str] | None = None,
    include_layers: Sequence[int] | None = None,
    include_heads: Sequence[int] | None = None,
    dtype: str = "uint8",
    thumb_size: int | None = None,
    attention: bool = True,
    qkv: bool = False,
) -> dict[str, Any]:
    """Build the payload of ``trace`` for the views (see the module docstring for its layout).

    ``kinds`` defaults to every kind in the trace; ``include_layers``/``include_heads`` keep only those
    (original indices); ``dtype`` is ``"uint8"`` (sqrt-scaled bytes) or ``"float16"``; ``thumb_size`` sets the
    model view's thumbnail size (shipped pooled when the browser should not pool them itself); ``attention=False`` leaves the weights out
    (the neuron view recomputes them from q and k); ``qkv=True`` adds query/key vectors (float16).
    """
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {sorted(DTYPES)}; got {dtype!r}")
    if thumb_size is not None and thumb_size < 2:
        raise InputError(f"thumb_size must be >= 2 pixels; got {thumb_size}")
    kinds = list(trace.kinds if kinds is None else kinds)
    for kind in kinds:
        if kind not in trace.attention:
            raise MissingDataError(f"this trace has no {kind!r} attention; it has {trace.kinds}")
    streams = sorted({s for kind in kinds for s in trace.streams(kind)})
    payload: dict[str, Any] = {
        "format": PAYLOAD_FORMAT,
        "version": PAYLOAD_VERSION,
        "tokens": {s: list(trace.tokens[s]) for s in streams},
        "segments": {
            name: {"stream": seg.stream, "start": seg.start, "end": seg.end}
            for name, seg in trace.segments.items()
            if seg.stream in streams
        },
        "meta": {k: str(trace.meta[k]) for k in ("model", "model_type", "architecture") if trace.meta.get(k)},
        "kinds": {},
    }
    for kind in kinds:
        L, H, q, k = trace.shape(kind)
        layers = _pick(include_layers, L, "include_layers", "layers")
        heads = _pick(include_heads, H, "include_heads", "heads")
        info = trace.meta.get("kinds", {}).get(kind, {})
        qs, ks = trace.streams(kind)
        spec: dict[str, Any] = {
            "query": qs,
            "key": ks,
            "shape": [q, k],
            "layers": layers,
            "heads": heads,
            "causal": bool(info.get("causal", False)),
        }
        if attention:
            spec.update(_encode_attention(trace.attention[kind], layers, heads, DTYPES[dtype]))
            if thumb_size is not None:
                spec["thumbSize"] = thumb_size
                att = trace.attention[kind]
                big = att.pruned or len(layers) * len(heads) * q * k > POOL_IN_BROWSER
                if big and max(q, k) > thumb_size:
                    spec["thumb"] = _encode_thumbs(att, layers, heads, thumb_size)
        if qkv:
            spec["qkv"] = _encode_qkv(trace, kind, layers, heads, info)
        payload["kinds"][kind] = spec
    return payload


def script_json(obj: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element: ``<``, ``>``, ``&``, U+2028/2029 are escaped."""
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def quantize(weights: np.ndarray, code: str) -> bytes:
    """Weights in ``[0, 1]`` -> bytes in ``code`` (``"sqrt8"`` or ``"f16"``)."""
    weights = np.asarray(weights, dtype=np.float32)
    if code == "sqrt8":
        return np.rint(np.sqrt(np.clip(weights, 0.0, 1.0)) * 255.0).astype(np.uint8).tobytes()
    return weights.astype("<f2").tobytes()


def dequantize(data: bytes, code: str) -> np.ndarray:
    """Inverse of :func:`quantize` (up to its rounding), as float32."""
    if code == "sqrt8":
        return (np.frombuffer(data, dtype=np.uint8).astype(np.float32) / 255.0) ** 2
    return np.frombuffer(data, dtype="<f2").astype(np.float32)


def decode_head(payload: dict[str, Any], kind: str, layer: int, head: int) -> np.ndarray:
    """One head ``[q, k]`` float32 read back from a payload; ``layer``/``head`` are original indices."""
    spec = payload["kinds"][kind]
    li, hi = spec["layers"].index(layer), spec["heads"].index(head)
    q, k = spec["shape"]
    item = spec["data"][li][hi]
    if spec["form"] == "dense":
        return dequantize(_unb64(item), spec["dtype"]).reshape(q, k)
    indptr = np.frombuffer(_unb64(item["indptr"]), dtype="<u4").astype(np.int64)
    indices = np.frombuffer(_unb64(item["indices"]), dtype=f"<u{spec['indexBytes']}").astype(np.int64)
    out = np.zeros((q, k), dtype=np.float32)
    out[np.repeat(np.arange(q), np.diff(indptr)), indices] = dequantize(_unb64(item["values"]), spec["dtype"])
    return out


# ----------------------------------------------------------------------------- parts


def _encode_attention(att, layers: list[int], heads: list[int], code: str) -> dict[str, Any]:
    if not isinstance(att, PrunedAttention):
        data = [[_b64(quantize(att.head(layer, h), code)) for h in heads] for layer in layers]
        return {"form": "dense", "dtype": code, "data": data, "keptMass": 1.0, "minKeptMass": 1.0}
    L, H, q, k = att.shape
    index_dtype = "<u2" if k <= 65536 else "<u4"
    data = []
    for layer in layers:
        row = []
        for h in heads:
            r0 = (layer * H + h) * q
            ptr = att.indptr[r0 : r0 + q + 1]
            a, b = int(ptr[0]), int(ptr[-1])
            row.append({
                "indptr": _b64((ptr - a).astype("<u4").tobytes()),
                "indices": _b64(att.indices[a:b].astype(index_dtype).tobytes()),
                "values": _b64(quantize(att.values[a:b], code)),
            })
        data.append(row)
    mass = att.row_mass()[np.ix_(layers, heads)]
    return {
        "form": "pruned",
        "dtype": code,
        "indexBytes": 2 if index_dtype == "<u2" else 4,
        "data": data,
        "keptMass": round(float(mass.mean(dtype=np.float64)), 6) if mass.size else 1.0,
        "minKeptMass": round(float(mass.min()), 6) if mass.size else 1.0,
    }


def _encode_thumbs(att, layers: list[int], heads: list[int], size: int) -> dict[str, Any]:
    _, _, q, k = att.shape
    block = -(-max(q, k) // size)
    data = [[_b64(quantize(att.pooled(layer, h, size), "sqrt8")) for h in heads] for layer in layers]
    return {"block": block, "shape": [-(-q // block), -(-k // block)], "dtype": "sqrt8", "data": data}


def _encode_qkv(trace: Trace, kind: str, layers: list[int], heads: list[int], info: dict) -> dict[str, Any]:
    if kind not in trace.qkv:
        raise MissingDataError(
            f"this trace has no query/key vectors for {kind!r} attention, which the neuron view needs; "
            "capture with attnscope.capture(..., qkv=True)"
        )
    parts = trace.qkv[kind]
    d = int(parts["query"].shape[-1])

    def per_head(arr: np.ndarray) -> list[list[str]]:
        return [[_b64(np.asarray(arr[layer, h], dtype="<f2").tobytes()) for h in heads] for layer in layers]

    bias = trace.bias.get(kind)
    return {
        "d": d,
        "scaling": float(info.get("scaling", d**-0.5)),
        "query": per_head(parts["query"]),
        "key": per_head(parts["key"]),
        "bias": None if bias is None else per_head(bias),
    }


def _pick(chosen: Sequence[int] | None, n: int, name: str, what: str) -> list[int]:
    if chosen is None:
        return list(range(n))
    picked = [int(i) for i in chosen]
    bad = [i for i in picked if not 0 <= i < n]
    if bad or not picked:
        raise InputError(f"{name} must be a non-empty list of {what} in 0..{n - 1}; got {list(chosen)}")
    if len(set(picked)) != len(picked):
        raise InputError(f"{name} lists some {what} twice: {list(chosen)}")
    return picked


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)
