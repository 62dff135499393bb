"""Context mixing: how much each token really contributes to another, beside what the attention weights say.

:func:`contributions` runs a model once (a verified capture with q/k/v), measures, and returns a Trace whose
``"self"`` attention is the contribution matrix, so every view, figure, diff and tracker draws it unchanged:

==================  =====================================================================  ==================
method              what it measures                                                        shape
==================  =====================================================================  ==================
``norm``            ``||attention + residual, through LayerNorm||`` (Kobayashi et al. 2021)  ``[L, 1, n, n]``
``alti``            ALTI: closeness of each token's vector to the sub-block output           ``[L, 1, n, n]``
                    (Ferrando et al. 2022)
``value_zeroing``   how far each output moves when a token's value is zeroed                 ``[L, 1, n, n]``
                    (Mohebbi et al. 2023)
``grad_attention``  attention x gradient of a chosen output (Hao et al. 2021 style)          ``[L, H, n, n]``
==================  =====================================================================  ==================

Layer-level measures have one "head" (they measure the whole layer: every head, the residual and the norm);
their rows sum to 1. ``rollout=True`` aggregates them across layers as their papers do, by multiplying the
layer matrices (ALTI rollout; no identity is added, since the residual is already inside). ``meta["measure"]``
names the method and how the numbers were scaled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...attention import DenseAttention
from ...errors import InputError
from ...trace import Trace
from ._forward import KIND, Reference, reference

#: method -> (name with its paper, whether it measures each head or the whole layer)
METHODS: dict[str, tuple[str, str]] = {
    "norm": ("norm of attention + residual + LayerNorm (Kobayashi et al. 2021)", "layer"),
    "alti": ("ALTI (Ferrando et al. 2022)", "layer"),
    "value_zeroing": ("value zeroing (Mohebbi et al. 2023)", "layer"),
    "grad_attention": ("attention x gradient (Hao et al. 2021 style)", "head"),
}


def contributions(
    source,
    text: str | None = None,
    *,
    method: str = "alti",
    tokenizer=None,
    model=None,
    pair: str | None = None,
    rollout: bool = False,
    target: int | str | None = None,
    position: int | None = None,
    batch: int | None = None,
    memory_mb: float | None = None,
) -> Trace:
    """Measure context mixing with ``method`` (see the module docstring) and return it as a Trace.

    ``source`` is what to run: an offline model name (``"minilm"``), a ``(model, tokenizer)`` pair as
    :func:`attnscope.load_model` returns it, a Hugging Face model (with ``tokenizer=``), or a captured Trace (its
    model is loaded by the name in its meta unless ``model=`` is given; its text and pair are reused).
    ``rollout=True`` multiplies the layer matrices (layer-level methods). ``target``/``position``: what
    ``grad_attention`` explains. ``batch``/``memory_mb``: how many copies of the input one layer call of
    ``value_zeroing`` takes (default: as many as fit in 512 MB).
    """
    check_method(method, rollout=rollout, target=target, position=position, batch=batch, memory_mb=memory_mb)
    model, tokenizer, ref = run(source, text, model=model, tokenizer=tokenizer, pair=pair)
    return measure(ref, model, tokenizer, method, rollout=rollout, target=target, position=position, batch=batch,
                   memory_mb=memory_mb)


def check_method(method: str, *, rollout: bool = False, target=None, position=None, batch=None,
                 memory_mb=None) -> None:
    """Refuse an unknown method, or options that do not apply to it (before any model runs)."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if rollout and METHODS[method][1] != "layer":
        raise InputError(f"rollout multiplies one matrix per layer; {method!r} measures each head. Use rollout "
                         f"with {', '.join(m for m, (_, level) in METHODS.items() if level == 'layer')}")
    if method != "grad_attention" and (target is not None or position is not None):
        raise InputError("target= and position= choose what grad_attention explains; other methods take neither")
    if method != "value_zeroing" and (batch is not None or memory_mb is not None):
        raise InputError("batch= and memory_mb= size value_zeroing's layer calls; other methods take neither")


