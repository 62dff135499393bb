"""The payload: compact (quantized bytes, never JSON floats), faithful, pruned-capable and safe in a <script>."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

import attnscope
import attnscope.encode
from attnscope.encode import decode_head, dequantize, encode, quantize, script_json
from attnscope.errors import InputError, MissingDataError
from conftest import random_attention


def float_lists(obj, path="payload"):
    """Paths of every JSON list in ``obj`` that holds a float."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += float_lists(v, f"{path}.{k}")
    elif isinstance(obj, list):
        if any(isinstance(v, float) for v in obj):
            found.append(path)
        for i, v in enumerate(obj):
            found += float_lists(v, f"{path}[{i}]")
    return found


def test_payload_holds_no_json_float_arrays_in_any_form(minilm_trace):
    dense = encode(minilm_trace, thumb_size=8, qkv=True)
    pruned = encode(minilm_trace.prune(0.9, 8), thumb_size=8, dtype="float16")
    for payload in (dense, pruned):
        assert float_lists(json.loads(script_json(payload))) == []
    assert pruned["kinds"]["self"]["thumb"]["block"] == 2  # 15 tokens pooled to 8 pixels
    assert isinstance(dense["kinds"]["self"]["data"][0][0], str)  # one base64 string per head


def test_sqrt8_keeps_small_weights_apart_within_half_a_step_on_the_sqrt_scale(make_trace):
    trace = make_trace(2, 3, 40, seed=1)
    payload = encode(trace)
    for layer in range(2):
        for head in range(3):
            got, want = decode_head(payload, "self", layer, head), trace.head(layer, head)
            assert np.abs(np.sqrt(got) - np.sqrt(want)).max() <= 0.5 / 255 + 1e-6
    assert dequantize(quantize(np.array([1 / 256]), "sqrt8"), "sqrt8")[0] == pytest.approx(1 / 256, rel=0.02)


def test_float16_payload_gives_exact_values_to_four_decimals(make_trace):
    trace = make_trace(1, 2, 12)
    got = decode_head(encode(trace, dtype="float16"), "self", 0, 1)
    np.testing.assert_allclose(got, trace.head(0, 1), atol=5e-4)


def test_included_layers_and_heads_keep_their_original_indices(make_trace):
    trace = make_trace(4, 5, 7)
    payload = encode(trace, include_layers=[3, 1], include_heads=[4, 0])
    spec = payload["kinds"]["self"]
    assert (spec["layers"], spec["heads"]) == ([3, 1], [4, 0])
    assert len(spec["data"]) == 2 and len(spec["data"][0]) == 2
    np.testing.assert_allclose(decode_head(payload, "self", 3, 0), trace.head(3, 0), atol=0.01)


def test_pruned_attention_travels_as_per_head_csr_and_reports_kept_mass(make_trace):
    trace = make_trace(2, 2, 30, seed=3).prune(mass=0.8, top_k=6)
    payload = encode(trace)
    spec = payload["kinds"]["self"]
    assert spec["form"] == "pruned" and spec["indexBytes"] == 2
    assert spec["keptMass"] == pytest.approx(trace.kept_mass(), abs=1e-6)
    assert spec["minKeptMass"] == pytest.approx(trace.attention["self"].min_kept_mass(), abs=1e-6)
    assert 0.0 < spec["minKeptMass"] <= spec["keptMass"] <= 1.0
    for layer in range(2):
        for head in range(2):
            want = trace.head(layer, head)
            got = decode_head(payload, "self", layer, head)
            assert ((got > 0) == (want > 0)).all()  # the same kept entries
            assert np.abs(np.sqrt(got) - np.sqrt(want)).max() <= 0.5 / 255 + 1e-6
    dense_size = len(script_json(encode(make_trace(2, 2, 30, seed=3))))
    assert len(script_json(payload)) < dense_size  # 6 of 30 keys per row


