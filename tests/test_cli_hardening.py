"""The command line at its edges: hostile text in traces and file names, text that is not UTF-8, flags checked
before a model loads, output paths and ports that cannot be used, and no side effects from a failed lookup."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import attnscope
from attnscope import _files
from attnscope._terminal import for_terminal, json_for_terminal
from attnscope.cli import _fit_model, app
from attnscope.errors import InputError
from conftest import random_attention
from tiny_models import ALL, build

ENTRY = Path(sys.executable).parent / "attnscope"
runner = CliRunner()
#: Screen clear, colour (7-bit CSI and the 8-bit C1 CSI), an OSC-8 hyperlink, a bell, a right-to-left override.
HOSTILE = "\x1b[2J\x1b[31mred\x9b32m\x1b]8;;https://evil.example\x07link\x1b]8;;\x07\u202eabc\x00"
RAW = ("\x1b", "\x9b", "\x07", "\u202e", "\x00")


def invoke(*args: str, **kwargs):
    return runner.invoke(app, list(args), **kwargs)


def one_error(stderr: str, message: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert lines[-1].startswith("hint: ") and "Traceback" not in stderr and "looks like a bug" not in stderr, stderr
    return errors[0]


def hostile_trace(tmp_path: Path, name: str = "hostile.safetensors") -> Path:
    trace = attnscope.Trace.from_arrays(random_attention(2, 3, 4), ["[bold]cls", HOSTILE, "ok", "\x9b1m"],
                                        meta={"model": HOSTILE, "text": f"text {HOSTILE}"})
    return trace.save(tmp_path / name)


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading the weights fails the test: what these flags need is known from the config alone."""
    from attnscope.capture import models

    def refuse(name):
        pytest.fail(f"the weights of {name} were loaded before the flags were checked")

    monkeypatch.setattr(models, "load_cached", refuse)


# --------------------------------------------------------------------------- terminal output
def test_for_terminal_escapes_controls_and_keeps_every_script():
    assert for_terminal("a\x1b[2Jb\x9b\u202e\udcff\ud800\n\t") == "a\\x1b[2Jb\\x9b\\u202e\\xff\\ud800\\n\\t"
    assert for_terminal("é 中文 עברית ▁Ġ [bold]") == "é 中文 עברית ▁Ġ [bold]"
    value = {"a": HOSTILE + "\ud800", "b": ["\n"]}
    text = json_for_terminal(value, indent=2)
    assert json.loads(text) == value and not any(c in text for c in RAW + ("\ud800",))


def test_info_shows_escape_sequences_from_the_trace_as_text(tmp_path):
    path = hostile_trace(tmp_path, "[bold red]x.safetensors")
    done = invoke("info", str(path), env={"COLUMNS": "250"})
    assert done.exit_code == 0, done.output
    assert not any(c in done.stdout for c in RAW), repr(done.stdout)
    text = "".join(done.stdout.split())
    assert "\\x1b[2J\\x1b[31mred\\x9b32m\\x1b]8;;https://evil.example\\x07" in text and "\\u202eabc\\x00" in text
    assert "[boldred]x.safetensors" in text and "[bold]cls" in text  # file name and token shown, not markup
    facts = json.loads((done := invoke("info", str(path), "--json")).stdout)
    assert not any(c in done.stdout for c in RAW)
    assert facts["model"] == HOSTILE and facts["tokens"]["input"][1] == HOSTILE  # the same data for programs