def run(source, text: str | None = None, *, model=None, tokenizer=None, pair: str | None = None
        ) -> tuple[Any, Any, Reference]:
    """``(model, tokenizer, reference pass)`` for ``source`` as :func:`contributions` takes it; the measures of
    :func:`measure` all start from one reference pass."""
    model, tokenizer, text, pair = _resolve(source, text, model, tokenizer, pair)
    ref = reference(model, tokenizer, text, pair)
    if isinstance(source, Trace) and source.tokens.get("input") != ref.trace.tokens["input"]:
        raise InputError("running the trace's text through the model gave other tokens than the trace holds; "
                         "pass the model the trace was captured with (model=)")
    return model, tokenizer, ref


def measure(ref: Reference, model, tokenizer, method: str, *, rollout: bool = False, target=None, position=None,
            batch=None, memory_mb=None) -> Trace:
    """One method on a reference pass (options as in :func:`contributions`, checked by :func:`check_method`)."""
    facts: dict[str, Any] = {}
    if method == "grad_attention":
        from .grad_attention import grad_attention

        values, facts = grad_attention(ref, model, tokenizer, target=target, position=position)
    else:
        layers = _layer_measure(ref, model, method, batch, memory_mb)
        values = (rollout_layers(layers) if rollout else layers)[:, None]
    return as_trace(ref, values, method, rollout, facts)


def rollout_layers(c: np.ndarray) -> np.ndarray:
    """``R_0 = C_0``, ``R_l = C_l @ R_(l-1)`` for ``[L, n, n]`` layer matrices (ALTI's and value zeroing's
    aggregation): entry ``[l, i, j]`` is input token ``j``'s share in position ``i`` after layer ``l``."""
    out = np.empty_like(c, dtype=np.float64)
    out[0] = c[0]
    for layer in range(1, len(c)):
        out[layer] = c[layer].astype(np.float64) @ out[layer - 1]
    return out.astype(np.float32)


def as_trace(ref: Reference, values: np.ndarray, method: str, rollout: bool, facts: dict[str, Any]) -> Trace:
    """The measure as a Trace on the captured tokens; ``meta["measure"]`` says what the numbers are."""
    captured = ref.trace
    name, level = METHODS[method]
    scaling = ("positive part, divided by its largest value" if method == "grad_attention"
               else "each row divided by its sum")
    measure = {"method": method, "name": name + (", rolled out across layers" if rollout else ""), "level": level,
               "rollout": rollout, "scaling": scaling, **facts}
    keep = ("model", "architecture", "model_type", "dtype", "text", "pair", "verified", "version", "created")
    meta = {k: captured.meta[k] for k in keep if k in captured.meta}
    meta["kinds"] = {KIND: {"causal": bool(captured.meta.get("kinds", {}).get(KIND, {}).get("causal", False))}}
    meta["measure"] = measure
    return Trace(tokens={"input": list(captured.tokens["input"])}, attention={KIND: DenseAttention(values)},
                 token_ids=dict(captured.token_ids), segments=dict(captured.segments), meta=meta)


def _layer_measure(ref: Reference, model, method: str, batch, memory_mb) -> np.ndarray:
    from . import decompose

    if method == "norm":
        return decompose.norm(ref)
    if method == "alti":
        return decompose.alti(ref)
    from .value_zeroing import MEMORY_MB, value_zeroing

    return value_zeroing(ref, model, batch=batch, memory_mb=MEMORY_MB if memory_mb is None else memory_mb)


def _resolve(source, text, model, tokenizer, pair):
    """``(model, tokenizer, text, pair)`` from the ways :func:`contributions` may be called."""
    from ...capture.models import load_cached

    if isinstance(source, Trace):
        name = source.meta.get("model")
        if model is None and not name:
            raise InputError("this trace does not name its model; pass it: contributions(trace, model=(model, tok))")
        text = text if text is not None else source.meta.get("text")
        pair = pair if pair is not None else source.meta.get("pair")
        source = model if model is not None else name
    elif model is not None:
        raise InputError("model= goes with a Trace as the first argument; otherwise pass the model first")
    if isinstance(source, str):
        source = load_cached(source)
    if isinstance(source, tuple) and len(source) == 2:
        source, tokenizer = source
    if tokenizer is None:
        raise InputError(f"a {type(source).__name__} needs its tokenizer: contributions(model, text, tokenizer=tok), "
                         "or pass the (model, tokenizer) pair attnscope.load_model returns")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"contributions needs a text to run through the model; got {text!r}")
    return source, tokenizer, text, pair


__all__ = ["METHODS", "as_trace", "check_method", "contributions", "measure", "rollout_layers", "run"]
