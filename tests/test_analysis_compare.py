"""Comparing two inputs: token alignment, Jensen-Shannon divergence, ranking, next tokens (MiniLM, SmolLM2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attnscope
from attnscope.analysis import align_tokens, compare, js_divergence
from attnscope.errors import InputError, MissingDataError
from conftest import random_attention


def trace_of(matrices: np.ndarray, tokens: list[str]) -> attnscope.Trace:
    """A one-layer trace from ``[H, n, n]`` (or one ``[n, n]``) matrices."""
    m = np.asarray(matrices, dtype=np.float32)
    return attnscope.Trace.from_arrays(m.reshape(1, -1, *m.shape[-2:]), tokens)


def softmax_rows(rng, n: int, k: int | None = None) -> np.ndarray:
    w = rng.random((n, k or n)) + 0.05
    return w / w.sum(1, keepdims=True)


# ------------------------------------------------------------------ divergence
def test_js_divergence_known_values():
    assert js_divergence([1, 0], [1, 0]) == 0.0
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint support: one full bit
    # M = [.75, .25]: H(M) - (H(p) + H(q)) / 2 = 0.811278 - (0 + 1) / 2
    assert js_divergence([1, 0], [0.5, 0.5]) == pytest.approx(0.311278, abs=1e-6)
    assert js_divergence([2, 0], [1, 1]) == pytest.approx(0.311278, abs=1e-6)  # rows are renormalised


def test_js_divergence_is_symmetric_and_bounded():
    rng = np.random.default_rng(0)
    p, q = rng.random((50, 7)), rng.random((50, 7))
    d = js_divergence(p, q)
    np.testing.assert_array_equal(d, js_divergence(q, p))
    assert ((d >= 0) & (d <= 1)).all() and (d > 0).all()


# ------------------------------------------------------------------ alignment
def test_alignment_of_identical_tokens_is_one_slot_per_token():
    al = align_tokens(["a", "b", "c"], ["a", "b", "c"])
    assert al.identical and all(s.shared for s in al.slots) and len(al.slots) == 3
    assert al.first_difference == 3


def test_alignment_pools_a_differing_span_between_shared_prefix_and_suffix():
    al = align_tokens(["x", "p", "q", "y"], ["x", "r", "y"])
    assert [(s.a_start, s.a_end, s.b_start, s.b_end, s.shared) for s in al.slots] == [
        (0, 1, 0, 1, True), (1, 3, 1, 2, False), (3, 4, 2, 3, True)]
    assert al.slot_of("a").tolist() == [0, 1, 1, 2] and al.slot_of("b").tolist() == [0, 1, 2]
    assert al.labels() == ["x", "pq | r", "y"]
    assert al.first_difference == 1


def test_alignment_of_swapped_words_keeps_the_shared_middle():
    al = align_tokens("The doctor asked the nurse".split(), "The nurse asked the doctor".split())
    assert al.labels() == ["The", "doctor | nurse", "asked", "the", "nurse | doctor"]


def test_alignment_of_an_insertion_has_an_empty_side():
    al = align_tokens(["x", "y"], ["x", "new", "y"])
    mid = al.slots[1]
    assert not mid.shared and not mid.in_both and (mid.a_start, mid.a_end) == (1, 1)


# ------------------------------------------------------------------ compare on constructed traces
def test_identical_traces_have_zero_divergence(make_trace):
    t = make_trace(3, 4, 7, seed=1)
    c = compare(t, t)
    assert c.divergence.shape == (3, 4) and not c.divergence.any()
    assert len(c.ranked) == 12 and c.rows == tuple(range(7))
    assert c.next_a is None


def test_compare_is_symmetric(make_trace):
    a = make_trace(2, 3, 6, seed=1)
    b = make_trace(2, 3, 6, seed=2, tokens=["tok0", "tok1", "X", "Y", "tok4", "tok5"])
    np.testing.assert_allclose(compare(a, b).divergence, compare(b, a).divergence, atol=1e-7)


def test_differing_span_is_pooled_as_documented():
    rng = np.random.default_rng(3)
    a = softmax_rows(rng, 4)  # tokens x p q y
    b = softmax_rows(rng, 3)  # tokens x r y
    c = compare(trace_of(a, ["x", "p", "q", "y"]), trace_of(b, ["x", "r", "y"]))
    # keys: p and q summed into one column; queries: rows of p and q averaged
    cols_a = np.stack([a[:, 0], a[:, 1] + a[:, 2], a[:, 3]], axis=1)
    rows_a = np.stack([cols_a[0], (cols_a[1] + cols_a[2]) / 2, cols_a[3]])
    expected = js_divergence(rows_a, b)
    np.testing.assert_allclose(c.row_divergence[0, 0], expected, atol=1e-6)
    assert c.divergence[0, 0] == pytest.approx(expected.mean(), abs=1e-6)


def test_an_inserted_token_is_a_key_slot_but_not_a_compared_row():
    rng = np.random.default_rng(4)
    a, b = softmax_rows(rng, 3), softmax_rows(rng, 4)
    c = compare(trace_of(a, ["x", "y", "z"]), trace_of(b, ["x", "new", "y", "z"]))
    assert c.rows == (0, 2, 3)
    a_slots = np.insert(a, 1, 0.0, axis=1)  # A has no weight on the inserted slot
    expected = js_divergence(a_slots, b[[0, 2, 3]])
    np.testing.assert_allclose(c.row_divergence[0, 0], expected, atol=1e-6)


def test_causal_traces_compare_rows_from_the_first_difference():
    n = 8
    tokens_a = [f"t{i}" for i in range(n)]
    tokens_b = tokens_a[:5] + ["other"] + tokens_a[6:]
    a = trace_of(random_attention(1, 2, n, causal=True, seed=1)[0], tokens_a)
    b = trace_of(random_attention(1, 2, n, causal=True, seed=2)[0], tokens_b)
    c = compare(a, b)
    assert c.rows == (5, 6, 7)  # rows 0-4 see identical tokens in a causal model
    expected = js_divergence(a.head(0, 1)[5:], b.head(0, 1)[5:]).mean()
    assert c.divergence[0, 1] == pytest.approx(expected, abs=1e-6)


def test_ranking_is_by_divergence_descending(make_trace):
    c = compare(make_trace(3, 3, 6, seed=1), make_trace(3, 3, 6, seed=5))
    values = [d for _, _, d in c.ranked]
    assert values == sorted(values, reverse=True)
    layer, head, d = c.ranked[0]
    assert d == pytest.approx(float(c.divergence.max())) and c.divergence[layer, head] == c.divergence.max()
    assert c.top(2)[1] == {"rank": 2, "layer": c.ranked[1][0], "head": c.ranked[1][1], "divergence": c.ranked[1][2]}


def test_pruning_one_side_changes_little(make_trace):
    t = make_trace(2, 3, 20, seed=6)
    c = compare(t, t.prune(mass=0.99, top_k=20))
    assert 0 < c.divergence.max() < 0.01


def test_cross_attention_aligns_query_and_key_streams_separately():
    def enc_dec(src, tgt, seed):
        return attnscope.Trace.from_arrays(
            {"encoder": random_attention(1, 2, len(src), seed=seed),
             "decoder": random_attention(1, 2, len(tgt), causal=True, seed=seed),
             "cross": random_attention(1, 2, len(tgt), len(src), seed=seed)},
            {"encoder": src, "decoder": tgt})

    a = enc_dec(["a", "b", "</s>"], ["<pad>", "x"], 1)
    b = enc_dec(["a", "c", "d", "</s>"], ["<pad>", "x"], 2)
    c = compare(a, b, kind="cross")
    assert c.query_alignment.identical and not c.key_alignment.identical
    assert c.rows == (0, 1) and len(c.key_alignment.slots) == 3
    assert c.divergence.shape == (1, 2) and (c.divergence > 0).all()


def test_different_shapes_and_kinds_are_refused(make_trace):
    with pytest.raises(InputError, match="2 layers x 3 heads with 3 layers x 3 heads"):
        compare(make_trace(2, 3), make_trace(3, 3))
    enc_dec = attnscope.Trace.from_arrays({"encoder": random_attention(2, 3, 6)}, {"encoder": list("abcdef")})
    with pytest.raises(InputError, match="different attention kinds"):
        compare(make_trace(2, 3), enc_dec)
    with pytest.raises(MissingDataError, match="no 'cross' attention"):
        compare(make_trace(), make_trace(), kind="cross")
    with pytest.raises(InputError, match="top_k"):
        compare(make_trace(), make_trace(), top_k=0)
    with pytest.raises(InputError, match="expected an attnscope Trace"):
        compare(make_trace(), np.zeros((2, 3, 6, 6)))


# ------------------------------------------------------------------ real models
def test_minilm_she_vs_he_end_to_end(minilm):
    model, tok = minilm
    a = attnscope.capture(model, tok, "The doctor asked the nurse a question. She was tired.")
    b = attnscope.capture(model, tok, "The doctor asked the nurse a question. He was tired.")
    c = compare(a, b)
    assert [s.shared for s in c.query_alignment.slots].count(False) == 1
    assert c.query_alignment.labels()[9] == "she | he"
    assert c.rows == tuple(range(len(a.tokens["input"])))  # an encoder: every row sees the change
    assert (c.divergence > 0).all() and c.divergence.max() < 1
    np.testing.assert_allclose(c.divergence, compare(b, a).divergence, atol=1e-6)
    assert c.divergence[-1].mean() > c.divergence[0].mean()  # the change spreads as layers mix tokens
    with pytest.raises(InputError, match="not from a causal language model"):
        compare(a, b, model=model, tokenizer=tok)
    with pytest.raises(MissingDataError, match="no next-token predictions"):
        c.next_token_table()


@pytest.fixture(scope="module")
def smollm2():
    from attnscope.capture.models import load_cached

    return load_cached("smollm2")


@pytest.mark.slow
def test_smollm2_bias_probe_end_to_end(smollm2):
    model, tok = smollm2
    a = attnscope.capture("smollm2", "The doctor asked the nurse a question. She")
    b = attnscope.capture("smollm2", "The doctor asked the nurse a question. He")
    c = compare(a, b, model="smollm2", top_k=5)  # by name: the cached model the traces came from
    n = len(a.tokens["input"])
    assert c.rows == (n - 1,)  # causal: only the pronoun's own row can differ
    assert c.divergence.shape == (30, 9) and c.ranked[0][2] > 0.05
    assert len(c.next_a) == len(c.next_b) == 5
    probs = [t.prob for t in c.next_a]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    with torch.no_grad():  # the same numbers from a plain forward pass
        logits = model(input_ids=torch.tensor([b.token_ids["input"]])).logits[0, -1]
    p_b = torch.softmax(logits.float(), -1).numpy()
    for t in c.next_b:
        assert t.prob == pytest.approx(float(p_b[t.token_id]), abs=1e-5)
    for t in c.next_a:
        assert t.other_prob == pytest.approx(float(p_b[t.token_id]), abs=1e-5)
    assert c.next_b[0].text == tok.decode([c.next_b[0].token_id])
    table = c.next_token_table()
    assert len(table) == 5 and table[0]["a_prob"] == probs[0]
