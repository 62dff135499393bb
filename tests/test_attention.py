"""Dense and pruned attention: pruning keeps the asked mass, never drops a row's maximum, reads back right."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnscope.attention import DenseAttention, PrunedAttention, PruneSpec, block_max, prune_rows
from attnscope.errors import InputError
from conftest import random_attention


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), mass=st.floats(0.05, 1.0), top_k=st.integers(1, 50), seed=st.integers(0, 10**6),
       causal=st.booleans())
def test_pruning_keeps_the_mass_or_the_cap_and_always_the_maximum(n, mass, top_k, seed, causal):
    w = random_attention(1, 1, n, causal=causal, seed=seed)[0, 0]
    counts, indices, values = prune_rows(w, PruneSpec(mass, top_k))
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    for i in range(n):
        idx = indices[starts[i] : starts[i] + counts[i]]
        vals = values[starts[i] : starts[i] + counts[i]]
        assert w[i].argmax() in idx or vals[0] == w[i].max()
        np.testing.assert_array_equal(vals, w[i, idx])
        if counts[i] < min(top_k, n):
            assert vals.sum() >= mass * w[i].sum() - 1e-5
        if counts[i] > 1:  # minimal: without its smallest kept weight the row would fall short
            assert vals[:-1].sum() < mass * w[i].sum()


def test_pruned_attention_reads_like_the_dense_one():
    w = random_attention(3, 4, 16, seed=1)
    dense = DenseAttention(w)
    exact = PrunedAttention.from_layers((w[i] for i in range(3)), PruneSpec(1.0, 16))
    np.testing.assert_allclose(exact.dense(), dense.dense(), atol=1e-7)
    np.testing.assert_allclose(exact.row(2, 3, 5), w[2, 3, 5], atol=1e-7)
    np.testing.assert_allclose(exact.layer(1), w[1], atol=1e-7)
    np.testing.assert_allclose(exact.pooled(0, 0, 4), block_max(w[0, 0], 4))
    assert exact.kept_mass() == pytest.approx(1.0, abs=1e-5)
    lossy = PrunedAttention.from_layers((w[i] for i in range(3)), PruneSpec(0.5, 3))
    assert lossy.pruned and 0 < lossy.kept_mass() < 1
    assert len(lossy.values) <= 3 * 4 * 16 * 3


def test_block_max_pools_without_losing_peaks():
    m = np.zeros((10, 10), dtype=np.float32)
    m[7, 3] = 0.9
    pooled = block_max(m, 5)
    assert pooled.shape == (5, 5) and pooled[3, 1] == pytest.approx(0.9) and pooled.sum() == pytest.approx(0.9)
    assert block_max(m, 10) is m


def test_bad_prune_specs_are_refused():
    with pytest.raises(InputError, match="mass"):
        PruneSpec(mass=0)
    with pytest.raises(InputError, match="top_k"):
        PruneSpec(top_k=0)
