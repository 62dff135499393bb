"""Trace.from_transformer_lens on real TransformerLens caches of tiny random models: TransformerBridge over tiny
Hugging Face GPT-2 and Llama (rotary, grouped-query) models, TransformerLens-native models from a config, and the
legacy HookedTransformer of TransformerLens 3 (in a subprocess, where that version is importable)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

import attnscope
import tiny_models
from attnscope.errors import InputError, MissingDataError

TEXT = "the cat sat on the mat"
#: TransformerLens 3 (HookedTransformer), installed beside the venv's TransformerLens by `make setup`.
LEGACY = Path(sys.prefix) / "transformer-lens-3"


def recomputed(trace: attnscope.Trace) -> np.ndarray:
    """softmax(q·kᵀ x scaling + mask) from what the trace recorded, ``[L, H, n, n]``."""
    q, k = (torch.from_numpy(trace.qkv["self"][p]).double() for p in ("query", "key"))
    rule = trace.meta["kinds"]["self"]
    n = q.shape[-2]
    mask = torch.triu(torch.full((n, n), float("-inf"), dtype=torch.float64), 1) if rule["causal"] else 0
    return torch.softmax(q @ k.transpose(-1, -2) * rule["scaling"] + mask, dim=-1).numpy()


def patterns(cache, layers: int) -> np.ndarray:
    return np.stack([cache[f"blocks.{i}.attn.hook_pattern"][0].numpy() for i in range(layers)])


@pytest.fixture(scope="module")
def bridges(tmp_path_factory):
    """TransformerBridge over the tiny HF GPT-2 and Llama; the bridge reloads its tokenizer from a folder."""
    from transformers import AutoTokenizer

    out = {}
    for name in ("gpt2", "llama"):
        model, tok = tiny_models.build(name)
        folder = tmp_path_factory.mktemp(f"tok-{name}")
        tok.save_pretrained(folder)
        out[name] = TransformerBridge.boot_transformers(f"tiny-{name}", hf_model=model, device="cpu",
                                                        tokenizer=AutoTokenizer.from_pretrained(folder))
    return out


def native(rotary: bool) -> TransformerBridge:
    extra = {"positional_embedding_type": "rotary", "rotary_dim": 8, "n_key_value_heads": 2} if rotary else {}
    cfg = TransformerBridgeConfig(d_model=32, n_layers=2, n_heads=4, d_head=8, n_ctx=32, d_vocab=50, act_fn="gelu",
                                  seed=0, **extra)
    return TransformerBridge.boot_native(cfg)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_bridge_patterns_tokens_and_rotated_qk_that_reproduce_them(bridges, name):
    model = bridges[name]
    _, cache = model.run_with_cache(TEXT)
    trace = attnscope.Trace.from_transformer_lens(cache, model, TEXT)

    assert trace.shape() == (2, 4, 7, 7)
    assert np.abs(trace.dense() - patterns(cache, 2)).max() < 1e-6
    assert trace.tokens["input"] == model.to_str_tokens(TEXT) == ["<s>", *TEXT.split()]
    assert trace.token_ids["input"] == model.to_tokens(TEXT)[0].tolist()
    assert trace.meta["kinds"]["self"] == {"causal": True, "scaling": pytest.approx(8**-0.5)}
    assert trace.meta["source"] == "transformer_lens" and trace.meta["text"] == TEXT
    assert {p: a.shape for p, a in trace.qkv["self"].items()} == {p: (2, 4, 7, 8) for p in ("query", "key", "value")}
    assert np.abs(recomputed(trace) - trace.dense()).max() < 1e-5
    if name == "llama":  # rotary: the vectors are the rotated ones, grouped-query key heads repeated
        rot_k = cache["blocks.1.attn.hook_rot_k"][0].numpy()  # [pos, 2 kv heads, d]
        assert np.array_equal(trace.qkv["self"]["key"][1, 3], rot_k[:, 1])
        assert not np.allclose(trace.qkv["self"]["query"][1], cache["blocks.1.attn.hook_q"][0].numpy().transpose(1, 0, 2))
    views = [attnscope.render(v, trace).html() for v in ("neuron", "head")]
    assert all("<script" in v for v in views)


def test_native_model_from_a_config_and_one_without_rotated_vectors(caplog):
    ids = torch.tensor([[1, 5, 7, 9, 3, 2]])
    model = native(rotary=False)
    _, cache = model.run_with_cache(ids)
    trace = attnscope.Trace.from_transformer_lens(cache, model, ids)
    assert trace.tokens["input"] == ["1", "5", "7", "9", "3", "2"]  # no tokenizer: the ids name the tokens
    assert np.abs(trace.dense() - patterns(cache, 2)).max() < 1e-6
    assert np.abs(recomputed(trace) - trace.dense()).max() < 1e-5

    # A TransformerLens-native rotary model records q/k before rotation only: patterns yes, vectors no, and why.
    model = native(rotary=True)
    _, cache = model.run_with_cache(ids)
    with caplog.at_level(logging.WARNING):
        trace = attnscope.Trace.from_transformer_lens(cache, ["a", "b", "c", "d", "e", "f"])  # cfg from cache.model
    assert np.abs(trace.dense() - patterns(cache, 2)).max() < 1e-6 and not trace.has_qkv()
    assert "before the rotary embedding" in caplog.text and trace.meta["kinds"]["self"]["causal"] is True
    with pytest.raises(MissingDataError, match="no hook_rot_q/hook_rot_k"):
        attnscope.Trace.from_transformer_lens(cache, model, ids, qkv=True)


def test_vectors_that_do_not_reproduce_the_pattern_are_not_kept(bridges, caplog):
    """Without the model's config, pre-rotary q/k of a rotary model are caught by recomputing the pattern."""
    model = bridges["llama"]
    _, cache = model.run_with_cache(TEXT)
    plain = {k: v for k, v in cache.items() if "rot" not in k}  # a dict cache, no hook_rot_q/k, no cfg
    with caplog.at_level(logging.WARNING):
        trace = attnscope.Trace.from_transformer_lens(plain, model.to_str_tokens(TEXT))
    assert not trace.has_qkv() and "differs from hook_pattern by up to" in caplog.text
    assert trace.meta["kinds"]["self"]["causal"] is True  # read from the patterns themselves
    assert np.abs(trace.dense() - patterns(cache, 2)).max() < 1e-6
    kept = attnscope.Trace.from_transformer_lens(dict(cache.items()), model.to_str_tokens(TEXT))
    assert kept.has_qkv() and np.abs(recomputed(kept) - kept.dense()).max() < 1e-5


