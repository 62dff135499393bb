"""Attention sinks out of the way: leave the first token (or [CLS]/[SEP], BOS, or named tokens) out of what is shown,
and say how much attention it held.

In decoders nearly every token sends most of its attention to the first token; in BERT to [CLS] and [SEP]. The rest
of the pattern is then a faint wash. :func:`hide_sinks` returns the trace without those tokens (their rows and
columns), and records in ``meta["hidden_sinks"]`` what it left out and how much of each head's attention that held
(:func:`held_share`: the hidden columns' mass averaged over every query row, before anything else is done, so for
the first token it equals :func:`attnscope.analysis.head_metrics`'s ``first``). Nothing is redistributed silently:
the remaining rows sum to what they held (1 minus the hidden share); ``renormalize=True`` divides each row by what
is shown, and says so. :func:`sink_note` words it: "first token hidden: it held 71 % of this head's attention".

**Learned sinks.** Models whose softmax has an extra sink logit (GPT-OSS) give rows that sum below 1: the rest went
to the learned sink. Whenever sinks are hidden, that mass is shown as a token of its own, :data:`SINK_TOKEN`, first
in the stream (its column is ``1 - row sum``, its own row is empty), and renormalising keeps it: it is never
spread over the tokens.

:func:`shown_trace` is the one transform behind every front end's ``by=`` / ``hide_sinks=`` / ``renormalize=``
options: aggregation to units first (the hidden tokens kept units of their own), then the sinks hidden.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .aggregate import BLOCK_WEIGHTS, DENSE_MAX_BYTES, aggregate
from .attention import Attention, DenseAttention
from .codec import pruned_head
from .errors import InputError
from .qk import QKAttention
from .tokens import prettify_tokens
from .trace import Segment, Trace

#: The learned sink's own token (special by attnscope's rule: ``<name>``).
SINK_TOKEN = "<sink>"
#: Which tokens ``hide_sinks`` leaves out by name: the first, the special ones, or both (``"auto"``).
WHICH = ("auto", "first", "special")
#: Rows summing below ``1 - LEARNED_MIN`` mean a learned sink took the rest (float32 rows sum to 1 within 1e-6).
LEARNED_MIN = 1e-3


def sink_positions(trace: Trace, which: str | Sequence[str | int] = "auto") -> dict[str, list[int]]:
    """Token positions to hide per stream: ``"first"`` (each stream's first token), ``"special"`` (its special
    tokens: [CLS], [SEP], <s>, <|endoftext|>...), ``"auto"`` (both), or a list of positions and token strings
    (raw, ``Ġthe``, or as shown, ``the``: every occurrence). A rule that would hide a whole stream hides none of it;
    a list that would is refused, and so is a token string that names no token of any stream (a typo would
    otherwise hide nothing)."""
    from .analysis.metrics import is_special_token

    out: dict[str, list[int]] = {}
    named: set[str] = set()
    for stream, tokens in trace.tokens.items():
        if isinstance(which, str):
            if which not in WHICH:
                raise InputError(f"hide_sinks must be one of {list(WHICH)}, True, or a list of token positions and "
                                 f"strings; got {which!r}")
            picked = {0} if which in ("auto", "first") else set()
            if which in ("auto", "special"):
                picked |= {i for i, t in enumerate(tokens) if is_special_token(t)}
        else:
            shown = prettify_tokens(tokens)
            picked = set()
            for item in which:
                if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                    if not 0 <= item < len(tokens):
                        raise InputError(f"hide_sinks position {item} is outside the {len(tokens)} {stream!r} tokens")
                    picked.add(int(item))
                elif isinstance(item, str):
                    hits = {i for i, (t, s) in enumerate(zip(tokens, shown)) if item in (t, s)}
                    named |= {item} if hits else set()
                    picked |= hits
                else:
                    raise InputError(f"hide_sinks lists {item!r}; give token positions (int) or token strings")
        if len(picked) >= len(tokens):
            if isinstance(which, str):  # every token of this stream is a sink by the rule: hide none of them
                picked = set()
            else:
                raise InputError(f"hiding {sorted(picked)} would leave no {stream!r} token to show; hide fewer")
        out[stream] = sorted(picked)
    missing = [x for x in which if isinstance(x, str) and x not in named] if not isinstance(which, str) else []
    if missing:
        some = list(dict.fromkeys(t for tokens in trace.tokens.values() for t in prettify_tokens(tokens)))[:8]
        raise InputError(f"hide_sinks names {missing[0]!r}, which is no token of this trace; name tokens as "
                         f"shown ({', '.join(map(repr, some))}, ...) or give their positions")
    return out


def parse_which(text: str) -> str | list[int | str]:
    """A command line's ``--hide-sinks`` value as :func:`sink_positions` takes it: ``auto``, ``first`` or
    ``special``, else comma-separated items, each a token position (a whole number) or a token string (``\\,``
    for a comma inside one): ``"0,5"`` -> ``[0, 5]``, ``"[CLS],[SEP]"`` -> ``["[CLS]", "[SEP]"]``."""
    if text.strip() in WHICH:
        return text.strip()
    items: list[int | str] = []
    for raw in re.split(r"(?<!\\),", text):
        item = raw.strip().replace("\\,", ",")
        if not item:
            raise InputError(f"--hide-sinks {text!r} has an empty item; give {', '.join(WHICH)}, or token positions "
                             "and token texts separated by commas, e.g. 0,5 or [CLS],[SEP]")
        if re.fullmatch(r"-[0-9]+", item):
            raise InputError(f"--hide-sinks {text!r}: token positions count from 0 (the first token); {item} is none "
                             "of them")
        items.append(int(item) if re.fullmatch(r"[0-9]+", item) else item)
    return items


def held_share(trace: Trace, positions: Mapping[str, Sequence[int]], kind: str | None = None) -> np.ndarray:
    """``[L, H]``: the attention mass on the key ``positions`` of ``kind``, averaged over every query row (float64),
    read column by column (O(q) per hidden token and head for every form)."""
    kind = kind or trace.default_kind
    att = trace.attention[kind]
    cols = list(positions.get(trace.streams(kind)[1], ()))
    L, H, q, _ = att.shape
    out = np.zeros((L, H))
    if not cols:
        return out
    for layer in range(L):
        for head in range(H):
            out[layer, head] = _column_mass(att, layer, head, cols) / q
    return out


def learned_share(trace: Trace, kind: str | None = None) -> np.ndarray:
    """``[L, H]``: the mass a learned sink took, ``1 - row sum`` averaged over rows (0 for softmax over tokens only)."""
    kind = kind or trace.default_kind
    att = trace.attention[kind]
    L, H, q, _ = att.shape
    if isinstance(att, QKAttention):  # O(q) a head: the rule's sink logits, or older files' cell sums (exact)
        totals = att.sums.astype(np.float64).sum(axis=(2, 3)) if att.sums is not None else np.array(
            [[att.row_mass(layer, head).sum() for head in range(H)] for layer in range(L)])
    else:
        totals = np.array([[row_totals(att, layer, head).sum() for head in range(H)] for layer in range(L)])
    return np.clip(1.0 - totals / q, 0.0, 1.0)


def hide_sinks(trace: Trace, which: str | Sequence[str | int] | Mapping[str, Sequence[int]] = "auto", *,
               renormalize: bool = False, held: Mapping[str, np.ndarray] | None = None) -> Trace:
    """The trace without the sink tokens (module docstring); ``which`` as :func:`sink_positions` or a mapping
    stream -> positions. ``held`` (kind -> ``[L, H]``) states shares measured elsewhere (:func:`shown_trace` measures
    them on the tokens before aggregating). The result is dense: for a long q/k trace aggregate first."""
    positions = dict(which) if isinstance(which, Mapping) else sink_positions(trace, which)
    return _hide(trace, positions, renormalize, held)


def _hide(trace: Trace, positions: Mapping[str, Sequence[int]], renormalize: bool,
          held: Mapping[str, np.ndarray] | None) -> Trace:
    learned = {kind: learned_share(trace, kind) for kind in trace.kinds}
    streams_with_sink = {trace.streams(k)[1] for k, v in learned.items() if v.max(initial=0.0) > LEARNED_MIN}
    keep = {s: [i for i in range(len(t)) if i not in set(positions.get(s, ()))] for s, t in trace.tokens.items()}
    shift = {s: int(s in streams_with_sink) for s in trace.tokens}
    attention: dict[str, Attention] = {}
    for kind, att in trace.attention.items():
        qs, ks = trace.streams(kind)
        L, H = att.shape[:2]
        size = 4 * L * H * (len(keep[qs]) + shift[qs]) * (len(keep[ks]) + shift[ks])
        if size > DENSE_MAX_BYTES:
            raise InputError(f"hiding sinks makes {kind!r} attention dense: {size / 2**30:.1f} GiB; aggregate first "
                             "(by='sentence' or 'paragraph'), or use the view's Hide sinks control")
        attention[kind] = DenseAttention(_hidden(att, keep[qs], keep[ks], shift[qs], shift[ks], renormalize))
    tokens = {s: [SINK_TOKEN] * shift[s] + [t[i] for i in keep[s]] for s, t in trace.tokens.items()}
    segments = {name: _kept_segment(seg, keep[seg.stream], shift[seg.stream]) for name, seg in trace.segments.items()}
    ids = {s: [v[i] for i in keep[s]] for s, v in trace.token_ids.items() if not shift[s]}
    meta = _kept_meta(trace.meta, keep, shift)
    held = held if held is not None else {kind: held_share(trace, positions, kind) for kind in trace.kinds}
    meta["hidden_sinks"] = {
        "positions": {s: list(p) for s, p in positions.items() if p},
        "labels": {s: sink_labels(trace.tokens[s], p) for s, p in positions.items() if p},
        "held": {k: np.round(v, 6).tolist() for k, v in held.items()},
        "learned": {k: np.round(v, 6).tolist() for k, v in learned.items() if trace.streams(k)[1] in streams_with_sink},
        "renormalized": bool(renormalize),
    }
    return replace(trace, tokens=tokens, attention=attention, token_ids=ids, segments=segments, qkv={}, bias={},
                   meta=meta)


def shown_trace(trace: Trace, *, by: Any = "token", hide_sinks: Any = None, renormalize: bool = False) -> Trace:
    """What a view, figure, metric table or comparison reads for the options ``by`` (:func:`attnscope.aggregate`),
    ``hide_sinks`` (None/False: shown; True: ``"auto"``; else as :func:`sink_positions`) and ``renormalize``:
    units first, with the hidden tokens kept units of their own, then those units hidden. The stated shares are
    measured on the tokens."""
    if renormalize and not hide_sinks:
        raise InputError("renormalize=True spreads what hidden sinks held over the rest of each row; pass "
                         "hide_sinks=True (or the tokens to hide) with it")
    if not hide_sinks:
        return aggregate(trace, by) if by not in (None, "token") else trace
    positions = sink_positions(trace, "auto" if hide_sinks is True else hide_sinks)
    held = {kind: held_share(trace, positions, kind) for kind in trace.kinds}
    if by in (None, "token"):
        return _hide(trace, positions, renormalize, held)
    units = aggregate(trace, by, apart=positions)
    spans = units.meta["units"]["spans"]
    hidden = {s: [u for u, (a, _) in enumerate(spans[s]) if a in set(p)] for s, p in positions.items()}
    out = _hide(units, hidden, renormalize, held)
    out.meta["hidden_sinks"]["labels"] = {s: sink_labels(trace.tokens[s], p) for s, p in positions.items() if p}
    return out


def sink_labels(tokens: Sequence[str], positions: Sequence[int]) -> list[str]:
    """How the hidden tokens are named: ``"first token"`` for position 0 unless it is a special token, else the
    token as shown (``[CLS]``, ``<s>``); each name once."""
    from .analysis.metrics import is_special_token

    shown = prettify_tokens(tokens)
    names = ["first token" if p == 0 and not is_special_token(tokens[0]) else shown[p] for p in positions]
    return list(dict.fromkeys(names))


def sink_note(labels: Sequence[str], share: float, heads: int = 1, low: float | None = None,
              high: float | None = None) -> str:
    """``"first token hidden: it held 71 % of this head's attention"``; for several heads the mean and the range."""
    who = _names(labels)
    pronoun = "it" if len(labels) == 1 else "they"
    if heads == 1:
        return f"{who} hidden: {pronoun} held {100 * share:.0f} % of this head's attention"
    spread = f" ({100 * low:.0f}-{100 * high:.0f} %)" if low is not None and high is not None else ""
    return f"{who} hidden: {pronoun} held {100 * share:.0f} % of these {heads} heads' attention on average{spread}"


def _names(labels: Sequence[str]) -> str:
    """``"[CLS]"``, ``"[CLS] and [SEP]"``, ``"first token, [CLS] and [SEP]"``."""
    names = list(labels)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def trace_note(trace: Trace, layer: int | None = None, head: int | None = None, kind: str | None = None) -> str:
    """:func:`sink_note` of a trace made by :func:`hide_sinks` for one head (``layer`` and ``head``), one layer, or
    all heads; ``""`` when it hides nothing. Renormalised rows and a learned sink's share are said too."""
    info = trace.meta.get("hidden_sinks")
    if not info:
        return ""
    kind = kind or trace.default_kind
    held = np.asarray(info["held"][kind], dtype=np.float64)
    pick = held[layer] if layer is not None else held.reshape(-1)
    pick = pick[head] if head is not None and layer is not None else pick
    values = np.atleast_1d(pick)
    labels = [name for names in info["labels"].values() for name in names]
    text = sink_note(labels, float(values.mean()), len(values), float(values.min()), float(values.max()))
    if info.get("renormalized"):
        text += "; rows renormalised over what is shown"
    learned = info.get("learned", {}).get(kind)
    if learned is not None:
        share = np.asarray(learned, dtype=np.float64)
        share = share[layer] if layer is not None else share
        share = share[head] if head is not None and layer is not None else share
        text += f"; the learned sink ({SINK_TOKEN}) took {100 * float(np.mean(share)):.0f} %"
    return text


