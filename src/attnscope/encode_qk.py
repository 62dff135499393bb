"""The ``"qk"`` payload form: a long q/k trace as the views need it, within the payload's size budget.

A trace in the q/k form (:class:`attnscope.qk.QKAttention`) holds no weights, only what recomputes them. Past the
dense limit its payload carries:

- ``thumb``: block-max thumbnails of every included head, pooled exactly from the trace's overview (the model
  view's grid, and the head and matrix views' minimap of the whole sequence);
- ``qk``: for the layers that fit the budget (or those asked for with ``exact_layers``), each head's queries and
  each key/value head's keys as float16, each row's log-sum-exp as float32 and the mask rule, so the browser
  recomputes any row of those layers itself (``web/recompute.js``) as :meth:`QKAttention.rows` does::

      w[i, j] = exp(s - lse[i]),   s = softcap(q_i . k_j * scaling)  where the rule allows (i, j)

  Layers not carried show their overview only, and the view says so (the web app fetches their rows instead).

The ``qk`` entry: ``d`` (head size), ``scaling``, ``causal``, ``softcap`` (or null) and ``windows[layer]`` (a sliding
window or null) are the mask rule; ``kvHeads`` the key/value heads carried and ``kv[head]`` the position in it of each
included head's; ``layers`` the original indices of the carried layers (``skipped``: layer -> why a layer asked for
was not carried). ``query[layer][head]`` and ``key[layer][kv]`` are ``[q, d]`` / ``[k, d]`` float16 coded as
``"f16planes"`` (the low bytes, then the high bytes, deflated, in base64: :func:`unplanes`), ``lse[layer][head]``
base64 float32 ``[q]``; each is null for a layer not carried. ``error``: see below.

Float16 rounds each query and key component to 11 significant bits, which moves a score ``s`` by up to
``scaling * sum_c |q_c k_c| * 2^-10`` and a weight ``w`` by ``w (exp(|ds|) - 1)``: about 1e-3 of a weight for scores
of magnitude ~10. ``qk["error"]`` is the largest difference from the float32 weights measured on sampled rows of
every carried layer (not a bound: other rows may differ a little more), and the views state it as such.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError

#: Thumbnail size (cells a side) a q/k payload ships for the head and matrix views' minimap.
MINIMAP_SIZE = 128
#: Rows per carried layer on which the float16 error is measured (spread over the sequence and the heads).
_ERROR_ROWS = 16
_F16_MAX = 65504.0


def qk_spec(att, layers: list[int], heads: list[int], room: float,
            exact_layers: Sequence[int] | None) -> dict[str, Any]:
    """The kind entry's ``qk`` field (module docstring) for the included ``layers`` x ``heads`` of ``att``.

    ``room``: characters of the budget left for it. ``exact_layers`` (original indices among ``layers``) are all
    carried, or an InputError says the budget is too small; None carries the layers in order while they fit."""
    if exact_layers is not None:
        bad = [int(x) for x in exact_layers if int(x) not in layers]
        if bad:
            raise InputError(f"exact_layers must list some of the included layers {layers}; got {list(exact_layers)}")
    wanted = [layer for layer in layers if exact_layers is None or layer in {int(x) for x in exact_layers}]
    kv_heads = sorted({int(att.kv_index[h]) for h in heads})
    rule, d = att.rule, int(att.query.shape[-1])
    vectors: dict[int, tuple[list[str], list[str], list[str]]] = {}
    skipped: dict[str, str] = {}
    used = 0
    for layer in wanted:
        big = max(float(np.abs(att.query[layer][heads]).max(initial=0.0)),
                  float(np.abs(att.key[layer][kv_heads]).max(initial=0.0)))
        if not big < _F16_MAX:
            skipped[str(layer)] = f"its queries or keys reach {big:.3g}, past float16's range"
            continue
        if exact_layers is None and used + _least_bytes(att, heads, kv_heads) > room:
            break  # cannot fit, however well it compresses: do not encode it to find out
        part = ([_planes(att.query[layer, h]) for h in heads], [_planes(att.key[layer, g]) for g in kv_heads],
                [_lse(att, layer, h) for h in heads])
        size = sum(len(s) + 3 for strings in part for s in strings)
        if used + size > room:
            if exact_layers is not None:
                raise InputError(
                    f"the queries and keys of exact_layers={list(exact_layers)} do not fit budget_mb: layer {layer} "
                    f"takes {_mb(size)} MB and {_mb(max(room - used, 0))} MB are left; raise budget_mb or pick fewer "
                    "layers")
            break
        vectors[layer] = part
        used += size
    kv_pos = {h: i for i, h in enumerate(kv_heads)}
    return {
        "d": d,
        "scaling": float(rule.scaling),
        "causal": bool(rule.causal),
        "softcap": None if rule.softcap is None else float(rule.softcap),
        "windows": [rule.windows[layer] for layer in layers],
        "kvHeads": kv_heads,
        "kv": [kv_pos[int(att.kv_index[h])] for h in heads],
        "layers": list(vectors),
        "skipped": skipped,
        "coding": "f16planes",
        "query": [vectors[layer][0] if layer in vectors else None for layer in layers],
        "key": [vectors[layer][1] if layer in vectors else None for layer in layers],
        "lse": [vectors[layer][2] if layer in vectors else None for layer in layers],
        "error": _error(att, list(vectors), heads),
    }


def head_vectors(att, layer: int, head: int) -> dict[str, Any]:
    """One head's entries of a ``qk`` entry: ``{"query", "key" (its key/value head's), "lse"}`` coded as there (the
    web app sends them to a neuron view of a layer the page does not hold)."""
    query, key = att.query[layer, head], att.key[layer, att.kv_index[head]]
    big = max(float(np.abs(query).max(initial=0.0)), float(np.abs(key).max(initial=0.0)))
    if not big < _F16_MAX:
        raise InputError(f"head {head} of layer {layer} has queries or keys of {big:.3g}, past float16's range: its "
                         "vectors cannot be sent to the page")
    return {"query": _planes(query), "key": _planes(key), "lse": _lse(att, layer, head)}


def split_vectors(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A view's page data (view, options, payload) with the vectors of its ``"qk"`` kinds moved out: each string of
    ``qk["query"|"key"|"lse"]`` becomes ``{"blob": n}`` and is returned as the ``n``-th blob, layer by layer. An HTML
    page carries the blobs after the view's script (``views/_html.py``), so the view draws before the browser has
    read them (a file of 90 MB of vectors opens as fast as one without); ``data`` itself is not changed."""
    payload = data.get("payload") or {}
    kinds = payload.get("kinds") or {}
    if not any(spec.get("form") == "qk" and "qk" in spec for spec in kinds.values()):
        return data, []
    blobs: list[str] = []

    def out(item):
        if not isinstance(item, str):
            return item
        blobs.append(item)
        return {"blob": len(blobs) - 1}

    moved = {}
    for name, spec in kinds.items():
        if spec.get("form") != "qk" or "qk" not in spec:
            moved[name] = spec
            continue
        qk = dict(spec["qk"])
        parts: dict[str, list[Any]] = {part: [None] * len(qk[part]) for part in ("query", "key", "lse")}
        for li in range(len(qk["query"])):  # layer by layer: what a view draws first comes first
            for part in parts:
                layer = qk[part][li]
                parts[part][li] = None if layer is None else [out(item) for item in layer]
        moved[name] = {**spec, "qk": {**qk, **parts}}
    return {**data, "payload": {**payload, "kinds": moved}}, blobs


