"""Trace files (safetensors, never pickle) and Traces made from plain arrays."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import attnscope
from attnscope.errors import InputError, TraceFormatError
from conftest import random_attention


def assert_traces_equal(a: attnscope.Trace, b: attnscope.Trace) -> None:
    assert a.tokens == b.tokens and a.token_ids == b.token_ids
    assert a.segments == b.segments and a.meta == b.meta
    for kind in a.kinds:
        np.testing.assert_array_equal(a.dense(kind), b.dense(kind))
    assert a.qkv.keys() == b.qkv.keys()
    for kind in a.qkv:
        for name in a.qkv[kind]:
            np.testing.assert_array_equal(a.qkv[kind][name], b.qkv[kind][name])
    for kind in a.bias:
        np.testing.assert_array_equal(a.bias[kind], b.bias[kind])


def test_save_load_round_trip_is_exact(minilm_trace, tmp_path):
    path = minilm_trace.save(tmp_path / "t.safetensors")
    assert_traces_equal(minilm_trace, attnscope.load(path))


def test_pruned_traces_round_trip(make_trace, tmp_path):
    pruned = make_trace(3, 4, 20).prune(0.9, top_k=5)
    back = attnscope.load(pruned.save(tmp_path / "p.safetensors"))
    assert back.attention["self"].pruned
    assert_traces_equal(pruned, back)
    np.testing.assert_array_equal(back.attention["self"].mass, pruned.attention["self"].mass)


def test_float16_storage_halves_the_file_and_stays_close(minilm_trace, tmp_path):
    full = minilm_trace.save(tmp_path / "a.safetensors")
    half = minilm_trace.save(tmp_path / "b.safetensors", dtype="float16")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    back = attnscope.load(half)
    assert np.abs(back.dense() - minilm_trace.dense()).max() < 1e-3


def test_encoder_decoder_traces_round_trip(tmp_path):
    from tiny_models import build

    model, tok = build("t5")
    trace = attnscope.capture(model, tok, "the cat sat", target="the dog runs", qkv=True)
    assert_traces_equal(trace, attnscope.load(trace.save(tmp_path / "t5.safetensors")))


def test_truncated_file_raises_trace_format_error(minilm_trace, tmp_path):
    path = minilm_trace.save(tmp_path / "t.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceFormatError, match="truncated or corrupted"):
        attnscope.load(path)


def test_garbage_and_missing_files_raise_trace_format_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 7 + b"not a trace at all")
    with pytest.raises(TraceFormatError):
        attnscope.load(bad)
    huge_header = tmp_path / "huge.safetensors"
    huge_header.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(TraceFormatError):
        attnscope.load(huge_header)
    with pytest.raises(TraceFormatError, match="no trace file"):
        attnscope.load(tmp_path / "missing.safetensors")


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(path))
    with pytest.raises(TraceFormatError, match="not an attnscope trace"):
        attnscope.load(path)


def test_a_file_takes_the_lowest_format_version_that_holds_it(make_trace, tmp_path):
    from safetensors import safe_open

    from long_qk import long_qk_trace

    def version(path) -> str:
        with safe_open(str(path), framework="numpy") as f:
            return f.metadata()["format_version"]

    dense = make_trace().save(tmp_path / "d.safetensors")
    pruned = make_trace(n=40).prune(0.8, 4).save(tmp_path / "p.safetensors")
    qk = long_qk_trace(300).save(tmp_path / "q.safetensors")  # q/k form without cell sums: format 1 needs them
    assert (version(dense), version(pruned), version(qk)) == ("1", "1", "2")
    assert attnscope.load(qk).attention["self"].form == "qk"


def test_a_newer_format_version_is_refused(make_trace, tmp_path):
    path = make_trace().save(tmp_path / "t.safetensors")
    data = bytearray(path.read_bytes())
    n = struct.unpack("<Q", bytes(data[:8]))[0]
    header = json.loads(bytes(data[8 : 8 + n]))
    header["__metadata__"]["format_version"] = "99"
    raw = json.dumps(header).encode()
    raw = raw.ljust(-(-len(raw) // 8) * 8)  # tensor offsets count from the header's end, so only its length moves
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data[8 + n :]))
    with pytest.raises(TraceFormatError, match="Upgrade attnscope"):
        attnscope.load(path)


def test_loading_never_unpickles(make_trace, tmp_path, monkeypatch):
    import pickle

    def refuse(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    attnscope.load(make_trace().save(tmp_path / "t.safetensors"))


def test_from_arrays_accepts_hugging_face_tuples_and_stacked_arrays():
    att = random_attention(3, 2, 5)
    tokens = list("abcde")
    as_tuple = tuple(torch.from_numpy(att[i : i + 1]) for i in range(3))
    a = attnscope.Trace.from_arrays(as_tuple, tokens)
    b = attnscope.Trace.from_arrays(att, tokens, sentence_b_start=2)
    np.testing.assert_array_equal(a.dense(), att)
    np.testing.assert_array_equal(b.dense(), att)
    assert (b.segments["B"].start, b.segments["B"].end) == (2, 5)


def test_from_arrays_takes_encoder_decoder_mappings():
    trace = attnscope.Trace.from_arrays(
        {"encoder": random_attention(2, 2, 4), "decoder": random_attention(2, 2, 3),
         "cross": random_attention(2, 2, 3, 4)},
        {"encoder": list("abcd"), "decoder": list("xyz")},
    )
    assert trace.kinds == ["encoder", "decoder", "cross"]
    assert trace.streams("cross") == ("decoder", "encoder")


def test_from_arrays_shape_errors_show_expected_and_received():
    with pytest.raises(InputError, match=r"shape \(2, 2, 5, 5\).*\[layers, heads, 4, 4\]"):
        attnscope.Trace.from_arrays(random_attention(2, 2, 5), list("abcd"))
    with pytest.raises(InputError, match=r"layer 0 has shape \(2, 5, 5\).*\[1, heads, q, k\]"):
        attnscope.Trace.from_arrays((np.zeros((2, 5, 5)),), list("abcde"))
    with pytest.raises(InputError, match=r"shape \(5, 5\)"):
        attnscope.Trace.from_arrays(np.zeros((5, 5)), list("abcde"))
    with pytest.raises(InputError, match="NaN"):
        attnscope.Trace.from_arrays(np.full((1, 1, 2, 2), np.nan), ["a", "b"])
    with pytest.raises(InputError, match="list of strings"):
        attnscope.Trace.from_arrays(random_attention(1, 1, 3), "abc")


def test_from_arrays_refuses_what_is_not_attention_and_says_what_to_pass():
    with pytest.raises(InputError, match=r"outside \[0, 1\] \(min -0\.4.*softmax probabilities"):
        attnscope.Trace.from_arrays(random_attention(1, 1, 3) - 0.5, list("abc"))
    with pytest.raises(InputError, match=r"outside \[0, 1\] \(min 1\.0"):
        attnscope.Trace.from_arrays(random_attention(1, 1, 3) * 3 + 1, list("abc"))
    with pytest.raises(InputError, match="at least one token"):
        attnscope.Trace.from_arrays(np.zeros((1, 1, 0, 0), np.float32), [])
    tokens = np.array(["a", "b", "c"])  # a numpy array of tokens is as good as a list
    assert attnscope.Trace.from_arrays(random_attention(1, 1, 3), tokens).tokens["input"] == ["a", "b", "c"]
