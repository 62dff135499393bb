"""The q/k form: attention recomputed exactly from captured queries, keys and row log-sum-exps."""

from __future__ import annotations

import logging
import resource

import numpy as np
import pytest
import torch

import attnscope
from attnscope.capture import hf, long
from attnscope.errors import InputError
from attnscope.qk import QKAttention
from tiny_models import build, tokenizer

TEXT = "the cat sat on the mat and it was very happy because the dog was away"
ARCHITECTURES = ["llama", "gpt2", "bert", "distilbert", "bart", "mistral", "gemma2", "gpt_oss"]


def eager_attention(model, trace) -> dict[str, np.ndarray]:
    """The model's own eager weights (output_attentions=True) on the trace's tokens, per kind ``[L, H, q, k]``."""
    model.set_attn_implementation("eager")
    if model.config.is_encoder_decoder:
        enc = {"input_ids": torch.tensor([trace.token_ids["encoder"]]),
               "decoder_input_ids": torch.tensor([trace.token_ids["decoder"]])}
    else:
        enc = {"input_ids": torch.tensor([trace.token_ids["input"]])}
    with torch.no_grad():
        out = model(**enc, output_attentions=True, use_cache=False)
    names = {"encoder": "encoder_attentions", "decoder": "decoder_attentions", "cross": "cross_attentions"} \
        if model.config.is_encoder_decoder else {"self": "attentions"}
    return {kind: torch.cat(getattr(out, name)).numpy() for kind, name in names.items()}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_recomputed_rows_equal_the_models_eager_weights(name):
    model, tok = build(name)
    kw = {"target": "the dog runs"} if model.config.is_encoder_decoder else {}
    trace = attnscope.capture(model, tok, TEXT, form="qk", **kw)
    eager = eager_attention(model, trace)
    for kind, weights in eager.items():
        att = trace.attention[kind]
        assert isinstance(att, QKAttention)
        assert np.abs(att.dense() - weights).max() < 1e-5, kind
        L, H, q, _ = att.shape
        np.testing.assert_allclose(att.row(L - 1, H - 1, q - 1), weights[-1, -1, -1], atol=1e-6)


def test_the_mask_rule_holds_sliding_windows_softcap_and_sinks():
    gemma = attnscope.capture(*build("gemma2"), TEXT, form="qk").attention["self"]
    assert gemma.rule.windows == (4, None) and gemma.rule.softcap == 2.0 and gemma.rule.causal
    oss = attnscope.capture(*build("gpt_oss"), TEXT, form="qk")
    sums = oss.dense().sum(-1)
    assert sums.max() < 0.999 and sums.min() > 0  # learned sinks take their share, as in the model
    assert np.triu(oss.head(0, 0), 1).max() == 0.0 and oss.head(0, 0)[10, :7].max() == 0.0  # window of 4


def test_overview_cells_equal_pooling_the_dense_matrix(monkeypatch):
    monkeypatch.setattr(long, "overview_block", lambda q, k: 3)
    model, tok = build("llama")
    att = attnscope.capture(model, tok, TEXT, form="qk").attention["self"]
    dense = att.dense()
    L, H, q, k = att.shape
    padded = np.zeros((L, H, 18, 18), dtype=np.float32)
    padded[..., :q, :k] = dense
    cells = padded.reshape(L, H, 6, 3, 6, 3)
    np.testing.assert_allclose(att.maxima, cells.max(axis=(3, 5)), atol=1e-6)
    np.testing.assert_allclose(att.sums, cells.sum(axis=(3, 5)), atol=1e-5)
    thumb = att.pooled(1, 2, size=3)  # a block of 6 tokens: two overview cells a side, pooled exactly
    np.testing.assert_allclose(thumb, padded[1, 2].reshape(3, 6, 3, 6).max(axis=(1, 3)), atol=1e-6)


