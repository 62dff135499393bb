"""The traces the server holds in memory: a bounded LRU keyed by a random id the pages use in URLs.

Bounded by count and by bytes (attention, q/k/v and bias arrays), so a busy server's memory stays flat: the
least recently used traces are dropped first (the newest is always kept, even alone over the byte budget).
Opening the same file or MLflow trace again returns the id it already has.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..trace import Trace


@dataclass
class Entry:
    """One held trace: where it came from (``source``), what the pages show about it (``info``, worked out before
    it was held, so listing held traces never touches the trace again), its size, and payload parts built for it
    on demand."""

    id: str
    trace: Trace
    source: dict[str, Any]
    info: dict[str, Any]
    nbytes: int
    created: float = field(default_factory=time.time)
    parts: dict[Any, Any] = field(default_factory=dict)  # (what, kind, ...) -> encoded part, e.g. thumbnails


def trace_bytes(trace: Trace) -> int:
    """Bytes of the arrays a trace holds (what keeping it in memory costs)."""
    total = sum(a.nbytes for att in trace.attention.values() for a in att.arrays().values())
    total += sum(a.nbytes for parts in trace.qkv.values() for a in parts.values())
    return total + sum(a.nbytes for a in trace.bias.values())


class TraceStore:
    """Thread-safe LRU of :class:`Entry` (routes run in the event loop and in worker threads)."""

    def __init__(self, max_items: int, max_bytes: int):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: OrderedDict[str, Entry] = OrderedDict()
        self._by_key: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def add(self, trace: Trace, source: dict[str, Any], *, info: dict[str, Any], key: tuple | None = None) -> Entry:
        """Hold ``trace`` with its ``info``; ``key`` (e.g. a file's path and mtime) makes opening the same thing
        again reuse it."""
        entry = Entry(secrets.token_urlsafe(12), trace, source, info, trace_bytes(trace))
        with self._lock:
            if key is not None and key in self._by_key:
                old = self._items.get(self._by_key[key])
                if old is not None:
                    self._items.move_to_end(old.id)
                    return old
            self._items[entry.id] = entry
            if key is not None:
                self._by_key[key] = entry.id
                entry.source["key"] = key
            self._evict()
        return entry

    def find(self, key: tuple) -> Entry | None:
        """The entry opened under ``key``, if still held."""
        with self._lock:
            tid = self._by_key.get(key)
            entry = self._items.get(tid) if tid else None
            if entry is not None:
                self._items.move_to_end(entry.id)
            return entry

    def get(self, trace_id: str) -> Entry | None:
        with self._lock:
            entry = self._items.get(trace_id)
            if entry is not None:
                self._items.move_to_end(trace_id)
            return entry

    def entries(self) -> list[Entry]:
        """Held traces, most recently used first."""
        with self._lock:
            return list(reversed(self._items.values()))

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._items.values())

    def _evict(self) -> None:
        total = sum(e.nbytes for e in self._items.values())
        while len(self._items) > 1 and (len(self._items) > self.max_items or total > self.max_bytes):
            _, old = self._items.popitem(last=False)
            total -= old.nbytes
            key = old.source.get("key")
            if key is not None and self._by_key.get(key) == old.id:
                del self._by_key[key]


class ComparisonCache:
    """The last few comparisons (``POST /api/compare``), so the page can ask for more of their diff view
    without running the models again. Small, because each holds its two traces."""

    def __init__(self, max_items: int = 4):
        self.max_items = max_items
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: tuple, comparison: Any) -> None:
        with self._lock:
            self._items[key] = comparison
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def get(self, key: tuple) -> Any | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found
