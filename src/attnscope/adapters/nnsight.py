"""nnsight -> Trace: the attention weights of a Hugging Face model traced with nnsight, interventions included.

Let attnscope run the forward pass::

    from nnsight import LanguageModel            # or TransformersModel(..., task="text-generation")
    model = LanguageModel("openai-community/gpt2")
    trace = attnscope.Trace.from_nnsight(model, "The cat sat on the mat.")

or read what your own trace saved, with your edits applied::

    from attnscope.adapters.nnsight import attention_modules, eager_attention

    with eager_attention(model), model.trace(text) as tracer:
        cache = tracer.cache(modules=attention_modules(model))   # first, before touching any module
        model.transformer.h[0].attn.output[0][:] = 0             # your intervention
    trace = attnscope.Trace.from_nnsight(model, text, cache=cache)

The weights are the second output of each attention module (``output[1]``, ``[batch, heads, q, k]``), which
transformers fills only under eager attention: :func:`eager_attention` switches the model to it for the block and
restores its own implementation afterwards. The scaling and mask rule of the attention modules go into the
trace's meta. Query/key vectors are not part of a module's outputs, so there is no neuron view here; for it use
``attnscope.capture(model._module, model.tokenizer, text, qkv=True)``. One-stack models only (decoders and
encoders); for encoder-decoders use :func:`attnscope.capture`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from ..capture.families import is_encoder_decoder
from ..errors import InputError, MissingDataError
from ..trace import Trace

#: nnsight names every module path from the root envoy, which it calls ``model``.
_ROOT = "model"


def from_nnsight(model, text: str, *, cache=None, batch: int = 0) -> Trace:
    """A Trace of ``text`` through an nnsight-wrapped Hugging Face model.

    - ``cache=None``: run ``model.trace(text)`` under eager attention, caching every attention module's output.
    - ``cache``: the ``tracer.cache(...)`` of your own ``model.trace`` (of every module, or of
      :func:`attention_modules`), run under :func:`eager_attention`; ``text`` is the text of row ``batch``
      (several invokes make a batch; the padding nnsight added is cut away).
    """
    hf = hf_model(model)
    if is_encoder_decoder(hf.config):
        raise InputError(f"{type(hf).__name__} is an encoder-decoder; Trace.from_nnsight reads one-stack models. "
                         "Use attnscope.capture(model._module, model.tokenizer, text, target=...)")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise InputError("this nnsight model has no tokenizer; load it with one (LanguageModel(model, tokenizer=tok))")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"text must be the non-empty string the model was traced on; got {text!r}")
    paths = attention_modules(model)
    if cache is None:
        with eager_attention(model), model.trace(text) as tracer:
            cache = tracer.cache(modules=paths)
    ids = [int(i) for i in tokenizer(text)["input_ids"]]
    layers = [_weights(cache, path, batch, len(ids), getattr(tokenizer, "padding_side", "right")) for path in paths]
    modules = dict(hf.named_modules())
    first = modules[paths[0].removeprefix(_ROOT + ".")]
    rule = {"causal": bool(getattr(first, "is_causal", False)), "scaling": float(first.scaling)}
    config = hf.config
    meta = {
        "source": "nnsight",
        "model": getattr(config, "_name_or_path", "") or "",
        "architecture": (getattr(config, "architectures", None) or [type(hf).__name__])[0],
        "model_type": getattr(config, "model_type", ""),
        "dtype": str(hf.dtype).removeprefix("torch."),
        "attn_implementation": "eager",
        "text": text,
        "kinds": {"self": rule},
    }
    trace = Trace.from_arrays(np.stack(layers), tokenizer.convert_ids_to_tokens(ids), meta=meta)
    return replace(trace, token_ids={"input": ids})


def attention_modules(model) -> list[str]:
    """nnsight paths of the model's attention modules, in layer order (``"model.transformer.h.0.attn"``, ...):
    what to pass to ``tracer.cache(modules=...)``."""
    hf = hf_model(model)
    paths = [f"{_ROOT}.{name}" for name, m in hf.named_modules()
             if isinstance(getattr(m, "scaling", None), float) and hasattr(m, "is_causal")]
    if not paths:
        raise InputError(f"{type(hf).__name__} has no attention modules on transformers' attention interface "
                         "(modules with `scaling` and `is_causal`); capture it with attnscope.capture instead")
    return paths


@contextlib.contextmanager
def eager_attention(model) -> Iterator[None]:
    """Run the wrapped Hugging Face model with eager attention inside the block (so attention modules return their
    weights), and restore its own attention implementation afterwards."""
    from ..capture.hf import _configs

    hf = hf_model(model)
    saved = [(c, c.__dict__.get("_attn_implementation_internal")) for c in _configs(hf)]
    try:
        with contextlib.suppress(ValueError, ImportError):  # a model that cannot switch says so below
            hf.set_attn_implementation("eager")
        if hf.config._attn_implementation != "eager":
            raise InputError(f"{type(hf).__name__} cannot switch to eager attention; load it with "
                             "attn_implementation='eager'")
        yield
    finally:
        for config, impl in saved:
            config._attn_implementation_internal = impl


def hf_model(model):
    """The Hugging Face model inside an nnsight model (or the model itself when it already is one)."""
    inner = next((m for m in (getattr(model, "_module", None), getattr(model, "_model", None)) if m is not None), model)
    if not hasattr(inner, "config") or not hasattr(inner, "named_modules"):
        raise InputError(f"expected an nnsight model wrapping a Hugging Face model (nnsight.LanguageModel or "
                         f"TransformersModel); got {type(model).__name__}")
    return inner


def _weights(cache, path: str, batch: int, n: int, padding_side: str) -> np.ndarray:
    """``[H, n, n]`` float32 weights of one attention module from the cache, padding cut away."""
    try:
        output = cache[path].output
    except (KeyError, AttributeError, IndexError, TypeError):
        output = None
    if output is None:
        raise MissingDataError(f"the cache holds no output of {path}; make it with "
                               "tracer.cache(modules=attention_modules(model)) as the first line of the trace")
    if isinstance(output, list):
        raise InputError(f"the cache holds {len(output)} forward passes of {path} (generation); Trace.from_nnsight "
                         "reads one pass: use model.trace, not model.generate")
    weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
    if weights is None or getattr(weights, "ndim", 0) != 4:
        raise MissingDataError(f"{path} returned no attention weights: the model ran with a fused attention kernel. "
                               "Run the trace inside attnscope.adapters.nnsight.eager_attention(model)")
    B, _, q, k = weights.shape
    if not isinstance(batch, int) or isinstance(batch, bool) or not 0 <= batch < B:
        raise InputError(f"batch={batch!r} but the trace ran {B} rows; pass a row index below {B}")
    part = slice(q - n, q) if padding_side == "left" else slice(0, n)
    rows = weights[batch, :, part].detach().to("cpu").float().numpy()  # [H, n, k]
    kept = rows[..., part]
    # What is cut away must be padding: the text's own queries give it no weight (a wrong text would keep some).
    if q != k or q < n or not np.allclose(kept.sum(-1), rows.sum(-1), atol=1e-5):
        raise InputError(f"{path} attended over {q} x {k} positions, which do not fit the {n} tokens of the text "
                         f"(plus padding); pass the text of row {batch} of the trace")
    return np.ascontiguousarray(kept)
