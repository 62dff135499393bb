"""What one ``attnscope serve`` process is allowed to do: where it listens, which models, files and limits.

Every limit has a safe default; :meth:`Settings.check` refuses a combination that would expose the server
(a non-loopback address without ``allow_remote``, or ``allow_remote`` without a token).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..capture.models import DEFAULT_MODEL
from ..errors import InputError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MIN_TOKEN_CHARS = 16
TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~-]+$")


@dataclass(frozen=True)
class Settings:
    """Configuration of the web app (see ``attnscope serve --help``).

    - ``models``: the allow-list. The embedded default (``"minilm"``) is always on it; anything else must be named
      here (offline name, local folder, ``.gguf`` file or hub id). ``trust_remote_code`` is never turned on.
    - ``traces_dir``: the folder the trace browser shows (None: no file browser); it can never leave it.
    - ``mlflow_uri``: the MLflow store to browse (None: MLflow's default, ``MLFLOW_TRACKING_URI`` or ./mlflow.db).
    - ``allow_remote`` / ``token``: listening beyond loopback needs both; the token is then checked on every API
      request (``Authorization: Bearer``, ``X-Attnscope-Token`` or ``?token=``; see :mod:`.guard` for why there
      is no cookie).
    - limits: request body bytes, characters and tokens per text, generated tokens, waiting requests per model
      (more get HTTP 429), traces kept in memory (count and bytes), trace file size.
    - timeouts (seconds): a connection must send a request's headers within ``header_timeout`` and its body
      within ``body_timeout``; an idle kept-alive connection is closed after ``keep_alive_timeout``.
    - ``view_queue``: requests that may wait while a view, head or download is built (one at a time, like a
      model's forward pass); more get HTTP 429.
    - ``lazy_bytes``: a view whose payload would exceed this many bytes is sent without attention data; the page
      fetches each head from the server when it is first drawn.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    traces_dir: Path | None = None
    mlflow_uri: str | None = None
    allow_remote: bool = False
    token: str | None = None
    max_body_bytes: int = 64 * 1024
    max_chars: int = 20_000
    max_tokens: int = 512
    max_generate: int = 32
    qkv_tokens: int = 256
    queue_size: int = 4
    view_queue: int = 32
    cache_traces: int = 32
    cache_bytes: int = 512 * 1024 * 1024
    max_trace_file_bytes: int = 512 * 1024 * 1024
    lazy_bytes: int = 2 * 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    allowed_hosts: frozenset[str] = field(default=LOOPBACK_NAMES)

    def check(self) -> Settings:
        """Validate and normalise; returns the settings to use (default model first, traces folder resolved)."""
        if not self.allow_remote and not is_loopback(self.host):
            raise InputError(
                f"refusing to listen on {self.host!r}: it is not a loopback address, so anyone on the network could "
                "use this server. Pass --allow-remote with --token SECRET to do it on purpose"
            )
        if self.allow_remote:
            if not self.token:
                raise InputError("--allow-remote needs a token: pass --token SECRET (or set ATTNSCOPE_TOKEN); "
                                 "every request must then carry it")
            if not TOKEN_CHARS.match(self.token):
                raise InputError("the token may hold only letters, digits and - _ . ~ (it travels in URLs and "
                                 "headers)")
            if len(self.token) < MIN_TOKEN_CHARS:
                raise InputError(f"the token is {len(self.token)} characters; use at least {MIN_TOKEN_CHARS} "
                                 "(python -c 'import secrets; print(secrets.token_urlsafe())' makes one)")
        if not 0 <= self.port <= 65535:
            raise InputError(f"port must be in 0..65535; got {self.port}")
        for name in ("max_body_bytes", "max_chars", "max_tokens", "queue_size", "view_queue", "cache_traces",
                     "cache_bytes", "max_trace_file_bytes", "lazy_bytes"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1; got {getattr(self, name)}")
        for name in ("header_timeout", "body_timeout", "keep_alive_timeout"):
            if not 0 < getattr(self, name) <= 3600:
                raise InputError(f"{name} must be between 0 and 3600 seconds; got {getattr(self, name)}")
        models = tuple(dict.fromkeys((DEFAULT_MODEL, *(str(m) for m in self.models))))
        traces = None
        if self.traces_dir is not None:
            traces = Path(self.traces_dir).expanduser().resolve()
            if not traces.is_dir():
                raise InputError(f"--traces {self.traces_dir} is not a folder; give the folder holding .safetensors "
                                 "trace files")
        return replace(self, models=models, traces_dir=traces)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
