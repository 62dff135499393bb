"""TransformerLens -> Trace: attention patterns, and q/k/v for the neuron view, from an ``ActivationCache``.

    logits, cache = model.run_with_cache(text)       # HookedTransformer (TransformerLens 3) or TransformerBridge
    trace = attnscope.Trace.from_transformer_lens(cache, model, text)
    trace = attnscope.Trace.from_transformer_lens(cache, ["<bos>", "The", " cat"])   # or the token strings

What is read, per layer ``l`` (batch row ``batch``):

- ``blocks.{l}.attn.hook_pattern`` ``[batch, head, q, k]``: the weights, as they are (no renormalising).
- ``blocks.{l}.attn.hook_rot_q`` / ``hook_rot_k`` ``[batch, pos, head, d_head]`` when the cache has them (rotary
  models record the vectors after rotation there), else ``hook_q`` / ``hook_k``; and ``hook_v``. Key/value heads
  are repeated for grouped-query attention (``repeat_interleave``, as TransformerLens and Hugging Face do), so
  the trace's ``qkv`` is ``[L, H, n, d_head]`` per part.

The scaling (``1 / cfg.attn_scale``, ``1 / sqrt(d_head)`` by default) and the mask rule (``cfg.attention_dir``)
go into ``meta["kinds"]["self"]``. The vectors are kept only if ``softmax(q·kᵀ·scaling + mask)`` reproduces
``hook_pattern`` (:data:`TOLERANCE`); otherwise (a rotary cache without ``hook_rot_q``/``hook_rot_k``, ALiBi,
soft-capping, attention sinks, per-layer scaling) the trace holds the patterns only and a warning says why
(``qkv=True`` makes that an error).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..attention import looks_causal
from ..errors import InputError, MissingDataError
from ..trace import Trace

log = logging.getLogger(__name__)

#: Largest allowed difference between hook_pattern and the softmax recomputed from the cached q/k, by dtype.
TOLERANCE = {"float64": 1e-6, "float32": 1e-4, "float16": 1e-2, "bfloat16": 2e-2}
_PATTERN = re.compile(r"^blocks\.(\d+)\.attn\.hook_pattern$")


def from_cache(cache, model_or_tokens, input=None, *, batch: int = 0, qkv: bool | None = None) -> Trace:
    """A Trace of the attention in a TransformerLens activation cache.

    - ``cache``: what ``model.run_with_cache(...)`` returned (an ``ActivationCache``, or the plain dict of
      ``return_cache_object=False``); every layer's ``hook_pattern`` must be in it.
    - ``model_or_tokens``: the token strings, one per position, or the model (``HookedTransformer`` or
      ``TransformerBridge``) together with ``input``, the text or token ids the cache was run on; the tokens then
      come from ``model.to_str_tokens(input)`` and the ids from ``model.to_tokens(input)``.
    - ``batch``: which row of a batched cache.
    - ``qkv``: ``None`` keeps the query/key/value vectors when the cache has them and they reproduce the
      patterns, ``True`` requires them (an error says why they cannot be used), ``False`` leaves them out.
    """
    if not isinstance(cache, Mapping) and not hasattr(cache, "cache_dict"):
        raise InputError(f"expected a TransformerLens ActivationCache (from model.run_with_cache(...)); got "
                         f"{type(cache).__name__}")
    acts: Mapping[str, Any] = getattr(cache, "cache_dict", cache)
    batched = getattr(cache, "has_batch_dim", True)
    model = None if _is_token_list(model_or_tokens) else model_or_tokens
    cfg = getattr(model, "cfg", None) or getattr(getattr(cache, "model", None), "cfg", None)

    patterns = [_row(p, batch, batched, f"blocks.{i}.attn.hook_pattern") for i, p in enumerate(_layers(acts))]
    H, n = patterns[0].shape[0], patterns[0].shape[-1]
    tokens, ids, text = _tokens(model, model_or_tokens, input, batch)
    if len(tokens) != n:
        raise InputError(f"the cache's attention covers {n} positions but there are {len(tokens)} tokens; pass the "
                         "tokens of the input the cache was run on (model.to_str_tokens(input), BOS included; a padded "
                         "batch row keeps its padding)")
    attention_dir = getattr(cfg, "attention_dir", None)
    causal = (attention_dir == "causal") if attention_dir else None
    scaling = _scaling(cfg)
    vectors, why = ({}, "qkv=False") if qkv is False else _vectors(acts, cfg, batch, batched, H, n)
    if vectors:
        scaling = scaling if scaling is not None else vectors["query"].shape[-1] ** -0.5
        causal = looks_causal(patterns[0]) if causal is None else causal
        diff = _reproduction_error(patterns, vectors, scaling, causal)
        tol = TOLERANCE.get(str(getattr(cfg, "dtype", "float32")).removeprefix("torch."), 1e-4)
        if not diff <= tol:
            vectors, why = {}, (f"softmax(q·kᵀ x {scaling:.6g} + {'causal ' if causal else ''}mask) differs from "
                                f"hook_pattern by up to {diff:.3g} (allowed {tol:g}): the model adds a term attnscope "
                                "does not record (ALiBi, soft-capping, attention sinks, per-layer scaling)")
    if not vectors and qkv is True:
        raise MissingDataError(f"the query/key vectors of this cache cannot be used: {why}")
    if not vectors and qkv is None:
        log.warning("TransformerLens cache: keeping the attention patterns without query/key vectors (no neuron "
                    "view): %s", why)
    rule: dict[str, Any] = {}
    if causal is not None:
        rule["causal"] = causal
    if scaling is not None:
        rule["scaling"] = scaling
    meta = {"source": "transformer_lens", **_model_meta(model, cache, cfg), "text": text}
    if rule:
        meta["kinds"] = {"self": rule}
    trace = Trace.from_arrays(np.stack(patterns), tokens, meta={k: v for k, v in meta.items() if v is not None})
    return replace(trace, qkv={"self": vectors} if vectors else {}, token_ids={"input": ids} if ids else {})


# --------------------------------------------------------------------------- reading the cache
def _layers(acts: Mapping[str, Any]) -> list:
    """Every layer's hook_pattern in layer order; an error when none, or when layers are missing."""
    found = {int(m[1]): v for k, v in acts.items() if (m := _PATTERN.match(k))}
    if not found:
        raise MissingDataError("the cache holds no blocks.<layer>.attn.hook_pattern; run model.run_with_cache(input) "
                               "without a names_filter, or with one that keeps 'hook_pattern'")
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise MissingDataError(f"the cache has no hook_pattern for layers {missing}; a trace needs every layer, so "
                               "keep hook_pattern of all layers in the names_filter")
    return [found[i] for i in range(len(found))]


