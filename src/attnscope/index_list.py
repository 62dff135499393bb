"""Index lists as people type them: ``0,3,5-7`` (the CLI's ``--layers``/``--heads``, the web app's query strings).

One parser for every front end. A list is kept as ranges until it is known to fit what it indexes, so
``0-99999999`` is refused, never built; each number has at most 6 digits (no layer, head or token count needs
more, and Python refuses to turn numbers of over 4300 digits into ints).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InputError

#: The most indices one list may expand to when nothing bounds it yet (:meth:`IndexList.indices`).
MAX_INDICES = 4096
_FORM = re.compile(r"^\d{1,6}(-\d{1,6})?(,\d{1,6}(-\d{1,6})?)*$")


@dataclass(frozen=True)
class IndexList:
    """A parsed ``0,3,5-7``: ``name`` (the flag or parameter, for messages), the text as given, its ranges."""

    name: str
    text: str
    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str | None, name: str) -> IndexList | None:
        """``None`` (or an empty text: not given) stays None; anything but indices and ranges is an InputError."""
        if text is None or not text.strip():
            return None
        compact = text.replace(" ", "")
        if not _FORM.match(compact):
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise InputError(f"{name} takes whole numbers (up to 6 digits) and ranges such as 0,3,5-7; got {shown!r}")
        ranges = []
        for part in compact.split(","):
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
            if last < first:
                raise InputError(f"{name} {text}: the range {part} runs backwards; write it as {last}-{first}")
            ranges.append((first, last))
        return cls(name, text, tuple(ranges))

    @property
    def top(self) -> int:
        """The largest index listed."""
        return max(last for _, last in self.ranges)

    def within(self, count: int, what: str, where: str) -> list[int]:
        """The indices, or an InputError when the largest is not below ``count`` (``what``: layer or head;
        ``where``: the model or trace, for the message)."""
        if self.top >= count:
            raise InputError(f"{self.name} {self.text} goes up to {what} {self.top}, but {where} has {count} "
                             f"{what}s (0-{count - 1})")
        return self.indices(limit=None)

    def indices(self, limit: int | None = MAX_INDICES) -> list[int]:
        """The indices in the order given; more than ``limit`` of them is an InputError."""
        out: list[int] = []
        for first, last in self.ranges:
            if limit is not None and len(out) + last - first + 1 > limit:
                raise InputError(f"{self.name} {self.text} lists more than {limit} indices; the range "
                                 f"{first}-{last} is too long")
            out.extend(range(first, last + 1))
        return out
