"""The ASGI layer every connection passes first: who may ask, how much they may send, and safe response headers.

A pure ASGI middleware, so it sees every scope: ``http`` and ``websocket`` get the same checks (a websocket that
fails them is closed before it is accepted), ``lifespan`` passes through, and any other scope type is refused
(nothing reaches the app unchecked).

- Host: parsed strictly (``name``, ``name:port``, ``[v6]`` or ``[v6]:port``, nothing else) and, on loopback,
  only ``localhost``/``127.0.0.1``/``[::1]`` are served (a web page elsewhere cannot reach this server by DNS
  rebinding).
- Token (``allow_remote``): every API request and websocket carries it in ``Authorization: Bearer``,
  ``X-Attnscope-Token`` or ``?token=`` (for scripts; access logs redact it). There is no cookie: browsers send a
  host's cookies to *every* port of that host, so another server on the same machine would receive it. The pages
  keep the token in ``sessionStorage``, which is per origin (port included), and send it as a header; downloads
  go through ``fetch`` too. So that a page can load before it has the token, the page shells and their scripts and
  styles (the app's ``public_paths`` and ``public_prefixes``, GET only) are served without it: they are the files
  shipped in the package and hold no data; every trace, model and file is behind ``/api/``.
- Cross-site writes: POST needs ``Content-Type: application/json`` (so browsers must ask first, and are refused)
  and, when the browser sends ``Origin``, this very origin (scheme, host and port); no CORS headers are ever
  sent, so other sites cannot read responses. A websocket needs this origin too.
- Body size: refused up front from ``Content-Length`` and again while streaming (chunked bodies), with 413; a body
  that takes longer than ``Settings.body_timeout`` seconds to arrive is answered 408.
- Headers: a Content-Security-Policy (scripts and styles only from this server; inline only in downloaded views),
  ``nosniff``, no framing, no referrer, ``no-store`` for the API.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

import anyio
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

#: A Host header: a DNS name or IPv4 address, or an IPv6 address in brackets, then an optional port. Nothing
#: else: no spaces, tabs, commas, user info or trailing text.
_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?))(?::(?P<port>\d{1,5}))?")
#: An Origin header: scheme://host[:port], no path.
_ORIGIN = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>[^/?#@\s]+)")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: WebSocket schemes compare as the HTTP schemes a browser's Origin names.
_WEB_SCHEME = {"ws": "http", "wss": "https"}
_UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
#: A websocket refused before it is accepted (RFC 6455 "policy violation"; servers answer the handshake 403).
WS_POLICY_VIOLATION = 1008


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (an HTTPException, so FastAPI's body reading
    lets it through to the JSON error handler)."""

    def __init__(self, limit: int):
        super().__init__(413, _too_large(limit))


class BodyTooSlow(HTTPException):
    """Raised from ``receive`` when the body has not fully arrived within ``Settings.body_timeout`` seconds."""

    def __init__(self, seconds: float):
        super().__init__(408, _too_slow(seconds))


@dataclass(frozen=True)
class Host:
    """A parsed Host (or Origin) authority: lower-case name (IPv6 without brackets) and port (None: default)."""

    name: str
    port: int | None


def parse_host(value: str) -> Host | None:
    """``"127.0.0.1:8000"`` -> ``Host("127.0.0.1", 8000)``, ``"[::1]"`` -> ``Host("::1", None)``; None for
    anything that is not exactly a host and an optional port (``"[::1]evil.example"``, ``"a, b"``,
    ``"localhost\\t"``, a port over 65535, a bracketed name that is not an IPv6 address)."""
    match = _HOST.fullmatch(value.lower())
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > 65535:
        return None
    if match["v6"] is not None:
        try:
            name = str(ipaddress.IPv6Address(match["v6"]))
        except ValueError:
            return None
        return Host(name, port)
    return Host(match["name"], port)


