"""attnscope stats / compare / compare-runs, through the installed entry point (subprocess) and typer's runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import attnscope
from attnscope.analysis import compare, head_metrics
from attnscope.cli import app
from conftest import random_attention
from tiny_models import build

ENTRY = Path(sys.executable).parent / "attnscope"
runner = CliRunner()
SHE = "The doctor asked the nurse a question. She"
HE = "The doctor asked the nurse a question. He"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real installed command, as a user types it (80 columns, as in a plain terminal)."""
    return subprocess.run([str(ENTRY), *args], capture_output=True, text=True, timeout=300, check=False, cwd=cwd,
                          env={**os.environ, "COLUMNS": "80"})


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "100"})


def assert_one_line_error(stderr: str, message: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert lines[-1].startswith("hint: ") and "Traceback" not in stderr, stderr


def pronoun_traces(layers=2, heads=3):
    a_words = ["[CLS]", "the", "doctor", "asked", "the", "nurse", ".", "she", "[SEP]"]
    b_words = [*a_words[:7], "he", "[SEP]"]
    return (attnscope.Trace.from_arrays(random_attention(layers, heads, 9, seed=1), a_words),
            attnscope.Trace.from_arrays(random_attention(layers, heads, 9, seed=2), b_words))


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory, minilm):
    model, tok = minilm
    return attnscope.capture(model, tok, "The cat sat on the mat.").save(tmp_path_factory.mktemp("s") / "t.safetensors")


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    """A tiny causal LM saved as a model folder, so `--model FOLDER` loads it like any local model."""
    model, tok = build("gpt2")
    folder = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- stats
def test_stats_prints_every_head_with_its_label_in_80_columns(trace_file):
    done = run("stats", str(trace_file))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in done.stdout  # nothing cut off
    header = next(line for line in lines if "label" in line).split()
    assert header == ["layer", "head", "label", "entr", "dist", "self", "prev", "next", "local", "sink", "max"]
    records = head_metrics(attnscope.load(trace_file))
    rows = [line.split() for line in lines if line.split()[:1] and line.split()[0].isdigit()]
    assert len(rows) == 72
    first = records[0]
    assert rows[0][:3] == ["0", "0", first["label"]] and rows[0][3] == f"{first['entropy']:.2f}"
    counts = {label: sum(r["label"] == label for r in records) for label in {r["label"] for r in records}}
    caption = next(line for line in lines if line.startswith("labels: "))
    for label, n in counts.items():
        assert f"{label} {n}" in caption


def test_stats_sorts_by_a_metric_and_prints_json_with_nulls_for_undefined_metrics(tmp_path):
    trace = attnscope.Trace.from_arrays(
        {"encoder": random_attention(2, 2, 5), "decoder": random_attention(2, 2, 3, causal=True),
         "cross": random_attention(2, 2, 3, 5)}, {"encoder": list("abcde"), "decoder": list("xyz")})
    path = trace.save(tmp_path / "ed.safetensors")
    done = invoke("stats", str(path), "--kind", "cross", "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["kind"] == "cross" and len(data["heads"]) == 4
    assert data["heads"][0]["distance"] is None and data["heads"][0]["entropy"] is not None
    done = invoke("stats", str(path), "--kind", "encoder", "--sort", "sink", "--json")
    sinks = [h["sink"] for h in json.loads(done.stdout)["heads"]]
    assert sinks == sorted(sinks, reverse=True)
    table = invoke("stats", str(path), "--kind", "encoder", "--sort", "sink")
    assert "encoder attention" in table.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["stats", "missing.safetensors"], "no trace file at 'missing.safetensors'"),
    (["stats", "TRACE", "--sort", "bogus"], "--sort takes one of entropy, distance, self"),
    (["stats", "TRACE", "--kind", "cross"], "has no 'cross' attention"),
])
def test_stats_bad_input_is_one_line_and_exit_2(args, message, trace_file):
    done = invoke(*[str(trace_file) if a == "TRACE" else a for a in args])
    assert done.exit_code == 2
    assert_one_line_error(done.stderr, message)


# --------------------------------------------------------------------------- compare
def test_compare_with_the_default_model_writes_the_diff_view_and_ranks_heads(tmp_path, minilm):
    done = run("compare", SHE, HE, "--top-k", "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "attnscope-diff.html"
    assert done.stdout.splitlines()[-1] == "attnscope-diff.html" and out.exists()
    assert "Loaded minilm" in done.stderr and "Captured 11 and 11 tokens" in done.stderr
    html = out.read_text(encoding="utf-8")
    assert 'data-view="diff"' in html and '"she","[SEP]"' in html
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("│")][:4]
    assert [r[1] for r in rows] == ["1", "2", "3", "4"]
    model, tok = minilm
    expected = compare(attnscope.capture(model, tok, SHE), attnscope.capture(model, tok, HE)).top(4)
    assert [(int(r[3]), int(r[5]), r[7]) for r in rows] == [
        (e["layer"], e["head"], f"{e['divergence']:.3f}") for e in expected]
    assert "she → he" in done.stdout and "heads changed by more than 0.1 bits" in done.stdout
    assert "Next-token" not in done.stdout  # an encoder predicts no next token


