"""Trace -> compact payload for the HTML views, within a size budget.

A payload is a small JSON document (tokens, segments, shapes, options) whose arrays travel as text strings of
quantized bytes, one per head, so the browser decodes only the head it is looking at:

- ``"sqrt8"`` (default): ``uint8`` holding ``round(sqrt(w) * 255)``; the square-root scale keeps small weights
  apart (1/256 decodes to 0.00394) at a quarter of float32's size.
- ``"f16"``: little-endian float16, for exact values (the matrix view's default).

Tokens: ``tokens[stream]`` holds the raw tokenizer strings (hover titles, ``prettify=False``), ``labels[stream]``
what the views draw, made here once by :func:`attnscope.tokens.prettify_tokens` (the figures' labels) where they
differ from the raw strings, indexed by token position (:func:`token_labels`; no entry for a stream whose labels are
its tokens). The browser never prettifies a token itself.

Layout, for each attention kind under ``payload["kinds"][kind]`` (``q``/``k`` query/key tokens):

- ``layers`` / ``heads``: the original indices of the layers and heads that were included.
- ``form == "dense"``: ``data[layer][head]`` is one base64 string of ``q*k`` values, row-major.
- ``form == "pruned"``: ``data[layer][head]`` is one head's kept weights, coded as in :mod:`attnscope.codec`
  (deflated counts, key-index gaps and values). ``keptMass`` is the fraction of attention kept, averaged over
  rows (as :meth:`Trace.kept_mass`; 1.0 for dense), ``minKeptMass`` the worst row's; ``pruning`` says who cut
  the rows: ``{"source": "trace"}`` (kept as the trace holds them) or ``{"source": "view", "mass", "topK"}``
  (cut here), with ``"lowered": true`` when the size budget forced a smaller mass than asked. Views state them.
- ``form == "qk"`` (a trace in the q/k form, past the dense limit): no weights travel. ``thumb`` (below) is
  pooled exactly from the trace's overview (at ``thumbSize``, else :data:`~attnscope.encode_qk.MINIMAP_SIZE`: the
  head and matrix views' minimap), and ``qk`` holds the mask rule and, for the layers that fit the budget (or
  ``exact_layers``), float16 queries and keys and float32 row log-sum-exps, from which the browser recomputes any
  row exactly (``web/recompute.js``; the neuron view reads their vectors too, ``recompute=True``); layout and
  float16 error in :mod:`attnscope.encode_qk`. ``keptMass`` is 1.
- ``thumbSize`` (model view): thumbnails are block-max pooled to at most this many pixels a side. The browser
  pools dense payloads itself; pruned and q/k payloads ship them as ``thumb``: ``thumb["data"][layer][head]``
  deflate85 (see :mod:`attnscope.codec`) sqrt8 bytes of ``thumb["shape"]``, square blocks of ``thumb["block"]``
  tokens.
- ``qkv`` (neuron view): ``qkv["query"][layer][head]`` float16 ``[q, d]``, ``qkv["key"][layer][head]`` ``[k, d]``,
  ``qkv["bias"]`` ``[q, k]`` or null (T5's position bias), with ``scaling`` and ``causal`` beside them.
- ``metrics`` (model view): per-head statistics of :func:`attnscope.analysis.head_metrics`, a few numbers per head
  (never per token): ``metrics["values"][name][layer][head]`` rounded to 4 significant digits (null where the
  metric does not apply: positional metrics of cross-attention), ``name`` in ``metrics["names"]``
  (:data:`HEAD_METRICS`); ``metrics["label"][layer][head]`` indexes ``metrics["labels"]`` (the pattern labels).

``meta`` holds the model's name, type and architecture and, for a capture checked by :mod:`attnscope.capture.verify`,
``verified``: ``{"ok", "maxAbsDiff", "kind", "layer", "problem"}``, the footer's "verified" mark or warning.

**Budget.** Short inputs travel dense. Past :data:`DENSE_MAX` weights, or past the budget, q/k traces travel in the
``"qk"`` form (the queries and keys of as many layers as the budget leaves room for), and every other row is cut to its
largest weights until ``mass`` of its attention (at most ``top_k``; already pruned traces are first tried as they
are); when that still exceeds ``budget_mb``, mass and top-k are lowered step by step (:data:`LOWER`), the payload
says so and a warning is logged. JSON never holds an array of floats; :func:`script_json` serialises a payload
for a ``<script>`` block.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import codec
from .analysis.metrics import LABELS, head_metrics
from .attention import Attention, PrunedAttention, PruneSpec
from .capture.verify import summary as verify_summary
from .encode_qk import MINIMAP_SIZE, qk_spec
from .errors import InputError, MissingDataError
from .qk import QKAttention
from .tokens import prettify_tokens
from .trace import Trace

log = logging.getLogger("attnscope")

PAYLOAD_FORMAT = "attnscope-payload"
PAYLOAD_VERSION = 3
DTYPES = {"uint8": "sqrt8", "float16": "f16"}
VALUE_BYTES = {"sqrt8": 1, "f16": 2}
#: Default size budget of a payload, in MB (10^6 bytes).
BUDGET_MB = 100.0
#: Dense payloads hold at most this many weights (all kinds, layers, heads); longer inputs are pruned.
DENSE_MAX = 2**24
#: (mass, top_k) tried in turn when the asked ones do not fit the budget (steps above the asked mass are skipped).
LOWER = ((0.9, 128), (0.85, 64), (0.8, 48), (0.7, 32), (0.6, 16), (0.5, 8), (0.0, 1))
_SAMPLE_HEADS = 24  # heads packed to estimate a step's bytes per kept weight
#: The head metrics a payload carries (keys of :func:`attnscope.analysis.head_metrics` records), in menu order.
HEAD_METRICS = ("entropy", "distance", "self", "previous", "next", "local", "first", "special", "sink", "max")
#: ``metrics=None`` adds head metrics when they read at most this many weights (about 0.5 s of work): every
#: ``q x k`` weight of a dense head, only the kept weights of a pruned one (4096 tokens x 32 x 32 heads pruned to
#: 95 % mass: 67 M weights, 1.2 s); a q/k head's weights count ``QKAttention.read_cost`` each (recomputed).
METRICS_AUTO_MAX = 2**27


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
    metrics: bool | None = False,
    budget_mb: float = BUDGET_MB,
    mass: float = 0.95,
    top_k: int = 256,
    exact_layers: Sequence[int] | None = None,
    recompute: bool = False,
) -> dict[str, Any]:
    """Build the payload of ``trace`` for the views (see the module docstring for its layout and budget).

    ``kinds`` defaults to every kind in the trace; ``include_layers``/``include_heads`` keep only those
    (original indices); ``dtype`` is ``"uint8"`` (sqrt-scaled bytes) or ``"float16"``; ``thumb_size`` sets the
    model view's thumbnail size; ``attention=False`` leaves the weights out (the neuron view recomputes them from
    q and k); ``qkv=True`` adds query/key vectors (float16); ``metrics=True`` adds each head's metrics
    (``None``: only when cheap, see :data:`METRICS_AUTO_MAX`). ``budget_mb`` caps the payload's size; ``mass`` and
    ``top_k`` say how rows are cut when they must be (per row: the largest weights up to that fraction of its
    attention, at most ``top_k`` of them, never fewer than one). ``exact_layers`` (q/k traces past the dense limit)
    names the layers whose queries and keys travel so the browser recomputes their rows (default: as many as fit
    the budget, in order; ``[]``: the overview only); ``recompute=True`` sends q/k traces in that form at any length
    (the neuron view reads their queries and keys, and their ``qkv`` is not needed).
    """
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {sorted(DTYPES)}; got {dtype!r}")
    if thumb_size is not None and thumb_size < 2:
        raise InputError(f"thumb_size must be >= 2 pixels; got {thumb_size}")
    if not (isinstance(budget_mb, (int, float)) and budget_mb > 0):
        raise InputError(f"budget_mb must be a positive number of megabytes; got {budget_mb!r}")
    spec = PruneSpec(mass, top_k)  # checks both
    kinds = list(trace.kinds if kinds is None else kinds)
    for kind in kinds:
        if kind not in trace.attention:
            raise MissingDataError(f"this trace has no {kind!r} attention; it has {trace.kinds}")
    if exact_layers is not None and all(trace.attention[kind].form != "qk" for kind in kinds):
        raise InputError("exact_layers applies to traces in the q/k form (capture(..., form='qk')); this one holds "
                         "its weights, so every layer is exact already")
    streams = sorted({s for kind in kinds for s in trace.streams(kind)})
    payload: dict[str, Any] = {
        "format": PAYLOAD_FORMAT,
        "version": PAYLOAD_VERSION,
        "tokens": {s: list(trace.tokens[s]) for s in streams},
        "labels": {s: labels for s in streams if (labels := token_labels(trace.tokens[s])) is not None},
        "segments": {
            name: {"stream": seg.stream, "start": seg.start, "end": seg.end}
            for name, seg in trace.segments.items()
            if seg.stream in streams
        },
        "meta": {k: str(trace.meta[k]) for k in ("model", "model_type", "architecture") if trace.meta.get(k)},
        "kinds": {},
    }
    verified = verify_summary(trace.meta)
    if verified is not None:  # the footer's "verified" mark or warning (see attnscope.capture.verify)
        payload["meta"]["verified"] = verified
    for kind in kinds:
        L, H, q, k = trace.shape(kind)
        layers = _pick(include_layers, L, "include_layers", "layers")
        heads = _pick(include_heads, H, "include_heads", "heads")
        info = trace.meta.get("kinds", {}).get(kind, {})
        qs, ks = trace.streams(kind)
        payload["kinds"][kind] = {
            "query": qs,
            "key": ks,
            "shape": [q, k],
            "layers": layers,
            "heads": heads,
            "causal": bool(info.get("causal", False)),
        }
        if qkv and not (recompute and trace.attention[kind].form == "qk"):
            payload["kinds"][kind]["qkv"] = _encode_qkv(trace, kind, layers, heads, info)
    if metrics or (metrics is None and _weights(trace, payload["kinds"]) <= METRICS_AUTO_MAX):
        for kind, entry in payload["kinds"].items():
            entry["metrics"] = encode_metrics(trace, kind, entry["layers"], entry["heads"])
    if attention:
        _add_attention(trace, payload, DTYPES[dtype], thumb_size, budget_mb * 1e6, spec, exact_layers, recompute)
    return payload


def token_labels(tokens: Sequence[str]) -> list[str | None] | dict[str, str] | None:
    """The display labels of one stream's raw tokens as a payload carries them: :func:`attnscope.tokens.prettify_tokens`
    (so a view shows what a figure shows) for the tokens whose label differs from the raw string, as a list (``None``
    where the label is the token) or as ``{position: label}``, whichever is shorter in JSON (a WordPiece stream has
    few such tokens, a byte-level one many); ``None`` when no label differs. The browser reads either as
    ``labels[i] ?? tokens[i]``."""
    labels = [None if label == raw else label for raw, label in zip(tokens, prettify_tokens(tokens))]
    sparse = {str(i): label for i, label in enumerate(labels) if label is not None}
    if not sparse:
        return None
    return sparse if len(script_json(sparse)) < len(script_json(labels)) else labels


def check_metric(metric: str | None, sort: bool | None) -> None:
    """The model view's ``metric`` (one of :data:`HEAD_METRICS`, or None) and ``sort`` (``sort=True`` needs a metric)."""
    if metric is not None and metric not in HEAD_METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {list(HEAD_METRICS)} (or None for no colouring)")
    if sort is not None and not isinstance(sort, bool):
        raise InputError(f"sort must be True or False; got {sort!r}")
    if sort and metric is None:
        raise InputError(f"sort=True orders each layer's heads by a metric; pass metric= one of {list(HEAD_METRICS)}")


