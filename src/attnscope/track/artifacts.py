"""What attnscope logs to an experiment tracker, laid out the same way for Comet and MLflow.

One logged trace is a folder of files plus a set of metrics and parameters::

    attnscope/<name>/step-<N>/trace.safetensors   the Trace itself (reload it with load_trace)
    attnscope/<name>/step-<N>/<view>.html          standalone interactive views (open from disk)
    attnscope/<name>/step-<N>/<view>.png           static figures of the same views
    attnscope/<name>/step-<N>/heads.csv            per-head metrics, one row per (kind, layer, head)

(``step-<N>`` is left out when no step is given; ``<name>`` defaults to ``trace``.) Metrics are per-layer means
of the per-head metrics (``attn/<name>/L3/entropy``), their means over all heads (``attn/<name>/entropy``) and
how many heads carry each label (``attn/<name>/heads/previous``); the name part is left out when no name was
given, a kind part is added for traces with several kinds (encoder-decoders). Parameters describe the model
and the text (``attnscope/model``, ``attnscope/<name>/text``).
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._files import atomic_write
from ..errors import InputError, MissingDataError
from ..text import clean_text
from ..trace import Trace

ROOT = "attnscope"
DEFAULT_NAME = "trace"
TRACE_FILE = "trace.safetensors"
TABLE_FILE = "heads.csv"
VIEWS = ("model", "head")
#: Longest parameter value logged; trackers cap them (MLflow at a few thousand characters).
MAX_PARAM_CHARS = 500

_TRACE_PATH = re.compile(rf"^{ROOT}/(?P<name>[^/]+)(?:/step-(?P<step>\d+))?/{re.escape(TRACE_FILE)}$")
_NAME_OK = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass
class Bundle:
    """Everything one ``log`` call sends: files written to a local folder, metrics and parameters."""

    name: str
    step: int | None
    folder: str  # artifact folder inside the run, e.g. "attnscope/probe0/step-00000010"
    files: dict[str, Path] = field(default_factory=dict)  # path inside the run -> local file
    figures: dict[str, str] = field(default_factory=dict)  # view -> path inside the run of its PNG (in files)
    fragments: dict[str, str] = field(default_factory=dict)  # view -> embeddable HTML (notebook form)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Logged:
    """What a ``log`` call wrote: where (``run``: MLflow run id or Comet experiment key) and under which names."""

    run: str
    name: str
    step: int | None
    files: tuple[str, ...]
    metrics: dict[str, float]
    params: dict[str, str]


def check_name(name: str | None) -> str:
    """The artifact name to use: ``name`` if it is a plain file-name-like word, else an InputError."""
    if name is None:
        return DEFAULT_NAME
    if not isinstance(name, str) or not _NAME_OK.match(name) or name in (".", ".."):
        raise InputError(
            f"name must be a short word of letters, digits, '_', '-' or '.' (it becomes a folder name); got {name!r}"
        )
    return name


def check_step(step: int | None) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InputError(f"step must be a whole number >= 0 (or None); got {step!r}")
    return step


def folder_of(name: str, step: int | None) -> str:
    return f"{ROOT}/{name}" + ("" if step is None else f"/step-{step:08d}")


def build(
    trace: Trace,
    dest: Path,
    *,
    name: str | None,
    step: int | None,
    views: Sequence[str],
    figures: bool,
    metrics: bool,
    fragments: bool = False,
    options: Mapping[str, Any] | None = None,
) -> Bundle:
    """Write the files of one logged trace into ``dest`` and compute its metrics and parameters.

    ``options`` go to every view and figure (e.g. ``theme="dark"``); ``fragments=True`` also keeps each view's
    embeddable HTML (what a notebook shows), for trackers with an HTML page of their own (Comet).
    """
    if not isinstance(trace, Trace):
        raise InputError(f"expected an attnscope Trace; got {type(trace).__name__}. Make one with attnscope.capture")
    if isinstance(views, str):
        views = (views,)
    label = check_name(name)
    step = check_step(step)
    bundle = Bundle(label, step, folder_of(label, step))
    local = Path(dest) / bundle.folder
    local.mkdir(parents=True, exist_ok=True)
    options = dict(options or {})

    def add(file_name: str) -> Path:
        path = local / file_name
        bundle.files[f"{bundle.folder}/{file_name}"] = path
        return path

    trace.save(add(TRACE_FILE))
    if views:
        from ..views import render

        for view in views:
            rendered = render(view, trace, **options)
            atomic_write(add(f"{view}.html"), rendered.html())
            if fragments:
                bundle.fragments[view] = rendered._repr_html_()
    if figures and views:
        from ..figures import save_figure

        for view in views:
            save_figure(view, trace, add(f"{view}.png"), **options)
            bundle.figures[view] = f"{bundle.folder}/{view}.png"
    if metrics:
        rows = head_rows(trace)
        write_table(rows, add(TABLE_FILE))
        bundle.metrics = summarize(rows, prefix=_prefix(name), kinds=len(trace.kinds) > 1)
    bundle.params = params_of(trace, name)
    return bundle


def head_rows(trace: Trace) -> list[dict[str, Any]]:
    """Per-head metrics of every attention kind, each record with its ``kind``."""
    from ..analysis import head_metrics

    return [{"kind": kind, **row} for kind in trace.kinds for row in head_metrics(trace, kind=kind)]


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows as a CSV file, one column per key seen in any row."""
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, text.getvalue())


