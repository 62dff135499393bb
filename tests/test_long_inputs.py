"""Long inputs: pruning during capture, synthetic Llama-7B-shaped traces, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

import attnscope
from attnscope.synthetic import synthetic_trace
from tiny_models import build


def test_pruned_capture_keeps_the_top_mass_of_each_row():
    model, tok = build("llama")
    trace = attnscope.capture(model, tok, "the cat sat on the mat and it was very happy .", prune=True)
    assert trace.attention["self"].pruned
    dense = attnscope.capture(model, tok, "the cat sat on the mat and it was very happy .", prune=False)
    assert not dense.attention["self"].pruned
    assert trace.kept_mass() >= 0.95 - 1e-6
    np.testing.assert_array_equal(trace.dense().argmax(-1), dense.dense().argmax(-1))


def test_pruned_capture_computes_in_query_blocks(monkeypatch):
    from attnscope.capture import interface

    model, tok = build("gpt2")
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 6)
    dense = attnscope.capture(model, tok, text)
    monkeypatch.setattr(interface, "_BLOCK_BYTES", 4 * 4 * 54 * 5)  # five query rows per block
    blocked = attnscope.capture(model, tok, text)
    pruned = attnscope.capture(model, tok, text, prune=attnscope.PruneSpec(mass=1.0, top_k=1000))
    assert np.abs(blocked.dense() - dense.dense()).max() < 1e-6
    assert np.abs(pruned.dense() - dense.dense()).max() < 1e-6


def test_synthetic_llama_shaped_trace_is_causal_pruned_and_reads_per_head():
    trace = synthetic_trace(512, layers=32, heads=32)
    att = trace.attention["self"]
    assert att.pruned and trace.shape() == (32, 32, 512, 512)
    assert 0.95 - 1e-6 <= trace.kept_mass() <= 1.0
    head = trace.head(31, 31)
    assert np.triu(head, 1).max() == 0.0
    np.testing.assert_allclose(head.sum(-1), att.mass[31, 31], atol=1e-5)
    assert trace.attention["self"].values.nbytes < 512 * 512 * 32 * 32 * 4 / 20


@pytest.mark.slow
def test_a_4096_token_32x32_trace_is_built_saved_and_loaded_within_memory(tmp_path):
    import psutil

    proc = psutil.Process()
    before = proc.memory_info().rss
    trace = synthetic_trace(4096)
    path = trace.save(tmp_path / "big.safetensors", dtype="float16")
    back = attnscope.load(path)
    grown = proc.memory_info().rss - before
    assert grown < 3 * 2**30  # the dense form would be 68.7 GB
    assert path.stat().st_size < 700 * 2**20
    np.testing.assert_allclose(back.row(5, 7, 4000), trace.row(5, 7, 4000), atol=1e-3)
