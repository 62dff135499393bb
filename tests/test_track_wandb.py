"""W&B logging, checked on what a real offline run writes (no server, no API key): the run folder's media files
and its transaction log (``run-<id>.wandb``, read record by record with W&B's own protobuf classes)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import wandb
from wandb.proto import wandb_internal_pb2

from attnscope.analysis import head_metrics
from attnscope.errors import InputError, MissingDataError, MissingExtraError
from attnscope.track import wandb as track


@pytest.fixture(scope="module", autouse=True)
def service():
    """Stop the wandb-core process W&B starts on the first run once this module is done, not at interpreter exit."""
    yield
    wandb.teardown()


@pytest.fixture
def start(tmp_path, monkeypatch):
    """``start()`` begins an offline run whose folders all lie in tmp_path; every run is finished afterwards."""
    for var, sub in (("WANDB_DIR", ""), ("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_CONFIG_DIR", "config")):
        (tmp_path / sub).mkdir(exist_ok=True)
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = []

    def start():
        run = wandb.init(project="attnscope-tests", dir=str(tmp_path), settings=wandb.Settings(
            console="off", silent=True, x_disable_stats=True, x_disable_machine_info=True, disable_git=True,
            save_code=False))
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.finish()


def records(run) -> list[wandb_internal_pb2.Record]:
    """Every record of a finished run's transaction log, once W&B's service has written its last (``exit``) record:
    ``run.finish()`` of an offline run can return before that."""
    deadline = time.monotonic() + 30
    while True:
        out = _read_log(Path(run.settings.sync_file).read_bytes())
        if (out and out[-1].WhichOneof("record_type") == "exit") or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def _read_log(data: bytes) -> list[wandb_internal_pb2.Record]:
    """The records of a transaction log (LevelDB log format: 32 KiB blocks of CRC-checked chunks, after a 7-byte
    ':W&B' header); a record still being written is left out."""
    assert data[:4] == b":W&B"
    out, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # block trailer
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0 or len(chunk) < length:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk  # full/first start a record, middle/last extend it
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def history(recs) -> list[dict]:
    """Logged rows: key -> value (nested keys joined with '.')."""
    return [{item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            for r in recs if r.WhichOneof("record_type") == "history"]


def config(recs) -> dict:
    return {u.key or ".".join(u.nested_key): json.loads(u.value_json)
            for r in recs if r.WhichOneof("record_type") == "config" for u in r.config.update}


def trace_artifacts(recs) -> list:
    return [r.artifact for r in recs if r.WhichOneof("record_type") == "artifact" and r.artifact.type == track.ARTIFACT_TYPE]


def test_offline_run_holds_trace_artifact_views_figures_table_metrics_and_config(start, make_trace):
    trace = make_trace(layers=4, heads=3, causal=True).with_meta(model="tiny-gpt2", text="The cat sat on the mat.")
    run = start()
    logged = track.log(trace, step=5, name="probe")
    run.finish()
    recs = records(run)
    folder = "attnscope/probe/step-00000005"

    (artifact,) = trace_artifacts(recs)
    assert artifact.name == "attnscope-probe" and set(artifact.aliases) == {"latest", "step-5"}
    (entry,) = artifact.manifest.contents
    assert entry.path == f"{folder}/trace.safetensors"
    assert Path(entry.local_path) == Path(run.settings.sync_dir) / entry.path  # referenced in place, not copied
    back = track.load_trace(run.settings.sync_dir)
    assert np.array_equal(back.dense(), trace.dense()) and back.tokens == trace.tokens

    (row,) = [h for h in history(recs) if "attnscope/step" in h]
    files = Path(run.dir)
    for view in ("model", "head"):
        assert row[f"attnscope/probe/{view}_view._type"] == "html-file"
        page = (files / row[f"attnscope/probe/{view}_view.path"]).read_text()
        assert page.lstrip().lower().startswith("<!doctype html") and "<script" in page  # the page as it is
        assert row[f"attnscope/probe/{view}_figure._type"] == "image-file"
        assert (files / row[f"attnscope/probe/{view}_figure.path"]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    table = json.loads((files / row["attnscope/probe/heads.path"]).read_text())
    records_ = head_metrics(trace)
    assert len(table["data"]) == 4 * 3 and {"kind", "layer", "head", "entropy", "label"} <= set(table["columns"])
    first = dict(zip(table["columns"], table["data"][0]))
    assert first["layer"] == 0 and first["entropy"] == pytest.approx(records_[0]["entropy"], rel=1e-6)

    assert row["attnscope/step"] == 5
    assert {k: row[k] for k in logged.metrics} == pytest.approx(logged.metrics)
    layer3 = np.mean([r["entropy"] for r in records_ if r["layer"] == 3])
    assert row["attn/probe/L3/entropy"] == pytest.approx(layer3, rel=1e-5)
    axes = {r.metric.glob_name or r.metric.name: r.metric.step_metric for r in recs
            if r.WhichOneof("record_type") == "metric"}
    assert axes["attn/*"] == axes["attnscope/probe/*"] == "attnscope/step"

    params = config(recs)
    assert params["attnscope/model"] == "tiny-gpt2" and params["attnscope/layers"] == "4"
    assert params["attnscope/probe/text"] == "The cat sat on the mat."


def test_reload_picks_name_and_step_and_reads_artifact_folders(start, make_trace, tmp_path):
    a1, a2, b = make_trace(seed=1), make_trace(seed=2), make_trace(layers=3, seed=3)
    run = start()
    for trace, step, name in ((a1, 1, "a"), (a2, 2, "a"), (b, 1, "b")):
        track.log(trace, run, name, views=(), step=step)
    run.finish()
    folder = Path(run.settings.sync_dir)
    assert np.array_equal(track.load_trace(folder, "a").dense(), a2.dense())  # latest step by default
    assert np.array_equal(track.load_trace(folder / "files", "a", step=1).dense(), a1.dense())
    assert track.load_trace(run.settings.sync_file, "b").shape() == (3, 3, 6, 6)
    assert len(trace_artifacts(records(run))) == 3
    with pytest.raises(InputError, match=r"several names \['a', 'b'\]; pass name="):
        track.load_trace(folder)
    with pytest.raises(MissingDataError, match=r"no trace 'a' at step 7; it was logged at steps \[1, 2\]"):
        track.load_trace(folder, "a", step=7)
    # A downloaded artifact is a folder with the same layout as the run folder.
    download = tmp_path / "artifact"
    (download / "attnscope/b/step-00000001").mkdir(parents=True)
    b.save(download / "attnscope/b/step-00000001/trace.safetensors")
    assert track.load_trace(download).shape() == (3, 3, 6, 6)


def test_steps_do_not_touch_the_runs_own_step_and_conflicting_config_is_kept(start, make_trace, caplog):
    run = start()
    run.log({"loss": 1.0})
    run.log({"loss": 0.5})
    track.log(make_trace(seed=1), views=(), figures=False, step=0, name="p")  # step 0 after the run's own step 2
    first = make_trace(seed=1).with_meta(text="first")
    track.log(first, views=(), figures=False)
    track.log(first.with_meta(text="second"), views=(), figures=False)
    run.finish()
    recs = records(run)
    rows = history(recs)
    assert [r.get("loss") for r in rows[:2]] == [1.0, 0.5]
    assert rows[2]["attnscope/step"] == 0 and "attn/p/entropy" in rows[2]  # not dropped as an old step
    assert config(recs)["attnscope/text"] == "first"
    assert "already has config attnscope/text='first'; keeping it" in caplog.text


def test_errors_say_what_to_pass(start, make_trace, tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"call wandb.init\(project=...\) first"):
        track.log(make_trace())
    with pytest.raises(InputError, match="expected a W&B run"):
        track.log(make_trace(), object())
    start()
    with pytest.raises(InputError, match="name must be a short word"):
        track.log(make_trace(), name="a/b")
    with pytest.raises(InputError, match="no W&B run folder"):
        track.load_trace(tmp_path / "missing")
    with pytest.raises(MissingDataError, match="holds no attnscope trace"):
        track.load_trace(tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", None)  # what `import wandb` sees when it is not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'attnscope\[wandb\]'"):
        track.log(make_trace())
