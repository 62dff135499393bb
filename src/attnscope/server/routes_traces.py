"""Routes on held traces: summary, view payloads, lazily fetched heads, rows, downloads (trace, HTML, PNG).

Everything built from a trace goes through a gate: payloads, heads and HTML or trace downloads through ``render``
(at most ``Settings.view_queue`` waiting), PNG figures through ``figures`` (slow to draw, so they do not hold up
the heads a page is waiting for), the blocks of rows a view of a long input streams through ``rows`` (small and
frequent: they never wait behind a payload being built); one job at a time each, 429 past the wait list. Several
heavy requests for a long trace therefore never build at once (each can take memory in proportion to the trace).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from ..index_list import IndexList
from ..summary import describe
from ..trace import Trace
from ..views import View
from ..views.registry import spec
from .errors import ApiError, JsonResponse, utf8
from .guard import VIEW_CSP_MARK
from .payloads import head_payload, rows_payload, vectors_payload, view_data
from .state import App, AppState
from .store import Entry

router = APIRouter(prefix="/api/traces")



def hold(app: AppState, trace: Trace, source: dict[str, Any]) -> Entry:
    """Hold a trace this server made itself (a capture): described, then added to the store."""
    return app.store.add(trace, source, info=describe(trace))


def trace_info(entry: Entry) -> dict[str, Any]:
    """A held trace's id, source, description and size (what the API returns about it)."""
    source = {k: v for k, v in entry.source.items() if k != "key"}
    return {"id": entry.id, "source": source, **entry.info, "bytes": entry.nbytes}


def held(trace_id: str, app: App) -> Entry:
    """The held trace ``trace_id`` (a 404 when it was never held or has been dropped)."""
    entry = app.store.get(trace_id)
    if entry is None:
        raise ApiError(404, f"no trace {trace_id!r} on this server (traces are kept in memory, the least recently "
                            "used dropped first); capture it again or reopen it from the trace browser")
    return entry


def indices(text: str | None, name: str) -> list[int] | None:
    """``"0,3,5-7"`` -> ``[0, 3, 5, 6, 7]`` (:class:`attnscope.index_list.IndexList`; at most
    :data:`~attnscope.index_list.MAX_INDICES` indices, anything else a 422)."""
    parsed = IndexList.parse(text, name)
    return None if parsed is None else parsed.indices()


def view_options(
    view: Annotated[str, Query()] = "head",
    kind: str | None = None, layer: int | None = None, head: int | None = None, heads: str | None = None,
    query: int | None = None, filter: str | None = None, theme: str | None = None, prettify: bool | None = None,
    include_layers: str | None = None, include_heads: str | None = None, metric: str | None = None,
    sort: bool | None = None, by: str | None = None, hide_sinks: bool | None = None, renormalize: bool | None = None,
) -> tuple[str, dict[str, Any]]:
    """The view name and its options from the query string (only those given; the view checks them)."""
    spec(view, "trace")  # a 422 naming the views of a trace
    given = {"kind": kind, "layer": layer, "head": head, "heads": indices(heads, "heads"), "query": query,
             "filter": filter, "theme": theme, "prettify": prettify,
             "include_layers": indices(include_layers, "include_layers"),
             "include_heads": indices(include_heads, "include_heads"), "metric": metric, "sort": sort,
             "by": by, "hide_sinks": hide_sinks, "renormalize": renormalize}  # units and sinks: views/_units.py
    return view, {k: v for k, v in given.items() if v is not None}


Held = Annotated[Entry, Depends(held)]
Chosen = Annotated[tuple[str, dict[str, Any]], Depends(view_options)]


def _lazy_flag(lazy: str) -> bool | None:
    choices = {"auto": None, "1": True, "true": True, "0": False, "false": False}
    if lazy not in choices:
        raise ApiError(422, f"lazy must be auto, 1 or 0; got {lazy!r}")
    return choices[lazy]


@router.get("")
def list_traces(app: App) -> dict:
    return {"traces": [trace_info(e) for e in app.store.entries()], "bytes": app.store.nbytes}


@router.get("/{trace_id}")
def get_trace(entry: Held) -> dict:
    return trace_info(entry)


@router.get("/{trace_id}/view")
async def get_view(app: App, entry: Held, chosen: Chosen, lazy: str = "auto") -> JsonResponse:
    """One view's data: ``{"view", "options", "payload", "lazy"}`` (a skeleton when ``lazy``)."""
    view, options = chosen
    flag = _lazy_flag(lazy)
    data = await app.gates["render"].run(
        lambda: view_data(entry, view, options, lazy=flag, lazy_bytes=app.settings.lazy_bytes))
    return JsonResponse(data)


