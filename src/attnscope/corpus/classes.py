"""Attention to classes of tokens: punctuation, other pieces of the same word, other copies of the same token.

These complete :func:`attnscope.analysis.head_metrics` (which already measures the mass on special tokens,
``special``) for the corpus atlas. Each is, like those, a mean over query rows of one head's ``[q, k]`` weights:

- ``punctuation``: weight on keys that are punctuation or symbols only (``,`` ``.`` ``"`` ``--``), special tokens
  excluded.
- ``same_word``: weight on the *other* pieces of the query's own word (``play`` ``##ing``: each attending to the
  other). Words are read from the raw tokens (:func:`word_ids`).
- ``repeated``: weight on *other* positions holding the query's own token (same id): duplicate-token and copying
  heads; special tokens never count as repeated.

Only attention whose queries and keys are the same tokens has ``same_word`` and ``repeated``; for cross-attention
they are NaN (``punctuation`` is defined for any kind).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

from ..analysis._util import resolve_kind, same_stream
from ..analysis.metrics import is_special_token
from ..tokens import is_byte_level, prettify_tokens
from ..trace import Trace

#: The metrics this module adds, in record order.
CLASS_METRICS = ("punctuation", "same_word", "repeated")


def is_punctuation(label: str) -> bool:
    """Whether a display label (see :func:`attnscope.tokens.prettify`) is punctuation or symbols only."""
    text = label.strip()
    return bool(text) and all(unicodedata.category(c)[0] in "PS" for c in text)


def word_ids(tokens: Sequence[str]) -> np.ndarray:
    """One word number per raw token: pieces of one word share it.

    A token continues the previous word when the tokenizer marks it so: WordPiece's ``##`` prefix, or the absence
    of a word-start marker (``Ġ``/``Ċ`` for byte-level BPE, ``▁`` for SentencePiece) in those families. Special
    tokens and tokens that are only punctuation are words of their own.
    """
    byte_level = is_byte_level(tokens)
    sentencepiece = not byte_level and any(t.startswith("\u2581") for t in tokens)
    labels = prettify_tokens(tokens)
    out = np.zeros(len(tokens), dtype=np.int64)
    word, prev_alone = -1, True
    for i, (tok, label) in enumerate(zip(tokens, labels)):
        alone = is_special_token(tok) or is_punctuation(label)
        if byte_level:
            continues = tok[:1] not in ("\u0120", "\u010a", "\u0109")
        elif sentencepiece:
            continues = not tok.startswith("\u2581")
        else:
            continues = tok.startswith("##")
        if alone or prev_alone or not continues:
            word += 1
        out[i] = word
        prev_alone = alone
    return out


def token_class_metrics(trace: Trace, kind: str | None = None) -> np.ndarray:
    """``[layers, heads, 3]`` float64: ``punctuation``, ``same_word``, ``repeated`` of every head (module docstring)."""
    kind = resolve_kind(trace, kind)
    weights = trace.attention[kind].dense()  # [L, H, q, k]
    query_stream, key_stream = trace.streams(kind)
    keys = trace.tokens[key_stream]
    special = np.array([is_special_token(t) for t in keys], dtype=bool)
    punct = np.array([is_punctuation(label) for label in prettify_tokens(keys)], dtype=bool) & ~special
    out = np.full(weights.shape[:2] + (len(CLASS_METRICS),), np.nan)
    out[..., 0] = weights[..., punct].sum(-1, dtype=np.float64).mean(-1)
    if same_stream(trace, kind):
        n = len(keys)
        others = ~np.eye(n, dtype=bool)
        words = word_ids(keys)
        same_word = (words[:, None] == words[None, :]) & others
        ids = np.asarray(trace.token_ids.get(key_stream) or [hash(t) for t in keys])
        repeated = (ids[:, None] == ids[None, :]) & others & ~special[None, :] & ~special[:, None]
        out[..., 1] = np.einsum("lhqk,qk->lhq", weights, same_word.astype(weights.dtype)).mean(-1)
        out[..., 2] = np.einsum("lhqk,qk->lhq", weights, repeated.astype(weights.dtype)).mean(-1)
    return out
