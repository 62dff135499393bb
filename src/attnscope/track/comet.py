"""Log traces to Comet (online or offline experiments) and reopen them from offline archives.

    import comet_ml, attnscope
    from attnscope.track import comet

    exp = comet_ml.OfflineExperiment(offline_directory="comet-runs")   # or comet_ml.Experiment(...)
    comet.log(exp, attnscope.capture("minilm", "The cat sat on the mat."), step=0)
    exp.end()                                                         # writes comet-runs/<key>.zip
    trace = comet.load_trace("comet-runs/<key>.zip")

What is logged (see :mod:`attnscope.track.artifacts`): the trace file and the HTML views as assets, the
figures as images, the views on the experiment's HTML tab, per-layer metrics and model/text parameters.
"""

from __future__ import annotations

import html
import json
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._files import atomic_write
from ..errors import AttnscopeError, InputError, MissingDataError, TraceFormatError, require
from ..trace import Trace, load
from . import artifacts
from .artifacts import Logged

#: The file inside an offline archive that lists every logged message, one JSON object a line.
MESSAGES = "messages.json"


def log(
    experiment,
    trace: Trace,
    views: Sequence[str] = artifacts.VIEWS,
    step: int | None = None,
    name: str | None = None,
    *,
    figures: bool = True,
    metrics: bool = True,
    html_tab: bool = True,
    options: Mapping[str, Any] | None = None,
) -> Logged:
    """Log ``trace`` to a Comet experiment (``comet_ml.Experiment`` or ``comet_ml.OfflineExperiment``).

    - assets: ``attnscope/<name>/step-<N>/trace.safetensors``, one ``<view>.html`` per view, ``heads.csv``;
    - images: one PNG figure per view (``figures=False`` skips them); ``html_tab`` adds the views to the
      experiment's HTML tab (each call appends, under a heading with the name and step);
    - metrics at ``step`` (``metrics=False`` skips them); parameters for the model and the text.

    ``name`` tells several traces of one experiment apart (e.g. one per probe text); ``options`` go to every
    view and figure (``theme="dark"``, ``layer=3``, ...). Returns what was logged.
    """
    require("comet_ml", "comet")
    _check_experiment(experiment)
    with tempfile.TemporaryDirectory(prefix="attnscope-comet-") as tmp:
        bundle = artifacts.build(trace, Path(tmp), name=name, step=step, views=views, figures=figures,
                                 metrics=metrics, fragments=html_tab, options=options)
        images = set(bundle.figures.values())
        for remote, local in bundle.files.items():
            if remote in images:
                done = experiment.log_image(str(local), name=remote.removesuffix(".png"), step=bundle.step)
            else:
                done = experiment.log_asset(str(local), file_name=remote, step=bundle.step)
            if done is None:
                raise AttnscopeError(
                    f"Comet did not take {remote} ({local.stat().st_size / 1e6:.1f} MB); its COMET ERROR message "
                    "above says why. A trace over Comet's size limit gets smaller with trace.prune() or "
                    "trace.astype('float16')"
                )
    if bundle.fragments:
        title = html.escape(bundle.name + ("" if bundle.step is None else f" · step {bundle.step}"))
        experiment.log_html(f"<h3>attnscope · {title}</h3>" + "".join(bundle.fragments.values()))
    if bundle.metrics:
        experiment.log_metrics(bundle.metrics, step=bundle.step)
    experiment.log_parameters(bundle.params, step=bundle.step)
    return Logged(run=str(experiment.get_key()), name=bundle.name, step=bundle.step, files=tuple(bundle.files),
                  metrics=bundle.metrics, params=bundle.params)


def load_trace(archive: str | Path, name: str | None = None, *, step: int | None = None) -> Trace:
    """Reopen a trace logged to an offline experiment, from the ``.zip`` archive it wrote on ``end()``.

    With several names in the archive pass ``name``; without ``step`` the latest logged step is read.
    Reading an archive needs no comet_ml: it is a zip of the logged files and a JSON list of messages.
    """
    path = Path(archive)
    if not path.is_file():
        raise InputError(f"no Comet offline archive at {str(path)!r}; OfflineExperiment.end() writes "
                         "<offline_directory>/<experiment key>.zip")
    try:
        with zipfile.ZipFile(path) as zf:
            assets = _assets(zf, path)
            found = artifacts.traces_in(assets)
            chosen = artifacts.pick(found, name, step, f"the Comet archive {str(path)!r}")
            data = zf.read(assets[chosen])
    except zipfile.BadZipFile as exc:
        raise TraceFormatError(f"{str(path)!r} is not a zip archive; pass the .zip an OfflineExperiment wrote") from exc
    with tempfile.TemporaryDirectory(prefix="attnscope-comet-") as tmp:
        file = Path(tmp) / artifacts.TRACE_FILE
        return load(atomic_write(file, data))


def _assets(zf: zipfile.ZipFile, path: Path) -> dict[str, str]:
    """Asset file name (as logged) -> member of the archive holding its bytes; the last upload of a name wins."""
    try:
        lines = zf.read(MESSAGES).decode("utf-8").splitlines()
    except KeyError as exc:
        raise TraceFormatError(f"{str(path)!r} has no {MESSAGES}; it is not a Comet offline archive") from exc
    out: dict[str, str] = {}
    for line in lines:
        if '"file_upload"' not in line:
            continue
        message = json.loads(line)
        payload = message.get("payload", {})
        if message.get("type") != "file_upload" or payload.get("upload_type") != "asset":
            continue
        file_name = (payload.get("additional_params") or {}).get("fileName")
        if file_name and payload.get("file_path"):
            out[file_name] = payload["file_path"]
    if not out:
        raise MissingDataError(f"the Comet archive {str(path)!r} holds no assets; log a trace with "
                               "attnscope.track.comet.log(experiment, trace)")
    return out


def _check_experiment(experiment) -> None:
    if not all(hasattr(experiment, m) for m in ("log_asset", "log_image", "log_metrics", "get_key")):
        raise InputError(
            f"expected a comet_ml Experiment or OfflineExperiment; got {type(experiment).__name__}. "
            "Make one with comet_ml.Experiment(project_name=...) or comet_ml.OfflineExperiment(offline_directory=...)"
        )
    if not getattr(experiment, "alive", True):
        raise InputError(
            "this Comet experiment is not running (alive=False), so nothing would be logged: Comet could not reach "
            "its server, the API key is missing or wrong, or the experiment has ended. Set COMET_API_KEY (or pass "
            "api_key=), check the network, or log without a server: comet_ml.OfflineExperiment(offline_directory=...)"
        )