def summarize(rows: list[dict[str, Any]], *, prefix: str, kinds: bool) -> dict[str, float]:
    """Per-layer and overall means of every numeric per-head metric, and the number of heads per label
    (every known label, zero included, so a label that disappears during training shows as a drop to 0)."""
    from ..analysis.metrics import LABELS

    out: dict[str, float] = {}
    groups: dict[tuple[str, int | None, str], list[float]] = {}
    labels = {(kind, label): 0 for kind in dict.fromkeys(r["kind"] for r in rows) for label in LABELS}
    for row in rows:
        for key, value in row.items():
            if key in ("kind", "layer", "head") or isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            if not math.isfinite(value):
                continue
            groups.setdefault((row["kind"], row["layer"], key), []).append(float(value))
            groups.setdefault((row["kind"], None, key), []).append(float(value))
        if isinstance(row.get("label"), str) and row["label"]:
            labels[(row["kind"], row["label"])] = labels.get((row["kind"], row["label"]), 0) + 1
    for (kind, layer, key), values in groups.items():
        where = f"{kind}/" if kinds else ""
        where += "" if layer is None else f"L{layer}/"
        out[f"attn/{prefix}{where}{key}"] = sum(values) / len(values)
    for (kind, label), count in labels.items():
        where = f"{kind}/" if kinds else ""
        out[f"attn/{prefix}{where}heads/{_metric_word(label)}"] = float(count)
    return out


def params_of(trace: Trace, name: str | None) -> dict[str, str]:
    """Model facts (same for every trace of a run) and text facts (per name) as string parameters."""
    meta = trace.meta
    L, H, _, _ = trace.shape()
    model = {
        "model": meta.get("model"),
        "architecture": meta.get("architecture"),
        "model_type": meta.get("model_type"),
        "dtype": meta.get("dtype"),
        "layers": L,
        "heads": H,
        "kinds": ",".join(trace.kinds),
        "version": meta.get("version"),
    }
    text = {
        "text": meta.get("text"),
        "pair": meta.get("pair"),
        "target": meta.get("target"),
        "generate": meta.get("generate") or None,
        "tokens": ",".join(f"{s}:{len(t)}" for s, t in trace.tokens.items()),
        "pruned": any(a.pruned for a in trace.attention.values()) or None,
    }
    out = {f"{ROOT}/{k}": _param(v) for k, v in model.items() if v not in (None, "")}
    out.update({f"{ROOT}/{_prefix(name)}{k}": _param(v) for k, v in text.items() if v not in (None, "")})
    return out


def traces_in(paths: Iterable[str]) -> dict[str, dict[int | None, str]]:
    """Logged trace files among artifact paths: name -> step (None when logged without one) -> path."""
    found: dict[str, dict[int | None, str]] = {}
    for path in paths:
        m = _TRACE_PATH.match(path)
        if m:
            step = int(m["step"]) if m["step"] is not None else None
            found.setdefault(m["name"], {})[step] = path
    return found


def choose_name(names: Iterable[str], name: str | None, where: str) -> str:
    """``name`` if it was logged, else the only logged name; an error that lists the names otherwise."""
    names = sorted(names)
    if not names:
        raise MissingDataError(f"{where} holds no attnscope trace; log one with attnscope.track's log()")
    if name is None:
        if len(names) > 1:
            raise InputError(f"{where} holds traces under several names {names}; pass name=... to pick one")
        return names[0]
    if name not in names:
        raise MissingDataError(f"{where} holds no trace named {name!r}; it has {names}")
    return name


def pick(found: dict[str, dict[int | None, str]], name: str | None, step: int | None, where: str) -> str:
    """The artifact path of the asked trace: the only name (or ``name``) at ``step`` (or its latest step)."""
    name = choose_name(found, name, where)
    steps = found[name]
    if step is None:
        return steps[max(steps, key=lambda s: -1 if s is None else s)]
    if step not in steps:
        logged = sorted(s for s in steps if s is not None)
        raise MissingDataError(f"{where} has no trace {name!r} at step {step}; it was logged at steps {logged}")
    return steps[step]


def _prefix(name: str | None) -> str:
    return "" if name is None else f"{check_name(name)}/"


def _param(value: Any) -> str:
    """A parameter value as trackers store it: a string of at most MAX_PARAM_CHARS, lone surrogates (which their
    UTF-8 stores cannot hold) replaced by U+FFFD."""
    text = clean_text(str(value))
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 1] + "…"


def _metric_word(text: str) -> str:
    """A label as a metric-name word (trackers allow letters, digits, ``_ - . /`` and spaces)."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("_") or "unlabelled"
