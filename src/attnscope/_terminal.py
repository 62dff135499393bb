"""Text for a terminal: what came from a trace file, a tokenizer or a file name, shown and never obeyed.

Trace metadata, tokens and file names may hold control characters: ESC sequences that clear the screen, colour
text or open OSC-8 hyperlinks, C0/C1 controls, bidirectional overrides that reorder what is shown, and lone
surrogates (a non-UTF-8 file name's bytes, which no terminal encoding can write). :func:`for_terminal` shows each
as an escape (``\\x1b``, ``\\u202e``, ``\\xff``) so only plain text reaches the terminal; :func:`json_for_terminal`
does the same for JSON output with JSON's own escapes. Rich markup is a separate matter: print such text as
``rich.text.Text``, never inside a markup string.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Characters never sent to a terminal as they are: C0 controls and DEL, C1 controls, the line and paragraph
#: separators, the bidirectional embeddings, overrides, isolates and marks, and every surrogate.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
#: The same, less the C0 controls ``json.dumps`` already escapes inside strings (outside them, its newlines and
#: spaces are layout).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def for_terminal(text: object) -> str:
    """``str(text)`` safe to print: every control, bidirectional-control and surrogate character escaped.

    A surrogate that stands for an undecodable byte (``\\udcff``, from a non-UTF-8 file name) is shown as that
    byte, ``\\xff``. Printable text, accents and scripts of every language included, is left as it is.
    """
    return _UNSAFE.sub(_escape, str(text))


def json_for_terminal(value: Any, **dumps: Any) -> str:
    """JSON of ``value`` with the characters :func:`for_terminal` escapes written as ``\\uXXXX`` JSON escapes:
    the same data for a program reading it, and nothing a terminal would act on."""
    text = json.dumps(value, ensure_ascii=False, **dumps)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _escape(match: re.Match) -> str:
    ch = match.group()
    code = ord(ch)
    if ch in _SHORT:
        return _SHORT[ch]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"
