"""Lining up the tokens of two inputs so their attention can be compared.

The token lists are matched with :class:`difflib.SequenceMatcher` (no junk heuristic). The result is a list of
*slots*, in order:

- each token the two inputs share (same string, matched in order) is a slot of its own, one position on each side;
- each run of tokens that differs (``"He"`` vs ``"She"``, or words present on one side only) is one slot holding
  the whole run on each side; a side may be empty (an insertion).

Identical inputs give one slot per token; inputs that differ in one span (a shared prefix and suffix around it)
give the shared tokens plus one slot for the span. Attention is compared over slots: a key slot's weight is the sum
of its keys' weights, a query slot's row is the mean of its rows (see :mod:`attnscope.analysis.compare`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Slot:
    """Positions ``[a_start, a_end)`` of input A and ``[b_start, b_end)`` of input B that are compared as one."""

    a_start: int
    a_end: int
    b_start: int
    b_end: int
    shared: bool  # True: one token both inputs share; False: a differing span

    @property
    def in_both(self) -> bool:
        return self.a_end > self.a_start and self.b_end > self.b_start


@dataclass(frozen=True)
class Alignment:
    """Slots pairing the positions of two token lists (see the module docstring)."""

    tokens_a: tuple[str, ...]
    tokens_b: tuple[str, ...]
    slots: tuple[Slot, ...]

    @property
    def identical(self) -> bool:
        return self.tokens_a == self.tokens_b

    @property
    def first_difference(self) -> int:
        """Index of the first slot that is not a shared token (``len(slots)`` when the inputs are identical)."""
        return next((i for i, s in enumerate(self.slots) if not s.shared), len(self.slots))

    def slot_of(self, side: str) -> np.ndarray:
        """For each position of input ``side`` (``"a"`` or ``"b"``), the index of its slot ``[n]``."""
        out = []
        for i, s in enumerate(self.slots):
            start, end = (s.a_start, s.a_end) if side == "a" else (s.b_start, s.b_end)
            out.extend([i] * (end - start))
        return np.array(out, dtype=np.int64)

    def present(self, side: str) -> np.ndarray:
        """For each slot, whether input ``side`` (``"a"`` or ``"b"``) has tokens in it ``[S]`` bool."""
        return np.array([(s.a_end > s.a_start) if side == "a" else (s.b_end > s.b_start) for s in self.slots])

    def slot_labels(self, prettify: Callable[[list[str]], list[str]]) -> list[str]:
        """The label the diff view, its figure and the CLI show per slot: the shared token, or ``A-span → B-span``
        (words joined by spaces, ``∅`` for an empty side), tokens passed through ``prettify`` first."""
        a, b = prettify(list(self.tokens_a)), prettify(list(self.tokens_b))
        out = []
        for s in self.slots:
            if s.shared:
                out.append(a[s.a_start])
            else:
                left = " ".join(a[s.a_start:s.a_end]) or "\u2205"
                right = " ".join(b[s.b_start:s.b_end]) or "\u2205"
                out.append(f"{left} \u2192 {right}")
        return out

    def labels(self) -> list[str]:
        """A compact label per slot: the shared token, or ``"A-span | B-span"`` for a differing span."""
        out = []
        for s in self.slots:
            if s.shared:
                out.append(self.tokens_a[s.a_start])
            else:
                out.append(f"{''.join(self.tokens_a[s.a_start:s.a_end])} | {''.join(self.tokens_b[s.b_start:s.b_end])}")
        return out


def align_tokens(tokens_a: Sequence[str], tokens_b: Sequence[str]) -> Alignment:
    """Match two token lists into slots (shared tokens one by one, each differing run as one slot)."""
    a, b = tuple(tokens_a), tuple(tokens_b)
    slots: list[Slot] = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            slots.extend(Slot(a0 + t, a0 + t + 1, b0 + t, b0 + t + 1, True) for t in range(a1 - a0))
        else:
            slots.append(Slot(a0, a1, b0, b1, False))
    return Alignment(a, b, tuple(slots))