def _row(tensor, batch: int, batched: bool, name: str, ndims: tuple[int, ...] = (3,)) -> np.ndarray:
    """One batch row of a cached activation as float32 numpy, with one of ``ndims`` dimensions."""
    arr = tensor.detach().to("cpu").float().numpy() if hasattr(tensor, "detach") else np.asarray(tensor, np.float32)
    if batched:
        if isinstance(batch, bool) or not isinstance(batch, int) or not -arr.shape[0] <= batch < arr.shape[0]:
            raise InputError(f"batch={batch!r} but the cache holds {arr.shape[0]} rows; pass a row index below that")
        arr = arr[batch]
    if arr.ndim not in ndims:
        raise InputError(f"{name} has shape {list(arr.shape)} per batch row; expected {' or '.join(map(str, ndims))} "
                         "dimensions")
    return arr


def _vectors(acts, cfg, batch: int, batched: bool, H: int, n: int) -> tuple[dict[str, np.ndarray], str]:
    """``({"query", "key"[, "value"]}: [L, H, n, d]``, why not) from the cached hook_q/k/v."""
    if getattr(cfg, "scale_attn_by_inverse_layer_idx", False):
        return {}, "the model scales each layer differently (scale_attn_by_inverse_layer_idx)"
    L = sum(1 for k in acts if _PATTERN.match(k))
    rotary = getattr(cfg, "positional_embedding_type", None) == "rotary"
    parts: dict[str, list[np.ndarray]] = {"query": [], "key": [], "value": []}
    for layer in range(L):
        p = f"blocks.{layer}.attn."
        q = acts.get(p + "hook_rot_q", acts.get(p + "hook_q"))
        k = acts.get(p + "hook_rot_k", acts.get(p + "hook_k"))
        if q is None or k is None:
            return {}, "the cache has no hook_q/hook_k (keep them in run_with_cache's names_filter)"
        if rotary and p + "hook_rot_q" not in acts:
            return {}, ("hook_q/hook_k are taken before the rotary embedding and the cache has no "
                        "hook_rot_q/hook_rot_k to read the rotated vectors from")
        # [pos, heads, d_head] per row, or [pos, heads * d_head] where a bridge merges the heads
        query = _heads(_row(q, batch, batched, p + "q", ndims=(2, 3)), H, n, None)
        parts["query"].append(query)
        for part, value in (("key", k), ("value", acts.get(p + "hook_v"))):
            if value is not None:
                parts[part].append(_heads(_row(value, batch, batched, p + part, ndims=(2, 3)), H, n, query.shape[-1]))
    out = {part: np.stack(arrs) for part, arrs in parts.items() if len(arrs) == L}
    return out, ""


