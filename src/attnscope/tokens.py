"""Display forms of tokenizer strings: the one place where raw tokens become readable labels.

Traces keep the RAW tokenizer strings (``Ġthe``, ``▁the``, ``##ing``, ``the</w>``) so nothing is lost; views and
figures show :func:`prettify_tokens` of them. The word-boundary markers of the common tokenizer families are
removed:

- byte-level BPE (GPT-2, RoBERTa, Llama 3, SmolLM): ``Ġ`` marks a leading space; every other byte is also mapped
  to a printable character (``Ċ`` is a newline, ``Ã©`` is ``é``), so a stream holding ``Ġ``/``Ċ`` is decoded back
  to text through that byte table;
- SentencePiece (T5, Llama 2, XLM-R): ``▁`` marks a leading space, ``<0x0A>`` is a raw byte;
- WordPiece (BERT): ``##`` starts a word continuation;
- word-end BPE (CLIP, XLM): ``</w>`` ends a word.

Control characters become visible symbols (newline ``↵``, tab ``⇥``) so a label stays one line, and a token that is
only whitespace shows as ``␣``. Special tokens (``[CLS]``, ``<s>``, ``<|endoftext|>``) are left as they are.

:func:`join_tokens` applies the same rules to a run of tokens (a word, a sentence: the labels of
:func:`attnscope.aggregate`), using the markers to put spaces between words; :func:`token_scheme` names the family.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

_SENTENCEPIECE_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_VISIBLE = str.maketrans({"\n": "↵", "\t": "⇥", "\r": "", "\x00": "␀"})


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode``: printable character -> the byte it stands for."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars)}


def is_byte_level(tokens: Sequence[str]) -> bool:
    """Whether a token list comes from a byte-level BPE tokenizer (it holds ``Ġ`` or ``Ċ`` markers)."""
    return any(("Ġ" in t or "Ċ" in t) for t in tokens)


def _decode_bytes(token: str) -> str:
    """Byte-level BPE token -> text; a token that is not whole UTF-8 (a split character) is left raw."""
    table = _byte_decoder()
    if not all(c in table for c in token):
        return token  # a special token such as <|endoftext|> or a character outside the byte alphabet
    try:
        return bytes(table[c] for c in token).decode("utf-8")
    except UnicodeDecodeError:
        return token


def prettify(token: str, *, byte_level: bool = False) -> str:
    """One raw token -> its display label (see the module docstring for the rules)."""
    if byte_level:
        text = _decode_bytes(token)
    else:
        text = token.replace("▁", " ")
        match = _SENTENCEPIECE_BYTE.match(text)
        if match:
            text = chr(int(match.group(1), 16))
        if text.startswith("##") and len(text) > 2:
            text = text[2:]
        if text.endswith("</w>") and len(text) > 4:
            text = text[:-4]
    text = text.translate(_VISIBLE)
    stripped = text.strip(" ")
    if stripped:
        return stripped
    return "␣" if text else token


def prettify_tokens(tokens: Sequence[str]) -> list[str]:
    """Raw tokens of one stream -> display labels; byte-level decoding is chosen once for the whole stream."""
    byte_level = is_byte_level(tokens)
    return [prettify(t, byte_level=byte_level) for t in tokens]


#: Closing punctuation that takes no space before it, and opening punctuation that takes none after it, when a
#: WordPiece or plain word-level stream (which keeps no spacing) is joined into text.
_NO_SPACE_BEFORE = frozenset(".,;:!?)]}%")
_NO_SPACE_AFTER = frozenset("([{$")


def token_scheme(tokens: Sequence[str]) -> str:
    """The word-boundary markers of a stream: ``"byte"`` (byte-level BPE, ``Ġ``), ``"sentencepiece"`` (``▁``),
    ``"wordpiece"`` (``##``), ``"wordend"`` (``</w>``) or ``"plain"`` (none: every token is a whole word)."""
    if is_byte_level(tokens):
        return "byte"
    if any("▁" in t for t in tokens):
        return "sentencepiece"
    if any(t.startswith("##") and len(t) > 2 for t in tokens):
        return "wordpiece"
    if any(t.endswith("</w>") and len(t) > 4 for t in tokens):
        return "wordend"
    return "plain"


def join_tokens(pieces: Sequence[str], scheme: str, spaced: Sequence[bool] | None = None) -> str:
    """The display text of consecutive raw tokens of a stream whose markers are ``scheme`` (:func:`token_scheme`):
    byte-level pieces are decoded together (a character split over two pieces comes out whole), ``▁`` and a
    missing ``##`` become spaces, then the label rules of :func:`prettify` apply (visible control characters, outer
    spaces stripped). WordPiece and plain streams keep no spacing: ``spaced[i]`` (from character offsets) says
    whether a space came before piece ``i``; without it every word but closing punctuation gets one."""
    if scheme == "byte":
        text = _decode_bytes("".join(pieces))
    elif scheme in ("sentencepiece", "wordend"):
        text = "".join(piece_text(p, scheme) for p in pieces)
    else:  # wordpiece / plain: a piece without "##" starts a word
        text = ""
        for i, p in enumerate(pieces):
            if p.startswith("##") and len(p) > 2:
                text += p[2:]
            else:
                glue = not text or (not spaced[i] if spaced is not None else
                                    p[:1] in _NO_SPACE_BEFORE or text[-1:] in _NO_SPACE_AFTER)
                text += p if glue else " " + p
    text = (text.strip() or text).translate(_VISIBLE)  # line breaks around words are not part of the label
    stripped = text.strip(" ")
    return stripped if stripped else ("␣" if text else "")


def piece_text(token: str, scheme: str) -> str:
    """The text one raw token of a ``scheme`` stream stands for, its leading space kept (``Ġthe`` and ``▁the`` ->
    `` the``, ``##ing`` -> ``ing``, ``the</w>`` -> ``the ``); a byte-level piece that is not whole UTF-8 stays raw."""
    if scheme == "byte":
        return _decode_bytes(token)
    if scheme == "wordend":
        return token[:-4] + " " if token.endswith("</w>") and len(token) > 4 else token
    if scheme == "sentencepiece":
        match = _SENTENCEPIECE_BYTE.match(token)
        return chr(int(match.group(1), 16)) if match else token.replace("▁", " ")
    return token[2:] if token.startswith("##") and len(token) > 2 else token