def encode_metrics(trace: Trace, kind: str, layers: Sequence[int], heads: Sequence[int]) -> dict[str, Any]:
    """The ``metrics`` entry of one kind (module docstring): head metrics of the chosen layers and heads only."""
    records = head_metrics(trace, kind, layers=layers, heads=heads)
    H = len(heads)

    def num(v: float) -> float | None:
        return None if not np.isfinite(v) else float(f"{v:.4g}")

    return {
        "names": list(HEAD_METRICS),
        "values": {m: [[num(r[m]) for r in records[li * H : (li + 1) * H]] for li in range(len(layers))]
                   for m in HEAD_METRICS},
        "labels": list(LABELS),
        "label": [[LABELS.index(r["label"]) for r in records[li * H : (li + 1) * H]] for li in range(len(layers))],
    }


def _weights(trace: Trace, kinds: dict[str, Any]) -> int:
    """How many weights head metrics of the included heads would read (kept weights only, for pruned heads), in
    dense weights' cost (a q/k head's are recomputed: ``read_cost`` each)."""
    total = 0
    for kind, s in kinds.items():
        att, heads = trace.attention[kind], len(s["layers"]) * len(s["heads"])
        L, H, q, k = att.shape
        if isinstance(att, PrunedAttention):
            total += att.values.size * heads // (L * H)
        else:
            total += int(heads * q * k * (att.read_cost if isinstance(att, QKAttention) else 1))
    return total