def _heads(x: np.ndarray, H: int, n: int, d: int | None) -> np.ndarray:
    """``[pos, heads, d]`` (or ``[pos, heads * d]``, ``d`` the query's head size) -> ``[H, pos, d]``, key/value
    heads repeated for grouped-query attention."""
    if x.ndim == 2:
        d = d or x.shape[1] // H
        if x.shape[1] % d:
            raise InputError(f"cached q/k/v of shape {list(x.shape)} cannot be split into heads of size {d}")
        x = x.reshape(x.shape[0], x.shape[1] // d, d)
    if x.shape[0] != n or H % x.shape[1]:
        raise InputError(f"cached q/k/v of shape {list(x.shape)} do not fit {H} heads over {n} positions")
    x = np.ascontiguousarray(x.transpose(1, 0, 2))
    return np.repeat(x, H // x.shape[0], axis=0) if x.shape[0] != H else x


def _scaling(cfg) -> float | None:
    """What TransformerLens multiplies q·k by: ``1 / attn_scale`` (``sqrt(d_head)`` when unset), or 1."""
    if cfg is None:
        return None
    if not getattr(cfg, "use_attn_scale", True):
        return 1.0
    scale = getattr(cfg, "attn_scale", -1.0)
    if not (isinstance(scale, (int, float)) and scale > 0):
        scale = math.sqrt(cfg.d_head)
    return 1.0 / float(scale)


def _reproduction_error(patterns: list[np.ndarray], vectors: dict[str, np.ndarray], scaling: float,
                        causal: bool) -> float:
    """Largest |softmax(q·kᵀ·scaling + mask) - pattern| over all layers, computed layer by layer."""
    import torch

    worst = 0.0
    n = patterns[0].shape[-1]
    mask = torch.triu(torch.full((n, n), float("-inf")), 1) if causal else torch.zeros(n, n)
    for layer, pattern in enumerate(patterns):
        q, k = (torch.from_numpy(vectors[p][layer]).double() for p in ("query", "key"))
        weights = torch.softmax(q @ k.transpose(-1, -2) * scaling + mask.double(), dim=-1)
        worst = max(worst, float((weights - torch.from_numpy(pattern).double()).abs().max()))
    return worst


# --------------------------------------------------------------------------- tokens and meta
def _is_token_list(x) -> bool:
    return isinstance(x, (Sequence, np.ndarray)) and not isinstance(x, (str, bytes))


def _tokens(model, model_or_tokens, input, batch: int) -> tuple[list[str], list[int], str | None]:
    """(token strings, token ids or [], text or None)."""
    if model is None:
        if input is not None:
            raise InputError("input= is read with a model (model.to_str_tokens(input)); with token strings leave it out")
        return [str(t) for t in model_or_tokens], [], None
    if not (hasattr(model, "to_str_tokens") and hasattr(model, "to_tokens")):
        raise InputError(f"model_or_tokens must be the token strings or a TransformerLens model (HookedTransformer, "
                         f"TransformerBridge); got {type(model).__name__}")
    if input is None:
        raise InputError("with a model, pass input= too: the text or token ids the cache was run on, e.g. "
                         "Trace.from_transformer_lens(cache, model, text)")
    if isinstance(input, (list, tuple)) and input and isinstance(input[0], str):
        input = input[batch]  # a batch of texts: the row asked for
    tokenizer = getattr(model, "tokenizer", None)
    if isinstance(input, str):
        if tokenizer is None:
            raise InputError(f"this {type(model).__name__} has no tokenizer, so a text cannot be read; pass the token "
                             "ids the cache was run on as input=")
        ids = model.to_tokens(input)[0].tolist()
    else:
        arr = np.asarray(input.detach().cpu() if hasattr(input, "detach") else input)
        ids = (arr[batch] if arr.ndim == 2 else arr).reshape(-1).tolist()
    if tokenizer is None:  # a model made from a config alone: the ids are the only names its tokens have
        return [str(i) for i in ids], [int(i) for i in ids], None
    tokens = model.to_str_tokens(input if isinstance(input, str) else _as_tensor(ids))
    return [str(t) for t in tokens], [int(i) for i in ids], input if isinstance(input, str) else None


def _as_tensor(ids: list[int]):
    import torch

    return torch.tensor(ids, dtype=torch.long)


def _model_meta(model, cache, cfg) -> dict[str, Any]:
    model = model if model is not None else getattr(cache, "model", None)
    if cfg is None:
        return {}
    return {
        "model": getattr(cfg, "model_name", None),
        "architecture": getattr(cfg, "original_architecture", None) or (type(model).__name__ if model else None),
        "dtype": str(getattr(cfg, "dtype", "")).removeprefix("torch.") or None,
        "transformer_lens": type(model).__name__ if model is not None else None,
    }
