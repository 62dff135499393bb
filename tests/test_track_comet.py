"""Comet logging, checked on the archive a real OfflineExperiment writes (no network, no API key)."""

from __future__ import annotations

import csv
import io
import json
import sys
import zipfile
from pathlib import Path

import comet_ml
import numpy as np
import pytest

import attnscope
from attnscope.analysis import head_metrics
from attnscope.errors import AttnscopeError, InputError, MissingDataError, MissingExtraError, TraceFormatError
from attnscope.track import comet

QUIET = dict(
    display_summary_level=0, log_code=False, log_graph=False, auto_param_logging=False, auto_metric_logging=False,
    auto_output_logging=False, log_env_details=False, log_git_metadata=False, log_git_patch=False,
    log_env_gpu=False, log_env_host=False, log_env_cpu=False, log_env_network=False, log_env_disk=False,
)


@pytest.fixture
def offline(tmp_path):
    """Start an OfflineExperiment; ``.archive(exp)`` ends it and returns the zip it wrote."""

    class Offline:
        def start(self) -> comet_ml.OfflineExperiment:
            return comet_ml.OfflineExperiment(offline_directory=str(tmp_path / "comet"), **QUIET)

        def archive(self, exp) -> Path:
            exp.end()
            return tmp_path / "comet" / f"{exp.get_key()}.zip"

    return Offline()


def read_archive(path: Path) -> tuple[zipfile.ZipFile, list[dict]]:
    zf = zipfile.ZipFile(path)
    return zf, [json.loads(line) for line in zf.read("messages.json").decode().splitlines()]


def uploads(messages, upload_type: str) -> dict[str, str]:
    """Logged name -> archive member, for file uploads of one type ("asset" or "visualization" for images)."""
    out = {}
    for m in messages:
        p = m["payload"]
        if m["type"] == "file_upload" and p.get("upload_type") == upload_type:
            extra = p["additional_params"]
            out[extra.get("fileName") or extra.get("figName")] = p["file_path"]
    return out


def test_offline_archive_holds_trace_views_figures_metrics_and_params(offline, minilm_trace):
    exp = offline.start()
    logged = comet.log(exp, minilm_trace, step=5, name="probe")
    zf, messages = read_archive(offline.archive(exp))
    folder = "attnscope/probe/step-00000005"

    assets = uploads(messages, "asset")
    assert {f"{folder}/{f}" for f in ("trace.safetensors", "model.html", "head.html", "heads.csv")} <= set(assets)
    for view in ("model", "head"):
        page = zf.read(assets[f"{folder}/{view}.html"]).decode()
        assert page.lstrip().lower().startswith("<!doctype html") and "<script" in page
    images = uploads(messages, "visualization")
    assert set(images) == {f"{folder}/model", f"{folder}/head"}
    for member in images.values():
        assert zf.read(member).startswith(b"\x89PNG\r\n\x1a\n")

    tabs = [m["payload"]["html"] for m in messages if m["type"] == "html"]
    assert len(tabs) == 1 and "probe · step 5" in tabs[0] and tabs[0].count("<script") >= 2

    records = head_metrics(minilm_trace)
    table = list(csv.DictReader(io.StringIO(zf.read(assets[f"{folder}/heads.csv"]).decode())))
    assert len(table) == 6 * 12 and {"kind", "layer", "head", "entropy", "label"} <= set(table[0])

    metrics = {m["payload"]["metric"]["metricName"]: m["payload"]["metric"] for m in messages
               if m["type"] == "metric_msg" and m["payload"]["metric"]["metricName"].startswith("attn/")}
    assert set(metrics) == set(logged.metrics)
    layer3 = np.mean([r["entropy"] for r in records if r["layer"] == 3])
    assert metrics["attn/probe/L3/entropy"]["metricValue"] == pytest.approx(layer3, rel=1e-5)
    assert metrics["attn/probe/L3/entropy"]["step"] == 5
    labels = [r["label"] for r in records]
    assert metrics[f"attn/probe/heads/{labels[0].replace('/', '_')}"]["metricValue"] == labels.count(labels[0])
    assert len(metrics) < 100  # per-layer summaries, not one series per head

    params = {m["payload"]["param"]["paramName"]: m["payload"]["param"]["paramValue"] for m in messages
              if m["type"] == "parameter_msg" and m["payload"]["param"]["source"] == "manual"}
    assert params["attnscope/model"] == "minilm"
    assert params["attnscope/layers"] == "6" and params["attnscope/heads"] == "12"
    assert params["attnscope/probe/text"] == "The cat sat on the mat."
    assert params["attnscope/probe/pair"] == "It was very happy."


def test_trace_reloads_equal_from_the_archive(offline, minilm_trace):
    exp = offline.start()
    comet.log(exp, minilm_trace, views=(), figures=False, metrics=False)
    back = comet.load_trace(offline.archive(exp))
    assert np.array_equal(back.dense(), minilm_trace.dense())
    assert back.tokens == minilm_trace.tokens and back.token_ids == minilm_trace.token_ids
    assert back.segments == minilm_trace.segments
    assert np.array_equal(back.qkv["self"]["key"], minilm_trace.qkv["self"]["key"])


