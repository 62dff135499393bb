"""Log traces to Weights & Biases runs (online or offline) and reopen them from a run folder.

    import wandb, attnscope
    from attnscope.track import wandb as track

    run = wandb.init(project="attention", mode="offline")        # or online; WANDB_DIR picks the folder
    track.log(attnscope.capture("minilm", "The cat sat on the mat."), step=0)
    run.finish()
    trace = track.load_trace(run.settings.sync_dir)              # wandb/offline-run-<time>-<id>

What is logged (the files are those of :mod:`attnscope.track.artifacts`):

- the trace file as a W&B artifact ``attnscope-<name>`` of type ``attnscope-trace`` (one version per call, aliased
  ``step-<N>``), kept in the run folder at ``attnscope/<name>/step-<N>/trace.safetensors`` and referenced from
  there, so it is stored once locally and uploaded once;
- each view as ``wandb.Html`` (``attnscope/<name>/<view>_view``; the standalone page, scripts and all), each
  figure as ``wandb.Image`` (``attnscope/<name>/<view>_figure``) and the per-head metrics as a ``wandb.Table``
  (``attnscope/<name>/heads``), beside the same files in the run folder;
- the per-layer metrics (``attn/...``), with ``step`` as their x-axis ``attnscope/step`` (declared with
  ``define_metric``, so it never fights the run's own step counter), and model/text parameters in the config.

A run logged online keeps the same run folder on the machine that logged it; elsewhere, download the artifact
(``wandb.Api().artifact("entity/project/attnscope-<name>:step-<N>").download()``) and pass its folder to
:func:`load_trace`: it has the same layout.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, require
from ..trace import Trace, load
from . import artifacts
from .artifacts import Logged

_log = logging.getLogger(__name__)

#: W&B artifact type of logged trace files.
ARTIFACT_TYPE = "attnscope-trace"
#: The x-axis of attnscope's metrics and media when a step is given.
STEP = f"{artifacts.ROOT}/step"


def log(
    trace: Trace,
    run=None,
    name: str | None = None,
    views: Sequence[str] = artifacts.VIEWS,
    step: int | None = None,
    *,
    figures: bool = True,
    metrics: bool = True,
    options: Mapping[str, Any] | None = None,
) -> Logged:
    """Log ``trace`` to a W&B run: ``run`` if given, else the current one (``wandb.init(...)`` first).

    ``name`` tells several traces of one run apart (e.g. one per probe text); ``views`` are the views logged as
    HTML (and, unless ``figures=False``, as images); ``metrics=False`` skips the metrics and the head table;
    ``options`` go to every view and figure. A config value already in the run with another value is kept and a
    warning is logged (log traces of other texts under another ``name``). Returns what was logged, ``.run`` being
    the run id.
    """
    wandb = require("wandb", "wandb")
    run = wandb.run if run is None else run
    _check_run(run)
    if isinstance(views, str):
        views = (views,)
    bundle = artifacts.build(trace, Path(run.settings.sync_dir), name=name, step=step, views=views,
                             figures=figures, metrics=metrics, options=options)
    trace_path = f"{bundle.folder}/{artifacts.TRACE_FILE}"
    artifact = wandb.Artifact(f"{artifacts.ROOT}-{bundle.name}", type=ARTIFACT_TYPE,
                              metadata={"step": bundle.step, **bundle.params})
    artifact.add_file(str(bundle.files[trace_path]), name=trace_path, policy="immutable")
    run.log_artifact(artifact, aliases=["latest"] + ([] if bundle.step is None else [f"step-{bundle.step}"]))

    prefix = f"{artifacts.ROOT}/{bundle.name}"
    data: dict[str, Any] = dict(bundle.metrics)
    for view in views:
        page = bundle.files[f"{bundle.folder}/{view}.html"].read_text(encoding="utf-8")
        data[f"{prefix}/{view}_view"] = wandb.Html(page, inject=False)
    for view, path in bundle.figures.items():
        data[f"{prefix}/{view}_figure"] = wandb.Image(str(bundle.files[path]))
    table = bundle.files.get(f"{bundle.folder}/{artifacts.TABLE_FILE}")
    if table is not None:
        columns, rows = _read_table(table)
        data[f"{prefix}/heads"] = wandb.Table(columns=columns, data=rows)
    if bundle.step is not None:
        run.define_metric(STEP)
        for pattern in ("attn/*", f"{prefix}/*"):
            run.define_metric(pattern, step_metric=STEP)
        data[STEP] = bundle.step
    run.log(data)
    _update_config(run, bundle.params)
    return Logged(run=str(run.id), name=bundle.name, step=bundle.step, files=tuple(bundle.files),
                  metrics=bundle.metrics, params=bundle.params)


def load_trace(folder: str | Path, name: str | None = None, *, step: int | None = None) -> Trace:
    """Reopen a trace logged to a W&B run, from the run folder (``run.settings.sync_dir``: ``wandb/run-...`` or
    ``wandb/offline-run-...``; its ``files`` folder and ``.wandb`` file are understood too) or from the folder
    a downloaded ``attnscope-<name>`` artifact was written to.

    With several names in the folder pass ``name``; without ``step`` the latest logged step is read. Reading needs
    no wandb.
    """
    path = Path(folder)
    if path.is_file() and path.suffix == ".wandb":
        path = path.parent
    if path.name == "files" and not (path / artifacts.ROOT).is_dir():
        path = path.parent
    if not path.is_dir():
        raise InputError(f"no W&B run folder at {str(path)!r}; pass run.settings.sync_dir (wandb/run-... or "
                         "wandb/offline-run-...) or the folder of a downloaded attnscope artifact")
    files = path.glob(f"{artifacts.ROOT}/**/{artifacts.TRACE_FILE}")
    found = artifacts.traces_in(p.relative_to(path).as_posix() for p in files)
    chosen = artifacts.pick(found, name, step, f"the W&B folder {str(path)!r}")
    return load(path / chosen)


def _check_run(run) -> None:
    if run is None:
        raise InputError("no W&B run to log to: call wandb.init(project=...) first (mode='offline' logs without a "
                         "server), or pass run=")
    if not all(hasattr(run, a) for a in ("log", "log_artifact", "define_metric", "config", "settings")):
        raise InputError(f"expected a W&B run (what wandb.init returns); got {type(run).__name__}")


def _read_table(path: Path) -> tuple[list[str], list[list[Any]]]:
    """The head table written by :func:`artifacts.build`, with its numbers as numbers again."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        columns = next(reader)
        return columns, [[_cell(v) for v in row] for row in reader]


def _cell(text: str) -> Any:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def _update_config(run, params: dict[str, str]) -> None:
    existing = dict(run.config)
    new = {}
    for key, value in params.items():
        if key not in existing:
            new[key] = value
        elif existing[key] != value:
            _log.warning("W&B run %s already has config %s=%r; keeping it (not %r). Log traces of other texts under "
                         "another name=", run.id, key, existing[key], value)
    if new:
        run.config.update(new)

