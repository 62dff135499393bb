"""What one running app holds: its settings, the allowed models, the traces in memory and the job gates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from .models import ModelRegistry
from .queue import Gates
from .settings import Settings
from .store import ComparisonCache, TraceStore


@dataclass
class AppState:
    """Shared by every route of one app (``request.app.state.attnscope``)."""

    settings: Settings
    models: ModelRegistry = field(init=False)
    store: TraceStore = field(init=False)
    gates: Gates = field(init=False)
    comparisons: ComparisonCache = field(init=False)

    def __post_init__(self):
        s = self.settings
        self.models = ModelRegistry(s)
        self.store = TraceStore(s.cache_traces, s.cache_bytes)
        self.gates = Gates(s.queue_size, {"render": s.view_queue, "rows": s.view_queue})
        self.comparisons = ComparisonCache()


def state(request: Request) -> AppState:
    """FastAPI dependency: the app's :class:`AppState`."""
    return request.app.state.attnscope


#: A route parameter receiving the app's state: ``def route(app: App): ...``.
App = Annotated[AppState, Depends(state)]