def test_compare_a_causal_model_prints_next_tokens_and_writes_a_figure(gpt2_folder, tmp_path):
    out = tmp_path / "diff.png"
    done = invoke("compare", "the doctor asked the nurse . she", "the doctor asked the nurse . he", "-m",
                  str(gpt2_folder), "-o", str(out), "--next-k", "3", "--top-k", "2", "--size", "9x6", "--dpi", "50")
    assert done.exit_code == 0, done.output
    assert "Next-token predictions" in done.stdout
    table = [line for line in done.stdout.splitlines() if line.startswith("│")]
    assert len(table) == 2 + 3
    with Image.open(out) as im:
        assert im.size == (450, 300) and np.asarray(im.convert("L")).std() > 10
    assert done.stdout.strip().splitlines()[-1] == str(out)


@pytest.mark.parametrize(("args", "message"), [
    (["compare", " ", "text"], "the first text is empty"),
    (["compare", "a b", "a c", "-o", "diff.txt"], "cannot write 'diff.txt'"),
    (["compare", "a b", "a c", "--dpi", "80"], "--dpi and --size apply to figures"),
    (["compare", "a b", "a c", "--theme", "blue"], "theme must be one of ['auto', 'light', 'dark']; got 'blue'"),
    (["compare", "a b", "a c", "--top-k", "0"], "Invalid value for '--top-k'"),
    (["compare", "a b", "a c", "--layer", "9"], "--layer 9 is out of range: minilm has 6 layers (0-5)"),
    (["compare", "a b", "a c", "--kind", "cross"], "--kind 'cross': minilm has self attention"),
])
def test_compare_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    done = invoke(*args)
    assert done.exit_code == 2, done.output
    assert_one_line_error(done.stderr, message)
    assert not (tmp_path / "attnscope-diff.html").exists()


# --------------------------------------------------------------------------- compare-runs
def test_compare_runs_of_two_trace_files(tmp_path):
    a, b = pronoun_traces()
    pa, pb = a.save(tmp_path / "a.safetensors"), b.save(tmp_path / "b.safetensors")
    out = tmp_path / "runs.html"
    done = invoke("compare-runs", str(pa), str(pb), "-o", str(out), "--top-k", "3", "--layer", "1", "--head", "0")
    assert done.exit_code == 0, done.output
    payload = json.loads(out.read_text(encoding="utf-8").split('type="application/json"')[1].split(">", 1)[1]
                         .split("</script>")[0])
    assert payload["options"] == {"layer": 1, "head": 0} and len(payload["payload"]["ranked"]) == 3
    comparison = compare(a, b)
    labels = comparison.query_alignment.labels()
    rows = [line.split("│") for line in done.stdout.splitlines() if line.startswith("│")]
    assert [r[5].strip() for r in rows] == [  # the query token whose row changed most in each head
        labels[comparison.rows[int(comparison.row_divergence[la, h].argmax())]] for la, h, _ in comparison.ranked[:3]]


def test_compare_runs_reads_traces_logged_to_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient

    from attnscope.track import mlflow as track

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("cli", artifact_location=(tmp_path / "art").as_uri())
    a, b = pronoun_traces()
    runs = []
    for trace in (a, b):
        run_id = client.create_run(experiment).info.run_id
        track.log(trace, run_id, name="probe", views=(), figures=False, metrics=False, tracking_uri=uri, step=3)
        runs.append(run_id)
    out = tmp_path / "runs.svg"
    done = invoke("compare-runs", *runs, "--tracking-uri", uri, "--name", "probe", "--step", "3", "-o", str(out))
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[-1] == str(out) and "she → he" in out.read_text(encoding="utf-8")
    top = compare(a, b).ranked[0]
    assert f"│    1 │     {top[0]} │    {top[1]} │   {top[2]:.3f} │" in done.stdout
    missing = invoke("compare-runs", runs[0], "nope", "--tracking-uri", uri)
    assert missing.exit_code == 2
    assert_one_line_error(missing.stderr, "no MLflow run 'nope'")


def test_compare_runs_refuses_traces_of_different_models(tmp_path):
    a, _ = pronoun_traces(2, 3)
    _, b = pronoun_traces(2, 4)
    done = invoke("compare-runs", str(a.save(tmp_path / "a.safetensors")), str(b.save(tmp_path / "b.safetensors")))
    assert done.exit_code == 2
    assert_one_line_error(done.stderr, "cannot compare 2 layers x 3 heads with 2 layers x 4 heads")
    done = invoke("compare-runs", str(tmp_path / "a.safetensors"), str(tmp_path / "gone.safetensors"))
    assert done.exit_code == 2
    assert_one_line_error(done.stderr, "no trace file at")
