"""The trace browser's routes: files in ``--traces DIR`` and traces logged to the MLflow store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..errors import MissingDataError
from ..trace import load
from .errors import ApiError
from .paths import listing, resolve_inside
from .routes_traces import trace_info
from .runs import list_runs, local_store_missing, store_uri
from .state import App, AppState

router = APIRouter(prefix="/api")

MAX_RUNS = 200
RUN_ID = r"^[A-Za-z0-9_-]+$"


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


@router.get("/files/trace")
async def open_file(app: App, path: Annotated[str, Query()]) -> dict:
    """Open a trace file of the trace folder (held in memory; the same unchanged file keeps its id)."""
    root = _root(app)
    real = resolve_inside(root, path, want="trace")
    st = real.stat()
    if st.st_size > app.settings.max_trace_file_bytes:
        raise ApiError(413, f"{path!r} is {st.st_size} bytes; this server opens trace files up to "
                            f"{app.settings.max_trace_file_bytes} bytes")
    key = ("file", str(real), st.st_mtime_ns, st.st_size)
    entry = app.store.find(key)
    if entry is None:
        trace = await app.gates["files"].run(load, real)
        entry = app.store.add(trace, {"type": "file", "path": real.relative_to(root).as_posix()}, key=key)
    return trace_info(entry)


@router.get("/mlflow/runs")
async def mlflow_runs(app: App, limit: Annotated[int, Query(ge=1, le=MAX_RUNS)] = 50) -> dict:
    """Recent MLflow runs holding attnscope traces, with each trace's name and logged steps."""
    return await app.gates["mlflow"].run(lambda: list_runs(store_uri(app.settings.mlflow_uri), limit))


@router.get("/mlflow/trace")
async def mlflow_trace(app: App, run: Annotated[str, Query(min_length=1, max_length=64, pattern=RUN_ID)],
                       name: Annotated[str | None, Query(max_length=200)] = None,
                       step: Annotated[int | None, Query(ge=0)] = None) -> dict:
    """Open a trace logged to an MLflow run (its only name, or ``name``; its latest step, or ``step``)."""
    from ..track.mlflow import load_trace

    uri = await app.gates["mlflow"].run(store_uri, app.settings.mlflow_uri)  # imports mlflow: not in the loop
    missing = local_store_missing(uri)
    if missing is not None:
        raise ApiError(404, f"no MLflow store at {missing}; start the server with --mlflow URI")
    key = ("mlflow", uri, run, name, step)
    entry = app.store.find(key)
    if entry is None:
        try:
            trace = await app.gates["mlflow"].run(lambda: load_trace(run, name, uri, step=step))
        except MissingDataError as exc:
            raise ApiError(404, str(exc)) from exc
        entry = app.store.add(trace, {"type": "mlflow", "run": run, "name": name, "step": step}, key=key)
    return trace_info(entry)