def pair_note(a: Trace, b: Trace, layer: int, head: int, kind: str | None = None) -> str:
    """The diff view's line for two traces made by :func:`hide_sinks`, for one head: ``"[CLS] and [SEP] hidden:
    they held 34 % of this head's attention in A, 32 % in B"``; ``""`` when neither hides anything."""
    infos = [t.meta.get("hidden_sinks") or {} for t in (a, b)]
    if not any(infos):
        return ""
    labels = [[n for names in info.get("labels", {}).values() for n in names] for info in infos]
    shares = [f"{100 * float(np.asarray(info['held'][kind or t.default_kind])[layer, head]):.0f} %" if info else ""
              for info, t in zip(infos, (a, b))]
    if labels[0] == labels[1]:
        text = (f"{_names(labels[0])} hidden: {'it' if len(labels[0]) == 1 else 'they'} held {shares[0]} of this "
                f"head's attention in A, {shares[1]} in B")
    else:
        sides = [f"in {side} {_names(names)} ({share})" if names else f"nothing in {side}"
                 for side, names, share in zip("AB", labels, shares)]
        text = f"hidden: {sides[0]}, {sides[1]} of this head's attention"
    if any(info.get("renormalized") for info in infos):
        text += "; rows renormalised over what is shown"
    return text


