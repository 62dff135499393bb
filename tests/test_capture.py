"""Capture on tiny random models of every architecture family, checked against the models' own eager attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attnscope
from attnscope.errors import InputError, InputTooLongError
from tiny_models import ALL, DECODERS, ENCODERS, SEQ2SEQ, build

TEXT = "the cat sat on the mat and it was very happy ."
TARGET = "the dog runs over the lazy fox"


def capture(name, model, tok, **kw):
    if name in SEQ2SEQ:
        kw.setdefault("target", TARGET)
    return attnscope.capture(model, tok, TEXT, **kw)


def eager_reference(name, model, tok) -> dict[str, np.ndarray]:
    """The model's own eager attention with output_attentions=True, per kind ``[L, H, q, k]``."""
    enc = tok(TEXT, return_tensors="pt")
    kwargs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if name in SEQ2SEQ:
        kwargs["decoder_input_ids"] = torch.tensor([[model.config.decoder_start_token_id,
                                                     *tok(text_target=TARGET)["input_ids"]]])
    with torch.no_grad():
        out = model(**kwargs, output_attentions=True)
    fields = ({"encoder_attentions": "encoder", "decoder_attentions": "decoder", "cross_attentions": "cross"}
              if name in SEQ2SEQ else {"attentions": "self"})
    return {kind: torch.cat(getattr(out, f)).numpy() for f, kind in fields.items()}


@pytest.mark.parametrize("name", ALL)
def test_capture_equals_the_models_own_eager_attention(name):
    model, tok = build(name, attn_implementation="eager")
    ref = eager_reference(name, model, tok)
    trace = capture(name, model, tok)
    assert sorted(trace.kinds) == sorted(ref)
    for kind, want in ref.items():
        got = trace.dense(kind)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-5, kind


@pytest.mark.parametrize("guess", [0, 1, 2, 7])
def test_weights_written_in_place_or_not_give_the_same_trace(monkeypatch, guess):
    """Dense weights go straight into one [layers, ...] buffer when the config's layer count is right (2 here);
    a wrong or missing count falls back to stacking the layers, with the same result."""
    from attnscope.capture import hf

    model, tok = build("llama")
    expected = attnscope.capture(model, tok, "the cat sat on the mat")
    monkeypatch.setattr(hf, "_text_config", lambda m: type("C", (), {"num_hidden_layers": guess})())
    trace = attnscope.capture(model, tok, "the cat sat on the mat")
    np.testing.assert_array_equal(trace.dense(), expected.dense())
    assert trace.shape() == expected.shape() and trace.attention["self"].weights.flags.c_contiguous


@pytest.mark.parametrize("name", ALL)
def test_rows_sum_to_one_and_causal_upper_triangle_is_zero(name):
    model, tok = build(name)
    trace = capture(name, model, tok)
    for kind in trace.kinds:
        w = trace.dense(kind)
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
        causal = name in DECODERS or kind == "decoder"
        assert trace.meta["kinds"][kind]["causal"] is causal
        if causal:
            assert np.triu(w, 1).max() == 0.0


@pytest.mark.parametrize("name", ALL)
def test_softmax_of_captured_qk_reproduces_the_weights(name):
    model, tok = build(name)
    trace = capture(name, model, tok, qkv=True)
    for kind in trace.kinds:
        q, k = trace.qkv[kind]["query"], trace.qkv[kind]["key"]  # [L, H, n, d]
        scores = np.einsum("lhqd,lhkd->lhqk", q, k) * trace.meta["kinds"][kind]["scaling"]
        if kind in trace.bias:  # T5's relative position bias, recorded as its own additive term
            scores = scores + trace.bias[kind]
        if trace.meta["kinds"][kind]["causal"]:
            scores = np.where(np.tril(np.ones(scores.shape[-2:], dtype=bool)), scores, -np.inf)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        assert np.abs(w - trace.dense(kind)).max() < 1e-4, kind
    if name == "t5":
        assert "encoder" in trace.bias and "decoder" in trace.bias


def test_gqa_key_value_heads_are_repeated_to_the_query_heads():
    model, tok = build("llama")
    trace = attnscope.capture(model, tok, TEXT, qkv=True)
    L, H, n, _ = trace.shape()
    assert (L, H) == (2, 4)
    key = trace.qkv["self"]["key"]
    assert key.shape == (2, 4, n, 8)
    np.testing.assert_array_equal(key[:, 0], key[:, 1])  # heads 0, 1 share kv head 0
    assert not np.array_equal(key[:, 1], key[:, 2])


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_the_models_attention_implementation_and_config_are_restored(impl):
    model, tok = build("llama", attn_implementation=impl)
    before = model.config.to_dict()
    model.train()
    attnscope.capture(model, tok, TEXT, qkv=True)
    assert model.config._attn_implementation == impl
    assert all(m.config._attn_implementation == impl for m in model.modules() if hasattr(m, "config"))
    assert model.config.to_dict() == before
    assert model.training  # train/eval state restored too


def test_a_default_sdpa_model_works_without_the_user_doing_anything():
    model, tok = build("bert")
    assert model.config._attn_implementation == "sdpa"
    trace = attnscope.capture(model, tok, TEXT)
    ref, _ = build("bert", attn_implementation="eager")
    want = eager_reference("bert", ref, tok)["self"]
    assert np.abs(trace.dense() - want).max() < 1e-5


