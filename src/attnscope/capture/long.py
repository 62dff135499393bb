"""Capture in the q/k form (see :mod:`attnscope.qk`): record queries, keys, each row's log-sum-exp and the
overview, never the weights.

While a :class:`~attnscope.capture.interface.Recorder` with ``form="qk"`` is active:

- the mask function attnscope registers returns a :class:`LazyMask` (the model's mask *rule*, evaluated for a few
  rows at a time) instead of a ``[B, 1, q, k]`` tensor, so not even the mask is ever ``n x n``;
- the attention function calls :func:`record`: torch's fused kernel computes the attention output and each row's
  log-sum-exp at the speed of the model's own SDPA (:func:`_fused`; a block of query rows at a time where the
  kernel cannot serve: soft-capping, learned sinks, sliding windows), then one pass over the keys each row may
  attend to gives the overview's cell maxima (:func:`attnscope.qk.cell_maxima`: scores pooled while in cache, no
  exponential per weight). Memory per layer: the queries, keys and values plus one tile of scores;
- a padded batch (:func:`attnscope.capture_batch`) is recorded text by text, each over its own tokens.

A model whose scores are not ``softcap(q . k * scaling)`` under a causal / bidirectional / sliding-window mask (an
additive position bias such as T5's, a mask the rule does not reproduce) cannot be recomputed from q and k:
:class:`NotRecomputable` says why, and capture falls back to pruning.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .._memory import release_freed_memory
from ..qk import BLOCK_WEIGHTS, MaskRule, QKAttention, cell_maxima, overview_block, scores
from .families import score_terms

#: Query rows checked against the model's own mask per layer (spread over the sequence, plus its ends).
_CHECKED_ROWS = 48


class NotRecomputable(Exception):
    """This model's attention cannot be recomputed from q/k alone; the message says why."""


@dataclass
class LazyMask:
    """The model's mask as a rule: ``block(rows)`` gives ``[B, 1, len(rows), k]`` bool for a few rows at a time."""

    batch_size: int
    kv_length: int
    q_offset: int
    kv_offset: int
    mask_function: Callable[..., torch.Tensor]
    padding: torch.Tensor | None  # [B, kv_length] bool, or None

    @classmethod
    def bind(cls, *args, **kwargs) -> LazyMask:
        """Build from the arguments transformers passes to a mask function (those of ``eager_mask``)."""
        from transformers.masking_utils import eager_mask, prepare_padding_mask

        bound = inspect.signature(eager_mask).bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        padding = prepare_padding_mask(a["attention_mask"], a["kv_length"], a["kv_offset"])
        if padding is not None and bool(padding.all()):
            padding = None
        return cls(a["batch_size"], a["kv_length"], a["q_offset"], a["kv_offset"], a["mask_function"], padding)

    def item(self, b: int, tokens: slice) -> LazyMask:
        """Text ``b`` of the batch alone, over its real ``tokens`` (the same span of queries and keys)."""
        start, stop, _ = tokens.indices(self.kv_length)
        function = self.mask_function
        return LazyMask(1, stop - start, self.q_offset + start, self.kv_offset + start,
                        lambda batch, head, q, kv: function(batch + b, head, q, kv), None)

    def block(self, rows: torch.Tensor) -> torch.Tensor:
        device = rows.device
        b = torch.arange(self.batch_size, device=device)[:, None, None, None]
        h = torch.arange(1, device=device)[None, :, None, None]
        q = (rows + self.q_offset)[None, None, :, None]
        kv = (torch.arange(self.kv_length, device=device) + self.kv_offset)[None, None, None, :]
        ok = self.mask_function(b, h, q, kv)
        if self.padding is not None:
            ok = ok & self.padding.to(device)[:, None, None, :]
        return ok.expand(self.batch_size, 1, len(rows), self.kv_length)


