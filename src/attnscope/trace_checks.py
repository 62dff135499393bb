"""What a trace file must hold, checked before anything reads it.

:func:`attnscope.load` opens the safetensors container; this module checks the content: the JSON header fields
(types, and that the declared shapes are consistent with the tokens), then every array (dtype, shape, finite
values in range, CSR structure of pruned attention). ``check_values=False`` checks only what costs nothing: the
header, dtypes and shapes, not the values (for inspecting a large file without reading it). A file that fails any check raises
:class:`~attnscope.errors.TraceFormatError` naming the field, so no reader (metrics, views, figures, CLI, web
app) ever sees a malformed trace. Shapes are only ever compared with arrays that exist in the file, so a tiny
file cannot declare a huge shape that a reader would then allocate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

from .errors import TraceFormatError
from .qk import MaskRule
from .text import clean_text

_QKV_PARTS = ("query", "key", "value")
#: The range attention weights may take: softmax outputs, allowing for float16 rounding (1 + 2^-10) and for
#: weights computed elsewhere (``Trace.from_arrays``) that dip a hair below 0.
WEIGHT_RANGE = (-1e-6, 1.0 + 1e-3)
#: Largest array read at once while checking values (elements), so checking a big file needs no big temporary.
_CHUNK = 1 << 22


@dataclass(frozen=True)
class Header:
    """The JSON fields of a trace file's header, parsed and type-checked."""

    forms: dict[str, dict[str, Any]]  # kind -> {"form": "dense" | "pruned", "shape": (L, H, q, k)}
    tokens: dict[str, list[str]]
    segments: dict[str, tuple[str, int, int]]
    meta: dict[str, Any]


def read_header(header: Mapping[str, str], kind_streams: Mapping[str, tuple[str, str]]) -> Header:
    """Parse and check the ``attention``, ``tokens``, ``segments`` and ``meta`` fields of a trace header."""
    forms_raw = _json(header, "attention")
    tokens_raw = _json(header, "tokens")
    segments_raw = _json(header, "segments")
    meta = _json(header, "meta")

    if not isinstance(tokens_raw, dict) or not tokens_raw:
        raise TraceFormatError("header field 'tokens' must map each stream to a list of token strings")
    tokens: dict[str, list[str]] = {}
    for stream, toks in tokens_raw.items():
        if not isinstance(toks, list) or not toks:
            raise TraceFormatError(f"tokens[{stream!r}] must be a non-empty list of strings")
        bad = next((i for i, t in enumerate(toks) if not isinstance(t, str)), None)
        if bad is not None:
            raise TraceFormatError(
                f"tokens[{stream!r}][{bad}] is {type(toks[bad]).__name__} {toks[bad]!r}; every token must be a string"
            )
        tokens[stream] = [clean_text(t) for t in toks]

    if not isinstance(forms_raw, dict) or not forms_raw:
        raise TraceFormatError("header field 'attention' must map each attention kind to its form and shape")
    forms: dict[str, dict[str, Any]] = {}
    for kind, info in forms_raw.items():
        if kind not in kind_streams:
            raise TraceFormatError(f"attention kind {kind!r} is unknown; expected one of {sorted(kind_streams)}")
        if not isinstance(info, dict) or info.get("form") not in ("dense", "pruned", "qk"):
            raise TraceFormatError(f"attention[{kind!r}] must be {{'form': 'dense' | 'pruned' | 'qk', 'shape': [...]}}")
        shape = info.get("shape")
        if not (isinstance(shape, list) and len(shape) == 4 and all(_is_int(s) and s >= 0 for s in shape)):
            raise TraceFormatError(f"attention[{kind!r}]['shape'] must be 4 non-negative integers; got {shape!r}")
        qs, ks = kind_streams[kind]
        for stream in (qs, ks):
            if stream not in tokens:
                raise TraceFormatError(f"attention kind {kind!r} needs tokens for stream {stream!r}")
        want = (len(tokens[qs]), len(tokens[ks]))
        if tuple(shape[2:]) != want or shape[0] < 1 or shape[1] < 1:
            raise TraceFormatError(
                f"attention[{kind!r}] declares shape {shape} but the tokens give [layers >= 1, heads >= 1, "
                f"{want[0]}, {want[1]}]"
            )
        forms[kind] = {**info, "shape": tuple(int(s) for s in shape)}

    if not isinstance(segments_raw, dict):
        raise TraceFormatError("header field 'segments' must map names to [stream, start, end]")
    segments: dict[str, tuple[str, int, int]] = {}
    for name, seg in segments_raw.items():
        if not (isinstance(seg, list) and len(seg) == 3 and isinstance(seg[0], str) and _is_int(seg[1])
                and _is_int(seg[2])):
            raise TraceFormatError(f"segments[{name!r}] must be [stream, start, end]; got {seg!r}")
        n = len(tokens.get(seg[0], ()))
        if not 0 <= seg[1] <= seg[2] <= n:
            raise TraceFormatError(f"segments[{name!r}] = {seg!r} is outside stream {seg[0]!r} ({n} tokens)")
        segments[clean_text(name)] = (seg[0], int(seg[1]), int(seg[2]))

    if not isinstance(meta, dict):
        raise TraceFormatError(f"header field 'meta' must be a JSON object; got {type(meta).__name__}")
    meta = clean_text(meta)
    if "kinds" in meta:
        kinds = meta["kinds"]
        if not isinstance(kinds, dict):
            raise TraceFormatError(f"meta['kinds'] must map attention kinds to their mask rule; got {kinds!r}")
        for kind, info in kinds.items():
            if not isinstance(info, dict):
                raise TraceFormatError(f"meta['kinds'][{kind!r}] must be an object; got {info!r}")
            if "causal" in info and not isinstance(info["causal"], bool):
                raise TraceFormatError(f"meta['kinds'][{kind!r}]['causal'] must be true or false")
            windows = info.get("windows")
            if windows is not None and not (isinstance(windows, list)
                                            and all(w is None or (_is_int(w) and w > 0) for w in windows)):
                raise TraceFormatError(f"meta['kinds'][{kind!r}]['windows'] must list null or a positive window "
                                       "per layer")
            scaling = info.get("scaling")
            if scaling is not None and not (isinstance(scaling, (int, float)) and not isinstance(scaling, bool)
                                            and np.isfinite(scaling) and scaling > 0):
                raise TraceFormatError(f"meta['kinds'][{kind!r}]['scaling'] must be a positive number")
    check_positions(meta, tokens)
    return Header(forms, tokens, segments, meta)


