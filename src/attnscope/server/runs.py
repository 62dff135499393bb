"""Traces logged to an MLflow store (with :mod:`attnscope.track.mlflow`), listed for the trace browser.

Only reads: a store that does not exist yet (MLflow's default ``./mlflow.db`` before anything was logged) is
reported as empty instead of being created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import require
from ..track import artifacts


def store_uri(configured: str | None) -> str:
    """The tracking URI to browse: the configured one, else MLflow's own default."""
    if configured:
        return configured
    return require("mlflow", "mlflow").get_tracking_uri()


def local_store_missing(uri: str) -> str | None:
    """The path of a local store (SQLite file or file-store folder) that does not exist, else None."""
    parts = urlsplit(uri)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)[1:]  # sqlite:///relative.db, sqlite:////absolute.db
        return None if path in ("", ":memory:") or Path(path).exists() else path
    if parts.scheme in ("", "file"):
        path = unquote(parts.path) if parts.scheme == "file" else uri
        return None if Path(path).exists() else path
    return None


def list_runs(uri: str, limit: int) -> dict[str, Any]:
    """Recent runs of every experiment that hold attnscope traces: ``{uri, runs: [{run_id, ..., traces}]}``."""
    missing = local_store_missing(uri)
    if missing is not None:
        return {"uri": uri, "runs": [], "note": f"no MLflow store at {missing} yet; log traces with "
                "attnscope.track.mlflow.log, or start the server with --mlflow URI"}
    require("mlflow", "mlflow")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments(max_results=200)}
    if not experiments:
        return {"uri": uri, "runs": []}
    runs = client.search_runs(list(experiments), max_results=limit, order_by=["attributes.start_time DESC"])
    out = []
    for run in runs:
        names = [i.path.rsplit("/", 1)[-1] for i in client.list_artifacts(run.info.run_id, artifacts.ROOT)
                 if i.is_dir]
        traces = []
        for name in sorted(names):
            paths = [f"{i.path}/{artifacts.TRACE_FILE}" if i.is_dir else i.path
                     for i in client.list_artifacts(run.info.run_id, f"{artifacts.ROOT}/{name}")]
            steps = artifacts.traces_in(paths).get(name, {})
            if steps:
                traces.append({"name": name, "steps": sorted(s for s in steps if s is not None),
                               "unstepped": None in steps})
        if traces:
            out.append({"run_id": run.info.run_id, "run_name": run.info.run_name,
                        "experiment": experiments.get(run.info.experiment_id, run.info.experiment_id),
                        "start_time": run.info.start_time, "status": run.info.status, "traces": traces})
    return {"uri": uri, "runs": out}
