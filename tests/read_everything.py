"""Hand every trace file of a folder to every reader, each file in its own forked process under a memory cap.

    python tests/read_everything.py FOLDER [--cap-mb 2048] [--views head,model,...]

Readers: ``attnscope.load``; head metrics, rollout; every view's HTML; every figure (SVG); the CLI's ``info``,
``stats`` and ``render``; the web app's trace browser (open the file, its summary, every view, one head, PNG).
A reader may succeed or refuse with an :class:`attnscope.errors.AttnscopeError` (the user's input is at fault);
anything else is an internal error. Prints one JSON object: per file its outcome, the internal errors with their
tracebacks, and its peak RSS above the forked baseline (MB). Each child runs under ``RLIMIT_AS`` = its address
space at fork + ``--cap-mb``, so a reader that tries to allocate what it should not dies with MemoryError there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import traceback
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

# Imported before any fork, so each child's peak memory counts only what its readers allocate.
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import attnscope
from attnscope import analysis
from attnscope.cli import app as cli_app
from attnscope.errors import AttnscopeError
from attnscope.figures import save_figure
from attnscope.server import Settings, create_app

VIEWS = ("head", "model", "matrix", "neuron")


def _vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def readers(path: Path, trace, out: Path, client):
    """(name, thunk) for every reader of one loaded trace."""
    runner = CliRunner()

    def cli(*args):
        result = runner.invoke(cli_app, list(args))
        if result.exit_code not in (0, 2):  # 2: the user's input; 1: "looks like a bug"
            raise RuntimeError(f"attnscope {' '.join(args)} exited {result.exit_code}: {result.output[-2000:]}")

    def server():
        opened = client.post("/api/files/trace", json={"path": path.name})
        if opened.status_code >= 500:
            raise RuntimeError(f"open: HTTP {opened.status_code} {opened.text[:500]}")
        if opened.status_code != 200:
            return
        tid = opened.json()["id"]
        for url in (f"/api/traces/{tid}", *(f"/api/traces/{tid}/view?view={v}" for v in VIEWS),
                    f"/api/traces/{tid}/head?layer=0&head=0", f"/api/traces/{tid}/download/png?view=head",
                    "/api/traces"):
            r = client.get(url)
            if r.status_code >= 500:
                raise RuntimeError(f"GET {url}: HTTP {r.status_code} {r.text[:500]}")

    yield "head_metrics", lambda: [analysis.head_metrics(trace, kind) for kind in trace.kinds]
    yield "rollout", lambda: analysis.rollout(trace)
    for view in VIEWS:
        yield f"{view}_view", lambda view=view: attnscope.render(view, trace).html()
        yield f"{view}_figure", lambda view=view: save_figure(view, trace, out / f"{view}.svg")
    yield "cli info", lambda: cli("info", str(path))
    yield "cli stats", lambda: cli("stats", str(path))
    yield "cli render", lambda: cli("render", str(path), "--view", "model", "-o", str(out / "m.html"))
    yield "server", server


def check_file(path: Path, cap_mb: int) -> dict:
    """Run in a forked child: every reader on one file; returns its report."""
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    limit = (_vm_kb("VmSize") + cap_mb * 1024) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    report: dict = {"file": path.name, "bytes": path.stat().st_size, "internal": []}
    try:
        trace = attnscope.load(path)
    except AttnscopeError as exc:
        report["outcome"] = f"refused: {type(exc).__name__}"
        return report
    except BaseException as exc:
        report["outcome"] = "internal"
        report["internal"].append({"reader": "load", "error": "".join(traceback.format_exception(exc))[-3000:]})
        return report
    report["outcome"] = "loaded"
    report["refused"] = []
    with tempfile.TemporaryDirectory() as tmp, TestClient(create_app(Settings(traces_dir=path.parent)),
                                                          base_url="http://127.0.0.1") as client:
        for name, run in readers(path, trace, Path(tmp), client):
            try:
                run()
            except AttnscopeError as exc:
                report["refused"].append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
            except BaseException as exc:
                report["internal"].append({"reader": name, "error": "".join(traceback.format_exception(exc))[-3000:]})
    report["peak_mb"] = round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cap-mb", type=int, default=2048)
    args = parser.parse_args()
    reports = []
    for path in sorted(args.folder.glob("*.safetensors")):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one file, report through the pipe
            os.close(read_end)
            try:
                data = json.dumps(check_file(path, args.cap_mb)).encode()
            except BaseException as exc:
                data = json.dumps({"file": path.name, "outcome": "internal",
                                   "internal": [{"reader": "child", "error": repr(exc)}]}).encode()
            with os.fdopen(write_end, "wb") as f:
                f.write(data)
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            data = json.dumps({"file": path.name, "outcome": "internal",
                               "internal": [{"reader": "child", "error": f"died with status {status}"}]}).encode()
        reports.append(json.loads(data))
    json.dump(reports, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
