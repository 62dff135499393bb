"""Per-head metrics and labels: known answers on constructed patterns, pruned traces, cross-attention, MiniLM."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import attnscope
from attnscope.analysis import head_metrics, head_table, is_special_token, label
from attnscope.analysis import metrics as M
from conftest import random_attention

N = 8
TOKENS = [f"w{i}" for i in range(N)]


def pattern_trace(matrix: np.ndarray, tokens=TOKENS, layers: int = 1, heads: int = 2) -> attnscope.Trace:
    """A trace whose every head is ``matrix``."""
    att = np.broadcast_to(matrix.astype(np.float32), (layers, heads, *matrix.shape)).copy()
    return attnscope.Trace.from_arrays(att, list(tokens))


def only(trace, **kw) -> dict:
    recs = head_metrics(trace, **kw)
    assert len({r["label"] for r in recs}) == 1  # every head is the same matrix
    return recs[0]


def test_identity_attention_is_self_with_zero_entropy():
    r = only(pattern_trace(np.eye(N)))
    assert r["self"] == pytest.approx(1.0)
    assert r["entropy"] == pytest.approx(0.0)
    assert r["distance"] == pytest.approx(0.0)
    assert r["max"] == pytest.approx(1.0)
    assert r["previous"] == pytest.approx(0.0) and r["next"] == pytest.approx(0.0)
    assert r["label"] == "self"


def test_uniform_attention_has_entropy_one_and_is_broad():
    r = only(pattern_trace(np.full((N, N), 1.0 / N)))
    assert r["entropy"] == pytest.approx(1.0, abs=1e-6)
    assert r["max"] == pytest.approx(1.0 / N)
    assert r["first"] == pytest.approx(1.0 / N)
    # mean |i - j| over all pairs of 8 positions is (N^2 - 1) / (3N)
    assert r["distance"] == pytest.approx((N * N - 1) / (3 * N), rel=1e-5)
    assert r["label"] == "broad"


def test_causal_uniform_attention_normalises_by_allowed_keys():
    causal = np.tril(np.ones((N, N))) / np.arange(1, N + 1)[:, None]
    trace = pattern_trace(causal)
    r = only(trace)
    assert r["entropy"] == pytest.approx(1.0, abs=1e-6)  # each row uniform over its i + 1 keys
    assert r["next"] == 0.0
    # with the mask rule recorded in meta the same answer comes without reading the weights
    r2 = only(trace.with_meta(kinds={"self": {"causal": True, "scaling": 1.0}}))
    assert r2["entropy"] == pytest.approx(1.0, abs=1e-6)
    # read as an encoder, row i is uniform over i + 1 of 8 keys: entropy log(i + 1) / log(8)
    r3 = only(trace.with_meta(kinds={"self": {"causal": False, "scaling": 1.0}}))
    assert r3["entropy"] == pytest.approx(np.mean(np.log(np.arange(1, N + 1)) / np.log(N)), abs=1e-6)


def test_shifted_identity_is_previous_token():
    m = np.eye(N, k=-1)
    m[0, 0] = 1.0
    r = only(pattern_trace(m))
    assert r["previous"] == pytest.approx(1.0)
    assert r["self"] == pytest.approx(1.0 / N)
    assert r["distance"] == pytest.approx((N - 1) / N)
    assert r["label"] == "previous-token"


def test_next_token_pattern():
    m = np.eye(N, k=1)
    m[-1, -1] = 1.0
    r = only(pattern_trace(m))
    assert r["next"] == pytest.approx(1.0)
    assert r["label"] == "next-token"


def test_all_weight_on_separator_is_sink_and_special():
    tokens = ["[CLS]", *TOKENS[1:-1], "[SEP]"]
    m = np.zeros((N, N))
    m[:, -1] = 1.0
    r = only(pattern_trace(m, tokens))
    assert r["special"] == pytest.approx(1.0)
    assert r["first"] == pytest.approx(0.0)
    assert r["sink"] == pytest.approx(1.0)
    assert r["label"] == "sink/delimiter"


def test_first_token_sink_without_special_tokens():
    m = np.zeros((N, N))
    m[:, 0] = 0.9
    m[np.arange(N), np.arange(N)] += 0.1
    r = only(pattern_trace(m))
    assert r["first"] == pytest.approx(0.9 + 0.1 / N)
    assert r["special"] == 0.0
    assert r["label"] == "sink/delimiter"


def test_local_and_mixed_labels_follow_thresholds():
    band = np.zeros((N, N))
    for i in range(N):  # weight spread over the 5 nearest keys, none of them dominant
        cols = [j for j in range(i - 2, i + 3) if 0 <= j < N]
        band[i, cols] = 1.0 / len(cols)
    r = only(pattern_trace(band))
    assert r["local"] == pytest.approx(1.0)
    assert r["entropy"] < M.BROAD_MIN_ENTROPY and r["label"] == "local"
    n = 64
    band = np.zeros((n, n))
    for i in range(n):
        cols = [j for j in range(i - 2, i + 3) if 0 <= j < n]
        band[i, cols] = 1.0 / len(cols)
    assert only(pattern_trace(band, [f"w{i}" for i in range(n)]))["label"] == "local"
    base = {"previous": 0.3, "next": 0.0, "self": 0.2, "sink": 0.3, "local": 0.5}
    assert label({**base, "entropy": 0.5}) == "mixed"
    assert label({**base, "entropy": M.BROAD_MIN_ENTROPY}) == "broad"
    assert label({**base, "entropy": 0.5, "local": M.LOCAL_MIN_MASS}) == "local"
    assert label({**base, "entropy": 0.9, "sink": M.PATTERN_MIN_MASS}) == "sink/delimiter"


@pytest.mark.parametrize("token", ["[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>", "<unk>", "<|endoftext|>",
                                   "<|im_start|>", "<bos>", "<start_of_turn>"])
def test_special_tokens_are_recognised(token):
    assert is_special_token(token)


@pytest.mark.parametrize("token", ["the", "Ġthe", "▁the", "##s", "[", "]", "<", ">", "Ġ<", "[cls]", "<S>", "</w>x",
                                   "cat</w>", "ĠHe"])
def test_text_tokens_are_not_special(token):
    assert not is_special_token(token)


def test_pruned_trace_gives_the_same_metrics_when_nothing_is_dropped(make_trace):
    trace = make_trace(2, 3, 10, seed=3)
    dense = head_metrics(trace)
    pruned = head_metrics(trace.prune(mass=1.0, top_k=10))
    for d, p in zip(dense, pruned):
        for key in ("entropy", "distance", "self", "previous", "next", "first", "special", "max"):
            assert p[key] == pytest.approx(d[key], abs=1e-5), key
        assert p["label"] == d["label"]


def test_pruned_entropy_is_a_lower_bound(make_trace):
    trace = make_trace(2, 3, 30, seed=4)
    for d, p in zip(head_metrics(trace), head_metrics(trace.prune(mass=0.8, top_k=5))):
        assert p["entropy"] < d["entropy"]
        assert p["max"] == pytest.approx(d["max"], abs=1e-6)  # the largest weight is always kept


def test_records_cover_every_head_in_order(make_trace):
    recs = head_metrics(make_trace(3, 4, 7))
    assert [(r["layer"], r["head"]) for r in recs] == [(l, h) for l in range(3) for h in range(4)]
    assert all(r["label"] in M.LABELS for r in recs)
    for r in recs:
        assert 0.0 <= r["entropy"] <= 1.0 and 0.0 <= r["max"] <= 1.0


def test_cross_attention_has_no_positional_metrics():
    enc = random_attention(2, 2, 5, seed=1)
    dec = random_attention(2, 2, 3, causal=True, seed=2)
    cross = random_attention(2, 2, 3, 5, seed=3)
    trace = attnscope.Trace.from_arrays(
        {"encoder": enc, "decoder": dec, "cross": cross},
        {"encoder": ["a", "b", "c", "d", "</s>"], "decoder": ["<pad>", "x", "y"]},
    )
    recs = head_metrics(trace, kind="cross")
    r = recs[0]
    assert np.isnan(r["distance"]) and np.isnan(r["self"]) and np.isnan(r["previous"])
    assert r["first"] == pytest.approx(float(cross[0, 0, :, 0].mean()), abs=1e-6)
    assert r["special"] == pytest.approx(float(cross[0, 0, :, 4].mean()), abs=1e-6)  # </s> in the encoder tokens
    # the decoder kind is causal: entropy normalised by log(i + 1), rows after the first
    d = head_metrics(trace, kind="decoder")[0]
    a = dec[0, 0]
    expected = np.mean([-(a[i, : i + 1] * np.log(a[i, : i + 1])).sum() / np.log(i + 1) for i in (1, 2)])
    assert d["entropy"] == pytest.approx(expected, abs=1e-5)


def test_unknown_kind_names_the_kinds_present(make_trace):
    with pytest.raises(attnscope.errors.MissingDataError, match="it has \\['self'\\]"):
        head_metrics(make_trace(), kind="cross")


def test_head_table_is_a_dataframe(make_trace):
    df = head_table(make_trace(2, 3, 6))
    assert df.shape[0] == 6
    assert {"layer", "head", "entropy", "distance", "label"} <= set(df.columns)


def test_minilm_has_a_previous_token_head_and_delimiter_heads(minilm_trace):
    recs = head_metrics(minilm_trace)
    assert len(recs) == 6 * 12
    prev = [r for r in recs if r["label"] == "previous-token"]
    assert prev and max(r["previous"] for r in prev) > 0.9
    assert sum(r["label"] == "sink/delimiter" for r in recs) >= 5  # [CLS]/[SEP] soak up attention in BERTs
    assert all(r["special"] > 0 for r in recs)


def test_head_table_without_pandas_names_the_extra(make_trace, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an environment without pandas looks like to import
    with pytest.raises(attnscope.errors.MissingExtraError, match=r"pip install 'attnscope\[analysis\]'"):
        head_table(make_trace())
    assert len(head_metrics(make_trace())) == 6  # plain records need nothing extra


@pytest.mark.parametrize("causal", [False, True])
def test_pruned_heads_are_read_without_densifying_and_agree_with_their_dense_form(make_trace, causal):
    trace = make_trace(2, 3, 12, causal=causal, tokens=["[CLS]", *"the cat sat on a mat and it was".split(), "[SEP]", "x"])
    pruned = trace.prune(mass=0.7, top_k=5)
    dense_of_pruned = attnscope.Trace.from_arrays(pruned.dense(), list(trace.tokens["input"]))
    for s, d in zip(head_metrics(pruned), head_metrics(dense_of_pruned)):
        for name in ("entropy", "distance", "self", "previous", "next", "local", "first", "special", "sink", "max"):
            assert s[name] == pytest.approx(d[name], abs=1e-5), (name, s, d)
        assert s["label"] == d["label"]


def test_a_subset_of_layers_and_heads_gives_those_records_in_order(make_trace):
    trace = make_trace(3, 4, 7)
    every = {(r["layer"], r["head"]): r for r in head_metrics(trace)}
    some = head_metrics(trace, layers=[2, 0], heads=[3, 1])
    assert [(r["layer"], r["head"]) for r in some] == [(2, 3), (2, 1), (0, 3), (0, 1)]
    assert all(r == every[r["layer"], r["head"]] for r in some)