def decode_rows(spec: dict[str, Any], layer_pos: int, head_pos: int, start: int, stop: int) -> np.ndarray:
    """Rows ``start..stop-1`` ``[stop - start, k]`` float64 of one carried head, recomputed from a payload's ``qk``
    entry as ``web/recompute.js`` does (float16 vectors, float64 arithmetic): for tests and checks."""
    qk = spec["qk"]
    d = qk["d"]
    query = unplanes(qk["query"][layer_pos][head_pos]).reshape(-1, d).astype(np.float64)
    key = unplanes(qk["key"][layer_pos][qk["kv"][head_pos]]).reshape(-1, d).astype(np.float64)
    lse = np.frombuffer(base64.b64decode(qk["lse"][layer_pos][head_pos]), dtype="<f4").astype(np.float64)
    return _weights(query[start:stop], key, lse[start:stop], np.arange(start, stop), qk["scaling"], qk["causal"],
                    qk["windows"][layer_pos], qk["softcap"])


def unplanes(text: str) -> np.ndarray:
    """Inverse of the ``f16planes`` coding: float16 values (low bytes, then high bytes, deflated, in base64)."""
    raw = np.frombuffer(zlib.decompressobj(-15).decompress(base64.b64decode(text)), dtype=np.uint8)
    n = len(raw) // 2
    return (raw[:n].astype(np.uint16) | (raw[n : 2 * n].astype(np.uint16) << 8)).view("<f2")


