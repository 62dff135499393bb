"""The reference forward pass the measures start from: one capture with q/k/v, plus what each layer saw.

Besides the trace (weights and value vectors of every layer, verified against each module's output), hooks keep,
per layer of the model's self-attention stack (:func:`attnscope.capture.blocks.layers`): the layer's call (to run it
again on its own), its input ``x`` (the residual stream), the output projection's output, the post-LN norm's input
and output (post-LN models) and the layer's output. Hooks are removed in ``finally``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from ...capture import blocks, families
from ...errors import CaptureError, InputError
from ...trace import Trace

#: The attention kind the measures read: one self-attention stack (encoder-only and decoder-only models).
KIND = "self"


@dataclass
class LayerPass:
    """What one layer saw and produced (batch item 0; tensors ``[n, hidden]`` unless said otherwise)."""

    layer: blocks.Layer
    args: tuple = ()  # the layer's positional arguments (hidden states first, or in kwargs)
    kwargs: dict = field(default_factory=dict)
    x: Any = None  # the layer's input: the residual stream before attention
    projected: Any = None  # the output projection's output (bias included): what attention adds to the stream
    norm_in: Any = None  # post-LN: the LayerNorm's input, x + projected
    norm_out: Any = None  # post-LN: its output, the attention sub-block's result
    out: Any = None  # the layer's output
    calls: int = 0


@dataclass
class Reference:
    """The captured trace (its ``"self"`` attention: :data:`KIND`) and, per layer, a :class:`LayerPass`."""

    trace: Trace
    layers: list[LayerPass]
    inputs: dict = field(default_factory=dict)  # the keyword arguments the model was called with

    @property
    def post_ln(self) -> bool:
        return self.layers[0].layer.post_norm is not None


def reference(model, tokenizer, text: str, pair: str | None = None) -> Reference:
    """Capture ``text`` with q/k/v (dense weights) while recording every layer of the self-attention stack."""
    from ...capture import capture

    if families.is_encoder_decoder(model.config):
        raise InputError(f"context-mixing measures read one self-attention stack; {type(model).__name__} is an "
                         "encoder-decoder: measure an encoder-only or decoder-only model")
    passes = [LayerPass(layer) for layer in blocks.layers(model)]
    inputs: dict = {}
    with _recording(model, passes, inputs):
        trace = capture(model, tokenizer, text, pair=pair, qkv=True, form="dense")
    L = trace.shape(KIND)[0]
    broken = [p.layer.index for p in passes if p.calls != 1 or p.projected is None]
    if len(passes) != L or broken:
        raise CaptureError(
            f"{type(model).__name__}'s layers did not run as attnscope.capture.families.LAYOUTS describes its family "
            f"({len(passes)} layers found, {L} captured; layers {broken} not seen once); the layout needs fixing"
        )
    verified = trace.meta.get("verified", {}).get(KIND, {})
    if verified.get("ok") is False:
        raise CaptureError(f"the captured weights are not what the model computed with ({verified.get('problem')}), "
                           "so no measure built on them would be honest")
    return Reference(trace, passes, inputs)


@contextlib.contextmanager
def _recording(model, passes: list[LayerPass], inputs: dict):
    hooks = [model.register_forward_pre_hook(lambda module, args, kwargs: inputs.update(kwargs), with_kwargs=True)]
    try:
        for p in passes:
            hooks.append(p.layer.module.register_forward_pre_hook(_layer_in(p), with_kwargs=True))
            hooks.append(p.layer.module.register_forward_hook(_layer_out(p)))
            hooks.append(p.layer.projection.register_forward_hook(_projected(p)))
            if p.layer.post_norm is not None:
                hooks.append(p.layer.post_norm.register_forward_hook(_normed(p)))
        yield
    finally:
        for h in hooks:
            h.remove()


def hidden_of(args: tuple, kwargs: dict):
    """The hidden states a layer was called with (first positional argument, or ``hidden_states=``)."""
    return args[0] if args else kwargs["hidden_states"]


def with_hidden(args: tuple, kwargs: dict, hidden) -> tuple[tuple, dict]:
    """The same call with other hidden states."""
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def first(output):
    """A module's main output (modules return a tensor or a tuple starting with it)."""
    return output[0] if isinstance(output, tuple) else output


def _layer_in(p: LayerPass):
    def hook(module, args, kwargs):
        p.args, p.kwargs, p.calls = args, kwargs, p.calls + 1
        p.x = hidden_of(args, kwargs)[0].detach()

    return hook


def _layer_out(p: LayerPass):
    def hook(module, args, output):
        p.out = first(output)[0].detach()

    return hook


def _projected(p: LayerPass):
    def hook(module, args, output):
        p.projected = first(output)[0].detach()

    return hook


def _normed(p: LayerPass):
    def hook(module, args, output):
        p.norm_in, p.norm_out = args[0][0].detach(), first(output)[0].detach()

    return hook
