"""The FastAPI app: pages, the views' own JavaScript, and the JSON API (routes_*.py), behind the guard.

    /                      explore: pick a model, type text, see every view, download trace/HTML/PNG
    /compare               two inputs: heads ranked by how much their attention changed
    /traces                saved traces in --traces DIR, traces logged to MLflow, traces in memory
    /atlas                 corpus atlases in --traces DIR (attnscope corpus): every head across a corpus
    /assets/views.{js,css} the package's view code (attnscope/web), exposed as window.attnscope.views
    /static/...            the pages' own HTML, CSS and JavaScript (attnscope/server/static)
    /api/...               JSON; every error is {"error": message}

The API (``{id}`` is a held trace):

    GET  /api/config, /api/models, /api/health       what the server offers, queues, liveness
    POST /api/capture  {model, text, pair?, target?, generate?}      -> trace summary (with its id)
    POST /api/compare  {model, text_a, text_b} | {trace_a, trace_b}  -> ranked heads and the diff view's data
    GET  /api/compare/diff?a=ID&b=ID&layer=..&head=..  the diff view of one head (long inputs)
    GET  /api/traces, /api/traces/{id}                 held traces (an LRU bounded by count and bytes)
    GET  /api/traces/{id}/view?view=head&layer=..      the view's payload, or a skeleton for long inputs
    GET  /api/traces/{id}/head?layer=3&head=5          one head's payload (heads=0,1,2 for several; qkv=1)
    GET  /api/traces/{id}/rows?layer=3&heads=0-7&start=100&stop=140&key_start=100&key_stop=140
                                                       a block of rows of some heads (long inputs stream these)
    GET  /api/traces/{id}/vectors?layer=3&head=5       one head's queries and keys (q/k traces: the neuron view)
    GET  /api/traces/{id}/download/{trace,html,png}    .safetensors, standalone HTML, PNG figure
    GET  /api/files?dir=                               the --traces folder: list
    POST /api/files/trace  {path}                      open a trace file of it (422 if malformed, kept nowhere)
    GET  /api/mlflow/runs                              traces logged to MLflow: list
    POST /api/mlflow/trace {run, name?, step?}         open one
    GET  /api/atlases, /api/atlas?path=..&other=..     corpus atlases in the --traces folder: list, view data
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import resources
from string import Template

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from .._version import __version__
from ..views import assets
from . import errors
from .guard import Guard
from .routes_atlas import router as atlas_router
from .routes_browse import router as browse_router
from .routes_compare import router as compare_router
from .routes_measures import router as measures_router
from .routes_run import router as run_router
from .routes_traces import router as traces_router
from .settings import Settings
from .state import AppState

#: path -> (page file under static/pages, title, its module script, whether it draws views)
PAGES = {"/": ("index.html", "explore", "explore.js", True), "/compare": ("compare.html", "compare", "compare.js", True),
         "/traces": ("traces.html", "traces", "traces.js", False), "/atlas": ("atlas.html", "atlas", "atlas-page.js", True)}
#: What the pages load besides /api/: the package's own files, served without the token (see guard.py).
CODE_PREFIXES = ("/static/", "/assets/")


def static_dir():
    return resources.files("attnscope.server") / "static"


@lru_cache(maxsize=1)
def views_script() -> str:
    """Every view's JavaScript (the same files a saved view inlines) in one closure, published as
    ``window.attnscope.views`` (name -> ``render(root, payload, options)``)."""
    body = assets.every_script()
    return ("(function () {\n\"use strict\";\n" + body +
            "\nwindow.attnscope = Object.freeze({ views: Object.freeze(Object.assign({}, views)) });\n})();\n")


@lru_cache(maxsize=1)
def views_css() -> str:
    """Every view's style sheets (style.css first), as the saved views inline them."""
    return assets.every_style()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (checked first: a remote address needs allow_remote and a token)."""
    settings = (settings or Settings()).check()
    app = FastAPI(title="attnscope", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  default_response_class=errors.JsonResponse)
    app.state.attnscope = AppState(settings)
    errors.install(app)
    app.include_router(run_router)
    app.include_router(compare_router)
    app.include_router(traces_router)
    app.include_router(browse_router)
    app.include_router(atlas_router)
    app.include_router(measures_router)

    @app.get("/assets/views.js", include_in_schema=False)
    def _views_js() -> Response:
        return Response(views_script(), media_type="text/javascript; charset=utf-8")

    @app.get("/assets/views.css", include_in_schema=False)
    def _views_css() -> Response:
        return Response(views_css(), media_type="text/css; charset=utf-8")

    for path in PAGES:
        app.add_api_route(path, _page(path), methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(static_dir())), name="static")
    app.add_middleware(Guard, settings=settings, public_paths=frozenset(PAGES), public_prefixes=CODE_PREFIXES)
    return app


@cache
def page_html(path: str) -> str:
    """The page at ``path``: static/page.html (head, navigation bar) around the page's own main part."""
    name, title, script, views = PAGES[path]
    head = ('<link rel="stylesheet" href="/assets/views.css">\n' if views else "") + \
        '<link rel="stylesheet" href="/static/app.css">\n' + \
        ('<script src="/assets/views.js"></script>\n' if views else "") + \
        f'<script type="module" src="/static/{script}"></script>\n'
    main = (static_dir() / "pages" / name).read_text(encoding="utf-8")
    return Template((static_dir() / "page.html").read_text(encoding="utf-8")).substitute(title=title, head=head, main=main)


def _page(path: str):
    def page() -> HTMLResponse:
        return HTMLResponse(page_html(path), media_type="text/html; charset=utf-8")

    page.__name__ = f"page_{PAGES[path][1]}"
    return page