def test_dense_payload_reports_that_nothing_was_pruned(make_trace):
    spec = encode(make_trace())["kinds"]["self"]
    assert (spec["form"], spec["keptMass"], spec["minKeptMass"]) == ("dense", 1.0, 1.0)


def test_dense_payloads_leave_thumbnail_pooling_to_the_browser(make_trace):
    spec = encode(make_trace(1, 1, 100), thumb_size=32)["kinds"]["self"]
    assert spec["thumbSize"] == 32 and "thumb" not in spec


def test_pruned_payloads_ship_block_max_thumbnails_for_long_inputs(make_trace):
    trace = make_trace(1, 1, 100, seed=2).prune(mass=0.9, top_k=20)
    assert "thumb" not in encode(trace, thumb_size=128)["kinds"]["self"]
    thumb = encode(trace, thumb_size=32)["kinds"]["self"]["thumb"]
    assert thumb["block"] == 4 and thumb["shape"] == [25, 25]
    pooled = dequantize(base64.b64decode(thumb["data"][0][0]), "sqrt8").reshape(25, 25)
    want = trace.head(0, 0).reshape(25, 4, 25, 4).max(axis=(1, 3))
    assert np.abs(np.sqrt(pooled) - np.sqrt(want)).max() <= 0.5 / 255 + 1e-6


def test_very_large_dense_payloads_ship_thumbnails_too(make_trace, monkeypatch):
    monkeypatch.setattr(attnscope.encode, "POOL_IN_BROWSER", 1000)
    assert encode(make_trace(1, 1, 40), thumb_size=16)["kinds"]["self"]["thumb"]["block"] == 3


def test_query_key_vectors_travel_as_float16_per_head(minilm_trace):
    qkv = encode(minilm_trace, attention=False, qkv=True)["kinds"]["self"]["qkv"]
    assert qkv["d"] == 32 and qkv["scaling"] == pytest.approx(32**-0.5)
    q = np.frombuffer(base64.b64decode(qkv["query"][2][5]), dtype="<f2").reshape(-1, 32)
    np.testing.assert_allclose(q, minilm_trace.qkv["self"]["query"][2, 5], rtol=2e-3, atol=2e-3)


def test_asking_for_qkv_a_trace_does_not_hold_names_the_capture_option(make_trace):
    with pytest.raises(MissingDataError, match=r"qkv=True"):
        encode(make_trace(), qkv=True)


def test_bad_arguments_say_what_is_allowed(make_trace):
    trace = make_trace(2, 3, 5)
    with pytest.raises(InputError, match=r"dtype must be one of \['float16', 'uint8'\]"):
        encode(trace, dtype="float32")
    with pytest.raises(InputError, match=r"include_layers must be a non-empty list of layers in 0\.\.1"):
        encode(trace, include_layers=[2])
    with pytest.raises(InputError, match=r"twice"):
        encode(trace, include_heads=[1, 1])
    with pytest.raises(MissingDataError, match=r"no 'cross' attention"):
        encode(trace, kinds=["cross"])


def test_script_json_escapes_everything_that_could_end_or_confuse_a_script_element():
    tokens = ["</script><script>alert(1)</script>", "<!--", "a&b", "\u2028\u2029", "x>y", "\x00", "`${1}`"]
    text = script_json({"tokens": tokens})
    for raw in ("<", ">", "&", "\u2028", "\u2029", "\x00"):
        assert raw not in text
    assert json.loads(text) == {"tokens": tokens}


def test_a_12x12_payload_is_its_quantized_bytes_plus_base64_and_little_else():
    n, layers, heads = 128, 12, 12
    trace = attnscope.Trace.from_arrays(random_attention(layers, heads, n), [f"t{i}" for i in range(n)])
    size = len(script_json(encode(trace)))
    ideal = layers * heads * n * n * 4 / 3  # one byte per weight, base64
    assert ideal < size < 1.02 * ideal
