"""Verified capture: weights x values through the output projection must reproduce each attention module's output.

Checked on every tiny architecture of the capture sweep (and the real MiniLM), in half precision, and against
deliberately broken models: a module whose output is patched after attention, and one that runs its own kernel
instead of the recording function. Both must be flagged, naming the layer.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

import attnscope
import tiny_models
from attnscope.capture.verify import summary
from tiny_models import ALL, SEQ2SEQ, build

TEXT = "the cat sat on the mat and it was very happy ."


def capture(name, model, tok, **kw):
    if name in SEQ2SEQ:
        kw.setdefault("target", "the dog runs over the lazy fox")
    return attnscope.capture(model, tok, TEXT, qkv=True, **kw)


@pytest.mark.parametrize("name", ALL)
def test_every_architecture_passes_with_every_layer_checked(name):
    model, tok = build(name)
    trace = capture(name, model, tok)
    verified = trace.meta["verified"]
    assert sorted(verified) == sorted(trace.kinds)
    for kind, v in verified.items():
        assert v["ok"] is True, (kind, v)
        assert len(v["max_abs_diff"]) == trace.shape(kind)[0]
        assert all(d <= t for d, t in zip(v["max_abs_diff"], v["tolerance"]))
        assert max(v["max_abs_diff"]) < 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_passes_within_a_dtype_tolerance(dtype):
    model, tok = build("llama")
    trace = attnscope.capture(model.to(dtype), tok, TEXT, qkv=True)
    v = trace.meta["verified"]["self"]
    assert v["ok"] is True
    assert 0 < max(v["max_abs_diff"]) < min(v["tolerance"])


@pytest.mark.parametrize("name, module", [
    ("llama", lambda m: m.model.layers[1].self_attn),  # projection inside the module
    ("bert", lambda m: m.encoder.layer[1].attention.self),  # projection in the parent (attention.output.dense)
    ("bart", lambda m: m.model.decoder.layers[1].encoder_attn),  # cross-attention
])
def test_a_patched_attention_output_is_flagged_with_its_layer(name, module):
    model, tok = build(name)
    attn = module(model)
    original = attn.forward

    def patched(*args, **kwargs):
        out, *rest = original(*args, **kwargs)
        return (out + 0.05, *rest)

    attn.forward = patched
    trace = capture(name, model, tok)
    kind = "cross" if name == "bart" else "self"
    v = trace.meta["verified"][kind]
    assert v["ok"] is False and v["worst_layer"] == 1
    assert v["max_abs_diff"][0] < 1e-5 and v["max_abs_diff"][1] == pytest.approx(0.05, rel=1e-3)
    assert "layer 1" in v["problem"]
    assert all(trace.meta["verified"][k]["ok"] for k in trace.kinds if k != kind)
    assert summary(trace.meta) == {"ok": False, "maxAbsDiff": v["max_abs_diff"][1], "kind": kind, "layer": 1,
                                   "problem": v["problem"]}


def test_a_module_running_its_own_kernel_is_flagged():
    model, tok = build("llama")
    own = copy.copy(model.config)
    own._attn_implementation_internal = "sdpa"  # this layer ignores the recording function
    model.model.layers[0].self_attn.config = own
    trace = attnscope.capture(model, tok, TEXT, qkv=True)
    v = trace.meta["verified"]["self"]
    assert v["ok"] is False and v["max_abs_diff"][0] is None and v["worst_layer"] == 0
    assert "did not run the recording attention function" in v["problem"]


def test_only_captures_with_qkv_are_checked_and_the_record_survives_saving(tmp_path):
    model, tok = build("gpt2")
    assert "verified" not in attnscope.capture(model, tok, TEXT).meta
    trace = attnscope.capture(model, tok, TEXT, qkv=True)
    loaded = attnscope.load(trace.save(tmp_path / "t.safetensors"))
    assert loaded.meta["verified"] == json.loads(json.dumps(trace.meta["verified"]))
    assert summary(loaded.meta)["ok"] is True


def test_batched_capture_is_checked_too():
    model, tok = tiny_models.build("llama")
    traces = attnscope.capture_batch(model, tok, ["the cat sat", TEXT], qkv=True)
    assert all(t.meta["verified"]["self"]["ok"] for t in traces)


def test_minilm_is_verified(minilm_trace):
    v = minilm_trace.meta["verified"]["self"]
    assert v["ok"] is True and len(v["max_abs_diff"]) == 6 and max(v["max_abs_diff"]) < 1e-5


def test_info_says_whether_and_where_the_capture_was_verified(tmp_path):
    from typer.testing import CliRunner

    from attnscope.cli import app

    model, tok = build("llama")
    good = attnscope.capture(model, tok, TEXT, qkv=True).save(tmp_path / "good.safetensors")
    attn = model.model.layers[1].self_attn
    original = attn.forward
    attn.forward = lambda *a, **k: (lambda out: (out[0] + 1.0, *out[1:]))(original(*a, **k))
    bad = attnscope.capture(model, tok, TEXT, qkv=True).save(tmp_path / "bad.safetensors")
    plain = attnscope.capture(model, tok, TEXT).save(tmp_path / "plain.safetensors")

    def info(path, *extra):
        result = CliRunner().invoke(app, ["info", str(path), *extra], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return " ".join(result.stdout.split())

    assert "verified │ self: yes, every layer (max abs diff 0)" in info(good)
    assert "self: NO, layer 1: the module's output differs from weights x values by 1" in info(bad)
    assert "not checked (capture with --qkv" in info(plain)
    facts = json.loads(CliRunner().invoke(app, ["info", str(bad), "--json"]).stdout)
    assert facts["verified"]["self"]["ok"] is False and facts["verified"]["self"]["worst_layer"] == 1


def test_summary_of_a_hand_edited_record_counts_as_not_verified():
    assert summary({}) is None and summary({"verified": {}}) is None
    got = summary({"verified": {"self": "yes", "cross": {"ok": True, "max_abs_diff": [1e-7]}}})
    assert got == {"ok": None, "maxAbsDiff": None, "kind": "self", "layer": None, "problem": None}
    assert summary({"verified": {"self": {"ok": True, "max_abs_diff": [1e-7, "x", None]}}})["maxAbsDiff"] == 1e-7