def check_positions(meta: Mapping[str, Any], tokens: Mapping[str, list[str]]) -> None:
    """``meta["words"]`` and ``meta["offsets"]`` (where capture saw each token: :mod:`attnscope.units`), when present:
    per stream of the trace, one entry per token: a word index >= 0 or null, and ``[start, end]`` character offsets
    (``0 <= start <= end``) or null."""
    for field, ok, what in (
        ("words", lambda w: w is None or (_is_int(w) and w >= 0), "a word index >= 0 or null"),
        ("offsets", lambda o: o is None or (isinstance(o, list) and len(o) == 2 and all(_is_int(x) for x in o)
                                          and 0 <= o[0] <= o[1]), "[start, end] with 0 <= start <= end, or null"),
    ):
        table = meta.get(field)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise TraceFormatError(f"meta[{field!r}] must map token streams to one entry per token")
        for stream, entries in table.items():
            n = len(tokens.get(stream, ()))
            if stream not in tokens or not isinstance(entries, list) or len(entries) != n:
                raise TraceFormatError(f"meta[{field!r}][{stream!r}] must list one entry per token of a stream the "
                                       f"trace has ({n} tokens)")
            bad = next((i for i, e in enumerate(entries) if not ok(e)), None)
            if bad is not None:
                raise TraceFormatError(f"meta[{field!r}][{stream!r}][{bad}] is {entries[bad]!r}; expected {what}")


def check_dense(kind: str, weights: np.ndarray, shape: tuple[int, ...], check_values: bool = True) -> None:
    """A dense ``[L, H, q, k]`` weight array: float, the declared shape, finite, in [0, 1]."""
    name = f"attention/{kind}"
    _check_float(name, weights)
    if tuple(weights.shape) != tuple(shape):
        raise TraceFormatError(f"{name} has shape {list(weights.shape)}; the header declares {list(shape)}")
    if check_values:
        _check_range(name, weights, *WEIGHT_RANGE)


