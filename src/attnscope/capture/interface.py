"""The attention function attnscope registers with transformers, and the recorder it writes into.

``attnscope`` is registered in transformers' ``AttentionInterface`` (and ``eager_mask`` under the same name in the
``AttentionMaskInterface``). While :func:`recording` is active, every attention module of the model calls
:func:`attnscope_attention`, which computes the eager softmax (exactly what ``attn_implementation="eager"`` does)
and hands the weights, and optionally the post-RoPE query/key/value vectors, to the :class:`Recorder`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..attention import PruneSpec, prune_rows
from . import long
from .families import score_terms

log = logging.getLogger(__name__)

NAME = "attnscope"
_active: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("attnscope_recorder", default=None)
#: Query rows per block when computing one head; keeps the score matrix of a 32k-token input small.
_BLOCK_BYTES = 64 * 2**20


@dataclass
class KindRecord:
    """What one attention kind recorded, layer by layer (batch dimension kept until the caller cuts padding)."""

    weights: list[np.ndarray] = field(default_factory=list)  # per layer [B, H, q, k] (dense recording)
    pruned: list[list[tuple]] = field(default_factory=list)  # per layer, per head (counts, indices, values, mass)
    query: list[np.ndarray] = field(default_factory=list)  # per layer [B, H, q, d]
    key: list[np.ndarray] = field(default_factory=list)  # per layer [B, H, k, d] (GQA heads repeated)
    value: list[np.ndarray] = field(default_factory=list)  # per layer [B, H, k, d]
    bias: list[np.ndarray] = field(default_factory=list)  # per layer [B|1, H, q, k] (T5 position bias)
    scaling: float = 1.0
    allowed: np.ndarray | None = None  # [B, q, k] bool, from the first layer's mask
    sinks: bool = False  # learned sink logits take some mass: rows sum to less than 1
    windows: list[int | None] = field(default_factory=list)  # per layer: its sliding window, or None
    buffer: np.ndarray | None = None  # [layers, B, H, q, k]: the softmax writes each layer straight into it
    buffered: int = 0  # how many leading entries of ``weights`` are slots of ``buffer``

    def stacked(self) -> np.ndarray | None:
        """All layers ``[L, B, H, q, k]`` without a copy, when every layer was written into the buffer."""
        if self.buffer is None or self.buffered != len(self.weights):
            return None
        return self.buffer[: self.buffered]


class Recorder:
    """Collects what the attention function sees during one forward pass.

    ``kind_of`` maps ``id(module)`` to the attention kind; layers are numbered in call order per kind.
    With ``prune`` set (batch of one only), each head is pruned as soon as it is computed, so no dense
    ``[L, H, q, k]`` block ever exists. With ``qk=True`` only queries, keys, row log-sum-exps and overviews are
    recorded (:mod:`attnscope.capture.long`), into ``qk_kinds`` (one record per text of the batch, padding cut
    away); the mask stays a rule.
    ``layers`` gives the expected number of layers of a kind: dense weights of that kind are then written straight
    into one ``[L, B, H, q, k]`` buffer (no copy to stack them afterwards); a wrong guess only costs that shortcut.
    """

    def __init__(self, kind_of: dict[int, str], *, qkv: bool = False, prune: PruneSpec | None = None,
                 layers: dict[str, int] | None = None, qk: bool = False):
        self.kind_of = kind_of
        self.qkv = qkv
        self.prune = prune
        self.layers = layers or {}
        self.qk = qk
        self.kinds: dict[str, KindRecord] = {}
        self.qk_kinds: dict[str, list[long.QKRecord]] = {}  # per kind, one record per text
        self.verified: dict | None = None  # per kind, what capture.verify found (q/k/v captures only)

    def kind(self, module: nn.Module) -> str:
        return self.kind_of.get(id(module), "self")

    def slot(self, kind: str, shape: tuple[int, ...]) -> torch.Tensor | None:
        """The buffer slot for the next dense layer of ``kind`` (``shape`` ``[B, H, q, k]``), or None."""
        kr, expected = self.kinds[kind], self.layers.get(kind, 0)
        if kr.buffered != len(kr.weights) or kr.buffered >= expected:
            return None
        if kr.buffer is None:
            kr.buffer = np.empty((expected, *shape), dtype=np.float32)
        if kr.buffer.shape[1:] != shape:
            return None
        return torch.from_numpy(kr.buffer[kr.buffered])


@contextlib.contextmanager
def recording(recorder: Recorder):
    """Make ``recorder`` the one the attention function writes into, for the duration of the block."""
    token = _active.set(recorder)
    try:
        yield recorder
    finally:
        _active.reset(token)


def _repeat_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``[B, kv_heads, n, d]`` -> ``[B, n_heads, n, d]`` (grouped-query attention shares each kv head)."""
    groups = n_heads // x.shape[1]
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def _allowed(mask: torch.Tensor | None, b: int, q: int, k: int) -> np.ndarray:
    """Which (query, key) pairs the mask lets through, ``[B, q, k]`` bool."""
    if mask is None:
        return np.ones((b, q, k), dtype=bool)
    allowed = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
    allowed = allowed[..., :q, :k].expand(b, -1, q, k)[:, 0]
    return allowed.cpu().numpy()


