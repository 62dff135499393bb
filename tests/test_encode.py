"""The payload: compact (quantized bytes, never JSON floats), faithful, pruned-capable and safe in a <script>."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

import attnscope
import attnscope.encode
from attnscope import codec
from attnscope.encode import decode_head, dequantize, encode, quantize, script_json, token_labels
from attnscope.errors import InputError, MissingDataError
from attnscope.synthetic import synthetic_trace
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
    assert spec["form"] == "pruned" and spec["pruning"] == {"source": "trace"}
    assert set(spec["data"][1][0]) == {"nnz", "countBytes", "counts", "gaps", "far", "values"}
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
    pooled = dequantize(codec.inflate85(thumb["data"][0][0]), "sqrt8").reshape(25, 25)
    want = trace.head(0, 0).reshape(25, 4, 25, 4).max(axis=(1, 3))
    assert np.abs(np.sqrt(pooled) - np.sqrt(want)).max() <= 0.5 / 255 + 1e-6


def test_dense_traces_past_the_dense_limit_are_pruned_at_encode_and_ship_thumbnails(make_trace, monkeypatch):
    monkeypatch.setattr(attnscope.encode, "DENSE_MAX", 1000)
    spec = encode(make_trace(1, 1, 40), thumb_size=16)["kinds"]["self"]
    assert spec["form"] == "pruned" and spec["thumb"]["block"] == 3
    assert spec["pruning"] == {"source": "view", "mass": 0.95, "topK": 256}


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


def peaked(layers: int, heads: int, n: int, seed: int = 0) -> np.ndarray:
    """Softmax rows with a few strong keys each, like real heads."""
    rng = np.random.default_rng(seed)
    w = np.exp(rng.normal(size=(layers, heads, n, n)) * 2.5)
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("mass, top_k", [(0.95, 256), (0.8, 256), (0.9, 5), (0.5, 1)])
def test_pruning_at_encode_keeps_the_asked_mass_per_row_and_never_drops_the_maximum(monkeypatch, mass, top_k):
    monkeypatch.setattr(attnscope.encode, "DENSE_MAX", 100)
    weights = peaked(2, 3, 50, seed=int(mass * 100) + top_k)
    trace = attnscope.Trace.from_arrays(weights, [f"t{i}" for i in range(50)])
    spec = (payload := encode(trace, mass=mass, top_k=top_k))["kinds"]["self"]
    assert spec["form"] == "pruned" and spec["pruning"] == {"source": "view", "mass": mass, "topK": top_k}
    worst, total = 1.0, 0.0
    for layer in range(2):
        for head in range(3):
            w = weights[layer, head].astype(np.float64)
            kept = decode_head(payload, "self", layer, head) > 0
            got = (w * kept).sum(1) / w.sum(1)
            assert kept[np.arange(50), w.argmax(1)].all()  # the maximum of every row stays
            assert ((got >= mass - 1e-6) | (kept.sum(1) == top_k)).all()  # the mass, unless top_k stopped it
            assert (kept.sum(1) <= top_k).all()
            worst, total = min(worst, got.min()), total + got.sum()
    assert spec["minKeptMass"] == pytest.approx(worst, abs=1e-5)
    assert spec["keptMass"] == pytest.approx(total / 300, abs=1e-5)


def test_already_pruned_traces_travel_as_they_are_when_they_fit():
    trace = synthetic_trace(300, 2, 2)
    payload = encode(trace)
    spec = payload["kinds"]["self"]
    assert spec["pruning"] == {"source": "trace"} and spec["keptMass"] == pytest.approx(trace.kept_mass(), abs=1e-6)
    np.testing.assert_allclose(np.sqrt(decode_head(payload, "self", 1, 1)), np.sqrt(trace.head(1, 1)), atol=0.5 / 255)


def test_a_tight_budget_lowers_the_kept_mass_step_by_step_and_says_so(caplog):
    trace = synthetic_trace(600, 2, 4)
    roomy = encode(trace)
    with caplog.at_level("WARNING", logger="attnscope"):
        tight = encode(trace, budget_mb=len(script_json(roomy)) / 2e6)
    spec = tight["kinds"]["self"]
    assert len(script_json(tight)) <= len(script_json(roomy)) / 2
    assert spec["pruning"]["lowered"] is True and spec["pruning"]["askedMass"] == 0.95
    assert spec["pruning"]["mass"] < 0.95 and "Raise budget_mb=" in caplog.text
    mass = spec["pruning"]["mass"]
    for head in range(4):  # every row still holds the lowered mass (of its full attention), or its top-k
        kept = decode_head(tight, "self", 1, head) > 0
        full = trace.head(1, head).astype(np.float64)
        got = (full * kept).sum(1) / (full.sum(1) / trace.attention["self"].mass[1, head])
        assert ((got >= mass - 1e-5) | (kept.sum(1) == spec["pruning"]["topK"])).all()


def test_a_budget_too_small_for_even_one_weight_a_row_says_how_to_fix_it():
    with pytest.raises(InputError, match=r"raise budget_mb or pass include_layers=/include_heads="):
        encode(synthetic_trace(200, 2, 2), budget_mb=0.003)
    with pytest.raises(InputError, match=r"budget_mb must be a positive number"):
        encode(synthetic_trace(20, 1, 1), budget_mb=0)


@pytest.mark.slow
def test_4096_tokens_32x32_fit_the_default_budget_at_095_mass():
    """The issue's goal, in Python: a Llama-7B-shaped 4096-token trace fits 100 MB keeping >= 95% of every row."""
    trace = synthetic_trace(4096, 32, 32)
    payload = encode(trace, thumb_size=64)
    spec = payload["kinds"]["self"]
    assert len(script_json(payload)) <= 100e6
    assert spec["pruning"] == {"source": "view", "mass": 0.95, "topK": 256}
    assert spec["keptMass"] >= 0.95 and spec["minKeptMass"] >= 0.95 - 1e-6