def check_pruned(kind: str, arrays: Mapping[str, np.ndarray], shape: tuple[int, ...], check_values: bool = True
                 ) -> None:
    """CSR arrays of pruned attention: ``indptr`` monotone from 0 to nnz, ``indices`` in ``[0, k)``, values and
    kept masses finite in [0, 1], and every length consistent with the declared shape."""
    p = f"attention/{kind}/"
    missing = [n for n in ("indptr", "indices", "values", "mass") if n not in arrays]
    if missing:
        raise TraceFormatError(f"pruned attention {kind!r} lacks {[p + n for n in missing]}")
    indptr, indices, weights, mass = (arrays[n] for n in ("indptr", "indices", "values", "mass"))
    L, H, q, k = shape
    for name, arr in (("indptr", indptr), ("indices", indices)):
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise TraceFormatError(f"{p}{name} must be a 1-D integer array; got {arr.dtype} {list(arr.shape)}")
    _check_float(p + "values", weights)
    _check_float(p + "mass", mass)
    if tuple(mass.shape) != (L, H, q):
        raise TraceFormatError(f"{p}mass has shape {list(mass.shape)}; expected [{L}, {H}, {q}] from the header")
    if indptr.shape != (L * H * q + 1,):
        raise TraceFormatError(f"{p}indptr has {indptr.size} entries; expected layers x heads x queries + 1 = "
                               f"{L * H * q + 1}")
    if weights.shape != indices.shape:
        raise TraceFormatError(f"{p}values ({weights.size}) and {p}indices ({indices.size}) differ in length")
    if indptr[0] != 0 or indptr[-1] != indices.size:
        raise TraceFormatError(f"{p}indptr must start at 0 and end at the number of kept weights ({indices.size}); "
                               f"it goes from {int(indptr[0])} to {int(indptr[-1])}")
    if not check_values:
        return
    for lo in range(0, indptr.size - 1, _CHUNK):
        if (np.diff(indptr[lo : lo + _CHUNK + 1]) < 0).any():
            raise TraceFormatError(f"{p}indptr decreases somewhere: row offsets must never go down")
    _check_range(p + "indices", indices, 0, k - 1, what=f"key positions in [0, {k - 1}]")
    _check_range(p + "values", weights, *WEIGHT_RANGE)
    _check_range(p + "mass", mass, *WEIGHT_RANGE)