def attnscope_attention(
    module: nn.Module,
    query: torch.Tensor,  # [B, H, q, d], after rotary embedding
    key: torch.Tensor,  # [B, kv_heads, k, d]
    value: torch.Tensor,  # [B, kv_heads, k, d]
    attention_mask: torch.Tensor | None,  # [B, 1, q, k] additive (eager_mask) or None
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
):
    """Eager attention that records its weights; same signature and result as transformers' eager path."""
    rec = _active.get()
    if rec is not None and rec.qk:
        texts = rec.qk_kinds.setdefault(rec.kind(module), [long.QKRecord() for _ in range(query.shape[0])])
        scale = query.shape[-1] ** -0.5 if scaling is None else scaling
        return long.record(texts, module, query, key, value, attention_mask, float(scale), kwargs), None
    B, H, Q, D = query.shape
    K = key.shape[-2]
    key = _repeat_heads(key, H)
    value = _repeat_heads(value, H)
    scaling = D**-0.5 if scaling is None else scaling
    terms = score_terms(module, kwargs)
    bias, softcap, sinks = terms.bias, terms.softcap, terms.sinks
    mask = attention_mask[..., :K] if attention_mask is not None else None

    prune = rec.prune if rec is not None and B == 1 else None
    blocks = max(1, min(Q, _BLOCK_BYTES // max(1, B * H * K * 4)))
    out = torch.empty(B, H, Q, value.shape[-1], dtype=query.dtype, device=query.device)
    kr = slot = dense = None
    if rec is not None:
        kind = rec.kind(module)
        kr = rec.kinds.setdefault(kind, KindRecord(scaling=float(scaling)))
        if prune is None:
            slot = rec.slot(kind, (B, H, Q, K)) if query.device.type == "cpu" else None
            dense = slot if slot is not None else torch.empty(B, H, Q, K, dtype=torch.float32, device=query.device)
    pruned_heads: list[list] = [[] for _ in range(H)] if prune is not None else []
    for start in range(0, Q, blocks):
        sl = slice(start, min(Q, start + blocks))
        scores = torch.matmul(query[:, :, sl], key.transpose(2, 3)) * scaling  # [B, H, c, K]
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        if bias is not None:
            scores = scores + bias[:, :, sl, :K]
        if mask is not None:
            scores = scores + (mask[:, :, sl] if mask.shape[-2] > 1 else mask)
        if sinks is not None:  # learned sink logits take part in the softmax but attend to nothing
            sink = sinks.reshape(1, -1, 1, 1).expand(B, -1, scores.shape[2], 1).to(scores.dtype)
            scores = torch.cat([scores, sink], dim=-1)
        if dense is not None and blocks >= Q and sinks is None:
            weights = torch.softmax(scores, dim=-1, dtype=torch.float32, out=dense)  # one block: no copy
        else:
            weights = torch.softmax(scores, dim=-1, dtype=torch.float32)[..., :K]
            if dense is not None:
                dense[:, :, sl] = weights
        out[:, :, sl] = torch.matmul(weights.to(value.dtype), value)
        if prune is not None:
            w = weights[0].detach().cpu()  # [H, c, K]
            for h in range(H):
                pruned_heads[h].append(prune_rows(w[h], prune) + (w[h].sum(1).numpy(),))

    if rec is not None and kr is not None:
        if kr.allowed is None:
            kr.allowed = _allowed(mask, B, Q, K)
        kr.sinks = kr.sinks or sinks is not None
        kr.windows.append(terms.window)
        if dense is not None:
            kr.buffered += slot is not None
            kr.weights.append(dense.cpu().numpy())
        else:
            kr.pruned.append([_join_blocks(parts) for parts in pruned_heads])
        if rec.qkv:
            kr.query.append(query.detach().float().cpu().numpy())
            kr.key.append(key.detach().float().cpu().numpy())
            kr.value.append(value.detach().float().cpu().numpy())
        if bias is not None:
            kr.bias.append(bias[..., :Q, :K].detach().float().cpu().numpy())
    return out.transpose(1, 2).contiguous(), None


def _join_blocks(parts: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate the per-block (counts, indices, values, row totals) of one head."""
    counts, indices, values, totals = zip(*parts)
    return np.concatenate(counts), np.concatenate(indices), np.concatenate(values), np.concatenate(totals)


def attnscope_mask(*args, **kwargs):
    """The mask function registered beside the attention: eager's float mask, or, while the q/k form is recorded,
    the mask's rule (:class:`~attnscope.capture.long.LazyMask`), so no ``[B, 1, q, k]`` tensor is ever built."""
    from transformers.masking_utils import eager_mask

    rec = _active.get()
    return long.LazyMask.bind(*args, **kwargs) if rec is not None and rec.qk else eager_mask(*args, **kwargs)


def register() -> None:
    """Register the attention and mask functions with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, attnscope_attention)
    AttentionMaskInterface.register(NAME, attnscope_mask)
