"""Routes that run models: what the server offers, capturing a text, comparing two inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from .._version import __version__
from ..analysis import compare as compare_traces
from .errors import ApiError
from .models import CaptureJob
from .routes_traces import VIEW_NAMES, trace_info
from .state import App, AppState

router = APIRouter(prefix="/api")

MAX_RANKED = 50


class CaptureBody(BaseModel):
    """``POST /api/capture``: a text (and optionally a pair, a decoder target, tokens to generate)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    text: str
    pair: str | None = None
    target: str | None = None
    generate: int = Field(0, ge=0)


class CompareBody(BaseModel):
    """``POST /api/compare``: two texts for one model, or two held traces by id."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    text_a: str | None = None
    text_b: str | None = None
    trace_a: str | None = None
    trace_b: str | None = None
    kind: str | None = None
    top: int = Field(20, ge=1, le=MAX_RANKED)


@router.get("/health")
def health() -> dict:
    return {"ok": True, "version": __version__}


@router.get("/config")
def config(app: App) -> dict:
    """What the pages need to know: models, views, limits, and which browsers are on."""
    s = app.settings
    return {
        "version": __version__,
        "models": app.models.describe(),
        "views": list(VIEW_NAMES),
        "limits": {"max_chars": s.max_chars, "max_tokens": s.max_tokens, "max_generate": s.max_generate,
                   "max_body_bytes": s.max_body_bytes, "queue_size": s.queue_size},
        "traces_dir": s.traces_dir is not None,
        "mlflow": True,
        "remote": s.allow_remote,
    }


@router.get("/models")
def models(app: App) -> dict:
    return {"models": app.models.describe(), "queues": app.gates.status()}


@router.post("/capture")
async def capture(body: CaptureBody, app: App) -> dict:
    """Run a text through an allowed model (one forward pass at a time per model) and hold the trace."""
    name = app.models.check(body.model)
    job = _job(app, body.text, body.pair, body.target, body.generate)
    trace = await app.gates[f"model:{name}"].run(app.models.capture, name, job)
    entry = app.store.add(trace, {"type": "capture", "model": name})
    return trace_info(entry)


@router.post("/compare")
async def compare(body: CompareBody, app: App) -> dict:
    """Rank the heads whose attention changed most between two inputs (``attnscope.analysis.compare``)."""
    if body.trace_a or body.trace_b:
        if body.text_a is not None or body.text_b is not None or body.model is not None:
            raise ApiError(422, "compare either two texts (model, text_a, text_b) or two traces (trace_a, trace_b)")
        entries = [_held(app, body.trace_a, "trace_a"), _held(app, body.trace_b, "trace_b")]
        result = await app.gates["analysis"].run(
            lambda: compare_traces(entries[0].trace, entries[1].trace, kind=body.kind))
    else:
        name = app.models.check(body.model)
        jobs = [_job(app, body.text_a, None, None, 0, "text_a"), _job(app, body.text_b, None, None, 0, "text_b")]

        def run():
            traces = [app.models.capture(name, job) for job in jobs]
            model, tokenizer = app.models.get(name)
            causal = all(t.meta.get("kinds", {}).get("self", {}).get("causal") for t in traces)
            return compare_traces(*traces, kind=body.kind, model=model if causal else None,
                                  tokenizer=tokenizer if causal else None)

        result = await app.gates[f"model:{name}"].run(run)
        entries = [app.store.add(t, {"type": "capture", "model": name}) for t in (result.trace_a, result.trace_b)]
    return comparison_info(result, entries, body.top)


def comparison_info(result, entries, top: int) -> dict[str, Any]:
    div = np.round(np.asarray(result.divergence, dtype=np.float64), 6)
    out = {
        "a": trace_info(entries[0]), "b": trace_info(entries[1]), "kind": result.kind,
        "ranked": [{**r, "divergence": round(float(r["divergence"]), 6)} for r in result.top(top)],
        "divergence": div.tolist(), "rows": len(result.rows),
        "identical": bool(result.query_alignment.identical),
        "next": None,
    }
    if result.next_a is not None:
        out["next"] = result.next_token_table()
    return out


def _held(app: AppState, trace_id: str | None, name: str):
    entry = app.store.get(trace_id) if trace_id else None
    if entry is None:
        raise ApiError(404, f"{name}: no trace {trace_id!r} on this server; capture or open it first")
    return entry


def _job(app: AppState, text: str | None, pair: str | None, target: str | None, generate: int,
         name: str = "text") -> CaptureJob:
    """Check a text before it waits for a model: not empty, not longer than the server takes."""
    limit = app.settings.max_chars
    fields = {name: text, "pair": pair, "target": target}
    for field, value in fields.items():
        if value is None or (field != name and value == ""):
            continue
        if not value.strip():
            raise ApiError(422, f"{field} is empty; type at least one word")
        if len(value) > limit:
            raise ApiError(422, f"{field} is {len(value)} characters; this server takes at most {limit}")
    if text is None:
        raise ApiError(422, f"{name} is missing")
    if generate > app.settings.max_generate:
        raise ApiError(422, f"generate is {generate}; this server generates at most {app.settings.max_generate} "
                            "tokens")
    return CaptureJob(text, pair or None, target or None, generate)
