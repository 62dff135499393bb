"""How the app meets the network: uvicorn with deadlines for slow clients, and logs that never show the token.

- Deadlines: uvicorn closes a kept-alive connection after ``keep_alive_timeout`` idle seconds, but has none for a
  connection that sends nothing, or only part of a request's headers (one such connection per socket is enough to
  hold it forever). :class:`TimedH11Protocol` closes a connection whose request headers are not complete within
  ``header_timeout`` seconds of the connection opening or the request's first byte; h11 caps the headers' size
  (16 KiB). The body has its own deadline in the guard (``body_timeout``, answered 408).
- Logs: the token may come in a query string (``?token=...``), and uvicorn's access log writes request lines
  whole. :class:`RedactToken` rewrites ``token=...`` in every uvicorn record (access and error logs, any level).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from typing import Any

import h11
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import Settings

_TOKEN = re.compile(r"(token=)[^&#\s'\"]+", re.IGNORECASE)
REDACTED = "<redacted>"


def redact(text: str) -> str:
    """``text`` with the value of every ``token=`` replaced by ``<redacted>``."""
    return _TOKEN.sub(r"\g<1>" + REDACTED, text)


class RedactToken(logging.Filter):
    """Rewrites ``token=...`` in a log record's message and arguments (uvicorn's access formatter reads the
    arguments one by one, so they keep their places and types)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (bytes, dict, list, tuple)):  # a scope or headers, logged at uvicorn's trace level
        text = str(value)
        return redact(text) if _TOKEN.search(text) else value
    return value


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with :class:`RedactToken` on its handlers and loggers."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["attnscope_redact_token"] = {"()": f"{__name__}.RedactToken"}
    for section in ("handlers", "loggers"):
        for item in config.get(section, {}).values():
            item.setdefault("filters", []).append("attnscope_redact_token")
    return config


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers (see the module docstring)."""

    header_timeout = 10.0

    def connection_made(self, transport) -> None:
        self._header_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watch()
        super().connection_lost(exc)

    def _watch_headers(self) -> None:
        """Start the clock while h11 waits for a request's headers (IDLE); stop it once they are in."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)
        elif not waiting:
            self._stop_watch()

    def _stop_watch(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.debug("closing a connection that sent no complete request headers in %.0f s",
                              self.header_timeout)
            self.transport.close()


def uvicorn_options(settings: Settings, log_level: str) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` serving an app made for ``settings``."""
    protocol = type("TimedH11Protocol", (TimedH11Protocol,), {"header_timeout": settings.header_timeout})
    return {"host": settings.host, "port": settings.port, "log_level": log_level, "log_config": log_config(),
            "http": protocol, "timeout_keep_alive": settings.keep_alive_timeout, "server_header": False,
            "proxy_headers": False, "timeout_graceful_shutdown": 5}