def test_codec_streams_round_trip():
    rng = np.random.default_rng(0)
    for n in (0, 1, 3, 4, 5, 1001):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        text = codec.z85(data)
        assert codec.unz85(text)[:n] == data and not set(text) & set("\"&'<>\\`")
    gaps = np.r_[0, 1, 127, 128, 255, 16383, 16384, 2**21, 2**31, rng.integers(0, 70000, 500)]
    first, far = codec.split_varint(gaps)
    assert len(first) == len(gaps)
    np.testing.assert_array_equal(codec.join_varint(np.frombuffer(first, np.uint8), np.frombuffer(far, np.uint8)), gaps)
    rows = codec.Rows(np.array([2, 0, 3]), np.array([5, 0, 70000, 1, 9], dtype=np.int32),
                      np.array([0.5, 0.25, 0.6, 0.3, 0.1], dtype=np.float32), np.ones(3))
    counts, idx, values = codec.unpack(codec.pack(rows, "f16", quantize), 3, 2)
    np.testing.assert_array_equal(counts, [2, 0, 3])
    np.testing.assert_array_equal(idx, [0, 5, 1, 9, 70000])  # increasing within each row
    np.testing.assert_allclose(dequantize(values, "f16"), [0.25, 0.5, 0.3, 0.1, 0.6], atol=1e-3)


def test_token_labels_ship_the_figures_labels_where_they_differ_from_the_raw_tokens(make_trace):
    byte_level = ["ĠThe", "Ġcaf", "Ã©", "Ċ", "<|endoftext|>"]
    assert token_labels(byte_level) == ["The", "caf", "é", "↵", None]  # most differ: a list, null where the same
    wordpiece = ["[CLS]"] + ["play"] * 20 + ["##ing", "[SEP]"]
    assert token_labels(wordpiece) == {"21": "ing"}  # few differ: by position
    assert token_labels(["[CLS]", "the", "cat"]) is None
    trace = make_trace(n=5, tokens=byte_level)
    assert encode(trace)["labels"] == {"input": ["The", "caf", "é", "↵", None]}
    assert encode(make_trace(n=3, tokens=["a", "b", "c"]))["labels"] == {}
