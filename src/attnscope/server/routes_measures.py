"""Routes that measure context mixing on a held trace: its text through its model again, with one method.

``POST /api/traces/{id}/measure`` ``{"method": "alti"}`` holds the result of
:func:`attnscope.analysis.contributions` as a new trace (its ``"self"`` attention is the contribution matrix), so
every view of the page draws it. The model must be one this server serves; the measure runs under that model's
gate, one forward pass at a time, and a measure already made of the same trace is held once.
"""

from __future__ import annotations

from fastapi import APIRouter

from ..analysis.measures import METHODS
from .bodies import JsonBody
from .errors import ApiError
from .routes_traces import held, hold, trace_info
from .state import App, AppState
from .store import Entry

router = APIRouter(prefix="/api/traces")


class MeasureBody(JsonBody):
    """``POST /api/traces/{id}/measure``: the method (see ``GET /api/config``'s ``measures``)."""

    method: str


def measures() -> list[dict[str, str]]:
    """The methods the page offers, with their names (``GET /api/config``)."""
    return [{"value": m, "label": name} for m, (name, _) in METHODS.items()]


@router.post("/{trace_id}/measure")
async def measure(trace_id: str, body: MeasureBody, app: App) -> dict:
    """Measure the held trace's text with ``method`` and hold the result (the same one when asked again)."""
    entry = held(trace_id, app)
    base = app.store.get(entry.source.get("of", "")) if entry.source.get("type") == "measure" else entry
    if base is None:
        raise ApiError(404, "the trace this measure was made of is no longer held; capture the text again")
    if body.method not in METHODS:
        raise ApiError(422, f"unknown method {body.method!r}; choose one of {', '.join(METHODS)}")
    name = _model_of(app, base)
    made = ("measure", body.method)  # base.parts remembers the id of each measure made of it
    done = app.store.get(base.parts.get(made, ""))
    if done is not None:
        return trace_info(done)
    trace = await app.gates[f"model:{name}"].run(_contributions, app, name, base, body.method)
    new = hold(app, trace, {"type": "measure", "method": body.method, "of": base.id, "model": name})
    base.parts[made] = new.id
    return trace_info(new)


def _model_of(app: AppState, entry: Entry) -> str:
    """The served model the trace was captured with (400 when it is not one this server serves)."""
    model = entry.source.get("model") or entry.trace.meta.get("model")
    if not model:
        raise ApiError(422, "this trace does not name its model, so it cannot be measured; capture the text here")
    if "self" not in entry.trace.attention or not entry.trace.meta.get("text"):
        raise ApiError(422, "measures read a captured text of an encoder-only or decoder-only model; this trace is "
                            "not one (capture the text here)")
    n = len(entry.trace.tokens.get("input", ()))
    if n > app.settings.qkv_tokens:
        raise ApiError(422, f"measures need the value vectors of every layer, which this server keeps up to "
                            f"{app.settings.qkv_tokens} tokens; this text has {n}: measure a shorter one")
    return app.models.check(model)


def _contributions(app: AppState, name: str, entry: Entry, method: str):
    from ..analysis import contributions

    model, tokenizer = app.models.get(name)
    return contributions(entry.trace, method=method, model=(model, tokenizer))
