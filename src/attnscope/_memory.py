"""Handing freed memory back to the system between units of work (a layer of a long capture, a corpus shard)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on other C libraries."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand the memory that freed temporaries leave behind back to the system. glibc keeps freed blocks of the sizes
    a unit of work used for reuse, and arrays kept between them stop its heap from shrinking: without this,
    SmolLM2's q/k capture at 2,048 tokens held 0.6 GB more than it recorded (16 MB a layer kept beside 9 MB
    recorded), and the corpus's local engine peaked 7-13 % higher at 2,000 texts than at 500. Costs well under a
    millisecond; does nothing on other C libraries."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
