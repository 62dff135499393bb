"""MLflow logging into a temporary local store (SQLite + artifact folder), read back with MlflowClient."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from attnscope.analysis import head_metrics
from attnscope.errors import InputError, MissingDataError, MissingExtraError
from attnscope.track import compare_runs, load_run_trace
from attnscope.track import mlflow as track


class Store:
    """One SQLite tracking store for this module (creating its tables takes seconds), runs made on demand."""

    def __init__(self, root: Path):
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.client = MlflowClient(self.uri)
        self.experiment = self.client.create_experiment("attnscope-tests", artifact_location=(root / "art").as_uri())

    def run(self) -> str:
        return self.client.create_run(self.experiment).info.run_id

    def files(self, run_id: str, path: str = "attnscope") -> set[str]:
        out = set()
        for info in self.client.list_artifacts(run_id, path):
            out |= self.files(run_id, info.path) if info.is_dir else {info.path}
        return out


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return Store(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def fluent(store, monkeypatch, tmp_path):
    """MLflow's fluent API (mlflow.start_run) on the test store. When comet_ml was imported before mlflow (the
    transformers Trainer imports it), Comet mirrors every fluent run into an offline experiment: keep it in tmp."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", store.experiment)
    monkeypatch.setenv("COMET_OFFLINE_DIRECTORY", str(tmp_path / "comet-mirror"))
    return store


def test_run_holds_artifacts_metrics_and_params(store, minilm_trace, tmp_path):
    run_id = store.run()
    logged = track.log(minilm_trace, run_id, name="probe", step=7, tracking_uri=store.uri)
    folder = "attnscope/probe/step-00000007"
    names = ("trace.safetensors", "model.html", "head.html", "model.png", "head.png", "heads.csv")
    assert store.files(run_id) == {f"{folder}/{n}" for n in names} == set(logged.files)

    local = Path(store.client.download_artifacts(run_id, folder, dst_path=str(tmp_path)))
    assert (local / "model.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "<script" in (local / "head.html").read_text()
    records = head_metrics(minilm_trace)
    with open(local / "heads.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(records) == 72 and float(table[5]["entropy"]) == pytest.approx(records[5]["entropy"])

    run = store.client.get_run(run_id)
    assert set(run.data.metrics) == set(logged.metrics) and len(run.data.metrics) < 100
    history = store.client.get_metric_history(run_id, "attn/probe/L2/previous")
    assert [m.step for m in history] == [7]
    assert history[0].value == pytest.approx(np.mean([r["previous"] for r in records if r["layer"] == 2]), rel=1e-5)
    assert run.data.params["attnscope/model"] == "minilm"
    assert run.data.params["attnscope/architecture"] == "BertModel"
    assert run.data.params["attnscope/probe/text"] == "The cat sat on the mat."
    assert run.data.params["attnscope/probe/tokens"] == f"input:{len(minilm_trace.tokens['input'])}"


def test_trace_reloads_equal(store, minilm_trace):
    run_id = store.run()
    track.log(minilm_trace, run_id, views=(), figures=False, metrics=False, tracking_uri=store.uri)
    back = track.load_trace(run_id, tracking_uri=store.uri)
    assert np.array_equal(back.dense(), minilm_trace.dense())
    assert back.tokens == minilm_trace.tokens and back.token_ids == minilm_trace.token_ids
    assert back.segments == minilm_trace.segments and back.meta == minilm_trace.meta
    assert np.array_equal(back.qkv["self"]["query"], minilm_trace.qkv["self"]["query"])


def test_logs_into_the_active_run_and_steps_stay_apart(fluent, make_trace):
    store = fluent
    first, later = make_trace(seed=1), make_trace(seed=2)
    with mlflow.start_run() as run:
        track.log(first, name="probe0", views=("head",), figures=False, step=0)
        track.log(later, name="probe0", views=("head",), figures=False, step=10)
    run_id = run.info.run_id
    assert store.files(run_id) >= {"attnscope/probe0/step-00000000/head.html", "attnscope/probe0/step-00000010/head.html"}
    assert [m.step for m in store.client.get_metric_history(run_id, "attn/probe0/entropy")] == [0, 10]
    assert np.array_equal(track.load_trace(run_id).dense(), later.dense())
    assert np.array_equal(track.load_trace(run_id, "probe0", step=0).dense(), first.dense())


def test_without_a_run_one_is_started_and_left_active(fluent, make_trace):
    store = fluent
    assert mlflow.active_run() is None
    try:
        logged = track.log(make_trace(), views=(), figures=False)
        assert mlflow.active_run().info.run_id == logged.run
    finally:
        mlflow.end_run()
    assert store.files(logged.run) == {"attnscope/trace/trace.safetensors", "attnscope/trace/heads.csv"}


def test_a_changed_parameter_is_kept_with_a_warning(store, make_trace, caplog):
    run_id = store.run()
    a = make_trace().with_meta(text="first text")
    track.log(a, run_id, views=(), figures=False, step=0, tracking_uri=store.uri)
    with caplog.at_level(logging.WARNING, logger="attnscope.track.mlflow"):
        track.log(a.with_meta(text="second text"), run_id, views=(), figures=False, step=1, tracking_uri=store.uri)
    assert store.client.get_run(run_id).data.params["attnscope/text"] == "first text"
    assert "already has parameter attnscope/text='first text'" in caplog.text


def test_compare_runs_loads_both_traces(store, make_trace, tmp_path):
    a, b = make_trace(seed=1), make_trace(seed=2)
    run_a, run_b = store.run(), store.run()
    track.log(a, run_a, name="probe", views=(), figures=False, tracking_uri=store.uri)
    track.log(b, run_b, name="probe", views=(), figures=False, tracking_uri=store.uri)
    got_a, got_b = compare_runs(run_a, run_b, tracking_uri=store.uri)
    assert np.array_equal(got_a.dense(), a.dense()) and np.array_equal(got_b.dense(), b.dense())
    b.save(tmp_path / "b.safetensors")
    _, from_file = compare_runs(run_a, tmp_path / "b.safetensors", name="probe", tracking_uri=store.uri)
    assert np.array_equal(from_file.dense(), b.dense())


def test_missing_runs_and_traces_say_what_to_pass(store, make_trace):
    with pytest.raises(MissingDataError, match=r"no MLflow run 'nope' in the tracking store .*tracking_uri="):
        track.load_trace("nope", tracking_uri=store.uri)
    empty = store.run()
    with pytest.raises(MissingDataError, match="holds no attnscope trace"):
        load_run_trace(empty, tracking_uri=store.uri)
    with pytest.raises(InputError, match="tracking_uri picks the store of run_id"):
        track.log(make_trace(), tracking_uri=store.uri)
    with pytest.raises(InputError, match="run_id must be an MLflow run id"):
        track.log(make_trace(), run_id="", tracking_uri=store.uri)


def test_missing_mlflow_names_the_extra(monkeypatch, make_trace):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` sees when it is not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'attnscope\[mlflow\]'"):
        track.log(make_trace(), "some-run")
