"""Attention rollout and attention flow (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

Raw attention of a deep layer mixes tokens that earlier layers already mixed. Both methods trace how much of each
input token reaches each position, through every layer:

- Each layer's heads are reduced to one matrix (mean by default) and the residual connection is added:
  ``A_hat = residual * I + (1 - residual) * A``, rows renormalised to sum to 1 (``residual=0.5`` in the paper).
- **Rollout** multiplies these matrices from layer 0 up: ``R_0 = A_hat_0``, ``R_l = A_hat_l @ R_(l-1)``.
  ``R_l[i, j]`` is the share of input token ``j`` in position ``i`` after layer ``l``. Cheap: ``L`` matrix products.
- **Flow** treats the layers as a graph (a node per token and layer, an edge ``(l, j) -> (l + 1, i)`` of capacity
  ``A_hat_l[i, j]``) and takes the maximum flow from input node ``j`` to output node ``i`` for every pair, rows
  then normalised to sum to 1 as in the paper. Expensive: ``n^2`` max-flow problems on a graph of ``L n^2`` edges,
  hence ``FLOW_MAX_TOKENS``.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError, require
from ..trace import Trace
from ._util import require_square, resolve_kind

HEAD_REDUCTIONS = ("mean", "max", "min")
#: Longest input :func:`flow` accepts by default. Measured on 6 layers of dense random attention (2 cores):
#: 32 tokens 0.3 s, 64 tokens 3 s, 96 tokens 15 s, 128 tokens 60 s (the cost grows ~n^4.5).
FLOW_MAX_TOKENS = 64
#: Capacities are scaled to integers for the max-flow solver; flows are exact to about n / 2**24.
_FLOW_SCALE = 2**24


def residual_attention(trace: Trace, kind: str | None = None, residual: float = 0.5,
                       head_reduce: str = "mean", layers: int | None = None) -> np.ndarray:
    """Per layer, heads reduced and the residual added: ``A_hat`` ``[L, n, n]`` float64, rows summing to 1."""
    kind = resolve_kind(trace, kind)
    n = require_square(trace, kind, "rollout and flow")
    if not isinstance(residual, (int, float)) or not 0.0 <= residual <= 1.0:
        raise InputError(f"residual must be a number in [0, 1] (0.5 in Abnar & Zuidema); got {residual!r}")
    if head_reduce not in HEAD_REDUCTIONS:
        raise InputError(f"head_reduce must be one of {HEAD_REDUCTIONS}; got {head_reduce!r}")
    L = trace.shape(kind)[0] if layers is None else layers
    trace.attention[kind].allow_dense((4, L, n, n), "attention rollout ([layers, n, n] float64, twice)")
    out = np.empty((L, n, n), dtype=np.float64)
    diagonal = np.arange(n)
    for layer in range(L):
        heads = trace.layer(layer, kind).astype(np.float64)  # [H, n, n]
        a = getattr(heads, head_reduce)(axis=0) * (1.0 - residual)
        a[diagonal, diagonal] += residual
        out[layer] = a / np.maximum(a.sum(-1, keepdims=True), 1e-12)
    return out


def rollout(trace: Trace, kind: str | None = None, residual: float = 0.5, head_reduce: str = "mean") -> np.ndarray:
    """Attention rollout ``[L, n, n]`` float32: entry ``[l, i, j]`` is input token ``j``'s share in position ``i``
    after layer ``l``. Rows sum to 1; for a causal model the result stays lower-triangular.

    ``residual`` is the weight of the identity (skip connection); ``head_reduce`` combines a layer's heads
    (``"mean"`` as in the paper, or ``"max"``/``"min"``).
    """
    a_hat = residual_attention(trace, kind, residual, head_reduce)
    out = np.empty_like(a_hat)
    out[0] = a_hat[0]
    for layer in range(1, len(a_hat)):
        out[layer] = a_hat[layer] @ out[layer - 1]
    return out.astype(np.float32)


def flow(trace: Trace, kind: str | None = None, *, layer: int | None = None, residual: float = 0.5,
         head_reduce: str = "mean", normalize: bool = True, max_tokens: int = FLOW_MAX_TOKENS) -> np.ndarray:
    """Attention flow ``[n, n]`` float32 into the outputs of ``layer`` (default: the last).

    Entry ``[i, j]`` is the maximum flow from input token ``j`` to position ``i`` after ``layer`` through the
    residual-augmented attention graph (see the module docstring); with ``normalize`` each row is divided by its
    sum, as in the paper. Needs scipy (``pip install 'attnscope[analysis]'``). Inputs longer than ``max_tokens``
    raise InputError: the cost is ``n^2`` max-flow problems, each on ``(layer + 1) n^2`` edges.
    """
    kind = resolve_kind(trace, kind)
    n = require_square(trace, kind, "flow")
    L = trace.shape(kind)[0]
    layer = L - 1 if layer is None else layer
    if not isinstance(layer, (int, np.integer)) or not 0 <= layer < L:
        raise InputError(f"layer must be between 0 and {L - 1}; got {layer!r}")
    if n > max_tokens:
        raise InputError(
            f"attention flow on {n} tokens means {n * n} max-flow problems on {(layer + 1) * n * n} edges, past the "
            f"limit of max_tokens={max_tokens}; use rollout() (same idea, L matrix products), pick an earlier "
            f"layer, or pass a larger max_tokens knowing the cost grows ~n^4"
        )
    sparse = require("scipy.sparse", "analysis")
    csgraph = require("scipy.sparse.csgraph", "analysis")
    a_hat = residual_attention(trace, kind, residual, head_reduce, layers=layer + 1)
    graph = _layer_graph(sparse, a_hat)
    sink0 = (layer + 1) * n
    out = np.zeros((n, n), dtype=np.float64)
    reach = np.eye(n)  # reach[i, j] > 0: some path links input j to output i
    for a in a_hat:
        reach = (a > 0) @ (reach > 0)
    for i in range(n):
        for j in np.flatnonzero(reach[i] > 0):
            out[i, j] = csgraph.maximum_flow(graph, int(j), sink0 + i).flow_value / _FLOW_SCALE
    if normalize:
        out /= np.maximum(out.sum(-1, keepdims=True), 1e-12)
    return out.astype(np.float32)


def _layer_graph(sparse, a_hat: np.ndarray):
    """The layered graph as a CSR matrix of integer capacities: node ``l * n + j`` -> ``(l + 1) * n + i``."""
    L, n, _ = a_hat.shape
    rows, cols, caps = [], [], []
    for layer, a in enumerate(a_hat):
        i, j = np.nonzero(a)
        rows.append(layer * n + j)
        cols.append((layer + 1) * n + i)
        caps.append(np.rint(a[i, j] * _FLOW_SCALE))
    size = (L + 1) * n
    cap = np.concatenate(caps).astype(np.int32)
    keep = cap > 0
    edges = (cap[keep], (np.concatenate(rows)[keep], np.concatenate(cols)[keep]))
    return sparse.csr_matrix(edges, shape=(size, size))
