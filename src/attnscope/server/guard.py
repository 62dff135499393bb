"""The ASGI layer every request passes first: who may ask, how much they may send, and safe response headers.

- Host: on loopback, only ``localhost``/``127.0.0.1``/``[::1]`` Host headers are served (a web page elsewhere
  cannot reach this server by DNS rebinding).
- Token (``allow_remote``): checked on every request in ``Authorization: Bearer``, ``X-Attnscope-Token``,
  ``?token=`` or the HttpOnly, SameSite=Strict cookie set when a page is opened with ``?token=``.
- Cross-site writes: POST needs ``Content-Type: application/json`` (so browsers must ask first, and are refused)
  and, when the browser sends ``Origin``, this very origin; no CORS headers are ever sent, so other sites cannot
  read responses.
- Body size: refused up front from ``Content-Length`` and again while streaming (chunked bodies), with 413.
- Headers: a Content-Security-Policy (scripts and styles only from this server; inline only in downloaded views),
  ``nosniff``, no framing, no referrer, ``no-store`` for the API.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import parse_qs, urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .settings import Settings

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-attnscope-token"

CSP_APP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
           "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: Views downloaded as standalone HTML carry their script and style inline (they open from disk, with no server).
CSP_VIEW = CSP_APP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'").replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'")
VIEW_CSP_MARK = "x-attnscope-inline-view"

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (an HTTPException, so FastAPI's body reading
    lets it through to the JSON error handler)."""

    def __init__(self, limit: int):
        super().__init__(413, _too_large(limit))


class Guard:
    """ASGI middleware applying the rules in the module docstring."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings = app, settings
        self.cookie = f"attnscope_token_{settings.port}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        problem = self._check(scope, headers)
        if problem is not None:
            status, message, extra = problem
            await _send_headers(error_response(status, message, extra), scope, receive, send)
            return
        set_cookie = None
        query_token = _query_token(scope)
        if self.settings.token and query_token and not self._cookie_ok(headers):
            set_cookie = (f"{self.cookie}={self.settings.token}; Path=/; HttpOnly; SameSite=Strict"
                          ).encode("latin-1")

        limit, seen, started = self.settings.max_body_bytes, 0, False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def secured_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = dict(message)
                message["headers"] = _secure(list(message.get("headers", [])), scope["path"], set_cookie)
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except BodyTooLarge:
            if started:
                raise
            await error_response(413, _too_large(limit))(scope, receive, secured_send)
        except Exception as exc:  # the last stop: JSON for the client, the traceback for the log
            log.error("%s %s crashed", scope["method"], scope["path"], exc_info=exc)
            if started:
                raise
            message = f"internal error ({type(exc).__name__}); the server log has the details"
            await error_response(500, message)(scope, receive, secured_send)

    def _check(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, dict | None] | None:
        s = self.settings
        host = _hostname(headers.get("host", ""))
        if not s.allow_remote and host not in s.allowed_hosts:
            return 400, (f"this server answers to {', '.join(sorted(s.allowed_hosts))} only (got Host {host!r}); "
                         "open it as http://127.0.0.1:PORT"), None
        if s.token and not self._authorized(scope, headers):
            return 401, ("a valid token is needed: open the page as /?token=TOKEN, or send the header "
                         "'Authorization: Bearer TOKEN'"), {"www-authenticate": "Bearer"}
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return 400, "Content-Length must be a whole number of bytes", None
            if int(length) > s.max_body_bytes:
                return 413, _too_large(s.max_body_bytes), None
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return 415, f"send the request body as JSON (Content-Type: application/json); got {ctype!r}", None
            origin = headers.get("origin")
            if origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
                return 403, f"cross-site request from {origin!r} refused", None
        return None

    def _authorized(self, scope: Scope, headers: dict[str, str]) -> bool:
        token = self.settings.token or ""
        auth = headers.get("authorization", "")
        offered = [auth[7:].strip() if auth.lower().startswith("bearer ") else "", headers.get(TOKEN_HEADER, ""),
                   _query_token(scope) or ""]
        return self._cookie_ok(headers) or any(_same(o, token) for o in offered if o)

    def _cookie_ok(self, headers: dict[str, str]) -> bool:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie and _same(value, self.settings.token or ""):
                return True
        return False


def _same(a: str, b: str) -> bool:
    return bool(b) and hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def _query_token(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[-1] if values else None


def _hostname(netloc: str) -> str:
    """``"127.0.0.1:8000"`` -> ``"127.0.0.1"``, ``"[::1]:80"`` -> ``"::1"``."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _too_large(limit: int) -> str:
    return f"the request body is larger than this server takes ({limit} bytes); send less text"


def _secure(headers: list[tuple[bytes, bytes]], path: str, cookie: bytes | None) -> list[tuple[bytes, bytes]]:
    names = {k.lower() for k, _ in headers}
    inline = VIEW_CSP_MARK.encode() in names
    out = [(k, v) for k, v in headers if k.lower() != VIEW_CSP_MARK.encode()]
    out.append((b"content-security-policy", (CSP_VIEW if inline else CSP_APP).encode()))
    for k, v in SECURITY_HEADERS.items():
        if k.encode() not in names:
            out.append((k.encode(), v.encode()))
    if b"cache-control" not in names:
        out.append((b"cache-control", b"no-store" if path.startswith("/api/") else b"no-cache"))
    if cookie is not None:
        out.append((b"set-cookie", cookie))
    return out


async def _send_headers(response, scope: Scope, receive: Receive, send: Send) -> None:
    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = _secure(list(message.get("headers", [])), scope.get("path", ""), None)
        await send(message)

    await response(scope, receive, secured)