@dataclass
class QKRecord:
    """What the q/k form recorded for one attention kind of one text, layer by layer."""

    query: list[np.ndarray] = field(default_factory=list)  # per layer [H, q, d]
    key: list[np.ndarray] = field(default_factory=list)  # per layer [H_kv, k, d] (not repeated)
    lse: list[np.ndarray] = field(default_factory=list)  # per layer [H, q]
    maxima: list[np.ndarray] = field(default_factory=list)  # per layer [H, R, C]
    windows: list[int | None] = field(default_factory=list)
    sinks: list[tuple[float, ...] | None] = field(default_factory=list)  # per layer: each query head's sink logit
    scaling: float = 1.0
    causal: bool = False
    softcap: float | None = None
    block: int = 1

    def rule(self) -> MaskRule:
        sinks = tuple(self.sinks) if any(s is not None for s in self.sinks) else None
        return MaskRule(self.scaling, self.causal, tuple(self.windows), self.softcap, sinks)

    def attention(self) -> QKAttention:
        """The recorded layers as one :class:`~attnscope.qk.QKAttention` (the per-layer lists are emptied)."""
        return QKAttention(_stack(self.query), _stack(self.key), _stack(self.lse), self.rule(),
                           maxima=_stack(self.maxima), block=self.block)


def _stack(layers: list[np.ndarray]) -> np.ndarray:
    """``np.stack(layers)``, letting go of each layer once copied (and of the model's tensor it may view), so
    the copy never doubles the memory the recorded layers hold."""
    out = np.empty((len(layers), *layers[0].shape), dtype=layers[0].dtype)
    for i in reversed(range(len(out))):
        out[i] = layers.pop()
        release_freed_memory()  # this layer's temporaries (see attnscope._memory)
    return out


def record(records: list[QKRecord], module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask,
           scaling: float, kwargs: dict) -> torch.Tensor:
    """The attention output ``[B, q, H, d]`` of one layer, recording its q/k form into ``records``: one
    :class:`QKRecord` per text of the batch, each over that text's own tokens (padding cut away; the outputs of
    padding positions, which no real token reads, are left 0)."""
    B, H, Q, _ = query.shape
    out = torch.zeros(B, Q, H, value.shape[-1], dtype=query.dtype, device=query.device)
    for b, tokens in enumerate(_texts(mask, B, Q, key.shape[-2])):
        item = mask.item(b, tokens) if isinstance(mask, LazyMask) else mask
        out[b, tokens] = _record_text(records[b], module, query[b, :, tokens], key[b, :, tokens], value[b, :, tokens],
                                      item, scaling, kwargs).transpose(0, 1)
    return out


def _texts(mask, B: int, Q: int, K: int) -> list[slice]:
    """Each text's real tokens in a batch padded on either side (``slice(None)``: all of them, no padding)."""
    padding = mask.padding if isinstance(mask, LazyMask) else None
    if padding is None:
        return [slice(None)] * B
    if Q != K or mask.q_offset != mask.kv_offset:
        raise NotRecomputable("padding is only cut away in self-attention over the whole text (no cache)")
    texts = []
    for row in padding.cpu():
        real = torch.nonzero(row).flatten()
        if not len(real) or not bool(row[int(real[0]) : int(real[-1]) + 1].all()):
            raise NotRecomputable("a text of the batch has no tokens, or padding between its tokens")
        texts.append(slice(int(real[0]), int(real[-1]) + 1))
    return texts


def _record_text(rec: QKRecord, module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask,
                 scaling: float, kwargs: dict) -> torch.Tensor:
    """The attention output ``[H, q, d]`` of one text (``query`` ``[H, q, d]``, ``key``/``value``
    ``[H_kv, k, d]``), recording its q/k form into ``rec``."""
    H, Q, _ = query.shape
    K = key.shape[-2]
    terms = score_terms(module, kwargs)
    if terms.bias is not None:
        raise NotRecomputable(f"{type(module).__name__} adds a learned position bias to its scores")
    if mask is not None and not isinstance(mask, LazyMask):
        raise NotRecomputable(f"{type(module).__name__} builds its own attention mask")
    softcap = terms.softcap
    layer = len(rec.query)
    if layer == 0:
        rec.scaling, rec.softcap, rec.block = float(scaling), softcap, overview_block(Q, K)
        rec.causal = _is_causal(mask, Q, K, query.device)
    elif (float(scaling), softcap) != (rec.scaling, rec.softcap):
        raise NotRecomputable("the layers of one attention kind differ in scaling or soft-capping")
    sinks = terms.sinks
    rec.windows.append(terms.window)
    rec.sinks.append(None if sinks is None else tuple(sinks.detach().float().cpu().reshape(H).tolist()))
    rule = rec.rule()
    _check_rule(rule, layer, mask, Q, K, query.device)

    groups = H // key.shape[0]
    keys = key.repeat_interleave(groups, dim=0) if groups > 1 else key  # [H, k, d]
    values = value.repeat_interleave(groups, dim=0) if groups > 1 else value
    fused = None if sinks is not None or softcap is not None or rule.windows[layer] is not None else \
        _fused(query, keys, values, rule.causal, rule.scaling)
    out, lse = fused if fused is not None else _blockwise(query, keys, values, rule, layer, sinks)
    maxima = cell_maxima(query, keys, lse, rule, layer, rec.block)
    rec.query.append(query.detach().float().cpu().numpy())
    rec.key.append(key.detach().float().cpu().numpy())
    rec.lse.append(lse.float().cpu().numpy())
    rec.maxima.append(maxima.cpu().numpy())
    release_freed_memory()  # this layer's temporaries (see attnscope._memory)
    return out.to(query.dtype)


