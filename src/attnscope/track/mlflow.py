"""Log traces to MLflow runs and reopen them; no server needed (MLflow's local store is the default).

    import mlflow, attnscope
    from attnscope.track import mlflow as track

    with mlflow.start_run() as run:                 # MLflow's default store: ./mlflow.db next to ./mlruns
        track.log(attnscope.capture("minilm", "The cat sat on the mat."), step=0)
    trace = track.load_trace(run.info.run_id)

What is logged (see :mod:`attnscope.track.artifacts`): the trace file, HTML views, PNG figures and a per-head
table as artifacts under ``attnscope/``, per-layer metrics at ``step``, and model/text parameters.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingDataError, require
from ..trace import Trace, load
from . import artifacts
from .artifacts import Logged

_log = logging.getLogger(__name__)

_BATCH = 1000  # MLflow takes at most 1000 metrics and 100 params per log_batch call
_PARAM_BATCH = 100


def log(
    trace: Trace,
    run_id: str | None = None,
    name: str | None = None,
    views: Sequence[str] = artifacts.VIEWS,
    step: int | None = None,
    *,
    figures: bool = True,
    metrics: bool = True,
    tracking_uri: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Logged:
    """Log ``trace`` into an MLflow run: ``run_id`` if given, else the active run (one is started if none is).

    - artifacts under ``attnscope/<name>/step-<N>/``: ``trace.safetensors``, ``<view>.html`` and (unless
      ``figures=False``) ``<view>.png`` per view, ``heads.csv``;
    - metrics at ``step`` (``metrics=False`` skips them); parameters for the model and the text. A parameter
      already in the run with another value is kept (MLflow forbids changing it) and a warning is logged.

    ``tracking_uri`` is the store holding ``run_id`` (default: MLflow's current one, ``mlflow.get_tracking_uri()``).
    ``name`` tells several traces of one run apart (e.g. one per probe text); ``options`` go to every view and
    figure. Returns what was logged, with ``.run`` the run id.
    """
    mlflow = require("mlflow", "mlflow")
    if run_id is None:
        if tracking_uri is not None:
            raise InputError(
                "tracking_uri picks the store of run_id; pass run_id too, or to log into the active run set the "
                "store with mlflow.set_tracking_uri(...) before mlflow.start_run()"
            )
        run = mlflow.active_run() or mlflow.start_run()
        run_id = run.info.run_id
    client = _client(tracking_uri)
    _get_run(client, run_id)
    with tempfile.TemporaryDirectory(prefix="attnscope-mlflow-") as tmp:
        bundle = artifacts.build(trace, Path(tmp), name=name, step=step, views=views, figures=figures,
                                 metrics=metrics, options=options)
        client.log_artifacts(run_id, str(Path(tmp) / bundle.folder), artifact_path=bundle.folder)
    _log_values(client, run_id, bundle.metrics, bundle.params, bundle.step)
    return Logged(run=run_id, name=bundle.name, step=bundle.step, files=tuple(bundle.files),
                  metrics=bundle.metrics, params=bundle.params)


def load_trace(run_id: str, name: str | None = None, tracking_uri: str | None = None, *,
               step: int | None = None) -> Trace:
    """Reopen a trace logged to run ``run_id``: the only name (or ``name``), at ``step`` or its latest step."""
    mlflow = require("mlflow", "mlflow")
    _check_store_exists(tracking_uri or mlflow.get_tracking_uri(), run_id)
    client = _client(tracking_uri)
    _get_run(client, run_id)
    where = f"MLflow run {run_id!r}"
    names = [i.path.rsplit("/", 1)[-1] for i in client.list_artifacts(run_id, artifacts.ROOT) if i.is_dir]
    name = artifacts.choose_name(names, name, where)
    # One listing of the name's folder: each step-<N> folder holds a trace file (it is logged first).
    paths = [f"{i.path}/{artifacts.TRACE_FILE}" if i.is_dir else i.path
             for i in client.list_artifacts(run_id, f"{artifacts.ROOT}/{name}")]
    chosen = artifacts.pick(artifacts.traces_in(paths), name, step, where)
    with tempfile.TemporaryDirectory(prefix="attnscope-mlflow-") as tmp, _quiet_download():
        return load(client.download_artifacts(run_id, chosen, dst_path=tmp))


@contextlib.contextmanager
def _quiet_download():
    """No MLflow download progress bar on stderr for one small file, unless the user asked for it."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)


def _check_store_exists(uri: str, run_id: str) -> None:
    """Refuse to look a run up in a local store that does not exist: MLflow would create an empty one (an
    ``mlflow.db`` in the working directory, by default) just to find nothing in it."""
    from urllib.parse import unquote, urlparse
    from urllib.request import url2pathname

    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = unquote(uri[len("sqlite:///"):].split("?", 1)[0]) if uri.startswith("sqlite:///") else ""
    elif parsed.scheme == "file":
        path = url2pathname(unquote(parsed.path))
    elif parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):  # a plain folder (C:\ on Windows)
        path = uri
    else:  # a tracking server, databricks, ...: MLflow answers for those
        return
    if path and not Path(path).exists():
        raise MissingDataError(
            f"no MLflow run {run_id!r}: the tracking store {uri!r} does not exist (nothing was logged there); pass "
            "tracking_uri= (--tracking-uri, or set MLFLOW_TRACKING_URI) to the store the run was logged to, or a "
            "trace file (.safetensors) or Comet archive (.zip) instead"
        )


def _client(tracking_uri: str | None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def _get_run(client, run_id: str):
    from mlflow.exceptions import MlflowException

    if not isinstance(run_id, str) or not run_id:
        raise InputError(f"run_id must be an MLflow run id string; got {run_id!r}")
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise MissingDataError(
            f"no MLflow run {run_id!r} in the tracking store {client.tracking_uri!r}; check the id, or pass "
            "tracking_uri= (or set MLFLOW_TRACKING_URI) to the store it was logged to"
        ) from exc


def _log_values(client, run_id: str, metrics: dict[str, float], params: dict[str, str], step: int | None) -> None:
    from mlflow.entities import Metric, Param

    existing = client.get_run(run_id).data.params
    new = {}
    for key, value in params.items():
        if key not in existing:
            new[key] = value
        elif existing[key] != value:
            _log.warning("MLflow run %s already has parameter %s=%r; keeping it (not %r). Log traces of other texts "
                        "under another name=", run_id, key, existing[key], value)
    now = int(time.time() * 1000)
    metric_list = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
    param_list = [Param(k, v) for k, v in new.items()]
    for i in range(0, len(metric_list), _BATCH):
        client.log_batch(run_id, metrics=metric_list[i : i + _BATCH])
    for i in range(0, len(param_list), _PARAM_BATCH):
        client.log_batch(run_id, params=param_list[i : i + _PARAM_BATCH])
