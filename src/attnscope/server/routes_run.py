"""Routes that run models: what the server offers, and capturing a text."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from .._version import __version__
from ..views.registry import TRACE_VIEWS, VIEWS
from .bodies import JsonBody
from .errors import ApiError
from .models import CaptureJob
from .routes_measures import measures
from .routes_traces import hold, trace_info
from .state import App, AppState

router = APIRouter(prefix="/api")


class CaptureBody(JsonBody):
    """``POST /api/capture``: a text (and optionally a pair, a decoder target, tokens to generate)."""

    model: str | None = None
    text: str
    pair: str | None = None
    target: str | None = None
    generate: int = Field(0, ge=0)


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
        "views": list(TRACE_VIEWS),
        "view_options": {name: list(VIEWS[name].options or ()) for name in TRACE_VIEWS},  # what each view takes
        "measures": measures(),
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
    job = check_job(app, body.text, body.pair, body.target, body.generate)
    trace = await app.gates[f"model:{name}"].run(app.models.capture, name, job)
    entry = hold(app, trace, {"type": "capture", "model": name})
    return trace_info(entry)


def check_job(app: AppState, text: str | None, pair: str | None, target: str | None, generate: int,
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