def check_qk(kind: str, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any], check_values: bool = True
             ) -> MaskRule:
    """The q/k form: its mask rule, key heads and overview block in the header; queries, keys, row log-sum-exps
    and the overview (cell maxima; cell sums in files written before; either may be absent) consistent with them
    and finite. Returns the rule."""
    p = f"attention/{kind}/"
    L, H, q, k = info["shape"]
    rule_raw: Any = info.get("rule")
    kv, block = info.get("kv_index"), info.get("block")
    try:
        rule = MaskRule.from_json(rule_raw)
        valid = (rule.scaling > 0 and np.isfinite(rule.scaling) and len(rule.windows) == L
                 and all(w is None or (_is_int(w) and w > 0) for w in rule.windows)
                 and (rule.softcap is None or (np.isfinite(rule.softcap) and rule.softcap > 0))
                 and (rule.sinks is None or (len(rule.sinks) == L and all(
                     s is None or (len(s) == H and bool(np.isfinite(s).all())) for s in rule.sinks)))
                 and isinstance(rule_raw["causal"], bool))
    except (TypeError, KeyError, ValueError):
        valid = False
    if not valid:
        raise TraceFormatError(f"attention[{kind!r}]['rule'] must be {{'scaling': > 0, 'causal': bool, 'windows': "
                               f"[{L} x null or a positive window], 'softcap': null or > 0, 'sinks': null or "
                               f"[{L} x null or {H} finite logits]}}; got {rule_raw!r}")
    if not (_is_int(block) and block >= 1):
        raise TraceFormatError(f"attention[{kind!r}]['block'] must be a positive integer; got {block!r}")
    missing = [n for n in ("query", "key", "lse") if n not in arrays]
    if missing:
        raise TraceFormatError(f"q/k attention {kind!r} lacks {[p + n for n in missing]}")
    query, key, lse = (arrays[n] for n in ("query", "key", "lse"))
    overview = {n: arrays[n] for n in ("maxima", "sums") if n in arrays}
    for name, arr in (("query", query), ("key", key), ("lse", lse), *overview.items()):
        _check_float(p + name, arr)
    if query.ndim != 4 or tuple(query.shape[:3]) != (L, H, q) or query.shape[3] < 1:
        raise TraceFormatError(f"{p}query has shape {list(query.shape)}; expected [{L}, {H}, {q}, head size]")
    if key.ndim != 4 or key.shape[0] != L or key.shape[1] < 1 or key.shape[2] != k or key.shape[3] != query.shape[3]:
        raise TraceFormatError(f"{p}key has shape {list(key.shape)}; expected [{L}, key heads, {k}, {query.shape[3]}]")
    if not (isinstance(kv, list) and len(kv) == H and all(_is_int(i) and 0 <= i < key.shape[1] for i in kv)):
        raise TraceFormatError(f"attention[{kind!r}]['kv_index'] must give each of the {H} query heads a key head "
                               f"in 0..{key.shape[1] - 1}")
    if lse.shape != (L, H, q):
        raise TraceFormatError(f"{p}lse has shape {list(lse.shape)}; expected [{L}, {H}, {q}]")
    cells = (L, H, -(-q // block), -(-k // block))
    for name, arr in overview.items():
        if tuple(arr.shape) != cells:
            raise TraceFormatError(f"{p}{name} has shape {list(arr.shape)}; expected {list(cells)} (cells of {block})")
    if not check_values:
        return rule
    for name, arr in (("query", query), ("key", key), ("lse", lse)):
        _check_range(p + name, arr, -np.inf, np.inf, what="finite numbers")
    if "maxima" in overview:
        _check_range(p + "maxima", overview["maxima"], *WEIGHT_RANGE)
    if "sums" in overview:
        _check_range(p + "sums", overview["sums"], WEIGHT_RANGE[0], block * WEIGHT_RANGE[1])
    return rule


def check_extras(tensors: Mapping[str, np.ndarray], head: Header, kind_streams: Mapping[str, tuple[str, str]],
                 check_values: bool = True) -> None:
    """Token ids, q/k/v vectors and bias: names known, shapes consistent with the attention, values finite."""
    d_of: dict[str, int] = {}
    for name, arr in tensors.items():
        parts = name.split("/")
        if parts[0] == "attention":
            if len(parts) > 1 and parts[1] not in head.forms:
                raise TraceFormatError(f"{name} is attention of a kind the header does not declare")
            continue
        if parts[0] == "ids" and len(parts) == 2:
            stream = parts[1]
            if stream not in head.tokens:
                raise TraceFormatError(f"{name}: token ids of a stream with no tokens")
            if arr.dtype.kind not in "iu" or arr.shape != (len(head.tokens[stream]),):
                raise TraceFormatError(f"{name} must be {len(head.tokens[stream])} integers (one per token); got "
                                       f"{arr.dtype} {list(arr.shape)}")
        elif parts[0] == "qkv" and len(parts) == 3 and parts[2] in _QKV_PARTS:
            kind, part = parts[1], parts[2]
            if kind not in head.forms:
                raise TraceFormatError(f"{name}: vectors of attention kind {kind!r}, which the trace lacks")
            L, H, q, k = head.forms[kind]["shape"]
            n = q if part == "query" else k
            _check_float(name, arr)
            if arr.ndim != 4 or tuple(arr.shape[:3]) != (L, H, n) or arr.shape[3] < 1:
                raise TraceFormatError(f"{name} has shape {list(arr.shape)}; expected [{L}, {H}, {n}, head size]")
            if part != "value":
                d = d_of.setdefault(kind, int(arr.shape[3]))
                if d != arr.shape[3]:
                    raise TraceFormatError(f"qkv/{kind}/query and qkv/{kind}/key differ in head size")
            if check_values:
                _check_range(name, arr, -np.inf, np.inf, what="finite numbers")
        elif parts[0] == "bias" and len(parts) == 2:
            kind = parts[1]
            if kind not in head.forms:
                raise TraceFormatError(f"{name}: a bias of attention kind {kind!r}, which the trace lacks")
            _check_float(name, arr)
            if tuple(arr.shape) != head.forms[kind]["shape"]:
                raise TraceFormatError(f"{name} has shape {list(arr.shape)}; expected {list(head.forms[kind]['shape'])}")
            if check_values:
                _check_range(name, arr, -np.inf, np.inf, what="finite numbers")
        else:
            raise TraceFormatError(f"{name!r} is not an array an attnscope trace holds")
    for kind in head.forms:
        got = {p for p in _QKV_PARTS if f"qkv/{kind}/{p}" in tensors}
        if got and not {"query", "key"} <= got:
            raise TraceFormatError(f"qkv/{kind} holds {sorted(got)}; query and key come together")


def _json(header: Mapping[str, str], field: str) -> Any:
    if field not in header:
        raise TraceFormatError(f"the header lacks the field {field!r}")
    try:
        return json.loads(header[field])
    except ValueError as exc:
        raise TraceFormatError(f"header field {field!r} is not valid JSON ({exc})") from exc


def _is_int(x: Any) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_float(name: str, arr: np.ndarray) -> None:
    if arr.dtype.kind != "f":
        raise TraceFormatError(f"{name} must hold floating-point numbers; it holds {arr.dtype}")


def _check_range(name: str, arr: np.ndarray, lo: float, hi: float, what: str = "") -> None:
    """Every value finite and in ``[lo, hi]``, read in chunks."""
    flat = arr.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        part = flat[start : start + _CHUNK]
        if part.dtype.kind == "f" and not np.isfinite(part).all():
            raise TraceFormatError(f"{name} holds NaN or infinite values")
        if part.size and (part.min() < lo or part.max() > hi):
            raise TraceFormatError(
                f"{name} holds values outside {what or f'[{lo:g}, {hi:g}]'} (min {part.min():.4g}, max {part.max():.4g})"
            )
