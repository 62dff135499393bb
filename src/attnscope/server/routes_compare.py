"""Comparing two inputs: heads ranked by how much their attention changed, drawn with the diff view.

``POST /api/compare`` runs both texts through the model in one slot of its gate (plus the next-token
predictions of causal models), holds both traces, keeps the :class:`~attnscope.analysis.Comparison` in a small
LRU, and answers with the ranking and the diff view's data. A diff view of every head is sent whole while it fits
``Settings.lazy_bytes``; past that it holds one head, and the page asks ``GET /api/compare/diff`` for the next.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter
from pydantic import Field

from ..analysis import Comparison
from ..analysis import compare as compare_traces
from ..analysis.compare import predicts_next
from ..views import render
from .bodies import JsonBody
from .errors import ApiError
from .routes_run import check_job
from .routes_traces import hold, trace_info
from .state import App, AppState
from .store import Entry

router = APIRouter(prefix="/api/compare")

MAX_RANKED = 50


class CompareBody(JsonBody):
    """``POST /api/compare``: two texts for one model, or two held traces by id."""

    model: str | None = None
    text_a: str | None = None
    text_b: str | None = None
    trace_a: str | None = None
    trace_b: str | None = None
    kind: str | None = None
    top: int = Field(20, ge=1, le=MAX_RANKED)
    theme: str | None = None


@router.post("")
async def compare(body: CompareBody, app: App) -> dict:
    """Rank the heads whose attention changed most between two inputs (``attnscope.analysis.compare``)."""
    if body.trace_a or body.trace_b:
        if body.text_a is not None or body.text_b is not None or body.model is not None:
            raise ApiError(422, "compare either two texts (model, text_a, text_b) or two traces (trace_a, trace_b)")
        entries = [held(app, body.trace_a, "trace_a"), held(app, body.trace_b, "trace_b")]
        result = await app.gates["analysis"].run(
            lambda: compare_traces(entries[0].trace, entries[1].trace, kind=body.kind))
    else:
        name = app.models.check(body.model)
        jobs = [check_job(app, body.text_a, None, None, 0, "text_a"),
                check_job(app, body.text_b, None, None, 0, "text_b")]

        def run() -> Comparison:
            traces = [app.models.capture(name, job) for job in jobs]
            model, tokenizer = app.models.get(name)
            causal = predicts_next(model, *traces)
            return compare_traces(traces[0], traces[1], kind=body.kind, model=model if causal else None,
                                  tokenizer=tokenizer if causal else None)

        result = await app.gates[f"model:{name}"].run(run)
        entries = [hold(app, t, {"type": "capture", "model": name}) for t in (result.trace_a, result.trace_b)]
    app.comparisons.put((entries[0].id, entries[1].id, result.kind), result)
    diff = await app.gates["analysis"].run(
        lambda: diff_data(result, top=body.top, theme=body.theme, lazy=None, lazy_bytes=app.settings.lazy_bytes))
    return {**comparison_info(result, entries, body.top), "diff": diff}


@router.get("/diff")
async def diff(app: App, a: str, b: str, kind: str | None = None, layer: int | None = None,
               head: int | None = None, top: int = 20, theme: str | None = None, lazy: str = "auto") -> dict:
    """The diff view's data for two held traces (the comparison made on ``POST /api/compare``, or a new one)."""
    choices = {"auto": None, "1": True, "0": False}
    if lazy not in choices:
        raise ApiError(422, f"lazy must be auto, 1 or 0; got {lazy!r}")
    ea, eb = held(app, a, "a"), held(app, b, "b")

    def make() -> dict:
        found = app.comparisons.get((ea.id, eb.id, kind or ea.trace.default_kind))
        result = found or compare_traces(ea.trace, eb.trace, kind=kind)
        return diff_data(result, layer=layer, head=head, top=top, theme=theme, lazy=choices[lazy],
                         lazy_bytes=app.settings.lazy_bytes)

    return await app.gates["analysis"].run(make)


def diff_data(result: Comparison, *, top: int, theme: str | None, lazy: bool | None, lazy_bytes: int,
              layer: int | None = None, head: int | None = None) -> dict[str, Any]:
    """``{"view": "diff", "options", "payload", "one_head"}``: every head while it fits ``lazy_bytes`` (or
    ``lazy=False``), else only the asked head (default: the most changed one)."""
    L, H = result.divergence.shape
    n_q, n_k = len(result.query_alignment.slots), len(result.key_alignment.slots)
    if lazy is None:
        lazy = 2 * L * H * n_q * n_k * 4 // 3 > lazy_bytes
    options: dict[str, Any] = {"top": top, "theme": theme, "layer": layer, "head": head}
    if lazy:
        if layer is None or head is None:
            best = [(la, h) for la, h, _ in result.ranked if layer in (None, la) and head in (None, h)]
            layer, head = best[0] if best else (layer or 0, head or 0)
        options.update(layer=layer, head=head, include_layers=[layer], include_heads=[head], top=1)
    return {**render("diff", result, **options).data(), "one_head": lazy}


def comparison_info(result: Comparison, entries: list[Entry], top: int) -> dict[str, Any]:
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


def held(app: AppState, trace_id: str | None, name: str) -> Entry:
    entry = app.store.get(trace_id) if trace_id else None
    if entry is None:
        raise ApiError(404, f"{name}: no trace {trace_id!r} on this server; capture or open it first")
    return entry
