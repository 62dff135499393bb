"""Watch attention heads change during fine-tuning: a transformers Trainer callback that captures probe texts.

    from attnscope.track import AttentionCallback, MlflowLogger

    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                      callbacks=[AttentionCallback(["The cat sat on the mat."], every_n_steps=50,
                                                   logger=MlflowLogger())])

Each probe is captured with the model being trained (switched to eval mode and back, without gradients, so
training goes on exactly as it would without the callback) before training and every ``every_n_steps``
optimizer steps, and handed to ``logger.log(trace, step=..., name=...)``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import TrainerCallback

from ..errors import InputError
from ..trace import Trace
from . import artifacts

_log = logging.getLogger(__name__)


class MlflowLogger:
    """Logs each trace into one MLflow run: ``run_id``, else the run active at the first log (started if none)."""

    def __init__(self, run_id: str | None = None, *, tracking_uri: str | None = None,
                 views: Sequence[str] = artifacts.VIEWS, figures: bool = True, metrics: bool = True,
                 options: Mapping[str, Any] | None = None):
        self.run_id, self.tracking_uri = run_id, tracking_uri
        self.views, self.figures, self.metrics, self.options = tuple(views), figures, metrics, options

    def log(self, trace: Trace, step: int | None = None, name: str | None = None,
            views: Sequence[str] | None = None) -> artifacts.Logged:
        from . import mlflow

        logged = mlflow.log(trace, self.run_id, name, self.views if views is None else views, step,
                            figures=self.figures, metrics=self.metrics, options=self.options,
                            tracking_uri=self.tracking_uri if self.run_id else None)
        self.run_id = logged.run
        return logged


class CometLogger:
    """Logs each trace to one Comet experiment (``comet_ml.Experiment`` or ``OfflineExperiment``)."""

    def __init__(self, experiment, *, views: Sequence[str] = artifacts.VIEWS, figures: bool = True,
                 metrics: bool = True, html_tab: bool = True, options: Mapping[str, Any] | None = None):
        self.experiment = experiment
        self.views, self.figures, self.metrics, self.html_tab, self.options = (
            tuple(views), figures, metrics, html_tab, options)

    def log(self, trace: Trace, step: int | None = None, name: str | None = None,
            views: Sequence[str] | None = None) -> artifacts.Logged:
        from . import comet

        return comet.log(self.experiment, trace, self.views if views is None else views, step, name,
                         figures=self.figures, metrics=self.metrics, html_tab=self.html_tab, options=self.options)


class AttentionCallback(TrainerCallback):
    """Capture ``probe_texts`` with the model being trained and log them every ``every_n_steps`` steps.

    - ``probe_texts``: a list of texts (logged as ``probe0``, ``probe1``, ...) or a mapping name -> text;
      a text may be a ``(text, pair)`` tuple for sentence-pair models.
    - ``logger``: any object with ``log(trace, step, name)``, e.g. :class:`MlflowLogger` or :class:`CometLogger`.
    - ``views``: the views to log (default: the logger's own); needs a logger whose ``log`` takes ``views=``.
    - ``qkv=True`` also keeps query/key vectors (for the neuron view); ``at_start`` logs step 0 before training.
    - ``tokenizer``: needed only when the Trainer has no ``processing_class``.

    ``logged`` lists the ``(step, name)`` pairs logged so far.
    """

    def __init__(self, probe_texts: Sequence[str | tuple[str, str]] | Mapping[str, str | tuple[str, str]],
                 every_n_steps: int, logger, *, views: Sequence[str] | None = None, qkv: bool = False,
                 at_start: bool = True, tokenizer=None):
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise InputError(f"every_n_steps must be a whole number >= 1; got {every_n_steps!r}")
        if not callable(getattr(logger, "log", None)):
            raise InputError(
                f"logger must have a log(trace, step, name) method; got {type(logger).__name__}. "
                "Use attnscope.track.MlflowLogger() or attnscope.track.CometLogger(experiment)"
            )
        if views is not None and not _takes_views(logger.log):
            raise InputError(f"views= needs a logger whose log() takes views=; {type(logger).__name__}.log does not. "
                             "Leave views=None and choose the views in the logger")
        self.probes = _probes(probe_texts)
        self.every_n_steps, self.logger, self.views = every_n_steps, logger, views
        self.qkv, self.at_start, self.tokenizer = qkv, at_start, tokenizer
        self.logged: list[tuple[int, str]] = []

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.at_start:
            self._log(state, model, processing_class)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.every_n_steps == 0:
            self._log(state, model, processing_class)

    def _log(self, state, model, processing_class) -> None:
        step = state.global_step
        if not state.is_world_process_zero or any(s == step for s, _ in self.logged):
            return
        tokenizer = self.tokenizer if self.tokenizer is not None else processing_class
        if model is None or tokenizer is None:
            raise InputError("AttentionCallback needs the model and a tokenizer: give the Trainer "
                             "processing_class=tokenizer, or AttentionCallback(..., tokenizer=tokenizer)")
        from ..capture import capture

        for name, (text, pair) in self.probes.items():
            trace = capture(model, tokenizer, text, pair=pair, qkv=self.qkv)
            extra = {} if self.views is None else {"views": self.views}
            self.logger.log(trace.with_meta(step=step), step=step, name=name, **extra)
            self.logged.append((step, name))
        _log.info("attnscope: logged %d probe(s) at step %d", len(self.probes), step)


def _probes(probe_texts) -> dict[str, tuple[str, str | None]]:
    if isinstance(probe_texts, str):
        probe_texts = [probe_texts]
    if isinstance(probe_texts, Mapping):
        items = [(artifacts.check_name(str(k)), v) for k, v in probe_texts.items()]
    elif isinstance(probe_texts, Sequence):
        items = [(f"probe{i}", v) for i, v in enumerate(probe_texts)]
    else:
        raise InputError(f"probe_texts must be a list of texts or a mapping name -> text; got {type(probe_texts)}")
    if not items:
        raise InputError("probe_texts is empty; give at least one text to watch")
    out = {}
    for name, value in items:
        text, pair = None, None
        if isinstance(value, str):
            text = value
        elif isinstance(value, tuple) and len(value) == 2:
            text, pair = value
        if not isinstance(text, str) or not text.strip() or (pair is not None and not isinstance(pair, str)):
            raise InputError(f"probe {name!r} must be a non-empty text or a (text, pair) tuple of strings; "
                             f"got {value!r}")
        out[name] = (text, pair)
    return out


def _takes_views(method) -> bool:
    params = inspect.signature(method).parameters.values()
    return any(p.name == "views" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