def _weights(query: np.ndarray, key: np.ndarray, lse: np.ndarray, rows: np.ndarray, scaling: float, causal: bool,
             window: int | None, softcap: float | None) -> np.ndarray:
    s = (query * scaling) @ key.T
    if softcap is not None:
        s = np.tanh(s / softcap) * softcap
    offset = rows[:, None] - np.arange(key.shape[0])[None, :]
    ok = offset >= 0 if causal else np.ones(offset.shape, dtype=bool)
    if window is not None:
        ok &= offset < window
    return np.where(ok, np.exp(np.where(ok, s, 0.0) - lse[:, None]), 0.0)


def _error(att, carried: list[int], heads: list[int]) -> float | None:
    """The largest |weight| difference between rows recomputed from the float16 vectors and the trace's own rows,
    over :data:`_ERROR_ROWS` rows of every carried layer (None when no layer is carried)."""
    if not carried:
        return None
    _, _, q, _ = att.shape
    rule, worst = att.rule, 0.0
    rows = np.unique(np.linspace(0, q - 1, _ERROR_ROWS).round().astype(int))
    for n, layer in enumerate(carried):
        for r, i in enumerate(rows):
            h = heads[(n + r) % len(heads)]
            query = att.query[layer, h, i : i + 1].astype(np.float16).astype(np.float64)
            key = att.key[layer, att.kv_index[h]].astype(np.float16).astype(np.float64)
            lse = np.asarray(att.lse[layer, h, i : i + 1], dtype=np.float32).astype(np.float64)
            got = _weights(query, key, lse, np.array([i]), rule.scaling, rule.causal, rule.windows[layer],
                           rule.softcap)
            worst = max(worst, float(np.abs(got - att.rows(layer, h, i, i + 1)).max()))
    return float(f"{worst:.3g}")


def _lse(att, layer: int, head: int) -> str:
    return _b64(np.asarray(att.lse[layer, head], dtype="<f4").tobytes())


def _planes(values: np.ndarray) -> str:
    """float16 values as their low bytes then their high bytes, deflated (Huffman only), in base64: the high
    bytes (sign, exponent) code in about 5.6 bits, so this is ~14% smaller than plain float16 bytes."""
    raw = np.ascontiguousarray(values, dtype="<f2").reshape(-1).view(np.uint8)
    packer = zlib.compressobj(6, zlib.DEFLATED, -15, 8, zlib.Z_HUFFMAN_ONLY)  # base64 is 6x faster than z85 here
    return _b64(packer.compress(raw[0::2].tobytes() + raw[1::2].tobytes()) + packer.flush())


def _least_bytes(att, heads: list[int], kv_heads: list[int]) -> float:
    """Fewer characters than one layer's vectors can take (float16 planes deflate to no less than half)."""
    _, _, q, k = att.shape
    d = att.query.shape[-1]
    return (len(heads) * q + len(kv_heads) * k) * d * 2 * 0.5 * 4 / 3 + len(heads) * q * 4 * 4 / 3


def _mb(n: float) -> float:
    return float(f"{n / 1e6:.3g}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
