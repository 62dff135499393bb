"""Every file attnscope writes appears whole or not at all, with the permissions a plain open() gives."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
from pathlib import Path

import pytest

from attnscope import _files
from attnscope._files import atomic_write
from attnscope.figures import figure, save_figure
from attnscope.views import render


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def fail_before_rename(monkeypatch) -> None:
    """The disk fills up once the bytes are written and before the file takes its name."""

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_files.os, "fsync", full)


# --------------------------------------------------------------------------- the helper
def test_atomic_write_writes_text_bytes_and_writer_output(tmp_path, umask_022):
    assert atomic_write(tmp_path / "a.txt", "héllo") == tmp_path / "a.txt"
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    atomic_write(tmp_path / "c.txt", lambda tmp: tmp.write_text("from a writer"))
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "c.txt").read_text() == "from a writer"
    assert [mode(tmp_path / n) for n in ("a.txt", "b.bin", "c.txt")] == [0o644] * 3
    assert leftovers(tmp_path) == []


def test_atomic_write_keeps_the_replaced_files_mode_and_follows_links(tmp_path, umask_022):
    target = tmp_path / "kept.txt"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write(link, "new")
    assert link.is_symlink() and target.read_text() == "new" and mode(target) == 0o640


def test_a_writer_that_fails_midway_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "x.html"
    target.write_text("old content")

    def half(tmp: Path):
        tmp.write_text("<html>half")
        raise RuntimeError("writer broke")

    with pytest.raises(RuntimeError, match="writer broke"):
        atomic_write(target, half)
    assert target.read_text() == "old content" and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "new.html", half)
    assert not (tmp_path / "new.html").exists() and leftovers(tmp_path) == []


def test_text_that_cannot_be_encoded_creates_no_file(tmp_path):
    with pytest.raises(UnicodeEncodeError):
        atomic_write(tmp_path / "s.txt", "a\ud800b")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_at_the_path_is_not_replaced(tmp_path):
    (tmp_path / "d.html").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path / "d.html", "x")
    assert (tmp_path / "d.html").is_dir() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- every writer goes through it
def test_view_save_that_fails_leaves_the_old_html(make_trace, tmp_path, monkeypatch):
    out = tmp_path / "x.html"
    out.write_text("old view")
    fail_before_rename(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        render("head", make_trace()).save(out)
    assert out.read_text() == "old view" and leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_figure_that_fails_while_writing_leaves_no_file(suffix, make_trace, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError):
        save_figure("matrix", make_trace(), tmp_path / f"m{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_trace_save_that_fails_leaves_the_old_trace(make_trace, tmp_path, monkeypatch):
    path = make_trace(seed=1).save(tmp_path / "t.safetensors")
    before = path.read_bytes()
    fail_before_rename(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        make_trace(seed=2).save(path)
    assert path.read_bytes() == before and leftovers(tmp_path) == []


def test_saved_traces_views_and_figures_get_the_umask_mode(make_trace, tmp_path, umask_022):
    trace = make_trace()
    written = [trace.save(tmp_path / "t.safetensors"), render("head", trace).save(tmp_path / "h.html"),
               render("matrix", trace).save(tmp_path / "m.png")]
    assert [oct(mode(p)) for p in written] == [oct(0o644)] * 3  # safetensors alone writes 0o600


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """A local MLflow store (SQLite + artifact folder) and its experiment id; creating its tables takes seconds."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    return client, client.create_experiment("files", artifact_location=(root / "art").as_uri()), root / "art"


def test_mlflow_trace_artifact_is_readable_like_the_others(make_trace, mlflow_store, umask_022):
    from attnscope.track import mlflow as track

    client, experiment, art = mlflow_store
    run_id = client.create_run(experiment).info.run_id
    track.log(make_trace(), run_id, views=("head",), figures=True, tracking_uri=client.tracking_uri)
    files = {p.name: mode(p) for p in art.rglob("*") if p.is_file() and run_id in p.parts}
    assert set(files) == {"trace.safetensors", "head.html", "head.png", "heads.csv"}
    assert set(files.values()) == {0o644}, {n: oct(m) for n, m in files.items()}


# --------------------------------------------------------------------------- lone surrogates in a trace
def test_trace_with_lone_surrogates_saves_them_as_json_escapes(make_trace, tmp_path):
    from safetensors import safe_open

    trace = make_trace(n=3, tokens=["a\ud800", "\udcff", "c"]).with_meta(model="m\udc80x", text="x\ud800y")
    path = trace.save(tmp_path / "s.safetensors")
    with safe_open(str(path), "numpy") as f:
        header = f.metadata()
    assert json.loads(header["tokens"]) == {"input": ["a\ud800", "\udcff", "c"]}
    assert json.loads(header["meta"])["model"] == "m\udc80x"
    plain = make_trace(n=2, tokens=["é", "中"]).save(tmp_path / "p.safetensors")
    with safe_open(str(plain), "numpy") as f:
        assert "中" in f.metadata()["tokens"]  # readable UTF-8 whenever it can be


def test_views_and_figures_of_a_trace_with_lone_surrogates_save(make_trace, tmp_path):
    trace = make_trace(n=3, tokens=["a\ud800", "\udcff", "c"]).with_meta(model="m\ud800")
    html = render("head", trace).save(tmp_path / "s.html").read_text(encoding="utf-8")
    assert "<title>m\ufffd · head view" in html and "\\ud800" in html
    for suffix in (".png", ".svg", ".pdf"):
        assert render("matrix", trace).save(tmp_path / f"s{suffix}").stat().st_size > 1000
    assert "a\ufffd" in (tmp_path / "s.svg").read_text(encoding="utf-8")
    svg = io.BytesIO()
    figure("head", trace).savefig(svg, format="svg")  # the Figure itself, saved by hand, holds no surrogate
    assert b"m\xef\xbf\xbd" in svg.getvalue()


def test_tracking_a_trace_with_lone_surrogates_logs_replacement_characters(make_trace, mlflow_store):
    from attnscope.track import mlflow as track

    client, experiment, _ = mlflow_store
    run_id = client.create_run(experiment).info.run_id
    trace = make_trace(n=3, tokens=["a\ud800", "b", "c"]).with_meta(model="m\udcff", text="x\ud800y")
    track.log(trace, run_id, views=("head",), figures=True, tracking_uri=client.tracking_uri)
    params = client.get_run(run_id).data.params
    assert params["attnscope/model"] == "m\ufffd" and params["attnscope/text"] == "x\ufffdy"
    assert track.load_trace(run_id, tracking_uri=client.tracking_uri).tokens["input"][0] in ("a\ud800", "a\ufffd")