def test_q_k_traces_round_trip_through_files(tmp_path):
    trace = attnscope.capture(*build("gemma2"), TEXT, form="qk", qkv=True)
    back = attnscope.load(trace.save(tmp_path / "qk.safetensors"))
    assert back.attention["self"].rule == trace.attention["self"].rule
    np.testing.assert_array_equal(back.dense(), trace.dense())
    half = attnscope.load(trace.save(tmp_path / "half.safetensors", dtype="float16"))
    assert np.abs(half.dense() - trace.dense()).max() < 2e-2
    assert half.has_qkv() and back.qkv["self"]["key"].shape == back.qkv["self"]["query"].shape


def test_models_whose_scores_have_a_position_bias_fall_back_to_pruning_and_say_why(caplog):
    model, tok = build("t5")
    with caplog.at_level(logging.WARNING, logger="attnscope"):
        trace = attnscope.capture(model, tok, TEXT, target="the dog runs", form="qk")
    assert all(trace.attention[k].pruned for k in trace.kinds)
    assert "learned position bias" in caplog.text and "pruning" in caplog.text


def test_auto_form_switches_to_q_k_past_the_dense_limit_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(hf, "DENSE_MAX_BYTES", 1000)
    with caplog.at_level(logging.WARNING, logger="attnscope"):
        trace = attnscope.capture(*build("llama"), TEXT)
    assert trace.attention["self"].form == "qk" and "recomputed exactly" in caplog.text
    assert trace.kept_mass() == 1.0


@pytest.mark.parametrize("kw, match", [({"form": "sparse"}, "form must be one of"),
                                       ({"form": "qk", "prune": True}, "contradicts"),
                                       ({"form": "pruned", "prune": False}, "contradicts"),
                                       ({"prune": "yes"}, "prune must be")])
def test_contradictory_or_unknown_forms_are_refused(kw, match):
    with pytest.raises(InputError, match=match):
        attnscope.capture(*build("llama"), TEXT, **kw)


def test_16k_tokens_capture_in_memory_linear_in_n_and_rows_are_exact():
    """A tiny Llama at 16,384 tokens: dense attention would be 8.6 GB; the q/k form holds 4 MB of vectors."""
    import transformers as tf

    n = 16_384
    cfg = tf.LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=n)
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(cfg).eval()
    tok = tokenizer("plain", model_max_length=n)
    text = " ".join(["the quick brown fox jumps over the lazy dog ."] * (n // 10 + 1)).split()[:n]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trace = attnscope.capture(model, tok, " ".join(text), form="qk")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    att = trace.attention["self"]
    assert att.shape == (2, 4, n, n)
    assert grown_mb < 600, f"capture grew peak RSS by {grown_mb:.0f} MB"
    for layer, head, i in [(0, 0, 0), (1, 3, n - 1), (0, 2, 9_999), (1, 1, 12_345)]:
        row = att.row(layer, head, i)
        q = att.query[layer, head, i].astype(np.float64)
        k = att.key[layer, att.kv_index[head], : i + 1].astype(np.float64)
        s = k @ q * att.rule.scaling
        want = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        assert abs(row.sum(dtype=np.float64) - 1.0) < 1e-4
        assert np.abs(row[: i + 1] - want).max() < 1e-5 and row[i + 1 :].max(initial=0.0) == 0.0
    assert att.maxima.shape == (2, 4, 256, 256)


def test_head_metrics_of_a_q_k_trace_equal_those_of_its_dense_weights():
    model, tok = build("mistral")
    qk = attnscope.capture(model, tok, TEXT, form="qk")
    dense = attnscope.capture(model, tok, TEXT, form="dense")
    for a, b in zip(attnscope.analysis.head_metrics(qk), attnscope.analysis.head_metrics(dense)):
        assert a["label"] == b["label"]
        for name in ("entropy", "distance", "self", "previous", "first", "sink", "max"):
            assert abs(a[name] - b[name]) < 1e-5, name