def test_reload_picks_name_and_step(offline, make_trace):
    a1, a2, b = make_trace(seed=1), make_trace(seed=2), make_trace(layers=3, seed=3)
    exp = offline.start()
    comet.log(exp, a1, views=(), figures=False, step=1, name="a")
    comet.log(exp, a2, views=(), figures=False, step=2, name="a")
    comet.log(exp, b, views=(), figures=False, step=1, name="b")
    archive = offline.archive(exp)
    assert np.array_equal(comet.load_trace(archive, "a").dense(), a2.dense())  # latest step by default
    assert np.array_equal(comet.load_trace(archive, "a", step=1).dense(), a1.dense())
    assert comet.load_trace(archive, "b").shape() == (3, 3, 6, 6)
    with pytest.raises(InputError, match=r"several names \['a', 'b'\]; pass name="):
        comet.load_trace(archive)
    with pytest.raises(MissingDataError, match=r"no trace named 'c'; it has \['a', 'b'\]"):
        comet.load_trace(archive, "c")
    with pytest.raises(MissingDataError, match=r"no trace 'a' at step 7; it was logged at steps \[1, 2\]"):
        comet.load_trace(archive, "a", step=7)


def test_bad_archives_and_names_say_what_to_pass(tmp_path, offline, make_trace):
    with pytest.raises(InputError, match="no Comet offline archive"):
        comet.load_trace(tmp_path / "missing.zip")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(TraceFormatError, match="not a zip archive"):
        comet.load_trace(tmp_path / "junk.zip")
    exp = offline.start()
    with pytest.raises(InputError, match="name must be a short word"):
        comet.log(exp, make_trace(), name="a/b")
    with pytest.raises(InputError, match="step must be a whole number"):
        comet.log(exp, make_trace(), step=-1)
    with pytest.raises(InputError, match="expected an attnscope Trace"):
        comet.log(exp, np.zeros((1, 1, 2, 2)))
    with pytest.raises(InputError, match="expected a comet_ml Experiment"):
        comet.log(object(), make_trace())
    with pytest.raises(MissingDataError, match="holds no assets"):
        comet.load_trace(offline.archive(exp))


def test_online_experiment_that_cannot_connect_is_a_clear_error(monkeypatch, make_trace):
    # A closed port on this machine: Comet gives up at once and marks the experiment not alive.
    monkeypatch.setenv("COMET_URL_OVERRIDE", "http://127.0.0.1:9/clientlib/")
    monkeypatch.setenv("COMET_HTTP_SESSION_RETRY_TOTAL", "0")
    monkeypatch.setenv("COMET_GET_OR_ADD_EXPERIMENT_RETRY_TOTAL", "0")
    exp = comet_ml.Experiment(api_key="not-a-real-key", project_name="attnscope-test", **QUIET)
    try:
        with pytest.raises(InputError, match=r"not running.*COMET_API_KEY.*OfflineExperiment"):
            comet.log(exp, make_trace())
    finally:
        exp.end()


def test_missing_comet_ml_names_the_extra(monkeypatch, make_trace):
    monkeypatch.setitem(sys.modules, "comet_ml", None)  # what `import comet_ml` sees when it is not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'attnscope\[comet\]'"):
        comet.log(object(), make_trace())


def test_an_asset_comet_refuses_is_an_error_not_a_silent_gap(offline, make_trace):
    exp = offline.start()
    exp.asset_upload_limit = 1000  # Comet's own size check, lowered below the size of a small trace file
    with pytest.raises(AttnscopeError, match=r"Comet did not take attnscope/trace/trace.safetensors .*trace.prune"):
        comet.log(exp, make_trace(n=20), views=(), figures=False)
    exp.end()


def test_encoder_decoder_metrics_are_named_per_kind_and_all_kinds_reload(offline):
    from conftest import random_attention

    att = {"encoder": random_attention(2, 2, 5, seed=1), "decoder": random_attention(2, 2, 3, causal=True, seed=2),
           "cross": random_attention(2, 2, 3, 5, seed=3)}
    trace = attnscope.Trace.from_arrays(att, {"encoder": list("abcde"), "decoder": list("xyz")})
    exp = offline.start()
    logged = comet.log(exp, trace, views=("model",), figures=False, html_tab=False, name="t5")
    assert {"attn/t5/encoder/L1/entropy", "attn/t5/decoder/entropy", "attn/t5/cross/heads/broad"} <= set(logged.metrics)
    assert not any(k.startswith("attn/t5/L") for k in logged.metrics)
    back = comet.load_trace(offline.archive(exp))
    assert back.kinds == ["encoder", "decoder", "cross"] and back.tokens == trace.tokens
    for kind in back.kinds:
        assert np.array_equal(back.dense(kind), trace.dense(kind))
