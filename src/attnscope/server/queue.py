"""One job at a time per key on its own thread, with a bounded wait list: the server's heavy work is bounded.

Keys: ``model:NAME`` (a forward pass), ``render`` (view payloads, heads and downloads built from a held trace),
``figures`` (PNG), ``analysis`` (comparisons), ``files`` and ``mlflow`` (reading traces). A model runs one forward pass at a
time: concurrent passes on 2 cores only slow each other down and multiply the memory; the same holds for building
views of a long trace. Requests beyond a key's ``limit`` waiting ones are refused at once with :class:`Busy` (HTTP
429 and a ``Retry-After`` estimated from recent run times) instead of piling up.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


class Busy(Exception):
    """The wait list of ``key`` is full; try again after ``retry_after`` seconds."""

    def __init__(self, key: str, waiting: int, retry_after: int):
        super().__init__(f"{key} is busy ({waiting} requests already waiting); try again in {retry_after} s")
        self.key, self.waiting, self.retry_after = key, waiting, retry_after


class Gate:
    """Lets one job run and at most ``limit`` wait; measures how long jobs take (for ``Retry-After``)."""

    def __init__(self, key: str, limit: int):
        self.key, self.limit = key, limit
        self._lock = asyncio.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"attnscope-{key}")
        self._waiting = 0
        self._mean = 1.0  # seconds per job, a moving average

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> bool:
        return self._lock.locked()

    def retry_after(self) -> int:
        return max(1, math.ceil(self._mean * (self._waiting + 1)))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for this gate (or raise :class:`Busy` when the wait list is full); the job runs inside."""
        if self._waiting >= self.limit:
            raise Busy(self.key, self._waiting, self.retry_after())
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        start = time.perf_counter()
        try:
            yield
        finally:
            self._mean = 0.7 * self._mean + 0.3 * (time.perf_counter() - start)
            self._lock.release()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` inside a slot, on this gate's own thread.

        One long-lived thread per gate: torch keeps per-thread state, and forward passes hopping across a pool
        of short-lived threads made the server's memory creep up with every capture. The slot is held until the
        job finishes, even when the client goes away meanwhile.
        """
        async with self.slot():
            future = self._thread.submit(fn, *args)
            with anyio.CancelScope(shield=True):
                result = await asyncio.wrap_future(future)
            return result


class Gates:
    """One :class:`Gate` per key, made on first use (all in the server's event loop); ``limits`` gives some keys
    a wait list of their own length (default: ``limit``)."""

    def __init__(self, limit: int, limits: dict[str, int] | None = None):
        self.limit, self.limits = limit, dict(limits or {})
        self._gates: dict[str, Gate] = {}

    def __getitem__(self, key: str) -> Gate:
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = Gate(key, self.limits.get(key, self.limit))
        return gate

    def status(self) -> dict[str, dict[str, Any]]:
        return {k: {"running": g.running, "waiting": g.waiting} for k, g in self._gates.items()}
