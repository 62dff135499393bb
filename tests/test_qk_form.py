"""The q/k form: attention recomputed exactly from captured queries, keys and row log-sum-exps."""

from __future__ import annotations

import logging
import resource

import numpy as np
import pytest
import torch

import attnscope
from attnscope import qk
from attnscope.attention import DenseAttention
from attnscope.capture import hf, long
from attnscope.errors import InputError
from attnscope.qk import QKAttention
from long_qk import pooled_dense
from tiny_models import WORDS, build, tokenizer

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


@pytest.mark.parametrize("name", ["llama", "gpt2", "bert", "mistral", "gemma2", "gpt_oss"])
def test_recomputed_rows_and_overview_equal_the_models_eager_weights_at_1024_tokens(name):
    """1,024 tokens: several overview tiles of rows and keys, the fused kernel's blocks, windows of 4 tokens far
    shorter than the text, soft-capping and sinks over long rows."""
    model, tok = build(name, positions=1024)
    specials = 2 if name == "bert" else 0
    text = " ".join(np.random.default_rng(0).choice(WORDS, 1024 - specials))
    trace = attnscope.capture(model, tok, text, form="qk")
    att = trace.attention["self"]
    assert isinstance(att, QKAttention) and att.shape[-1] == 1024
    weights = eager_attention(model, trace)["self"]
    assert np.abs(att.dense() - weights).max() < 1e-5
    np.testing.assert_allclose(att.maxima, pooled_dense(weights, att.block), atol=1e-6)


def padded_batch(token_ids: list[list[int]], left: bool) -> tuple[torch.Tensor, torch.Tensor, list[slice]]:
    """``(input_ids, attention_mask, each text's tokens)`` of texts padded to the longest on one side."""
    width = max(map(len, token_ids))
    ids = torch.zeros(len(token_ids), width, dtype=torch.long)
    mask = torch.zeros(len(token_ids), width, dtype=torch.long)
    spans = [slice(width - len(t), width) if left else slice(0, len(t)) for t in token_ids]
    for i, (t, span) in enumerate(zip(token_ids, spans)):
        ids[i, span], mask[i, span] = torch.tensor(t), 1
    return ids, mask, spans


@pytest.mark.parametrize("name", ["llama", "gpt2", "bert", "mistral", "gemma2", "gpt_oss"])
def test_a_padded_batch_gives_each_text_the_q_k_form_of_its_own_tokens(name):
    """capture_batch(form="qk"): each text's rows equal the model's own eager weights on the padded batch and the
    q/k form of the text captured alone; a left-padded batch is cut to its texts as well."""
    model, tok = build(name)
    texts = ["the cat sat", TEXT, "the dog runs over the mat"]
    traces = attnscope.capture_batch(model, tok, texts, form="qk")
    ids = [t.token_ids["input"] for t in traces]
    for left in (False, True):
        batch_ids, mask, spans = padded_batch(ids, left)
        model.set_attn_implementation("eager")
        with torch.no_grad():
            out = model(input_ids=batch_ids, attention_mask=mask, output_attentions=True, use_cache=False)
        eager = torch.stack(out.attentions).numpy()  # [L, B, H, n, n]
        if left:  # the recording itself, on a batch capture_batch would not make
            with torch.no_grad():
                rec = hf._run(model, {"input_ids": batch_ids, "attention_mask": mask}, qkv=False, prune=None, qk=True)
            got = [texts.attention().dense() for texts in rec.qk_kinds["self"]]
        else:
            got = [t.attention["self"].dense() for t in traces]
        for i, span in enumerate(spans):
            assert np.abs(got[i] - eager[:, i, :, span, span]).max() < 1e-5, (left, i)
    for text, trace in zip(texts, traces):
        assert isinstance(trace.attention["self"], QKAttention) and trace.meta["text"] == text
        alone = attnscope.capture(model, tok, text, form="qk").attention["self"]
        assert np.abs(trace.attention["self"].dense() - alone.dense()).max() < 1e-5
        np.testing.assert_allclose(trace.attention["self"].maxima, alone.maxima, atol=1e-6)


def test_capture_batch_chooses_one_form_for_the_batch_and_prunes_one_text_at_a_time(monkeypatch, caplog):
    model, tok = build("llama")
    monkeypatch.setattr(hf, "DENSE_MAX_BYTES", 2 * 2 * 4 * 12 * 12 * 4)  # two texts of 12 tokens, not three
    with caplog.at_level(logging.WARNING, logger="attnscope"):
        twelve = " ".join(TEXT.split()[:12])
        two, three = (attnscope.capture_batch(model, tok, [twelve] * n) for n in (2, 3))
    assert all(isinstance(t.attention["self"], DenseAttention) for t in two)
    assert all(isinstance(t.attention["self"], QKAttention) for t in three)
    assert "x 3 texts" in caplog.text
    pruned = attnscope.capture_batch(model, tok, ["the cat sat", TEXT], form="pruned")
    for text, trace in zip(["the cat sat", TEXT], pruned):
        alone = attnscope.capture(model, tok, text, form="pruned")
        assert trace.attention["self"].pruned
        np.testing.assert_array_equal(trace.dense(), alone.dense())


