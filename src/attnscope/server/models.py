"""The models this server may run: an allow-list, loaded on first use and kept, never with remote code.

Everything here runs in worker threads under the model's gate (one forward pass at a time per model), so
loading and capturing never race for the same model.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..capture import capture, load_model
from ..capture.families import display_kind, generates, is_encoder_decoder
from ..capture.models import DEFAULT_MODEL, OFFLINE_MODELS, find_offline
from ..errors import InputError, InputTooLongError
from ..trace import Trace
from .errors import ApiError
from .settings import Settings

log = logging.getLogger(__name__)

#: Loaded models, shared by every app in the process (a model is loaded once, then kept while the process runs).
_LOADED: dict[str, tuple[Any, Any]] = {}
_LOADED_LOCK = threading.Lock()


@dataclass(frozen=True)
class CaptureJob:
    """One text to run through a model (fields as in :func:`attnscope.capture`)."""

    text: str
    pair: str | None = None
    target: str | None = None
    generate: int = 0


class ModelRegistry:
    """Allow-listed models: ``check`` names, ``get`` loads (once), ``capture`` runs a checked job."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.allowed = tuple(settings.models)

    def check(self, name: str | None) -> str:
        """The allow-listed id for ``name`` (None: the default), or a 400 naming the served models."""
        name = DEFAULT_MODEL if name in (None, "") else name
        if name in self.allowed:
            return name
        offline = find_offline(name)
        if offline is not None and offline.name in self.allowed:
            return offline.name
        raise ApiError(400, f"unknown model {name!r}; this server serves {', '.join(self.allowed)} "
                            "(start it with --model ID to add one)")

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name in self.allowed:
            offline = OFFLINE_MODELS.get(name)
            out.append({
                "id": name,
                "default": name == DEFAULT_MODEL,
                "description": offline.description if offline else name,
                "installed": (offline.path() is not None) if offline else None,
                "loaded": name in _LOADED,
                "kind": self._kind(name),
            })
        return out

    def get(self, name: str) -> tuple[Any, Any]:
        """``(model, tokenizer)``, loaded on first use (``trust_remote_code`` stays off) and then kept."""
        with _LOADED_LOCK:
            found = _LOADED.get(name)
        if found is not None:
            return found
        start = time.perf_counter()
        model, tokenizer = load_model(name, trust_remote_code=False)
        log.info("loaded %s in %.1f s", name, time.perf_counter() - start)
        with _LOADED_LOCK:
            return _LOADED.setdefault(name, (model, tokenizer))

    def capture(self, name: str, job: CaptureJob) -> Trace:
        """Load ``name`` if needed, check the token count against the server's limit, then capture."""
        model, tokenizer = self.get(name)
        n = self.count_tokens(model, tokenizer, job)
        limit = self.settings.max_tokens
        if n > limit:
            raise InputTooLongError(f"the input is {n} tokens; this server takes at most {limit} "
                                    "(shorten the text, or start the server with a higher --max-tokens)")
        return capture(model, tokenizer, job.text, pair=job.pair, target=job.target, generate=job.generate,
                       qkv=n <= self.settings.qkv_tokens)

    def count_tokens(self, model, tokenizer, job: CaptureJob) -> int:
        """Tokens the capture will hold (the longest stream: input, or encoder/decoder), before running it."""
        tok = getattr(tokenizer, "tokenizer", tokenizer)
        is_enc_dec = is_encoder_decoder(model.config)
        if job.generate and job.generate > self.settings.max_generate:
            raise InputError(f"generate is {job.generate}; this server generates at most "
                             f"{self.settings.max_generate} tokens")
        if job.generate and not generates(model):
            raise InputError(f"generate needs a model that writes text (a decoder or encoder-decoder); "
                             f"{getattr(model, 'attnscope_name', 'this model')} is an encoder: set generate to 0")
        n = len(tok(job.text, job.pair)["input_ids"])
        if is_enc_dec:
            dec = len(tok(text_target=job.target)["input_ids"]) + 1 if job.target else job.generate + 1
            return max(n, dec)
        return n + job.generate

    def _kind(self, name: str) -> str | None:
        """``"encoder"``, ``"decoder"`` or ``"encoder-decoder"`` once known (offline models: always)."""
        if name in OFFLINE_MODELS:
            return OFFLINE_MODELS[name].kind
        with _LOADED_LOCK:
            found = _LOADED.get(name)
        return None if found is None else display_kind(found[0])
