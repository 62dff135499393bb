"""Small helpers shared by the analyses: which kind to read, and whether its mask is causal."""

from __future__ import annotations

from ..errors import InputError
from ..trace import Trace


def resolve_kind(trace: Trace, kind: str | None) -> str:
    """The kind to analyse (the trace's default when None); raises MissingDataError when the trace lacks it."""
    if not isinstance(trace, Trace):
        raise InputError(
            f"expected an attnscope Trace; got {type(trace).__name__}. Make one with attnscope.capture(...) "
            "or attnscope.Trace.from_arrays(attention, tokens)"
        )
    kind = kind or trace.default_kind
    trace.shape(kind)  # MissingDataError naming the kinds it has
    return kind


def is_causal(trace: Trace, kind: str) -> bool:
    """Whether query ``i`` of ``kind`` may only attend to keys ``0..i``.

    Captured traces and ``Trace.from_arrays`` record the mask rule in ``meta["kinds"][kind]["causal"]``; for a
    trace without it (a file written before from_arrays recorded it) the rule is read from layer 0's weights
    (:func:`attnscope.attention.looks_causal`).
    """
    info = (trace.meta.get("kinds") or {}).get(kind)
    if isinstance(info, dict) and "causal" in info:
        return bool(info["causal"])
    return trace.attention[kind].looks_causal(0)


def same_stream(trace: Trace, kind: str) -> bool:
    """Whether queries and keys of ``kind`` are the same tokens (all kinds but ``"cross"``)."""
    qs, ks = trace.streams(kind)
    return qs == ks


def require_square(trace: Trace, kind: str, what: str) -> int:
    """The token count of a kind whose queries and keys are the same tokens; InputError for cross-attention."""
    if not same_stream(trace, kind):
        raise InputError(
            f"{what} needs attention whose queries and keys are the same tokens; {kind!r} attention goes from "
            f"{trace.streams(kind)[0]!r} to {trace.streams(kind)[1]!r} tokens. Pick kind='encoder' or 'decoder'"
        )
    return trace.shape(kind)[2]