# ----------------------------------------------------------------------------------------------- reading
def _column_mass(att, layer: int, head: int, cols: list[int]) -> float:
    """Sum over every query row of the weights on key positions ``cols`` (float64)."""
    _, H, q, k = att.shape
    if att.pruned:
        r0 = (layer * H + head) * q
        a, b = int(att.indptr[r0]), int(att.indptr[r0 + q])
        hit = np.isin(att.indices[a:b], cols)
        return float(att.values[a:b][hit].sum(dtype=np.float64))
    if att.form == "qk":
        return float(sum(att.weights(layer, head, 0, q, c, c + 1).sum(dtype=np.float64) for c in cols))
    if att.form == "dense":
        return float(att.weights[layer, head][:, cols].sum(dtype=np.float64))
    return float(sum(att.rows(layer, head, lo, min(q, lo + _step(k)))[:, cols].sum(dtype=np.float64)
                     for lo in range(0, q, _step(k))))


def row_totals(att, layer: int, head: int) -> np.ndarray:
    """Each query row's whole attention ``[q]`` float64: 1 for a softmax over tokens, less with a learned sink
    (pruned rows: what they kept over the fraction kept)."""
    q, k = att.shape[2:]
    if att.pruned:
        return np.where(att.mass[layer, head] > 0, pruned_head(att, layer, head).totals, 1.0)
    return np.concatenate([att.rows(layer, head, lo, min(q, lo + _step(k))).sum(1, dtype=np.float64)
                           for lo in range(0, q, _step(k))])


