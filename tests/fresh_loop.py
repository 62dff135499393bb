"""Run a coroutine on a new event loop in its own thread.

``asyncio.run`` refuses to start while another loop runs in the thread, and the session's Playwright browser keeps
one running in the main thread once any browser test has opened it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run(coro)`` in a worker thread; returns its result or raises its exception."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
