"""Every error leaves the server as JSON ``{"error": message}`` with the status that fits.

- :class:`ApiError`: raised by routes with an explicit status (400 bad path, 404 unknown trace, ...).
- attnscope errors map by family: bad input 422, missing data 422, model not loadable 503, missing extra 501,
  failed capture 500 (their messages already say what was wrong and how to fix it).
- :class:`~attnscope.server.queue.Busy` -> 429 with ``Retry-After``.
- FastAPI's validation errors -> 422 (400 for a body that is not JSON), Starlette's 404/405 -> the same shape.
- anything else -> 500 with a generic message (sent by :class:`~attnscope.server.guard.Guard`); the traceback
  goes to the server log, not to the client.

Every JSON answer (errors and results) is a :class:`JsonResponse`: text that UTF-8 cannot encode (a lone
surrogate that got past the places text comes in) is sent as U+FFFD instead of failing the request.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import (
    AttnscopeError,
    InputError,
    MissingDataError,
    MissingExtraError,
    ModelLoadError,
    TraceFormatError,
)
from ..text import clean_text
from .queue import Busy

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a route reports to the client as it is: ``status`` and ``message``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class JsonResponse(JSONResponse):
    """Starlette's JSONResponse, with lone surrogates sent as U+FFFD (see the module docstring)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(clean_text(content))


def utf8(text: str) -> bytes:
    """``text`` as UTF-8, lone surrogates as U+FFFD (for HTML and other text answers)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return clean_text(text).encode("utf-8")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse({"error": message}, status_code=status, headers=headers)


def status_of(exc: AttnscopeError) -> int:
    if isinstance(exc, (InputError, TraceFormatError, MissingDataError)):
        return 422
    if isinstance(exc, ModelLoadError):
        return 503
    if isinstance(exc, MissingExtraError):
        return 501
    return 500  # CaptureError and anything new: the server's fault


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into ``{"error": ...}``."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(AttnscopeError)
    async def _attnscope(request: Request, exc: AttnscopeError):
        status = status_of(exc)
        if status >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(status, str(exc))

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Busy):
        return error_response(429, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such page or endpoint: {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "the request body is not valid JSON")
        return error_response(422, "; ".join(_describe(e) for e in errors[:5]) or "invalid request")


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query"))
    message = str(error.get("msg", "invalid value"))
    return f"{where}: {message}" if where else message
