"""Norm-based attention (Kobayashi et al. 2020, "Attention is Not Only a Weight").

A head's output for query ``i`` is ``sum_j a_ij f(x_j)`` with ``f(x_j) = v_j W_O^h``: the value vector of key
``j`` (bias included) through the head's slice of the output projection. A large weight on a key whose transformed
vector is tiny moves nothing, so ``||a_ij f(x_j)||`` says more about what a head passes on than ``a_ij`` alone.
The output projection's bias does not depend on ``j`` and is left out, as in the paper.

The Trace holds the value vectors (capture with ``qkv=True``) but not the weights, so the model is passed in and
``W_O`` is read from each attention module, found in module order (the order capture numbers layers in).
"""

from __future__ import annotations

import numpy as np

from ..capture.blocks import attention_modules, projection_matrix
from ..errors import InputError, MissingDataError
from ..trace import Trace
from ._util import resolve_kind


def norm_attention(trace: Trace, model, kind: str | None = None) -> np.ndarray:
    """``||a_ij v_j W_O^h||`` for every layer, head, query and key: ``[L, H, q, k]`` float32.

    ``model`` is the Hugging Face model the trace was captured from (or an offline model name such as
    ``"minilm"``); the trace needs value vectors (``attnscope.capture(..., qkv=True)``).
    """
    kind = resolve_kind(trace, kind)
    if "value" not in trace.qkv.get(kind, {}):
        raise MissingDataError(
            f"norm-based attention needs the value vectors of {kind!r} attention, and this trace has none; "
            "capture it with attnscope.capture(..., qkv=True)"
        )
    if isinstance(model, str):
        from ..capture.models import load_cached

        model = load_cached(model)[0]
    values = trace.qkv[kind]["value"]  # [L, H, k, d]
    L, H, q, k = trace.shape(kind)
    d = values.shape[-1]
    projections = output_projections(model, kind)
    if len(projections) != L:
        raise InputError(
            f"found {len(projections)} {kind!r} attention modules in {type(model).__name__} but the trace has {L} "
            "layers; pass the model the trace was captured from"
        )
    out = np.empty((L, H, q, k), dtype=np.float32)
    for layer, w_o in enumerate(projections):
        if w_o.shape[0] != H * d:
            raise InputError(
                f"layer {layer}'s output projection takes {w_o.shape[0]} inputs but the trace has {H} heads of "
                f"size {d}; pass the model the trace was captured from"
            )
        f = np.einsum("hkd,hde->hke", values[layer].astype(np.float32), w_o.reshape(H, d, -1))  # [H, k, D]
        norms = np.linalg.norm(f, axis=-1)  # [H, k]
        out[layer] = trace.layer(layer, kind) * norms[:, None, :]
    return out


def output_projections(model, kind: str = "self") -> list[np.ndarray]:
    """Per layer of ``kind``, the output projection as a ``[heads * head_size, hidden]`` float32 matrix
    (``x @ W`` form: ``nn.Linear`` weights are transposed, GPT-2's ``Conv1D`` is already in that form)."""
    return [projection_matrix(a.projection) for a in attention_modules(model, kind)]
