"""The attention function the measures run the model with: capture's eager attention, plus two interventions.

Registered with transformers as ``attnscope-measure``. It hands every call to
:func:`attnscope.capture.interface.attnscope_attention` (with no recorder active that is exactly the eager
softmax, mask, position bias, soft-capping and sinks included, and differentiable), after:

- **value zeroing**: for batch item ``b``, the value vector of token ``zero[b]`` is set to zero in every head of
  one chosen attention module (the other items of the batch are other tokens' variants);
- **gradients**: each call's output is kept, made to require a gradient, so that ``dF/d(output)`` of every layer
  can be asked for afterwards; ``dF/dA = dF/d(output) @ V^T`` because ``output = A @ V``.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field

import torch

from ...capture import interface

NAME = "attnscope-measure"


@dataclass
class Interventions:
    """What :func:`measure_attention` does while active."""

    module: object | None = None  # value zeroing: the attention module whose values are zeroed
    zero: torch.Tensor | None = None  # [B] long: the token zeroed in each batch item (-1: none)
    keep: bool = False  # gradients: keep every call's output and values
    outputs: list[torch.Tensor] = field(default_factory=list)  # per call [B, q, H, d], requires grad
    values: list[torch.Tensor] = field(default_factory=list)  # per call [B, H, k, d] (GQA heads repeated)


_active: contextvars.ContextVar[Interventions | None] = contextvars.ContextVar("attnscope_measure", default=None)


def measure_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Capture's eager attention with the active :class:`Interventions` applied (same signature and result)."""
    act = _active.get()
    if act is not None and act.zero is not None and module is act.module:
        value = value.clone()
        items = torch.nonzero(act.zero >= 0).flatten()
        value[items, :, act.zero[items]] = 0.0  # token zero[b] of item b, every (key/value) head
    out, _ = interface.attnscope_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    if act is not None and act.keep:
        if not out.requires_grad:  # a model with frozen weights: start the graph here
            out.requires_grad_(True)
        act.outputs.append(out)
        act.values.append(interface._repeat_heads(value, query.shape[1]).detach())
    return out, None


@contextlib.contextmanager
def intervening(model, interventions: Interventions):
    """Run ``model`` with :func:`measure_attention` and ``interventions`` for the block; restore it afterwards."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    from ...capture.hf import attnscope_attention

    AttentionInterface.register(NAME, measure_attention)
    AttentionMaskInterface.register(NAME, eager_mask)
    token = _active.set(interventions)
    try:
        with attnscope_attention(model, NAME):
            yield interventions
    finally:
        _active.reset(token)


@contextlib.contextmanager
def evaluating(model):
    """``model`` in eval mode (no dropout) for the block; its train/eval state restored afterwards."""
    training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(training)
