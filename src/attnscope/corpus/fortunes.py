"""A real English corpus that installs offline: Debian's ``fortunes`` files (quotations, jokes, riddles, verse).

``apt-get install fortunes`` puts ~15,000 short texts under ``/usr/share/games/fortunes`` (``fortunes-min``: ~800);
each file holds texts separated by lines of ``%``. They are real, varied English (prose, dialogue, verse, lists),
mostly 10 to 100 tokens: short enough to capture thousands on a laptop, diverse enough that heads show what they do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import MissingDataError

FOLDER = Path("/usr/share/games/fortunes")
INSTALL = "apt-get install fortunes (or fortunes-min)"


def fortune_texts(folder: str | Path = FOLDER) -> Iterator[str]:
    """Every fortune of ``folder`` as one line of text (its lines joined by spaces), in sorted file order."""
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*") if p.is_file() and not p.is_symlink() and p.suffix != ".dat")
    if not files:
        raise MissingDataError(f"no fortune files in {folder}; install them with: {INSTALL}")
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for part in text.split("\n%\n"):
            line = " ".join(part.replace("%", " ").split())
            if line:
                yield line


def write_fortunes(path: str | Path, limit: int | None = None, folder: str | Path = FOLDER) -> Path:
    """Write the fortunes as a corpus text file (one text a line), at most ``limit`` of them; returns the path."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as fh:
        for i, text in enumerate(fortune_texts(folder)):
            if limit is not None and i >= limit:
                break
            fh.write(text + "\n")
    return path
