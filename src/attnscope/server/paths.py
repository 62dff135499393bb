"""The trace browser's view of ``--traces DIR``: it lists and opens files inside DIR and nothing else.

A path from a client is refused before touching the disk when it holds a NUL, is absolute (``/etc/passwd``,
``C:\\x``, ``\\\\server\\share``) or has a ``..`` part; what is left is resolved (following symlinks) and must
still lie inside DIR, so a symlink pointing out of DIR is refused too. Hidden entries (a name starting with ``.``,
such as ``.git`` or ``.env``) are neither listed nor opened, also when a visible symlink leads to one; listings
skip symlinks that lead out as well.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .errors import ApiError

TRACE_SUFFIX = ".safetensors"
MAX_ENTRIES = 2000


def resolve_inside(root: Path, relative: str, *, want: str) -> Path:
    """The real path of ``relative`` inside ``root`` (already resolved); ``want`` is ``"dir"`` or ``"trace"``."""
    if not isinstance(relative, str):
        raise ApiError(400, "path must be a string")
    if "\x00" in relative:
        raise ApiError(400, "path contains a NUL character")
    text = relative.replace("\\", "/")
    if text.startswith("/") or PureWindowsPath(relative).drive or PureWindowsPath(relative).root:
        raise ApiError(400, f"path must be relative to the traces folder; got the absolute path {relative!r}")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if ".." in parts:
        raise ApiError(400, f"path may not contain '..'; got {relative!r}")
    if _hidden(parts):
        raise ApiError(404, f"no such {'folder' if want == 'dir' else 'file'} in the traces folder: {relative!r} "
                            "(hidden files and folders, named with a leading '.', are not shown)")
    candidate = root.joinpath(*parts)
    try:
        real = candidate.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise ApiError(404, f"no such {'folder' if want == 'dir' else 'file'} in the traces folder: {relative!r}") from None
    except (OSError, RuntimeError) as exc:  # symlink loops, permissions
        raise ApiError(400, f"cannot open {relative!r}: {exc.__class__.__name__}") from None
    if not real.is_relative_to(root):
        raise ApiError(403, f"{relative!r} leads outside the traces folder")
    if _hidden(real.relative_to(root).parts):
        raise ApiError(403, f"{relative!r} leads to a hidden file or folder")
    if want == "dir" and not real.is_dir():
        raise ApiError(400, f"{relative!r} is not a folder")
    if want == "trace":
        if real.suffix != TRACE_SUFFIX:
            raise ApiError(400, f"{relative!r} is not a trace file; the browser opens {TRACE_SUFFIX} files")
        if not stat.S_ISREG(real.stat().st_mode):
            raise ApiError(400, f"{relative!r} is not a regular file")
    return real


def listing(root: Path, relative: str) -> dict[str, Any]:
    """Folders and trace files directly in ``relative`` (folders first, then by name)."""
    folder = resolve_inside(root, relative, want="dir")
    entries: list[dict[str, Any]] = []
    truncated = False
    with os.scandir(folder) as it:
        for item in sorted(it, key=lambda e: e.name):
            if item.name.startswith("."):
                continue
            try:
                real = Path(item.path).resolve(strict=True)
                st = real.stat()
            except (OSError, RuntimeError):
                continue
            if not real.is_relative_to(root) or _hidden(real.relative_to(root).parts):
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if not is_dir and not (stat.S_ISREG(st.st_mode) and item.name.endswith(TRACE_SUFFIX)):
                continue
            if len(entries) >= MAX_ENTRIES:
                truncated = True
                break
            rel = (folder / item.name).relative_to(root).as_posix()
            entries.append({"name": item.name, "path": rel, "type": "dir" if is_dir else "trace",
                            "size": None if is_dir else st.st_size, "mtime": st.st_mtime})
    entries.sort(key=lambda e: (e["type"] != "dir", e["name"].lower()))
    rel = folder.relative_to(root).as_posix()
    return {"dir": "" if rel == "." else rel, "entries": entries, "truncated": truncated}


def _hidden(parts) -> bool:
    """Whether any part of a path names a hidden file or folder (``.git``, ``.env``, ``.x.safetensors``)."""
    return any(part.startswith(".") for part in parts)
