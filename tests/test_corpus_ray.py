"""The corpus atlas on Ray Data: the same tables as the local engine, on a local Ray and on a real two-node cluster
started here, and a job killed part-way that resumes to the same result.

The model is the tiny random BERT of tests/tiny_models.py saved to a folder (each actor loads it by path in a
fraction of a second); the texts are short fortunes. attnscope.corpus's numbers are checked against MiniLM in
test_corpus.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import tiny_models
from attnscope.corpus import build, fortune_texts, load

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TEXTS = 24
OPTIONS = {"shard_size": 4, "batch_size": 2, "max_tokens": 64, "top_k": 2}
CLI_OPTIONS = ["--shard-size", "4", "--batch-size", "2", "--max-tokens", "64", "--top-k", "2"]


@pytest.fixture(scope="module")
def fortunes(tmp_path_factory):
    """Short fortunes (they fit the tiny model's 64 positions), one a line."""
    path = tmp_path_factory.mktemp("corpus") / "fortunes.txt"
    short = (t for t in fortune_texts() if len(t.split()) <= 40)
    path.write_text("".join(next(short) + "\n" for _ in range(TEXTS)))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    """The tiny BERT with its tokenizer, saved as a model folder."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    bert, tok = tiny_models.build("bert")
    bert.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def reference(model, fortunes, tmp_path_factory):
    """The local engine's atlas: the reference every other run must equal."""
    return build(model, fortunes, tmp_path_factory.mktemp("atlas") / "local", engine="local", **OPTIONS)


def assert_same_atlas(got, want) -> None:
    assert got.heads().equals(want.heads())
    assert got.texts().equals(want.texts())
    assert got.summary.equals(want.summary)
    assert got.exemplars.equals(want.exemplars)
    assert got.manifest["counts"] == want.manifest["counts"] == {"texts": TEXTS, "measured": TEXTS, "bad": {}}
    assert got.heads().num_rows == TEXTS * 2 * 4  # every text x layer x head, once


def test_ray_engine_gives_the_local_engines_tables(model, fortunes, reference, tmp_path):
    seen = []
    atlas = build(model, fortunes, tmp_path / "ray", engine="ray", actors=2, progress=seen.append, **OPTIONS)
    assert_same_atlas(atlas, reference)
    assert seen[-1].phase == "done" and seen[-1].ray_startup_s > 0 and seen[-1].texts_done == TEXTS
    import ray

    assert not ray.is_initialized()  # the local Ray it started is gone


def test_a_two_node_ray_cluster_runs_the_job_through_ray_address(model, fortunes, reference, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # Ray's token authentication: every node and the driver
    port = _free_port()
    nodes = []
    try:
        address = f"127.0.0.1:{port}"
        _start(nodes, ["--head", f"--port={port}", "--include-dashboard=false"], env, tmp_path / "head.log",
               lambda: _nodes(address, env) >= 1, "the head node")
        _start(nodes, [f"--address={address}"], env, tmp_path / "worker.log", lambda: _nodes(address, env) >= 2,
               "the second node")
        # one CPU per node and two actors of one CPU each: the job needs both nodes
        run = subprocess.run([str(BIN / "attnscope"), "corpus", model, str(fortunes), "-o", str(tmp_path / "c"),
                              "--ray-address", address, "--actors", "2", *CLI_OPTIONS],
                             capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr
        assert f"{TEXTS} of {TEXTS} texts measured, 2 layers x 4 heads" in run.stderr
        assert_same_atlas(load(tmp_path / "c"), reference)
        assert _nodes(address, env) == 2  # the job left the cluster running
    finally:
        for node in reversed(nodes):
            _stop(node)
    assert all(not psutil.pid_exists(n.pid) for n in nodes)


def test_a_killed_job_resumes_to_the_uninterrupted_result(model, fortunes, tmp_path):
    out = tmp_path / "atlas"
    one = {**OPTIONS, "shard_size": 1}  # many small shards: the kill lands part-way
    cmd = [str(BIN / "attnscope"), "corpus", model, str(fortunes), "-o", str(out), "--engine", "local",
           *CLI_OPTIONS, "--shard-size", "1"]
    job = subprocess.Popen([*cmd, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "texts").glob("shard-*.parquet")):
            assert job.poll() is None, job.stderr.read()
            assert time.monotonic() < deadline, "no shard was written in 300 s"
            time.sleep(0.02)
        job.send_signal(signal.SIGKILL)  # for real: no clean-up runs
        job.wait(30)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "texts").glob("shard-*.parquet")}
    assert 1 <= len(finished) < TEXTS, "the job must die part-way"
    assert len(list((out / "heads").glob("shard-*.parquet"))) - len(finished) in (0, 1)  # at most one half-written
    assert not (out / "summary.parquet").exists()
    with pytest.raises(Exception, match="not finished"):
        load(out)
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished)} resumed from an earlier run" in " ".join(resumed.stderr.split())
    atlas = load(out)
    ids = atlas.texts().column("text_id").to_pylist()
    assert ids == list(range(TEXTS))  # every text once: no duplicate rows
    heads = atlas.heads(columns=["text_id", "layer", "head"]).to_pandas()
    assert not heads.duplicated().any()
    assert_same_atlas(atlas, build(model, fortunes, tmp_path / "uninterrupted", engine="local", **one))
    for name, written in finished.items():  # the shards finished before the kill were kept, not redone
        assert (out / "texts" / name).stat().st_mtime_ns == written
    assert not list(out.rglob("*.tmp"))


# --------------------------------------------------------------------------- a Ray cluster of processes started here
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """``ray start --block`` (one node, one CPU) as a child process whose whole tree the test stops."""
    with open(log, "w") as fh:
        return subprocess.Popen([str(BIN / "ray"), "start", "--block", "--num-cpus=1", "--disable-usage-stats",
                                 "--node-ip-address=127.0.0.1", *args],
                                stdout=fh, stderr=subprocess.STDOUT, env=env)


def _nodes(address: str, env: dict) -> int:
    try:
        out = subprocess.run([str(BIN / "ray"), "status", f"--address={address}"], capture_output=True, text=True,
                             env=env, timeout=60)
    except subprocess.TimeoutExpired:  # the head's GCS is not answering yet
        return 0
    if out.returncode != 0 or "Active:" not in out.stdout:
        return 0
    active = out.stdout.split("Active:")[1].split("Pending:")[0]
    return sum(1 for line in active.splitlines() if "node_" in line)


def _start(nodes: list[subprocess.Popen], args: list[str], env: dict, log: Path, ready, what: str,
           tries: int = 3, timeout: float = 120) -> None:
    """Start a node and wait until the cluster counts it. Ray gives a node's raylet 30 s to register and then
    gives up, which happens on a busy 2-core machine: a node whose ``ray start`` exited is started again."""
    for attempt in range(1, tries + 1):
        node = _node(args, env, log)
        nodes.append(node)
        deadline = time.monotonic() + timeout
        while not ready():
            if node.poll() is not None:
                break
            assert time.monotonic() < deadline, f"{what} did not come up in {timeout} s"
            time.sleep(1)
        else:
            return
        _stop(nodes.pop())
        assert attempt < tries, f"{what}: ray start exited {tries} times; see {log}"


def _stop(node: subprocess.Popen) -> None:
    """Stop one node: its ``ray start`` process and every process it started (GCS, raylet, workers), by PID."""
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(node.pid)
        procs = [root, *root.children(recursive=True)]
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=15)
    node.wait(15)