def test_a_file_name_that_is_broken_markup_is_shown_as_it_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a[").mkdir()
    hostile_trace(tmp_path, "a[/]b.safetensors")  # folder "a[", file "]b.safetensors"
    for command in ("info", "stats"):
        done = invoke(command, "a[/]b.safetensors", env={"COLUMNS": "250"})
        assert done.exit_code == 0, done.output
        assert "a[/]b.safetensors" in done.stdout
    stats = invoke("stats", "a[/]b.safetensors", "--json")
    assert json.loads(stats.stdout)["file"] == "a[/]b.safetensors"


def test_errors_and_written_paths_escape_control_characters(tmp_path):
    missing = tmp_path / "\x1b]8;;https:evil.example\x07.safetensors"
    done = invoke("render", str(missing))
    assert done.exit_code == 2 and not any(c in done.stderr for c in RAW), repr(done.stderr)
    assert "\\x1b]8;;https:evil.example\\x07" in one_error(done.stderr, "no trace file")
    debug = invoke("render", str(missing), "--debug")
    assert "Traceback" in debug.stderr and not any(c in debug.stderr for c in RAW)
    out = tmp_path / "v\x1b[2J.html"
    done = invoke("render", str(hostile_trace(tmp_path)), "-o", str(out), "-q")
    assert done.exit_code == 0 and out.exists(), done.output
    assert done.stdout.strip() == for_terminal(out) and "\x1b" not in done.stdout


# --------------------------------------------------------------------------- text that is not UTF-8
def test_an_argument_that_is_not_utf8_is_refused_before_the_model_loads():
    done = subprocess.run([os.fsencode(ENTRY), b"show", b"\xff\xfe"], capture_output=True, timeout=120, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    one_error(stderr, "the text is not valid UTF-8: byte 0xff at character 0")
    assert "Loading model" not in stderr


def test_stdin_that_is_not_utf8_is_refused(no_model_load):
    done = invoke("show", "-", input=b"caf\xe9 au lait")
    assert done.exit_code == 2, done.output
    one_error(done.stderr, "the text read from stdin is not valid UTF-8: byte 0xe9 at byte 3")


def test_capture_refuses_a_lone_surrogate_naming_where_it_is(minilm):
    model, tok = minilm
    with pytest.raises(InputError, match=r"text holds a lone surrogate U\+D800 at character 1"):
        attnscope.capture(model, tok, "a\ud800b")
    with pytest.raises(InputError, match=r"pair is not valid UTF-8: byte 0xff at character 3"):
        attnscope.capture(model, tok, "fine", pair="bad\udcff")


# --------------------------------------------------------------------------- flags checked before the weights load
@pytest.mark.parametrize(("args", "message"), [
    (["show", "hi", "--layer", "999"], "--layer 999 is out of range: minilm has 6 layers (0-5)"),
    (["show", "hi", "--view", "matrix", "--head", "12"], "--head 12 is out of range: minilm has 12 heads (0-11)"),
    (["show", "hi", "--view", "model", "--layers", "0-999999"],
     "--layers 0-999999 goes up to layer 999999, but minilm has 6 layers (0-5)"),
    (["show", "hi", "--heads", "3,12-13"], "--heads 3,12-13 goes up to head 13, but minilm has 12 heads (0-11)"),
    (["show", "hi", "--generate", "3"], "--generate 3: minilm (BertModel) cannot generate text"),
    (["capture", "minilm", "hi", "--generate", "3", "-o", "t.safetensors"], "minilm (BertModel) cannot generate"),
    (["show", "hi", "--kind", "cross"], "--kind 'cross': minilm has self attention"),
    (["show", "hi", "--target", "x"], "--target is the decoder text of an encoder-decoder model"),
    (["compare", "a", "b", "--head", "40"], "--head 40 is out of range: minilm has 12 heads (0-11)"),
    (["show", "hi", "--view", "model", "--layers", "5-1"], "the range 5-1 runs backwards; write it as 1-5"),
    (["show", "hi", "--layers", "0-" + "9" * 5000, "--view", "model"],
     "--layers takes whole numbers (up to 6 digits) and ranges"),
    (["show", "hi", "--layer", "-7"], "--layer -7 is out of range: minilm has 6 layers (0-5)"),
    (["show", "hi", "--filter", "A->B"], "--filter 'A->B' names no segments of this capture: choose one of ['All']; "
     "the segments A and B come from a sentence pair: add --pair TEXT"),
    (["show", "hi", "--pair", "there", "--filter", "A->C"], "choose one of ['All', 'A->A', 'A->B', 'B->A', 'B->B']"),
])
def test_flags_the_model_cannot_honour_are_refused_before_its_weights_load(args, message, no_model_load, tmp_path,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = invoke(*args)
    assert done.exit_code == 2, done.output
    one_error(done.stderr, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ALL)
def test_config_counts_admit_every_layer_and_head_a_capture_has(name):
    model, tok = build(name)
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    trace = attnscope.capture(model, tok, "a b c", **({"target": "d e"} if seq2seq else {}))
    layers = max(trace.shape(k)[0] for k in trace.kinds)
    heads = max(trace.shape(k)[1] for k in trace.kinds)
    for kind in trace.kinds:
        _fit_model(model.config, name, kind=kind, layer=layers - 1, head=heads - 1)
    with pytest.raises(InputError, match=f"--layer {layers} is out of range: {name} has {layers} layers"):
        _fit_model(model.config, name, layer=layers)
    with pytest.raises(InputError, match=f"--head {heads} is out of range: {name} has {heads} heads"):
        _fit_model(model.config, name, head=heads)
    other = "self" if seq2seq else "cross"
    with pytest.raises(InputError, match=f"--kind '{other}'"):
        _fit_model(model.config, name, kind=other)


def test_generation_and_target_follow_the_model_class(tmp_path):
    from attnscope.capture.models import load_config

    for name in ("gpt2", "t5"):
        model, tok = build(name)
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    _fit_model(load_config(str(tmp_path / "gpt2")), "gpt2", generate=3)
    _fit_model(load_config(str(tmp_path / "t5")), "t5", generate=3, target="x")
    with pytest.raises(InputError, match="--target is the decoder text"):
        _fit_model(load_config(str(tmp_path / "gpt2")), "gpt2", target="x")


def test_render_refuses_a_huge_range_against_the_trace(tmp_path):
    path = hostile_trace(tmp_path)
    done = invoke("render", str(path), "--view", "model", "--layers", "0-999999", "-o", str(tmp_path / "m.html"))
    assert done.exit_code == 2, done.output
    one_error(done.stderr, "--layers 0-999999 goes up to layer 999999, but the trace has 2 layers (0-1)")
    done = invoke("render", str(path), "--view", "model", "--layers", "1", "--heads", "0,2", "-o",
                  str(tmp_path / "m.html"))
    assert done.exit_code == 0, done.output


# --------------------------------------------------------------------------- output paths
@pytest.mark.parametrize("command", [["show", "hi"], ["capture", "minilm", "hi"], ["compare", "a", "b"]])
def test_an_output_in_a_missing_folder_is_the_users_path_checked_first(command, no_model_load, tmp_path):
    name = "t.safetensors" if command[0] == "capture" else "x.html"
    out = tmp_path / "nonexistent" / name
    done = invoke(*command, "-o", str(out))
    assert done.exit_code == 2, done.output
    one_error(done.stderr, f"cannot write '{out}': the folder '{out.parent}' does not exist")


def test_an_output_that_is_a_folder_is_refused(no_model_load, tmp_path):
    (tmp_path / "views.html").mkdir()
    done = invoke("show", "hi", "-o", str(tmp_path / "views.html"))
    assert done.exit_code == 2
    one_error(done.stderr, "is a folder; give a file name in it")


def test_a_full_disk_while_rendering_leaves_the_old_file_and_says_so(tmp_path, monkeypatch):
    path = hostile_trace(tmp_path)
    out = tmp_path / "x.html"
    out.write_text("the old view")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_files.os, "fsync", full)
    done = invoke("render", str(path), "-o", str(out))
    assert done.exit_code == 1
    one_error(done.stderr, "No space left on device")
    assert out.read_text() == "the old view" and sorted(p.name for p in tmp_path.iterdir()) == [path.name, "x.html"]


# --------------------------------------------------------------------------- serve and compare-runs
def test_serve_on_a_port_in_use_fails_before_saying_it_serves():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = invoke("serve", "--port", str(port))
    assert done.exit_code == 2, done.output
    one_error(done.stderr, f"port {port} on 127.0.0.1 is already in use")
    assert "serving on" not in done.output


def test_compare_runs_of_unknown_runs_creates_no_mlflow_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    done = invoke("compare-runs", "x", "y")
    assert done.exit_code == 2, done.output
    one_error(done.stderr, "no MLflow run 'x': the tracking store")
    assert list(tmp_path.iterdir()) == []
    uri = f"sqlite:///{tmp_path / 'typo' / 'mlflow.db'}"
    done = invoke("compare-runs", "x", "y", "--tracking-uri", uri)
    assert done.exit_code == 2 and list(tmp_path.iterdir()) == []