def script_json(obj: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element: ``<``, ``>``, ``&``, U+2028/2029 are escaped."""
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def quantize(weights: np.ndarray, code: str) -> bytes:
    """Weights in ``[0, 1]`` -> bytes in ``code`` (``"sqrt8"`` or ``"f16"``)."""
    if code == "sqrt8":
        return codec.sqrt8(weights).tobytes()
    return np.asarray(weights, dtype=np.float32).astype("<f2").tobytes()


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
    if isinstance(item, str):  # dense
        return dequantize(base64.b64decode(item), spec["dtype"]).reshape(q, k)
    counts, indices, values = codec.unpack(item, q, VALUE_BYTES[spec["dtype"]])
    out = np.zeros((q, k), dtype=np.float32)
    out[np.repeat(np.arange(q), counts), indices] = dequantize(values, spec["dtype"])
    return out


# ----------------------------------------------------------------------------- attention within the budget


def _add_attention(trace: Trace, payload: dict, code: str, thumb_size: int | None, budget: float,
                   spec: PruneSpec, exact_layers: Sequence[int] | None, recompute: bool = False) -> None:
    kinds = payload["kinds"]
    picked = {kind: (trace.attention[kind], s["layers"], s["heads"]) for kind, s in kinds.items()}
    room = budget - len(script_json(payload))
    weights = sum(len(ls) * len(hs) * att.shape[2] * att.shape[3] for att, ls, hs in picked.values())
    dense_bytes = weights * VALUE_BYTES[code] * 4 / 3
    short = all(not att.pruned and not (recompute and att.form == "qk") for att, _, _ in picked.values())
    if short and weights <= DENSE_MAX and dense_bytes <= room:
        for kind, (att, layers, heads) in picked.items():
            kinds[kind].update(form="dense", dtype=code, keptMass=1.0, minKeptMass=1.0, pruning=None,
                               data=[[_b64(quantize(att.head(l, h), code)) for h in heads] for l in layers])
            if thumb_size is not None:
                kinds[kind]["thumbSize"] = thumb_size
        return
    qk = {kind: picked.pop(kind) for kind in list(picked) if picked[kind][0].form == "qk"}
    for kind, (att, layers, heads) in {**picked, **qk}.items():
        size = thumb_size or (MINIMAP_SIZE if kind in qk else None)
        if size is not None:
            kinds[kind]["thumbSize"] = size
            if max(att.shape[2:]) > size or kind in qk:
                kinds[kind]["thumb"] = thumbnails(att, layers, heads, size)
                room -= sum(len(s) + 3 for row in kinds[kind]["thumb"]["data"] for s in row)
    if picked:
        _add_pruned(picked, kinds, code, room, spec, budget)
    for kind, (att, layers, heads) in qk.items():  # the queries and keys of as many layers as the rest leaves room for
        kinds[kind].update(form="qk", dtype=code, keptMass=1.0, minKeptMass=1.0, pruning=None)
        kinds[kind]["qk"] = qk_spec(att, layers, heads, budget - len(script_json(payload)), exact_layers)


def _add_pruned(picked: dict, kinds: dict, code: str, room: float, spec: PruneSpec, budget: float) -> None:
    """Cut and pack every head at the first step that fits ``room`` bytes of the ``budget`` (module docstring)."""
    heads = [(kind, li, hi) for kind, (_, layers, hs) in picked.items()
             for li in range(len(layers)) for hi in range(len(hs))]

    def rows(kind: str, li: int, hi: int) -> codec.Rows:
        att, layers, hs = picked[kind]
        return codec.head_rows(att, layers[li], hs[hi], spec)

    def pack_all(mass: float | None, top_k: int | None) -> list[tuple[dict, float, float]]:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # zlib and numpy release the GIL
            return list(pool.map(lambda h: _pack(rows(*h), mass, top_k, code), heads))

    steps = [(None, None), (spec.mass, spec.top_k)] + [(m, min(t, spec.top_k)) for m, t in LOWER if m < spec.mass]
    first, counts = _first_fit(heads, rows, steps, code, room)
    for s in range(first, len(steps)):
        if s > first and counts is not None and counts[s] == counts[s - 1]:
            continue  # the same rows as the step that did not fit
        mass, top_k = steps[s]
        packed = pack_all(mass, top_k)
        size = sum(_item_bytes(item) for item, _, _ in packed)
        if size <= room:
            break
        if s == len(steps) - 1:
            raise InputError(
                f"the attention does not fit budget_mb={_mb(budget)} ({_mb(room)} MB left for it) even keeping only "
                f"each row's largest weight ({_mb(size)} MB); raise budget_mb or pass include_layers=/include_heads="
            )
    lowered = mass is not None and mass < spec.mass
    for kind, (att, layers, hs) in picked.items():
        mine = [p for h, p in zip(heads, packed) if h[0] == kind]
        kept_sum = sum(p[1] for p in mine)
        n_rows = len(layers) * len(hs) * att.shape[2]
        worst = min((p[2] for p in mine), default=1.0)
        pruning: dict[str, Any]
        if mass is None:
            pruning = {"source": "trace"} if att.pruned else {"source": "view", "mass": spec.mass, "topK": spec.top_k}
        else:
            pruning = {"source": "view", "mass": mass, "topK": top_k}
        if lowered:
            pruning.update(lowered=True, askedMass=spec.mass, budgetMb=_mb(budget))
        it = iter(p[0] for p in mine)
        kinds[kind].update(
            form="pruned", dtype=code, pruning=pruning,
            keptMass=round(kept_sum / n_rows, 6) if n_rows else 1.0, minKeptMass=round(worst, 6),
            data=[[next(it) for _ in hs] for _ in layers],
        )
    if lowered and mass is not None:
        log.warning("attnscope: the view's attention exceeds its size budget at %.0f%% of each row's mass; rows are "
                    "cut to %.0f%% (at most %d keys) instead. Raise budget_mb= or include fewer layers/heads to keep "
                    "more.", 100 * spec.mass, 100 * mass, top_k)


def _first_fit(heads: list, rows, steps: list, code: str, room: float) -> tuple[int, np.ndarray | None]:
    """(the first step whose payload is estimated to fit, kept entries per step or None when not counted).

    A generous bound from a sample of heads settles most payloads at once; otherwise every head's kept entries
    are counted per step, and a sample of heads packed at a step gives its bytes per kept weight."""
    sample = heads[:: max(1, len(heads) // _SAMPLE_HEADS)]
    first = [rows(*h) for h in sample]
    per_head = sum((r.nnz * (4 + VALUE_BYTES[code]) + len(r.counts) * 4) * 1.3 + 90 for r in first) / len(first)
    if per_head * len(heads) < room * 0.8:
        return 0, None  # clearly fits: no counting pass
    counts = np.zeros(len(steps), dtype=np.int64)
    for h in heads:
        counts += codec.kept_counts(rows(*h), steps)
    for s, (mass, top_k) in enumerate(steps):
        if s and counts[s] == counts[s - 1]:
            continue  # the same rows as the step before, which did not fit
        cut = [codec.cut(r, mass, top_k) for r in first]
        per_entry = sum(_item_bytes(codec.pack(r, code, quantize)) for r in cut) / max(sum(r.nnz for r in cut), 1)
        if counts[s] * per_entry <= room * 0.97:
            return s, counts
    return len(steps) - 1, counts


def _pack(rows: codec.Rows, mass: float | None, top_k: int | None, code: str) -> tuple[dict, float, float]:
    """(item, sum of kept fractions over rows, worst row's kept fraction) of one head cut at one step."""
    cut = codec.cut(rows, mass, top_k)
    kept = cut.kept()
    return codec.pack(cut, code, quantize), float(kept.sum()), float(kept.min(initial=1.0))


def _item_bytes(item: dict) -> int:
    return sum(len(item[k]) for k in ("counts", "gaps", "far", "values")) + 90


def thumbnails(att: Attention, layers: Sequence[int], heads: Sequence[int], size: int) -> dict[str, Any]:
    """Block-max thumbnails of the chosen heads of ``att``, at most ``size`` pixels a side (``thumb`` in the module
    docstring)."""
    _, _, q, k = att.shape
    block = max(1, -(-max(q, k) // size))
    if isinstance(att, QKAttention) and att.maxima is not None:  # pooled from the overview: a whole number of its cells
        block = -(-block // att.block) * att.block
    data = [[codec.deflate85(codec.pooled(att, layer, h, size).tobytes()) for h in heads] for layer in layers]
    return {"block": block, "shape": [-(-q // block), -(-k // block)], "dtype": "sqrt8", "coding": "deflate85",
            "data": data}


def _encode_qkv(trace: Trace, kind: str, layers: list[int], heads: list[int], info: dict) -> dict[str, Any]:
    if kind not in trace.qkv:
        raise MissingDataError(
            f"this trace has no query/key vectors for {kind!r} attention, which the neuron view needs; "
            "capture with attnscope.capture(..., qkv=True)"
        )
    parts = trace.qkv[kind]
    d = int(parts["query"].shape[-1])

    def per_head(arr: np.ndarray) -> list[list[str]]:
        return [[_b64(_float16(arr[layer, h])) for h in heads] for layer in layers]

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


def _mb(n: float) -> float:
    return float(f"{n / 1e6:.3g}")


def _float16(arr: np.ndarray) -> bytes:
    """Little-endian float16 bytes, values past float16's range clipped to it (never infinite)."""
    return np.clip(np.asarray(arr, dtype=np.float32), -65504.0, 65504.0).astype("<f2").tobytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
