"""Text that can always be written: lone surrogates become U+FFFD.

Python strings may hold lone surrogates (``"\\ud800"``: from ``surrogateescape``-decoded command lines, from JSON
``"\\ud800"`` escapes, from a hostile trace file). UTF-8 cannot encode them, so a view, a file or a terminal line
holding one would fail far from where it came in. Text that enters attnscope from outside passes through
:func:`clean_text` once, where it enters; everything after may assume valid Unicode.
"""

from __future__ import annotations

import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def clean_text(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (also in list items and dict keys/values) replaced by
    U+FFFD; anything that is not a string, list, tuple or dict comes back as it is."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub(REPLACEMENT, value)
    if isinstance(value, (list, tuple)):
        return type(value)(clean_text(v) for v in value)
    if isinstance(value, dict):
        return {clean_text(k): clean_text(v) for k, v in value.items()}
    return value