def test_batches_filters_and_wrong_tokens_say_what_to_pass(bridges):
    model = bridges["gpt2"]
    texts = ["the cat sat", "a dog runs"]
    _, cache = model.run_with_cache(texts)
    second = attnscope.Trace.from_transformer_lens(cache, model, texts, batch=1)
    _, alone = model.run_with_cache(texts[1])
    assert second.tokens["input"] == ["<s>", "a", "dog", "runs"]
    assert np.abs(second.dense() - patterns(alone, 2)).max() < 1e-5
    with pytest.raises(InputError, match="batch=2 but the cache holds 2 rows"):
        attnscope.Trace.from_transformer_lens(cache, model, texts, batch=2)
    with pytest.raises(InputError, match="covers 4 positions but there are 2 tokens"):
        attnscope.Trace.from_transformer_lens(cache, ["a", "b"])
    with pytest.raises(InputError, match="pass input= too"):
        attnscope.Trace.from_transformer_lens(cache, model)
    _, some = model.run_with_cache(TEXT, names_filter=lambda n: n == "blocks.1.attn.hook_pattern")
    with pytest.raises(MissingDataError, match=r"no hook_pattern for layers \[0\]"):
        attnscope.Trace.from_transformer_lens(some, model, TEXT)
    with pytest.raises(InputError, match="expected a TransformerLens ActivationCache"):
        attnscope.Trace.from_transformer_lens(np.zeros((2, 2)), ["a", "b"])


LEGACY_SCRIPT = """
import numpy as np, torch, attnscope
from transformer_lens import HookedTransformer, HookedTransformerConfig
for rotary in (False, True):
    extra = dict(positional_embedding_type="rotary", rotary_dim=8, n_key_value_heads=2) if rotary else {}
    model = HookedTransformer(HookedTransformerConfig(d_model=32, n_layers=2, n_heads=4, d_head=8, n_ctx=32,
                                                      d_vocab=50, act_fn="gelu", seed=0, **extra))
    ids = torch.tensor([[1, 5, 7, 9, 3, 2]])
    _, cache = model.run_with_cache(ids)
    trace = attnscope.Trace.from_transformer_lens(cache, model, ids, qkv=True)
    ref = np.stack([cache[f"blocks.{i}.attn.hook_pattern"][0].numpy() for i in range(2)])
    q, k = (torch.from_numpy(trace.qkv["self"][p]).double() for p in ("query", "key"))
    rule = trace.meta["kinds"]["self"]
    s = torch.softmax(q @ k.transpose(-1, -2) * rule["scaling"] + torch.triu(torch.full((6, 6), -torch.inf), 1), -1)
    print(type(model).__name__, rotary, float(np.abs(trace.dense() - ref).max()), float((s.numpy() - ref).__abs__().max()),
          rule["causal"], round(rule["scaling"] * 8**0.5, 6), "hook_rot_q" in str(list(cache.keys())))
"""


@pytest.mark.slow  # a second Python that imports torch and TransformerLens 3 (~10 s)
@pytest.mark.skipif(not LEGACY.is_dir(), reason=f"TransformerLens 3 is not installed at {LEGACY} (make setup)")
def test_legacy_hooked_transformer_from_a_config():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LEGACY), *sys.path])}
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", LEGACY_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line.split() for line in out.stdout.splitlines()]
    assert [line[:2] for line in lines] == [["HookedTransformer", "False"], ["HookedTransformer", "True"]]
    for _, rotary, pattern_diff, recompute_diff, causal, scale, rot in lines:
        assert float(pattern_diff) < 1e-6 and float(recompute_diff) < 1e-5
        assert causal == "True" and scale == "1.0" and rot == rotary  # rotary: read from hook_rot_q/hook_rot_k