def _step(k: int) -> int:
    return max(1, BLOCK_WEIGHTS // max(1, k))


def _hidden(att, rows: list[int], cols: list[int], row_shift: int, col_shift: int, renormalize: bool) -> np.ndarray:
    """``[L, H, len(rows) + row_shift, len(cols) + col_shift]``: the kept rows and columns, a learned sink's column
    first when ``col_shift`` (its row, when ``row_shift``, is empty), rows renormalised over what is shown if asked."""
    L, H, q, k = att.shape
    out = np.zeros((L, H, len(rows) + row_shift, len(cols) + col_shift), dtype=np.float32)
    rows_arr, cols_arr = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    step = _step(k)
    for layer in range(L):
        for head in range(H):
            totals = row_totals(att, layer, head) if att.pruned else None
            for lo in range(0, len(rows_arr), step):
                pick = rows_arr[lo : lo + step]
                block = att.rows(layer, head, int(pick[0]), int(pick[-1]) + 1)[pick - pick[0]]
                shown = block[:, cols_arr].astype(np.float64)
                whole = totals[pick] if totals is not None else block.sum(1, dtype=np.float64)
                sink = np.clip(1.0 - whole, 0.0, 1.0)[:, None] if col_shift else np.zeros((len(pick), 0))
                if renormalize:
                    norm = shown.sum(1, keepdims=True) + sink.sum(1, keepdims=True)
                    shown, sink = (x / np.where(norm > 0, norm, 1.0) for x in (shown, sink))
                out[layer, head, row_shift + lo : row_shift + lo + len(pick)] = np.concatenate([sink, shown], 1)
    return out


def _kept_segment(seg: Segment, keep: list[int], shift: int) -> Segment:
    start = int(np.searchsorted(keep, seg.start)) + shift
    end = int(np.searchsorted(keep, seg.end)) + shift
    return Segment(seg.stream, start, end)


def _kept_meta(meta: dict, keep: dict[str, list[int]], shift: dict[str, int]) -> dict:
    """The meta of the kept tokens: per-token facts (word ids, offsets, units' spans) follow the tokens kept."""
    out = {k: v for k, v in meta.items()}
    for field in ("words", "offsets"):
        table = meta.get(field)
        if isinstance(table, dict):
            out[field] = {s: [None] * shift[s] + [v[i] for i in keep[s]] for s, v in table.items()
                          if s in keep and isinstance(v, list) and len(v) > (max(keep[s]) if keep[s] else -1)}
    units = meta.get("units")
    if isinstance(units, dict) and isinstance(units.get("spans"), dict):
        spans = units["spans"]
        out["units"] = {**units, "spans": {s: [None] * shift[s] + [spans[s][i] for i in keep[s]]
                                           for s in spans if s in keep}}
    if "kinds" in out:  # a token-level window no longer fits the kept positions
        out["kinds"] = {k: {n: x for n, x in v.items() if n != "windows"} for k, v in out["kinds"].items()}
    return out
