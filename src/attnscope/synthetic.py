"""Synthetic traces of any size, made layer by layer, for tests and benchmarks of long inputs and big models.

A Llama-7B-shaped trace (32 layers x 32 heads) at 4096 tokens is 68.7 GB dense, so :func:`synthetic_trace` builds
the pruned form directly: each causal row gets the weights a real decoder head tends to have (an attention sink on
the first token, the previous tokens, a local window, a few far keys), and only the keys that carry the kept mass
are stored. The memory used is that of the pruned arrays, never of a dense layer.
"""

from __future__ import annotations

import numpy as np

from .attention import DenseAttention, PrunedAttention
from .trace import Trace

_WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have "
          "an they you were her she there been one all we their has would when if so no will more can").split()


def _head_rows(n: int, rng: np.random.Generator, pattern: int, window: int) -> tuple:
    """Pruned causal rows of one head: ``(counts [n], indices, values, totals [n])`` in row order."""
    i = np.arange(n)
    offsets = np.arange(window)  # keys i, i-1, ..., i-window+1
    keys = i[:, None] - offsets[None, :]  # [n, window]
    far = rng.integers(0, np.maximum(i, 1)[:, None], size=(n, 3))  # a few far keys anywhere before i
    keys = np.concatenate([np.zeros((n, 1), dtype=np.int64), keys, far], axis=1)
    logits = rng.normal(0.0, 0.7, size=keys.shape)
    logits[:, 0] += (3.0, 0.5, 1.5, 0.0)[pattern]  # sink strength
    logits[:, 2] += (0.0, 3.0, 0.5, 0.0)[pattern]  # previous token
    logits[:, 1 : 1 + window] -= np.linspace(0, (0.5, 3.0, 1.0, 0.2)[pattern] * 3, window)  # local decay
    valid = keys >= 0
    keys = np.where(valid, keys, 0)
    # merge duplicate keys (the sink and far keys can coincide with the window): keep the first occurrence
    order = np.argsort(keys, axis=1, kind="stable")
    sk = np.take_along_axis(keys, order, 1)
    dup = np.zeros_like(valid)
    dup[:, 1:] = sk[:, 1:] == sk[:, :-1]
    first = np.empty_like(valid)
    np.put_along_axis(first, order, ~dup, axis=1)
    valid &= first
    w = np.where(valid, np.exp(logits - logits.max(1, keepdims=True)), 0.0)
    kept = rng.uniform(0.95, 1.0, size=(n, 1))  # the mass of the stored keys; the rest is spread thinly elsewhere
    kept[: window + 4] = 1.0  # short rows store every key they have
    w = w / w.sum(1, keepdims=True) * kept
    srt = np.argsort(-w, axis=1, kind="stable")
    w = np.take_along_axis(w, srt, 1)
    keys = np.take_along_axis(keys, srt, 1)
    valid = np.take_along_axis(valid, srt, 1)
    counts = valid.sum(1)
    return counts.astype(np.int64), keys[valid].astype(np.int32), w[valid].astype(np.float32), np.ones(n)


def synthetic_trace(n: int, layers: int = 32, heads: int = 32, *, seed: int = 0, window: int = 12,
                    dense: bool = False) -> Trace:
    """A causal decoder-like trace of ``n`` tokens, ``layers`` x ``heads``, built one layer at a time (pruned).

    ``dense=True`` returns the same weights densified (only sensible for small sizes).
    """
    rng = np.random.default_rng(seed)
    window = max(1, min(window, n))

    def layer_rows():
        for layer in range(layers):
            yield n, [_head_rows(n, rng, (layer * heads + h) % 4, window) for h in range(heads)]

    att = PrunedAttention.from_pruned_heads(layer_rows())
    tokens = [_WORDS[int(x)] for x in np.random.default_rng(seed + 1).integers(0, len(_WORDS), n)]
    tokens[0] = "<s>"
    meta = {"model": f"synthetic-{layers}x{heads}", "architecture": "synthetic", "model_type": "synthetic",
            "kinds": {"self": {"scaling": 1.0, "causal": True}}, "source": "synthetic"}
    attention = DenseAttention(att.dense()) if dense else att
    return Trace(tokens={"input": tokens}, attention={"self": attention}, token_ids={"input": list(range(n))},
                 meta=meta)
