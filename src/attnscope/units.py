"""Where words, sentences and paragraphs begin: unit spans over a trace's tokens (what :func:`attnscope.aggregate`
sums attention over).

A stream's units are ``(start, end)`` token ranges that cover it in order. Two rules hold at every level: a special
token (``[CLS]``, ``<s>``, ``<|endoftext|>``) is a unit of its own, and a segment boundary (sentence A/B,
prompt/generated) is always a unit boundary, so segments map onto units exactly.

**Words**, from the best source the trace has, per run of tokens between segment boundaries (and, whatever the
source, a word always starts where rule 3's markers start one):

1. the tokenizer's word ids, recorded at capture as ``meta["words"][stream]`` (one word index or null per token,
   from ``BatchEncoding.word_ids()``): a word is a run of tokens with the same id;
2. else character offsets into the text (``meta["offsets"][stream]``, see :func:`stream_text`): a word is a run
   of letters and digits, or one other visible character, of the text, and a token belongs to the word its first
   visible character is in;
3. else the token strings' markers (:func:`attnscope.tokens.token_scheme`): a token starts a word when it carries
   the byte-level or SentencePiece space marker (``Ġ``, ``▁``), lacks WordPiece's ``##``, follows a ``</w>``, or
   switches between letters/digits and punctuation (``cat`` ``.``); in a plain word-level stream every token is a
   word.

**Sentences and paragraphs** come from the text: the original text through the offsets where the tokens have them,
else text rebuilt from the token strings by the same markers. :func:`split_sentences` is a small rule-based
splitter (no NLP dependency): a sentence ends at ``.``, ``!``, ``?`` or ``…`` (runs such as ``?!`` or ``...``), with
any closing quotes or brackets after it, when whitespace follows and the next word does not start in lower case
(in cased text). A full stop after an abbreviation is weighed by what follows: after a title or a word that leads
into something (:data:`LEADING`: ``Dr.``, ``e.g.``, ``vs.``) the sentence goes on; after any other abbreviation
(:data:`ABBREVIATIONS`: ``p.m.``, ``etc.``), a single initial (``J.``) or a dotted one (``U.S.``) it ends only when
the next word is a common sentence start (:data:`SENTENCE_STARTERS`, capitalised: ``at 5 p.m. Then we left`` ends
one, ``the U.S. Army`` does not). A decimal point (``3.14``) has no whitespace after it, so it never ends one.
A blank line ends a sentence and a paragraph (:func:`split_paragraphs`); a single line break does neither (wrapped
prose). A token belongs to the sentence its first visible character is in; a token of only whitespace stays with the
token before it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .tokens import piece_text, token_scheme

if TYPE_CHECKING:
    from .trace import Trace

Span = tuple[int, int]
LEVELS = ("word", "sentence", "paragraph")

#: Words that end with a full stop without ending a sentence (compared in lower case, without the stop).
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc e.g i.e cf al fig figs no nos vol vols pp p ed eds approx dept est inc "
    "ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec gen col lt sgt capt rev hon gov sen rep a.m p.m "
    "u.s u.k u.n ph.d b.a m.a".split()
)
#: Abbreviations that lead into what follows (a name, an example, a number) and so never end a sentence:
#: titles, "e.g.", "i.e.", "cf.", "vs.", "fig.", "vol.", "pp." and the like ("no." is not one of them: "the answer
#: was no." ends a sentence).
LEADING = frozenset(
    "mr mrs ms dr prof mt vs e.g i.e cf fig figs vol vols pp approx gen col lt sgt capt rev hon gov sen rep".split()
)
#: Words that start sentences far more often than they follow an abbreviation inside one: after any other
#: abbreviation ("5 p.m.", "etc.", "the U.S.", "Jr.") or an initial, one of these (capitalised, in cased text)
#: starts a new sentence: "We met at 5 p.m. Then we left." is two sentences, "the U.S. Army" one.
SENTENCE_STARTERS = frozenset(
    "i we you he she it they me us him them the a an this that these those there here then now but and or nor so "
    "yet if when while after before since because as although though once however meanwhile still thus hence "
    "therefore also later today yesterday tomorrow in on at for from to by with without of our my his her its their "
    "your what who whom whose why how where which some many most all each every no not none one both neither either "
    "such other another let please yes only soon finally first next".split()
)
#: Starters that join clauses too ("etc. and so on"): in text without capitals they do not start a sentence.
_CONJUNCTIONS = frozenset("and or nor but yet so".split())
_STOP = re.compile(r"(?:\.{2,}|[.!?…]+)[\"'”’»)\]]*(?=\s|$)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_WORD = re.compile(r"\w+|[^\w\s]")


# ----------------------------------------------------------------------------------------------- text splitting
def split_paragraphs(text: str) -> list[Span]:
    """Character spans ``[start, end)`` of the paragraphs of ``text``: blocks separated by blank lines (the
    whitespace between them is left out)."""
    spans, start = [], 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        if text[start : m.start()].strip():
            spans.append(_trim(text, start, m.start()))
        start = m.end()
    if text[start:].strip():
        spans.append(_trim(text, start, len(text)))
    return spans


def split_sentences(text: str) -> list[Span]:
    """Character spans ``[start, end)`` of the sentences of ``text`` (the rules are in the module docstring)."""
    cased = any(c.isupper() for c in text)
    spans: list[Span] = []
    for p0, p1 in split_paragraphs(text):
        start = p0
        for m in _STOP.finditer(text, p0, p1):
            if not _ends_sentence(text, m, p1, cased):
                continue
            spans.append(_trim(text, start, m.end()))
            start = m.end()
        if text[start:p1].strip():
            spans.append(_trim(text, start, p1))
    return [s for s in spans if s[1] > s[0]]


def _ends_sentence(text: str, m: re.Match, limit: int, cased: bool) -> bool:
    rest = text[m.end() : limit].lstrip()
    if not rest:
        return True
    if cased and rest[0].islower():
        return False  # "etc. and so on", "Dr. smith" in cased text: the sentence goes on
    stop = text[m.start() : m.end()].rstrip("\"'”’»)]")
    if stop != ".":
        return True  # "!", "?", "...", "?!" end a sentence whatever came before
    found = re.search(r"[\w.]*$", text[: m.start()])  # always matches (maybe the empty string)
    before = found.group(0) if found else ""
    word = before.lower()
    initial = re.fullmatch(r"[^\W\d_]", before) or re.fullmatch(r"(?:[^\W\d_]\.)+[^\W\d_]", before)
    if word in LEADING:
        return False  # "Dr. Smith", "e.g. Paris", "No. 5"
    if word in ABBREVIATIONS or initial:  # "5 p.m.", "etc.", an initial "J.", a dotted "U.S."
        return _starts_sentence(rest, cased)
    return True


def _starts_sentence(rest: str, cased: bool) -> bool:
    """Whether the text after an abbreviation's stop begins a new sentence: its first word is one of
    :data:`SENTENCE_STARTERS` (capitalised in cased text) and not itself an initial ("J. A. Smith")."""
    found = re.match(r"[\"'“‘«(\[]*([^\W\d_]+)(\.?)", rest)
    if not found:
        return False
    word, stop = found.group(1), found.group(2)
    if stop and len(word) == 1:
        return False  # the next word is an initial: "J. A. Smith", "U. S. Grant"
    if cased:
        return word[0].isupper() and word.lower() in SENTENCE_STARTERS
    return word in SENTENCE_STARTERS and word not in _CONJUNCTIONS


def _trim(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


# ----------------------------------------------------------------------------------------------- token streams
def stream_text(trace: Trace, stream: str) -> str | None:
    """The text that ``meta["offsets"][stream]`` indexes: for ``"input"``/``"encoder"`` the captured text, with the
    pair after a blank line (``text + "\\n\\n" + pair``, so sentence B's offsets are shifted by ``len(text) + 2``);
    for ``"decoder"`` the target. None when the trace does not hold it."""
    meta = trace.meta
    if stream == "decoder":
        target = meta.get("target")
        return target if isinstance(target, str) else None
    text, pair = meta.get("text"), meta.get("pair")
    if not isinstance(text, str):
        return None
    return text + "\n\n" + pair if isinstance(pair, str) else text


def unit_spans(trace: Trace, stream: str, by: str) -> list[Span]:
    """The units of one stream at level ``by`` (``"word"``, ``"sentence"`` or ``"paragraph"``)."""
    if by not in LEVELS:
        raise InputError(f"by must be one of {list(LEVELS)} or a list of (start, end) token spans; got {by!r}")
    tokens = trace.tokens[stream]
    n = len(tokens)
    special = _special_mask(tokens)
    offsets = _offsets(trace, stream, n)
    words = _words(trace, stream, n)
    scheme = token_scheme(tokens)
    spans: list[Span] = []
    for a, b in _blocks(trace, stream, n):
        if by == "word":
            keys = _word_keys(tokens, a, b, special, words, offsets, scheme)
        else:
            keys = _text_keys(tokens, a, b, special, offsets, scheme, by)
        spans.extend(_runs(keys, special, a))
    return spans


def check_spans(spans, n: int, what: str) -> list[Span]:
    """User-given ``(start, end)`` token spans of a stream of ``n`` tokens: sorted, not overlapping, inside it.
    Tokens no span covers become units of one token each. Returns the full cover."""
    try:
        pairs = [(int(s), int(e)) for s, e in spans]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a list of (start, end) token spans; got {spans!r}") from None
    out: list[Span] = []
    at = 0
    for s, e in pairs:
        if not (at <= s < e <= n):
            raise InputError(f"{what}: span ({s}, {e}) must satisfy previous end <= start < end <= {n} (spans "
                             f"sorted, not overlapping, inside the {n} tokens)")
        out.extend((i, i + 1) for i in range(at, s))
        out.append((s, e))
        at = e
    out.extend((i, i + 1) for i in range(at, n))
    return out


def _blocks(trace: Trace, stream: str, n: int) -> list[Span]:
    """Runs of tokens between segment boundaries of ``stream``."""
    cuts = {0, n}
    for seg in trace.segments.values():
        if seg.stream == stream:
            cuts.update((seg.start, seg.end))
    edges = sorted(cuts)
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _runs(keys: list, special: np.ndarray, offset: int) -> list[Span]:
    """Spans of equal consecutive keys; a special token is always a span of its own."""
    spans: list[Span] = []
    for i, key in enumerate(keys):
        t = offset + i
        if i > 0 and not special[t] and not special[t - 1] and keys[i - 1] == key:
            spans[-1] = (spans[-1][0], t + 1)
        else:
            spans.append((t, t + 1))
    return spans


def _special_mask(tokens: Sequence[str]) -> np.ndarray:
    from .analysis.metrics import is_special_token

    return np.array([is_special_token(t) for t in tokens], dtype=bool)


def _offsets(trace: Trace, stream: str, n: int) -> tuple[list, str] | None:
    """(per-token ``[start, end]`` or None, the text they index), when the trace holds both and they fit."""
    table = trace.meta.get("offsets")
    text = stream_text(trace, stream)
    if not isinstance(table, Mapping) or text is None:
        return None
    offsets = table.get(stream)
    if not isinstance(offsets, list) or len(offsets) != n:
        return None
    if any(o is not None and not (0 <= o[0] <= o[1] <= len(text)) for o in offsets):
        return None  # offsets of some other text (the trace was edited): do not trust them
    return offsets, text


def _words(trace: Trace, stream: str, n: int) -> list | None:
    table = trace.meta.get("words")
    words = table.get(stream) if isinstance(table, Mapping) else None
    return words if isinstance(words, list) and len(words) == n else None


def _word_keys(tokens, a, b, special, words, offsets, scheme) -> list:
    """A key per token of ``[a, b)``: equal keys of consecutive tokens mean one word. Where the markers start a word
    (a space before it, letters meeting punctuation) one starts whatever the source says, so a tokenizer whose word
    ids cover the whole text (no pre-tokenizer) still gets its words."""
    starts = np.diff(_marker_keys(tokens, a, b, special, scheme), prepend=-1) > 0
    plain = [i for i in range(a, b) if not special[i]]
    if words is not None and all(words[i] is not None for i in plain):
        source = [words[i] for i in range(a, b)]
    elif offsets is not None and all(offsets[0][i] is not None for i in plain):
        offs, text = offsets
        begins = [m.start() for m in _WORD.finditer(text)]
        source = [None if special[i] else ("space", i) if not text[offs[i][0] : offs[i][1]].strip()
                  else int(np.searchsorted(begins, _visible_start(text, offs[i]), side="right")) for i in range(a, b)]
    else:
        source = None
    if source is not None:
        starts[1:] |= np.array([x != y for x, y in zip(source[1:], source[:-1])], dtype=bool)
    return np.cumsum(starts).tolist()


def _marker_keys(tokens, a, b, special, scheme) -> list:
    """Word keys from the token strings' markers (rule 3 of the module docstring)."""
    keys, word = [], -1
    prev: str | None = None
    for i in range(a, b):
        t = tokens[i]
        text = piece_text(t, scheme)
        if special[i] or prev is None or scheme == "plain":
            starts = True
        elif scheme == "wordpiece":
            starts = not (t.startswith("##") and len(t) > 2)
        elif scheme == "wordend":
            starts = tokens[i - 1].endswith("</w>")
        else:  # byte-level and SentencePiece pieces carry the space before a word (or follow a line break)
            starts = text[:1].isspace() or not prev.strip()
        if not starts and prev is not None and scheme != "wordpiece" and prev.strip() and text.strip():
            starts = _kind(prev.strip()[-1]) != _kind(text.strip()[0])  # letters meet punctuation: "cat" "."
        word += starts
        keys.append(word)
        prev = text
    return keys


def _kind(c: str) -> bool:
    return c.isalnum() or c == "_"


def _text_keys(tokens, a, b, special, offsets, scheme, by: str) -> list:
    """A sentence (or paragraph) index per token of ``[a, b)``, from the original text where every plain token of
    the run has offsets, else from text rebuilt from the token strings."""
    plain = [i for i in range(a, b) if not special[i]]
    if offsets is not None and all(offsets[0][i] is not None for i in plain):
        offs, text = offsets
        lo = min((offs[i][0] for i in plain), default=0)
        hi = max((offs[i][1] for i in plain), default=0)
        span_text, shift = text[lo:hi], lo
        positions = [None if special[i] or not text[offs[i][0] : offs[i][1]].strip()
                     else _visible_start(text, offs[i]) - shift for i in range(a, b)]
    else:
        span_text, positions = _rebuild(tokens, a, b, special, scheme)
    pieces = split_sentences(span_text) if by == "sentence" else split_paragraphs(span_text)
    starts = [s for s, _ in pieces] or [0]
    keys, last = [], 0
    for p in positions:
        if p is not None:
            last = int(np.searchsorted(starts, p, side="right"))
        keys.append(last)  # whitespace-only tokens stay with the token before
    return keys


def _rebuild(tokens, a, b, special, scheme) -> tuple[str, list]:
    """Text rebuilt from the token strings of ``[a, b)`` and each token's first visible character in it (None for
    special tokens and tokens of only whitespace)."""
    text = ""
    positions: list[int | None] = []
    for i in range(a, b):
        t = tokens[i]
        if special[i]:
            positions.append(None)
            continue
        piece = piece_text(t, scheme)
        if scheme in ("wordpiece", "plain") and text and not (t.startswith("##") and len(t) > 2):
            piece = " " + piece  # these streams keep no spaces: every word gets one before it
        stripped = piece.lstrip()
        positions.append(len(text) + len(piece) - len(stripped) if stripped else None)
        text += piece
    return text, positions


def _visible_start(text: str, offset) -> int:
    """The first non-space character of a token's ``[start, end)`` in ``text`` (its start if it has none)."""
    s, e = offset
    piece = text[s:e]
    return s + (len(piece) - len(piece.lstrip())) if piece.strip() else s