class Guard:
    """ASGI middleware applying the rules in the module docstring."""

    def __init__(self, app: ASGIApp, settings: Settings, public_paths: frozenset[str] = frozenset(),
                 public_prefixes: tuple[str, ...] = ()):
        """``public_paths`` (exact) and ``public_prefixes`` (ending in ``/``): GET without the token."""
        self.app, self.settings = app, settings
        self.public_paths, self.public_prefixes = public_paths, public_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            raise RuntimeError(f"attnscope's guard refuses ASGI scope type {kind!r}: it checks only http and "
                               "websocket, so nothing else may reach the app")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        problem = self._check(scope, headers)
        if problem is None and not self._same_origin(scope, headers, required=True):
            problem = 403, "cross-site websocket refused", None
        if problem is not None:
            log.warning("websocket %s refused: %s", scope.get("path", ""), problem[1])
            message = await receive()  # websocket.connect, answered by closing before accepting (HTTP 403)
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": ""})
            return
        await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        problem = self._check(scope, headers)
        if problem is None:
            problem = self._check_request(scope, headers)
        if problem is not None:
            status, message, extra = problem
            await _send_headers(error_response(status, message, extra), scope, receive, send)
            return

        limit, timeout = self.settings.max_body_bytes, self.settings.body_timeout
        seen, started, body_done, deadline = 0, False, False, None

        async def limited_receive() -> Message:
            nonlocal seen, body_done, deadline
            if body_done:  # afterwards only http.disconnect comes, whenever the client goes: no deadline
                return await receive()
            deadline = deadline or time.monotonic() + timeout
            try:
                with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow(timeout) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def secured_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = dict(message)
                message["headers"] = _secure(list(message.get("headers", [])), scope["path"])
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except (BodyTooLarge, BodyTooSlow) as exc:
            if started:
                raise
            await error_response(exc.status_code, exc.detail)(scope, receive, secured_send)
        except Exception as exc:  # the last stop: JSON for the client, the traceback for the log
            log.error("%s %s crashed", scope["method"], scope["path"], exc_info=exc)
            if started:
                raise
            message = f"internal error ({type(exc).__name__}); the server log has the details"
            await error_response(500, message)(scope, receive, secured_send)

    def _check(self, scope: Scope, headers: dict[str, list[str]]) -> tuple[int, str, dict | None] | None:
        """Host and token: what http requests and websockets share."""
        s = self.settings
        hosts = headers.get("host", [])
        host = parse_host(hosts[0]) if len(hosts) == 1 else None
        if host is None:
            got = ", ".join(repr(h) for h in hosts) or "none"
            return 400, f"the Host header must be one host name with an optional port; got {got[:200]}", None
        if not s.allow_remote and host.name not in s.allowed_hosts:
            return 400, (f"this server answers to {', '.join(sorted(s.allowed_hosts))} only (got Host "
                         f"{host.name!r}); open it as http://127.0.0.1:PORT"), None
        public = (scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
                  and (scope["path"] in self.public_paths or scope["path"].startswith(self.public_prefixes)))
        if s.token and not public and not self._authorized(scope, headers):
            return 401, ("a valid token is needed: open the address attnscope serve printed (it ends in "
                         "#token=...), or send the header 'Authorization: Bearer TOKEN'"), {"www-authenticate": "Bearer"}
        return None

    def _check_request(self, scope: Scope, headers: dict[str, list[str]]) -> tuple[int, str, dict | None] | None:
        """Body size and cross-site writes (http only)."""
        s = self.settings
        length = _one(headers, "content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()) or len(length) > 18:
                return 400, "Content-Length must be a whole number of bytes", None
            if int(length) > s.max_body_bytes:
                return 413, _too_large(s.max_body_bytes), None
        if scope["method"] in _UNSAFE_METHODS:
            ctype = (_one(headers, "content-type") or "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return 415, f"send the request body as JSON (Content-Type: application/json); got {ctype!r}", None
            if not self._same_origin(scope, headers, required=False):
                return 403, f"cross-site request from {(_one(headers, 'origin') or '')[:200]!r} refused", None
        return None

    @staticmethod
    def _same_origin(scope: Scope, headers: dict[str, list[str]], *, required: bool) -> bool:
        """Whether ``Origin`` names this server exactly: scheme, host and port (default ports filled in).
        Without an ``Origin`` header: ``not required`` (browsers send one on every cross-site write)."""
        origins = headers.get("origin", [])
        if not origins:
            return not required
        if len(origins) > 1:
            return False
        match = _ORIGIN.fullmatch(origins[0].lower())
        origin_host = parse_host(match["host"]) if match else None
        hosts = headers.get("host", [])
        host = parse_host(hosts[0]) if len(hosts) == 1 else None
        if match is None or origin_host is None or host is None:
            return False
        scheme: str = scope.get("scheme") or "http"
        scheme = _WEB_SCHEME.get(scheme, scheme)
        if match["scheme"] != scheme:
            return False
        default = _DEFAULT_PORTS.get(scheme)
        return (origin_host.name, origin_host.port or default) == (host.name, host.port or default)

    def _authorized(self, scope: Scope, headers: dict[str, list[str]]) -> bool:
        token = self.settings.token or ""
        offered = [_query_token(scope) or ""]
        for auth in headers.get("authorization", []):
            if auth.lower().startswith("bearer "):
                offered.append(auth[7:].strip())
        offered += headers.get(TOKEN_HEADER, [])
        return any(_same(o, token) for o in offered if o)


def _headers(scope: Scope) -> dict[str, list[str]]:
    """Request headers by lower-case name, every value kept (so a repeated Host is seen, not overwritten)."""
    out: dict[str, list[str]] = {}
    for k, v in scope.get("headers", []):
        out.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
    return out


def _one(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[-1] if values else None


def _same(a: str, b: str) -> bool:
    return bool(b) and hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def _query_token(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[-1] if values else None


def _too_large(limit: int) -> str:
    return f"the request body is larger than this server takes ({limit} bytes); send less text"


def _too_slow(seconds: float) -> str:
    return f"the request body did not arrive within {seconds:g} s; send it at once"


def _secure(headers: list[tuple[bytes, bytes]], path: str) -> list[tuple[bytes, bytes]]:
    names = {k.lower() for k, _ in headers}
    inline = VIEW_CSP_MARK.encode() in names
    out = [(k, v) for k, v in headers if k.lower() != VIEW_CSP_MARK.encode()]
    out.append((b"content-security-policy", (CSP_VIEW if inline else CSP_APP).encode()))
    for k, v in SECURITY_HEADERS.items():
        if k.encode() not in names:
            out.append((k.encode(), v.encode()))
    if b"cache-control" not in names:
        out.append((b"cache-control", b"no-store" if path.startswith("/api/") else b"no-cache"))
    return out


async def _send_headers(response, scope: Scope, receive: Receive, send: Send) -> None:
    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = _secure(list(message.get("headers", [])), scope.get("path", ""))
        await send(message)

    await response(scope, receive, secured)
