"""Attention rollout on a hand-computed example; attention flow against networkx's max-flow."""

from __future__ import annotations

import sys

import networkx as nx
import numpy as np
import pytest

import attnscope
from attnscope.analysis import flow, rollout
from attnscope.analysis.rollout import residual_attention
from attnscope.errors import InputError
from conftest import random_attention

# Two layers, two heads, three tokens (causal). Head means:
#   layer 0: [[1, 0, 0], [.5, .5, 0], [.2, .3, .5]]     layer 1: [[1, 0, 0], [1, 0, 0], [0, .5, .5]]
HAND = np.array([
    [[[1, 0, 0], [1, 0, 0], [0, 0, 1]], [[1, 0, 0], [0, 1, 0], [.4, .6, 0]]],
    [[[1, 0, 0], [1, 0, 0], [0, 1, 0]], [[1, 0, 0], [1, 0, 0], [0, 0, 1]]],
], dtype=np.float32)


def hand_trace() -> attnscope.Trace:
    return attnscope.Trace.from_arrays(HAND, ["a", "b", "c"])


def test_rollout_matches_hand_computation():
    r = rollout(hand_trace())
    # A_hat_0 = .5 I + .5 A_0 ; A_hat_1 = .5 I + .5 A_1 ; R_1 = A_hat_1 @ A_hat_0
    layer0 = [[1, 0, 0], [.25, .75, 0], [.1, .15, .75]]
    layer1 = [[1, 0, 0], [.625, .375, 0], [.1375, .3, .5625]]
    np.testing.assert_allclose(r[0], layer0, atol=1e-6)
    np.testing.assert_allclose(r[1], layer1, atol=1e-6)
    assert r.dtype == np.float32 and r.shape == (2, 3, 3)


def test_rollout_without_residual_is_the_product_of_head_means():
    r = rollout(hand_trace(), residual=0.0)
    means = HAND.mean(1).astype(np.float64)
    np.testing.assert_allclose(r[1], means[1] @ means[0], atol=1e-6)


def test_rollout_head_max_renormalises_rows():
    r = rollout(hand_trace(), head_reduce="max")
    # layer 0 max over heads: [[1,0,0],[1,1,0],[.4,.6,1]]; + I, halved, rows renormalised
    a0 = 0.5 * np.eye(3) + 0.5 * np.array([[1, 0, 0], [1, 1, 0], [.4, .6, 1]])
    np.testing.assert_allclose(r[0], a0 / a0.sum(1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_rollout_rows_sum_to_one_and_causal_stays_lower_triangular(make_trace, causal):
    r = rollout(make_trace(4, 3, 9, causal=causal, seed=2))
    np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-5)
    upper = r[:, np.triu_indices(9, 1)[0], np.triu_indices(9, 1)[1]]  # [L, pairs above the diagonal]
    assert (not upper.any()) if causal else (upper > 0).all()


def test_rollout_on_a_pruned_trace_stays_close_to_dense(make_trace):
    trace = make_trace(3, 4, 12, seed=5)
    dense = rollout(trace)
    pruned = rollout(trace.prune(mass=0.99, top_k=12))
    assert np.abs(dense - pruned).max() < 0.02


def test_rollout_and_flow_refuse_cross_attention():
    trace = attnscope.Trace.from_arrays(
        {"encoder": random_attention(1, 2, 4), "decoder": random_attention(1, 2, 3),
         "cross": random_attention(1, 2, 3, 4)},
        {"encoder": list("abcd"), "decoder": list("xyz")},
    )
    with pytest.raises(InputError, match="same tokens"):
        rollout(trace, kind="cross")
    with pytest.raises(InputError, match="same tokens"):
        flow(trace, kind="cross")
    assert rollout(trace, kind="encoder").shape == (1, 4, 4)


@pytest.mark.parametrize("kwargs, message", [
    ({"residual": 1.5}, "residual must be"), ({"residual": "half"}, "residual must be"),
    ({"head_reduce": "median"}, "head_reduce must be one of"),
])
def test_rollout_rejects_bad_options(make_trace, kwargs, message):
    with pytest.raises(InputError, match=message):
        rollout(make_trace(), **kwargs)


def networkx_flow(a_hat: np.ndarray) -> np.ndarray:
    """Abnar & Zuidema's construction: edges from each output node down to the nodes it attends to."""
    L, n, _ = a_hat.shape
    g = nx.DiGraph()
    for layer in range(L):
        for i in range(n):
            for j in range(n):
                if a_hat[layer, i, j] > 0:
                    g.add_edge((layer + 1, i), (layer, j), capacity=float(a_hat[layer, i, j]))
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if g.has_node((L, i)) and g.has_node((0, j)) and nx.has_path(g, (L, i), (0, j)):
                out[i, j] = nx.maximum_flow_value(g, (L, i), (0, j), flow_func=nx.algorithms.flow.edmonds_karp)
    return out


@pytest.mark.parametrize("causal", [True, False])
def test_flow_matches_networkx_max_flow(make_trace, causal):
    trace = make_trace(3, 2, 5, causal=causal, seed=7)
    expected = networkx_flow(residual_attention(trace))
    np.testing.assert_allclose(flow(trace, normalize=False), expected, atol=1e-5)
    np.testing.assert_allclose(flow(trace), expected / expected.sum(1, keepdims=True), atol=1e-5)


def test_flow_into_an_earlier_layer(make_trace):
    trace = make_trace(3, 2, 5, seed=8)
    expected = networkx_flow(residual_attention(trace)[:2])
    np.testing.assert_allclose(flow(trace, layer=1, normalize=False), expected, atol=1e-5)


def test_flow_through_one_layer_is_the_residual_attention():
    # one layer: the only path from input j to output i is the edge of capacity A_hat[i, j]
    trace = hand_trace()
    np.testing.assert_allclose(flow(trace, layer=0, normalize=False), residual_attention(trace)[0], atol=1e-6)


def test_flow_hand_example_two_layers():
    # output 2 after layer 1 gets .25 via b and .75 via c; from input b it can take
    # min(.25, .75) through node b and min(.75, .15) through node c: .4 in all
    f = flow(hand_trace(), normalize=False)
    assert f[2, 1] == pytest.approx(0.25 + 0.15, abs=1e-6)
    assert f[0].tolist() == pytest.approx([1, 0, 0], abs=1e-6)


def test_flow_refuses_long_inputs_and_names_the_limit(make_trace):
    trace = make_trace(1, 1, 10)
    with pytest.raises(InputError, match="max_tokens=8"):
        flow(trace, max_tokens=8)
    with pytest.raises(InputError, match="layer must be between 0 and 0"):
        flow(trace, layer=3)


def test_flow_without_scipy_names_the_extra(make_trace, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.sparse.csgraph", None)
    with pytest.raises(attnscope.errors.MissingExtraError, match=r"pip install 'attnscope\[analysis\]'"):
        flow(make_trace())
    assert rollout(make_trace()).shape == (2, 6, 6)  # rollout needs numpy only
