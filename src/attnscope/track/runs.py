"""Reopen logged traces from wherever they were logged, to compare runs."""

from __future__ import annotations

from pathlib import Path

from ..trace import Trace


def load_run_trace(run: str | Path, name: str | None = None, tracking_uri: str | None = None, *,
                   step: int | None = None) -> Trace:
    """One logged trace from ``run``: a Comet offline archive (``.zip``), a trace file (``.safetensors``), or an
    MLflow run id (in ``tracking_uri``, default MLflow's current store)."""
    path = Path(run)
    if path.suffix == ".zip" or (path.is_file() and path.suffix != ".safetensors"):
        from . import comet

        return comet.load_trace(path, name, step=step)
    if path.suffix == ".safetensors":
        from ..trace import load

        return load(path)
    from . import mlflow

    return mlflow.load_trace(str(run), name, tracking_uri, step=step)


def compare_runs(run_a: str | Path, run_b: str | Path, name: str | None = None,
                 tracking_uri: str | None = None, *, step: int | None = None) -> tuple[Trace, Trace]:
    """The traces named ``name`` of two runs (see :func:`load_run_trace`), ready for a diff view or
    :func:`attnscope.analysis.compare`."""
    return (load_run_trace(run_a, name, tracking_uri, step=step),
            load_run_trace(run_b, name, tracking_uri, step=step))