@pytest.mark.parametrize("name", ENCODERS + DECODERS)
def test_capture_batch_equals_capturing_each_text_alone(name):
    model, tok = build(name)
    texts = ["the cat sat", TEXT, "he asked the nurse a question ?"]
    batch = attnscope.capture_batch(model, tok, texts, qkv=True)
    for text, got in zip(texts, batch):
        alone = attnscope.capture(model, tok, text, qkv=True)
        assert got.tokens == alone.tokens
        assert np.abs(got.dense() - alone.dense()).max() < 1e-5
        assert np.abs(got.qkv["self"]["query"] - alone.qkv["self"]["query"]).max() < 1e-4


def test_sentence_pair_segments_come_from_the_tokenizer():
    model, tok = build("bert")
    trace = attnscope.capture(model, tok, "the cat sat", pair="it was happy")
    assert trace.tokens["input"] == ["[CLS]", "the", "cat", "sat", "[SEP]", "it", "was", "happy", "[SEP]"]
    assert (trace.segments["A"].start, trace.segments["A"].end) == (0, 5)
    assert (trace.segments["B"].start, trace.segments["B"].end) == (5, 9)


def test_pairs_work_for_tokenizers_without_token_type_ids():
    model, tok = build("gpt2")
    trace = attnscope.capture(model, tok, "the cat sat", pair="it was happy")
    assert trace.tokens["input"] == ["the", "cat", "sat", "it", "was", "happy"]
    assert trace.segments["B"].start == 3


@pytest.mark.parametrize("name", DECODERS)
def test_generate_marks_prompt_and_generated_segments(name):
    model, tok = build(name)
    trace = attnscope.capture(model, tok, "the doctor asked the nurse", generate=4)
    assert trace.segments["prompt"].end == 5
    assert len(trace.segments["generated"]) == 4
    assert trace.shape()[2] == 9
    assert np.triu(trace.dense(), 1).max() == 0.0


def test_encoder_decoder_without_target_generates_it():
    model, tok = build("bart")
    trace = attnscope.capture(model, tok, TEXT, generate=3)
    assert trace.shape("cross")[2:] == (len(trace.tokens["decoder"]), len(trace.tokens["encoder"]))
    assert len(trace.tokens["decoder"]) <= 4


def test_whisper_audio_features_give_encoder_decoder_and_cross_attention():
    model, tok = build("whisper")
    features = torch.randn(1, 8, 32)
    trace = attnscope.capture(model, tok, features=features, target="the cat sat")
    assert trace.kinds == ["encoder", "decoder", "cross"]
    assert trace.shape("encoder")[2] == 16  # 32 frames, halved by the convolution stride
    assert len(trace.tokens["encoder"]) == 16
    np.testing.assert_allclose(trace.dense("cross").sum(-1), 1.0, atol=1e-5)


def test_empty_text_is_refused():
    model, tok = build("bert")
    with pytest.raises(InputError, match="empty"):
        attnscope.capture(model, tok, "   ")


def test_wrong_types_are_refused():
    model, tok = build("bert")
    with pytest.raises(InputError, match="must be a string"):
        attnscope.capture(model, tok, 42)
    with pytest.raises(InputError, match=r"got list \(for several texts use attnscope\.capture_batch\)"):
        attnscope.capture(model, tok, ["the cat", "the dog"])
    with pytest.raises(InputError, match="Hugging Face model"):
        attnscope.capture(object(), tok, TEXT)
    with pytest.raises(InputError, match="generate"):
        attnscope.capture(model, tok, TEXT, generate=-1)
    with pytest.raises(InputError, match="cannot generate"):
        attnscope.capture(model, tok, TEXT, generate=3)


def test_input_longer_than_the_positions_names_the_limit_and_truncate_cuts_it():
    model, tok = build("bert")
    long_text = " ".join(["the cat"] * 40)
    with pytest.raises(InputTooLongError, match="at most 64 positions.*truncate=True"):
        attnscope.capture(model, tok, long_text)
    trace = attnscope.capture(model, tok, long_text, truncate=True)
    assert trace.shape()[2] == 64


def test_a_tokenizer_that_does_not_match_the_model_is_refused():
    model, _ = build("bert")
    big = attnscope.load_model("minilm")[1]  # ids up to 30k against a 43-word vocabulary
    with pytest.raises(InputError, match="does not match the model"):
        attnscope.capture(model, big, "attention visualisation")


def test_encoder_decoder_needs_a_target_or_generate():
    model, tok = build("t5")
    with pytest.raises(InputError, match="target="):
        attnscope.capture(model, tok, TEXT)


def test_pruned_capture_keeps_the_asked_mass_and_matches_dense_rows():
    model, tok = build("gpt2")
    dense = attnscope.capture(model, tok, TEXT)
    pruned = attnscope.capture(model, tok, TEXT, prune=attnscope.PruneSpec(mass=0.9, top_k=64))
    att = pruned.attention["self"]
    assert att.pruned and att.mass.min() >= 0.9 - 1e-6
    d = dense.dense()
    p = pruned.dense()
    assert np.all((p == 0) | (np.abs(p - d) < 1e-6))
    np.testing.assert_array_equal(p.argmax(-1), d.argmax(-1))
