"""Experiment tracking: log traces to Comet, MLflow or W&B, reopen them, and watch heads change during fine-tuning.

- :func:`attnscope.track.comet.log` / :func:`attnscope.track.mlflow.log` / :func:`attnscope.track.wandb.log`: one
  trace -> files, metrics, params.
- :func:`attnscope.track.comet.load_trace` / :func:`attnscope.track.mlflow.load_trace` /
  :func:`attnscope.track.wandb.load_trace`: back to a Trace.
- :func:`compare_runs`: the same-named traces of two runs (MLflow run ids or Comet offline archives).
- :class:`AttentionCallback` with :class:`MlflowLogger` or :class:`CometLogger`: probes during Trainer training.

comet_ml, mlflow and wandb are optional: ``pip install 'attnscope[comet]'`` / ``'attnscope[mlflow]'`` /
``'attnscope[wandb]'``.
"""

from .artifacts import Logged
from .callback import AttentionCallback, CometLogger, MlflowLogger
from .runs import compare_runs, load_run_trace

__all__ = ["AttentionCallback", "CometLogger", "Logged", "MlflowLogger", "compare_runs", "load_run_trace"]