@router.get("/{trace_id}/head")
async def get_head(app: App, entry: Held, kind: str | None = None, layer: int = 0, head: int | None = None,
                   heads: str | None = None, dtype: str = "uint8", qkv: bool = False) -> JsonResponse:
    """The payload of one head (``head=``), of several heads of a layer (``heads=0,1,2``), or of the whole layer."""
    if head is not None and heads is not None:
        raise ApiError(422, "pass head= or heads=, not both")
    kind = kind or entry.trace.default_kind
    chosen = [head] if head is not None else indices(heads, "heads")
    data = await app.gates["render"].run(
        lambda: head_payload(entry.trace, kind, layer, chosen, dtype=dtype, qkv=qkv))
    return JsonResponse(data)


@router.get("/{trace_id}/rows")
async def get_rows(app: App, entry: Held, kind: str | None = None, layer: int = 0, heads: str | None = None,
                   start: int = 0, stop: int = 1, key_start: int = 0, key_stop: int | None = None) -> JsonResponse:
    """Weights of query rows ``start..stop-1`` at keys ``key_start..key_stop-1`` of some heads (``heads=0,1,2``,
    default all) of one layer: the block a view of a long input draws (float16, at most ``ROWS_MAX`` weights)."""
    chosen = indices(heads, "heads")
    keys = None if key_stop is None else (key_start, key_stop)
    data = await app.gates["rows"].run(
        lambda: rows_payload(entry.trace, kind, layer, chosen, (start, stop), keys))
    return JsonResponse(data)


@router.get("/{trace_id}/vectors")
async def get_vectors(app: App, entry: Held, kind: str | None = None, layer: int = 0, head: int = 0) -> JsonResponse:
    """One head's queries, keys and row log-sum-exps of a trace in the q/k form (what a neuron view recomputes
    from), coded as in a payload's ``qk`` entry."""
    data = await app.gates["render"].run(lambda: vectors_payload(entry.trace, kind, layer, head))
    return JsonResponse(data)


@router.get("/{trace_id}/download/trace")
async def download_trace(app: App, entry: Held, float16: bool = False) -> Response:
    def save() -> bytes:
        with tempfile.TemporaryDirectory(prefix="attnscope-serve-") as tmp:
            path = entry.trace.save(Path(tmp) / "trace.safetensors", dtype="float16" if float16 else "float32")
            return path.read_bytes()

    data = await app.gates["render"].run(save)
    return Response(data, media_type="application/octet-stream",
                    headers=_attachment(f"{_stem(entry)}.safetensors"))


@router.get("/{trace_id}/download/html")
async def download_html(app: App, entry: Held, chosen: Chosen, inline: bool = False) -> Response:
    """The view as a standalone HTML file (``inline=1`` opens it in the browser instead of saving it)."""
    view, options = chosen
    text = await app.gates["render"].run(lambda: View(view, entry.trace, options).html())
    headers = {VIEW_CSP_MARK: "1"}
    if not inline:
        headers.update(_attachment(f"{_stem(entry)}-{view}.html"))
    return Response(utf8(text), media_type="text/html; charset=utf-8", headers=headers)


@router.get("/{trace_id}/download/png")
async def download_png(app: App, entry: Held, chosen: Chosen, dpi: float = 150) -> Response:
    """The view as a PNG figure (drawn by matplotlib, one at a time; 429 when many wait)."""
    view, options = chosen
    if not 30 <= dpi <= 300:
        raise ApiError(422, f"dpi must be between 30 and 300; got {dpi}")

    def draw() -> bytes:
        from ..figures import save_figure

        with tempfile.TemporaryDirectory(prefix="attnscope-serve-") as tmp:
            return save_figure(view, entry.trace, Path(tmp) / "figure.png", dpi=dpi, **options).read_bytes()

    data = await app.gates["figures"].run(draw)
    return Response(data, media_type="image/png", headers=_attachment(f"{_stem(entry)}-{view}.png"))


def _stem(entry: Entry) -> str:
    model = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(entry.trace.meta.get("model") or "trace")).strip("-.")[:40]
    return f"attnscope-{model or 'trace'}-{entry.id[:8]}"


def _attachment(filename: str) -> dict[str, str]:
    return {"content-disposition": f'attachment; filename="{filename}"'}