def _fused(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, causal: bool, scaling: float):
    """``(out [H, q, d], lse [H, q])`` from torch's fused attention kernels, which return each row's log-sum-exp
    next to the output at no extra cost; None where no kernel serves (then :func:`_blockwise` does)."""
    q, k, v = query[None], keys[None], values[None]
    try:
        if query.device.type == "cpu":
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scaling)
        elif query.device.type == "cuda":
            out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
                q, k, v, None, True, 0.0, causal, scale=scaling)[:2]
        else:
            return None
    except (RuntimeError, NotImplementedError):
        return None
    return out[0], lse[0, :, : query.shape[1]]


def _blockwise(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, rule: MaskRule, layer: int, sinks):
    """``(out [H, q, d], lse [H, q])`` computed a block of query rows at a time, over the keys each block may
    attend to: any mask rule, soft-capping, and learned sink logits (which share the softmax, attend to nothing)."""
    H, Q, _ = query.shape
    K = keys.shape[1]
    out = torch.empty(H, Q, values.shape[-1], dtype=torch.float32, device=query.device)
    lse = torch.empty(H, Q, dtype=torch.float32, device=query.device)
    step = max(1, BLOCK_WEIGHTS // max(1, H * K))
    for start in range(0, Q, step):
        stop = min(Q, start + step)
        lo, hi = rule.key_range(layer, start, stop, K)
        rows = torch.arange(start, stop, device=query.device)
        s = scores(query[:, start:stop], keys[:, lo:hi], rule, layer, rows, torch.arange(lo, hi, device=query.device))
        if sinks is not None:
            s = torch.cat([s, sinks.float().reshape(H, 1, 1).expand(H, stop - start, 1)], dim=-1)
        row_lse = torch.logsumexp(s, dim=-1)  # [H, c]
        w = torch.exp_(s.sub_(row_lse[..., None]))[..., : hi - lo]
        out[:, start:stop] = torch.matmul(w, values[:, lo:hi].float())
        lse[:, start:stop] = row_lse
    return out, lse


def _is_causal(mask: LazyMask | None, q: int, k: int, device) -> bool:
    """Whether the model's mask forbids the key just after the first query (a causal mask does)."""
    if mask is None or k < 2:
        return False
    return not bool(mask.block(torch.arange(1, device=device))[0, 0, 0, 1])


def _check_rule(rule: MaskRule, layer: int, mask: LazyMask | None, q: int, k: int, device) -> None:
    """The rule must allow exactly what the model's own mask allows, on rows spread over the sequence."""
    if mask is None:
        if rule.causal or rule.windows[layer] is not None:
            raise NotRecomputable("the model passed no mask where the rule expects one")
        return
    rows = torch.unique(torch.cat([torch.linspace(0, q - 1, _CHECKED_ROWS, device=device).round().long(),
                                   torch.tensor([0, q - 1], device=device)]))
    w = rule.windows[layer]
    if w is not None:  # rows around the window's edge too
        rows = torch.unique(torch.cat([rows, torch.arange(max(0, w - 2), min(q, w + 2), device=device)]))
    want = mask.block(rows)[0, 0]
    got = rule.allowed(layer, rows, torch.arange(k, device=device))
    got = torch.ones_like(want) if got is None else got
    if not torch.equal(want, got):
        raise NotRecomputable(f"layer {layer}'s attention mask is not causal, bidirectional or a sliding window "
                              "as attnscope knows them")