def test_the_mask_rule_holds_sliding_windows_softcap_and_sinks():
    gemma = attnscope.capture(*build("gemma2"), TEXT, form="qk").attention["self"]
    assert gemma.rule.windows == (4, None) and gemma.rule.softcap == 2.0 and gemma.rule.causal
    oss = attnscope.capture(*build("gpt_oss"), TEXT, form="qk")
    sums = oss.dense().sum(-1)
    assert sums.max() < 0.999 and sums.min() > 0  # learned sinks take their share, as in the model
    assert np.triu(oss.head(0, 0), 1).max() == 0.0 and oss.head(0, 0)[10, :7].max() == 0.0  # window of 4


@pytest.mark.parametrize("name", ["llama", "mistral", "gemma2", "gpt_oss", "bert", "bart"])
def test_overview_cells_equal_pooling_the_dense_matrix(monkeypatch, name):
    """Causal, sliding windows, soft-capping, learned sinks, bidirectional and cross attention (queries and keys of
    different lengths): each cell's maximum is exactly the pooled dense weights', padded edges included."""
    monkeypatch.setattr(long, "overview_block", lambda q, k: 3)
    model, tok = build(name)
    kw = {"target": "the dog runs"} if model.config.is_encoder_decoder else {}
    trace = attnscope.capture(model, tok, TEXT, form="qk", **kw)
    for kind in trace.kinds:
        att = trace.attention[kind]
        assert att.block == 3 and att.sums is None
        dense = att.dense()
        np.testing.assert_allclose(att.maxima, pooled_dense(dense, 3), atol=1e-6, err_msg=kind)
        L, H, q, k = att.shape
        size = -(-max(q, k) // 6)  # at most 6 tokens a cell: two overview cells a side
        block = -(-max(q, k) // size // 3) * 3
        thumb = att.pooled(L - 1, H - 1, size)
        np.testing.assert_allclose(thumb, pooled_dense(dense[L - 1, H - 1], block), atol=1e-6, err_msg=kind)
        lazy = QKAttention(att.query, att.key, att.lse, att.rule, kv_index=att.kv_index)  # no overview: per head
        np.testing.assert_allclose(lazy.pooled(L - 1, H - 1, 4), pooled_dense(dense[L - 1, H - 1], -(-max(q, k) // 4)),
                                   atol=1e-6, err_msg=kind)


def test_overview_tiles_of_a_few_cells_give_the_cells_of_one_big_tile(monkeypatch):
    """Tiles of one cell of rows x two cells of keys, across a sliding window's band: the cells of one big tile."""
    att = attnscope.capture(*build("mistral"), TEXT, form="qk").attention["self"]
    q, k, lse = (torch.from_numpy(np.array(a[1], dtype=np.float32)) for a in (att.query, att.key[:, att.kv_index],
                                                                           att.lse))
    monkeypatch.setattr(qk, "TILE_ROWS", 1 << 20)
    monkeypatch.setattr(qk, "TILE_KEYS", 1 << 20)
    whole = qk.cell_maxima(q, k, lse, att.rule, 1, 2).numpy()
    monkeypatch.setattr(qk, "TILE_ROWS", 2)
    monkeypatch.setattr(qk, "TILE_KEYS", 4)
    # the same cells up to float rounding: BLAS may sum a product of another shape in another order
    np.testing.assert_allclose(qk.cell_maxima(q, k, lse, att.rule, 1, 2).numpy(), whole, rtol=1e-6, atol=0)
    np.testing.assert_allclose(whole, pooled_dense(att.layer(1), 2), atol=1e-6)


def test_learned_sink_shares_come_from_the_rule_and_older_files_with_cell_sums_still_load(tmp_path):
    model, tok = build("gpt_oss")
    trace = attnscope.capture(model, tok, TEXT, form="qk")
    att = trace.attention["self"]
    dense = att.dense()
    assert att.rule.sinks is not None and len(att.rule.sinks) == 2 and len(att.rule.sinks[0]) == 4
    np.testing.assert_allclose(att.row_mass(1, 2), dense[1, 2].sum(-1), atol=1e-6)
    want = 1.0 - dense.astype(np.float64).sum(-1).mean(-1)
    assert want.min() > 1e-3  # the sinks do take a share
    np.testing.assert_allclose(attnscope.sinks.learned_share(trace), want, atol=1e-6)
    part = att.select([1], [3, 2])  # the rule's sink logits follow the chosen layers and heads
    assert part.rule.sinks == ((att.rule.sinks[1][3], att.rule.sinks[1][2]),)
    np.testing.assert_allclose(part.row_mass(0, 1), dense[1, 2].sum(-1), atol=1e-6)
    back = attnscope.load(trace.save(tmp_path / "sinks.safetensors"))
    assert back.attention["self"].rule == att.rule and back.attention["self"].sums is None
    # a file as written before: cell sums beside the maxima, no sink logits in its rule
    old_rule = qk.MaskRule(att.rule.scaling, att.rule.causal, att.rule.windows, att.rule.softcap)
    old = QKAttention(att.query, att.key, att.lse, old_rule, maxima=att.maxima, block=att.block,
                      sums=pooled_dense(dense, att.block, "sum").astype(np.float32))
    path = attnscope.Trace(trace.tokens, {"self": old}, meta=trace.meta).save(tmp_path / "old.safetensors")
    loaded = attnscope.load(path)
    assert loaded.attention["self"].sums is not None and loaded.attention["self"].rule.sinks is None
    np.testing.assert_allclose(attnscope.sinks.learned_share(loaded), want, atol=1e-5)
    np.testing.assert_array_equal(loaded.dense(), trace.dense())


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
