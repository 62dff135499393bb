"""A long trace in the q/k form from a real (tiny, random) model, shared by the payload, server and browser tests."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import torch
import transformers as tf

import attnscope
from tiny_models import tokenizer

#: Tokens renamed in the trace, for the search tests.
NEEDLES = {1000: "zanzibarian", 1700: "Zanzibar"}


@cache
def long_qk_trace(n: int = 2500) -> attnscope.Trace:
    """A tiny Llama (2 layers, 4 query heads sharing 2 key/value heads, head size 16, RoPE) captured in the q/k form
    at ``n`` tokens. Its query and key projections are scaled up so heads attend sharply (a random model's heads are
    near uniform, too faint to draw): rows keep ~20 weights above 1/128."""
    cfg = tf.LlamaConfig(vocab_size=50, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=n)
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight *= 12
            layer.self_attn.k_proj.weight *= 12
    words = " ".join(["the quick brown fox jumps over the lazy dog ."] * (n // 10 + 1)).split()[:n]
    trace = attnscope.capture(model, tokenizer("plain", model_max_length=n), " ".join(words), form="qk")
    tokens = list(trace.tokens["input"])
    for i, name in NEEDLES.items():
        if i < n:
            tokens[i] = name
    return dataclasses.replace(trace, tokens={"input": tokens})


def f16_bound(att, layer: int, head: int, rows: np.ndarray) -> np.ndarray:
    """How far each weight of ``rows`` ``[len(rows), k]`` may move when its query and key are rounded to float16
    (unit roundoff 2^-11 each): ``w (exp(|ds|) - 1)``, ``|ds| <= scaling sum_c |q_c k_c| (2^-10 + 2^-22)``; soft-capping
    only shrinks score differences."""
    q = np.abs(att.query[layer, head, rows].astype(np.float64))
    k = np.abs(att.key[layer, att.kv_index[head]].astype(np.float64))
    ds = att.rule.scaling * (q @ k.T) * (2.0**-10 + 2.0**-22) + 1e-7
    w = np.stack([att.row(layer, head, int(i)) for i in rows]).astype(np.float64)
    return w * np.expm1(ds) + 1e-6


def pooled_dense(dense: np.ndarray, block: int, how: str = "max") -> np.ndarray:
    """``[..., q, k]`` weights pooled to cells of ``block`` tokens (zero padding), the reference for the overview."""
    *lead, q, k = dense.shape
    R, C = -(-q // block), -(-k // block)
    padded = np.zeros((*lead, R * block, C * block), dtype=np.float64)
    padded[..., :q, :k] = dense
    cells = padded.reshape(*lead, R, block, C, block)
    return cells.max(axis=(-3, -1)) if how == "max" else cells.sum(axis=(-3, -1))
