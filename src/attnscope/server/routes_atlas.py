"""The atlas page's routes: corpus atlases (``attnscope corpus ... -o DIR``) found in the ``--traces`` folder.

    GET /api/atlases                           atlas folders under the traces folder (model, texts, layout)
    GET /api/atlas?path=P[&other=Q][&metric=M]  the atlas view's data ({view, options, payload}) of P (against Q)

The view carries no embedded head views here: the page captures an exemplar text when it is clicked
(``POST /api/capture`` with the atlas's model, which must be on the server's allow-list).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query

from ..corpus.store import MANIFEST
from ..errors import AttnscopeError
from .errors import ApiError
from .paths import resolve_inside
from .state import App

router = APIRouter(prefix="/api")

MAX_ATLASES = 200
MAX_DEPTH = 4


def _root(app) -> Path:
    root = app.settings.traces_dir
    if root is None:
        raise ApiError(404, "this server has no trace folder; start it with --traces DIR holding atlas folders "
                            "(made with attnscope corpus MODEL DATA -o DIR/atlas)")
    return root


def find_atlases(root: Path) -> list[dict[str, Any]]:
    """Atlas folders under ``root`` (symlinks and hidden folders are not followed), by path."""
    from ..corpus.store import AtlasDir

    found = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and len(rel.parts) < MAX_DEPTH
                         and d not in ("texts", "heads"))
        if MANIFEST not in files:
            continue
        try:
            m = AtlasDir(folder).read_manifest()
        except AttnscopeError:
            continue
        counts = m.get("counts") or {}
        found.append({"path": rel.as_posix() if rel.parts else ".", "model": (m.get("identity") or {}).get("model"),
                      "complete": bool(m.get("complete")), "texts": counts.get("texts"),
                      "measured": counts.get("measured"), "layers": m.get("layers"), "heads": m.get("heads")})
        dirs[:] = []  # an atlas's own folders hold no atlases
        if len(found) >= MAX_ATLASES:
            break
    return found


@router.get("/atlases")
async def atlases(app: App) -> dict:
    """The atlas folders in the trace folder."""
    root = _root(app)
    return {"atlases": await app.gates["files"].run(find_atlases, root)}


@router.get("/atlas")
async def atlas(app: App, path: Annotated[str, Query(max_length=1000)],
                other: Annotated[str | None, Query(max_length=1000)] = None, metric: str | None = None,
                stat: str | None = None, show: str | None = None, theme: str | None = None) -> dict:
    """The atlas view's data for the atlas folder ``path`` (relative to the trace folder), against ``other``."""
    from ..corpus import load
    from ..views import atlas_view

    root = _root(app)
    folders = [resolve_inside(root, p, want="dir") for p in (path, other) if p]

    def make() -> dict:
        try:
            atlases = [load(f) for f in folders]
            view = atlas_view(atlases[0], atlases[1] if len(atlases) > 1 else None, metric=metric, stat=stat,
                              show=show, theme=theme, embed=0)
            data = view.data()
        except AttnscopeError as exc:
            raise ApiError(422, str(exc)) from None
        for part in (data["payload"], data["payload"]["other"] or {}):  # the server's own paths stay on the server
            if "meta" in part:
                part["meta"]["data"] = None
        return {**data, "model": atlases[0].model}

    return await app.gates["files"].run(make)
