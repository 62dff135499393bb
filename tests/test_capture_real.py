"""Capture on the real offline models: the embedded MiniLM (BERT) and SmolLM2 (Llama, GQA, RoPE, GGUF)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attnscope
from attnscope.errors import ModelLoadError
from attnscope.qk import QKAttention
from long_qk import pooled_dense


def recomputed(trace, kind="self"):
    q, k = trace.qkv[kind]["query"], trace.qkv[kind]["key"]
    scores = np.einsum("lhqd,lhkd->lhqk", q, k) * trace.meta["kinds"][kind]["scaling"]
    if trace.meta["kinds"][kind]["causal"]:
        scores = np.where(np.tril(np.ones(scores.shape[-2:], dtype=bool)), scores, -np.inf)
    w = np.exp(scores - scores.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True)


def test_minilm_capture_matches_eager_and_recomputes_from_qk(minilm):
    model, tok = minilm
    trace = attnscope.capture(model, tok, "The quick brown fox jumps over the lazy dog.", qkv=True)
    assert trace.shape() == (6, 12, 12, 12)
    assert trace.tokens["input"][0] == "[CLS]" and trace.meta["architecture"] == "BertModel"
    enc = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt")
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            want = torch.cat(model(**enc, output_attentions=True).attentions).numpy()
    finally:
        model.set_attn_implementation("sdpa")
    assert np.abs(trace.dense() - want).max() < 1e-5
    assert np.abs(recomputed(trace) - trace.dense()).max() < 1e-4


def test_capture_by_name_loads_the_embedded_default():
    trace = attnscope.capture("minilm", "attention is all you need")
    assert trace.meta["model"] == "minilm" and trace.shape()[:2] == (6, 12)


def test_an_unavailable_hub_id_says_offline_and_how_to_pass_a_folder():
    with pytest.raises(ModelLoadError, match="local folder"):
        attnscope.load_model("no-such-org/no-such-model-xyz")


@pytest.fixture(scope="module")
def smollm2():
    return attnscope.load_model("smollm2")


@pytest.mark.slow
def test_smollm2_gqa_rope_capture_matches_eager_and_qk(smollm2):
    model, tok = smollm2
    text = "The doctor asked the nurse a question. She"
    trace = attnscope.capture(model, tok, text, qkv=True)
    L, H, n, _ = trace.shape()
    assert (L, H) == (30, 9)
    assert trace.qkv["self"]["key"].shape == (30, 9, n, 64)
    assert np.abs(recomputed(trace) - trace.dense()).max() < 1e-4
    enc = tok(text, return_tensors="pt")
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            want = torch.cat(model(**enc, output_attentions=True).attentions).numpy()
    finally:
        model.set_attn_implementation(before)
    assert np.abs(trace.dense() - want).max() < 1e-5
    assert model.config._attn_implementation == before


@pytest.mark.slow
def test_smollm2_q_k_rows_and_overview_equal_its_eager_weights_at_512_tokens(smollm2):
    """Real English (the standard library's docstrings), 512 tokens, 30 layers x 9 heads over 3 key/value heads."""
    import argparse
    import inspect
    import logging

    model, tok = smollm2
    docs = "\n\n".join(inspect.getdoc(m) or "" for m in (argparse, inspect, logging))
    text = tok.decode(tok(docs)["input_ids"][:512])
    trace = attnscope.capture(model, tok, text, form="qk")
    att = trace.attention["self"]
    n = att.shape[-1]
    assert isinstance(att, QKAttention) and 480 <= n <= 544
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            want = model(input_ids=torch.tensor([trace.token_ids["input"]]), output_attentions=True).attentions
    finally:
        model.set_attn_implementation("sdpa")
    for layer, weights in enumerate(want):
        weights = weights[0].numpy()
        assert np.abs(att.layer(layer) - weights).max() < 1e-5, layer
        np.testing.assert_allclose(att.maxima[layer], pooled_dense(weights, att.block), atol=1e-5,  # as the rows
                                   err_msg=str(layer))


@pytest.mark.slow
def test_smollm2_generate_continues_the_prompt(smollm2):
    model, tok = smollm2
    trace = attnscope.capture(model, tok, "The capital of France is", generate=3)
    assert len(trace.segments["generated"]) == 3
    assert np.triu(trace.dense(), 1).max() == 0.0
