"""The trace browser's routes: files in ``--traces DIR`` and traces logged to the MLflow store.

Opening a trace is a POST with a JSON body (so the guard's same-origin rules apply: a page elsewhere cannot make
the server open files, as it could with a GET behind an ``<img src>``). A trace is loaded *and described* before
the store holds it: one that fails either is answered 422 and kept nowhere, so listing held traces always works.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from ..errors import AttnscopeError, MissingDataError
from ..summary import describe
from ..trace import Trace, load
from .bodies import JsonBody
from .errors import ApiError, status_of
from .paths import listing, resolve_inside
from .routes_traces import trace_info
from .runs import list_runs, local_store_missing, store_uri
from .state import App, AppState

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api")

MAX_RUNS = 200
RUN_ID = r"^[A-Za-z0-9_-]+$"


class OpenFile(JsonBody):
    """``POST /api/files/trace``: a trace file's path, relative to the trace folder."""

    path: str = Field(max_length=4096)


class OpenRun(JsonBody):
    """``POST /api/mlflow/trace``: a run, and optionally the trace's name and step (default: its latest)."""

    run: str = Field(min_length=1, max_length=64, pattern=RUN_ID)
    name: str | None = Field(None, max_length=200)
    step: int | None = Field(None, ge=0, le=2**62)


def checked(read: Callable[[], Trace], shown: str, hidden: str | None = None) -> tuple[Trace, dict[str, Any]]:
    """``read()`` a trace and describe it (in a worker thread). An attnscope error keeps its status (422 for a
    malformed file) with ``hidden`` (the server's own path of the file) replaced by ``shown``; any failure to
    describe what was read is a 422 too."""
    try:
        trace = read()
    except AttnscopeError as exc:
        if hidden is None or isinstance(exc, MissingDataError):
            raise
        raise ApiError(status_of(exc), str(exc).replace(hidden, shown)) from None
    try:
        return trace, describe(trace)
    except Exception as exc:  # a trace the checks on load let through but that still cannot be described
        log.warning("could not describe trace %s", shown, exc_info=exc)
        raise ApiError(422, f"{shown!r} is not a usable attnscope trace ({type(exc).__name__}); the server log "
                            "has the details") from None


def _root(app: AppState):
    root = app.settings.traces_dir
    if root is None:
        raise ApiError(404, "this server has no trace folder; start it with --traces DIR to browse saved traces")
    return root


@router.get("/files")
async def files(app: App, dir: str = "") -> dict:
    """Folders and ``.safetensors`` files in ``dir`` (relative to the trace folder)."""
    root = _root(app)
    return await app.gates["files"].run(listing, root, dir)


@router.post("/files/trace")
async def open_file(body: OpenFile, app: App) -> dict:
    """Open a trace file of the trace folder (held in memory; the same unchanged file keeps its id)."""
    root = _root(app)
    path = body.path
    real = resolve_inside(root, path, want="trace")
    st = real.stat()
    if st.st_size > app.settings.max_trace_file_bytes:
        raise ApiError(413, f"{path!r} is {st.st_size} bytes; this server opens trace files up to "
                            f"{app.settings.max_trace_file_bytes} bytes")
    key = ("file", str(real), st.st_mtime_ns, st.st_size)
    entry = app.store.find(key)
    if entry is None:
        rel = real.relative_to(root).as_posix()
        trace, info = await app.gates["files"].run(checked, lambda: load(real), rel, str(real))
        entry = app.store.add(trace, {"type": "file", "path": rel}, key=key, info=info)
    return trace_info(entry)


@router.get("/mlflow/runs")
async def mlflow_runs(app: App, limit: Annotated[int, Query(ge=1, le=MAX_RUNS)] = 50) -> dict:
    """Recent MLflow runs holding attnscope traces, with each trace's name and logged steps."""
    return await app.gates["mlflow"].run(lambda: list_runs(store_uri(app.settings.mlflow_uri), limit))


@router.post("/mlflow/trace")
async def mlflow_trace(body: OpenRun, app: App) -> dict:
    """Open a trace logged to an MLflow run (its only name, or ``name``; its latest step, or ``step``)."""
    from ..track.mlflow import load_trace

    uri = await app.gates["mlflow"].run(store_uri, app.settings.mlflow_uri)  # imports mlflow: not in the loop
    missing = local_store_missing(uri)
    if missing is not None:
        raise ApiError(404, f"no MLflow store at {missing}; start the server with --mlflow URI")
    run, name, step = body.run, body.name, body.step
    key = ("mlflow", uri, run, name, step)
    entry = app.store.find(key)
    if entry is None:
        shown = f"run {run}" + (f" trace {name}" if name else "")
        try:
            trace, info = await app.gates["mlflow"].run(
                checked, lambda: load_trace(run, name, uri, step=step), shown)
        except MissingDataError as exc:
            raise ApiError(404, str(exc)) from exc
        entry = app.store.add(trace, {"type": "mlflow", "run": run, "name": name, "step": step}, key=key, info=info)
    return trace_info(entry)
