"""Norm-based contributions with residual and LayerNorm (Kobayashi et al. 2021) and ALTI (Ferrando et al. 2022),
both read from one exact decomposition of each layer's attention sub-block.

The sub-block turns the residual stream ``x`` into ``y``. What token ``j`` sends to position ``i`` is

    z_ij = sum_h a^h_ij v^h_j W^h_O  +  [i = j] x_i        (value bias inside v_j; the residual on the diagonal)

- **pre-LN** (GPT-2, Llama): ``y_i = x_i + attention(norm(x))_i = sum_j z_ij + b_O``, so ``T_i(x_j) = z_ij``
  (``norm(x_j)`` depends on ``x_j`` alone: it is part of how token ``j``'s value is made).
- **post-LN** (BERT): ``y_i = LN(x_i + attention(x)_i)``. With row ``i``'s scale ``sigma_i`` fixed (read from the
  real input of the LayerNorm), LN is linear: ``T_i(x_j) = gamma * (z_ij - mean(z_ij)) / sigma_i`` and
  ``y_i = sum_j T_i(x_j) + gamma * (b_O - mean(b_O)) / sigma_i + beta``.

Every layer's decomposition is checked against the layer's real output before anything is measured from it.

- ``norm``: ``||T_i(x_j)||_2``, each row divided by its sum (Kobayashi et al. 2021, "Incorporating Residual and
  Normalization Layers into Analysis of Masked Language Models").
- ``alti``: ``max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1)``, each row divided by its sum (Ferrando et al. 2022,
  "Measuring the Mixing of Contextual Information in the Transformer", eqs. 8-9); rolled out across layers by
  :func:`attnscope.analysis.measures.rollout_layers`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ...capture.blocks import projection_matrix
from ...capture.verify import RTOL
from ...errors import CaptureError
from ._forward import KIND, LayerPass, Reference

#: Bytes of one block of ``T_i(x_j)`` vectors (query rows are taken this many at a time).
BLOCK_BYTES = 64 * 2**20


def norm(ref: Reference) -> np.ndarray:
    """``||T_i(x_j)||_2`` per layer, rows summing to 1: ``[L, n, n]`` float32."""
    return _per_layer(ref, lambda t, y: t.norm(dim=-1))


def alti(ref: Reference) -> np.ndarray:
    """ALTI contributions per layer, rows summing to 1: ``[L, n, n]`` float32."""

    def contribution(t, y):
        distance = (y[:, None, :] - t).abs().sum(-1)  # [c, n]
        return (y.abs().sum(-1, keepdim=True) - distance).clamp(min=0.0)

    return _per_layer(ref, contribution)


def normalise_rows(c: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows summing to 0 stay 0)."""
    total = c.sum(-1, keepdims=True)
    return np.divide(c, total, out=np.zeros_like(c), where=total > 0)


def _per_layer(ref: Reference, measure: Callable) -> np.ndarray:
    L, _, n, _ = ref.trace.shape(KIND)
    out = np.zeros((L, n, n), dtype=np.float32)
    for p in ref.layers:
        for rows, t, y in decomposed(ref, p):
            out[p.layer.index, rows] = measure(t, y).numpy()
    return normalise_rows(out)


def decomposed(ref: Reference, p: LayerPass) -> Iterator[tuple[slice, object, object]]:
    """Layer ``p``'s decomposition a block of query rows at a time: ``(rows, T [c, n, D], y [c, D])`` (torch
    float32), checked against the layer's real output (CaptureError when the family layout does not fit)."""
    import torch

    index = p.layer.index
    a = torch.from_numpy(ref.trace.layer(index, KIND))  # [H, n, n]
    values = torch.from_numpy(ref.trace.qkv[KIND]["value"][index]).float()  # [H, n, d]
    H, n, d = values.shape
    w_o = torch.from_numpy(projection_matrix(p.layer.projection)).reshape(H, d, -1)  # [H, d, D]
    f = torch.bmm(values, w_o)  # [H, n, D]: each token's value through each head's W_O
    D = f.shape[-1]
    f_by_key = f.permute(1, 0, 2).contiguous()  # [n, H, D] (contiguous: bmm on strided inputs is ~50x slower)
    bias = p.layer.projection.bias
    b_o = bias.detach().float().cpu() if bias is not None else torch.zeros(D)
    x = p.x.float().cpu()
    if p.layer.post_norm is not None:
        ln = p.layer.post_norm
        gamma, beta = ln.weight.detach().float().cpu(), _bias(ln, D)
        eps = getattr(ln, "eps", None) or ln.variance_epsilon
        sigma = torch.sqrt(p.norm_in.float().cpu().var(-1, unbiased=False) + eps)  # [n]
        real = p.norm_out.float().cpu()
    else:
        real = x + p.projected.float().cpu()
    tolerance = 10 * RTOL.get(str(ref.trace.meta.get("dtype")), RTOL["bfloat16"]) * max(1.0, float(real.abs().max()))
    step = max(1, BLOCK_BYTES // (4 * n * D))
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        idx = torch.arange(rows.start, rows.stop)
        z = torch.bmm(a[:, rows].permute(2, 1, 0).contiguous(), f_by_key).transpose(0, 1)  # [c, n, D]: sum over h
        z[idx - start, idx] += x[rows]  # the residual: x_i reaches y_i on the diagonal
        if p.layer.post_norm is not None:
            s = sigma[rows, None, None]
            t = gamma * (z - z.mean(-1, keepdim=True)) / s
            y = t.sum(1) + gamma * (b_o - b_o.mean()) / s[:, 0] + beta
        else:
            t = z
            y = z.sum(1) + b_o
        miss = float((y - real[rows]).abs().max())
        if miss > tolerance:
            raise CaptureError(
                f"layer {index}'s attention sub-block does not decompose into per-token vectors as its family's "
                f"layout says (off by {miss:.3g}); check attnscope.capture.families.LAYOUTS for this model"
            )
        yield rows, t, y


def _bias(module, size: int):
    import torch

    bias = getattr(module, "bias", None)
    return bias.detach().float().cpu() if bias is not None else torch.zeros(size)
