"""``attnscope serve``: a local web app to type text, pick a model and explore every view in the browser.

    from attnscope.server import serve
    serve(port=8000, models=["smollm2"], traces_dir="runs/")   # http://127.0.0.1:8000

Safe by default: it listens on 127.0.0.1 only (``allow_remote=True`` needs a ``token``, checked on every API
request and never written to its logs), runs only allow-listed models (never with remote code), one forward pass
and one view build at a time with bounded queues (HTTP 429 beyond them), limits body size, tokens and how long a
client may take to send a request, and its trace browser never leaves ``traces_dir`` nor opens hidden files.
Build the app without running it with :func:`create_app` (for tests or another ASGI server).
Needs the ``server`` extra: ``pip install 'attnscope[server]'``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..errors import require
from .settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None):
    """The FastAPI app for ``settings`` (see :class:`Settings`)."""
    require("fastapi", "server")
    from .app import create_app as _create

    return _create(settings)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    models: Sequence[str] = (),
    traces_dir: str | Path | None = None,
    allow_remote: bool = False,
    token: str | None = None,
    *,
    mlflow_uri: str | None = None,
    max_tokens: int = 512,
    queue_size: int = 4,
    log_level: str = "info",
    **limits,
) -> None:
    """Run the web app with uvicorn until interrupted (Ctrl+C).

    ``models`` are allowed besides the embedded default ``"minilm"``; ``traces_dir`` is the folder the trace
    browser shows; ``mlflow_uri`` the MLflow store it lists (default: MLflow's own); more limits
    (``max_body_bytes``, ``max_chars``, ``cache_traces``, ``view_queue``, ``header_timeout``, ...) as keywords, see
    :class:`Settings`.
    """
    settings = Settings(host=host, port=port, models=tuple(models), traces_dir=Path(traces_dir) if traces_dir
                        else None, mlflow_uri=mlflow_uri, allow_remote=allow_remote, token=token,
                        max_tokens=max_tokens, queue_size=queue_size, **limits).check()
    app = create_app(settings)
    uvicorn = require("uvicorn", "server")
    from .transport import uvicorn_options

    log.info("attnscope serving on http://%s:%d (models: %s)", _url_host(host), port, ", ".join(settings.models))
    uvicorn.run(app, **uvicorn_options(settings, log_level))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


__all__ = ["Settings", "create_app", "serve"]
