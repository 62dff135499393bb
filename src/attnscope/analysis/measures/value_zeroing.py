"""Value zeroing (Mohebbi et al. 2023, "Quantifying Context Mixing in Transformers").

For layer ``l`` and token ``j``: run layer ``l`` again on its original input with token ``j``'s value vector set to
zero in every head, and measure how far each token's output moved: ``C_ij = 1 - cos(x~_i, x_i)`` (the cosine
distance between the layer's output with and without token ``j``'s value). Each row is then divided by its sum,
as in the paper. A token's own row entry counts its value only: its residual stays. Keys the mask hides from a
query (a causal model's later tokens) get exactly 0.

Batched: the layer runs once on a batch of ``b`` copies of its input, copy ``t`` with token ``t``'s value zeroed,
so a layer costs ``ceil(n / b)`` calls of that one layer; ``b`` is as large as ``memory_mb`` allows (``batch=1``:
one call per token, the paper's loop).
"""

from __future__ import annotations

import numpy as np

from ...capture.families import text_config
from ...errors import InputError
from ._attention import Interventions, evaluating, intervening
from ._forward import KIND, Reference, first, hidden_of, with_hidden
from .decompose import normalise_rows

#: Memory the batched variants of one layer may take by default (activations estimated from the config).
MEMORY_MB = 512


def value_zeroing(ref: Reference, model, *, batch: int | None = None, memory_mb: float = MEMORY_MB) -> np.ndarray:
    """Value-zeroing contributions per layer, rows summing to 1: ``[L, n, n]`` float32."""
    import torch

    L, H, n, _ = ref.trace.shape(KIND)
    b = variants_per_call(model, n, H, memory_mb) if batch is None else batch
    if not isinstance(b, int) or isinstance(b, bool) or b < 1:
        raise InputError(f"batch must be a whole number >= 1 (variants per call of a layer); got {batch!r}")
    b = min(b, n)
    out = np.zeros((L, n, n), dtype=np.float32)
    act = Interventions()
    with evaluating(model), torch.no_grad(), intervening(model, act):
        for p in ref.layers:
            hidden = hidden_of(p.args, p.kwargs)  # [1, n, D]
            base = _unit(p.out)  # [n, D]
            act.module = p.layer.attention
            for start in range(0, n, b):
                tokens = torch.arange(start, min(n, start + b), device=hidden.device)
                act.zero = tokens
                args, kwargs = with_hidden(p.args, p.kwargs, hidden.expand(len(tokens), -1, -1))
                moved = _unit(first(p.layer.module(*args, **kwargs)))  # [b, n, D]
                distance = 0.5 * ((moved - base[None]) ** 2).sum(-1)  # 1 - cos, without cancellation: [b, n]
                out[p.layer.index, :, start:start + len(tokens)] = distance.T.cpu().numpy()
            # a key the mask hides from a query (all its weights exactly 0) cannot move it: what the batched call
            # shows there is rounding (~1e-13), not context mixing
            out[p.layer.index][~(ref.trace.layer(p.layer.index, KIND) > 0).any(0)] = 0.0
            act.module = act.zero = None
    return normalise_rows(out)


def variants_per_call(model, n: int, heads: int, memory_mb: float) -> int:
    """How many copies of an ``n``-token input one layer call may take within ``memory_mb`` (at least 1)."""
    if not isinstance(memory_mb, (int, float)) or isinstance(memory_mb, bool) or not memory_mb > 0:
        raise InputError(f"memory_mb must be a positive number of megabytes; got {memory_mb!r}")
    config = text_config(model.config)
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0) or getattr(config, "dim", 768))
    inner = int(getattr(config, "intermediate_size", 0) or getattr(config, "n_inner", 0)
                or getattr(config, "hidden_dim", 0) or 4 * hidden)
    per_copy = 4 * (n * (8 * hidden + 3 * inner) + 3 * heads * n * n)  # float32 activations of one copy
    return max(1, min(n, int(memory_mb * 2**20 // per_copy)))


def _unit(x):
    """Rows scaled to length 1, in float64 (cosine distances of 1e-7 must not drown in float32 rounding)."""
    x = x.double()
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-300)
