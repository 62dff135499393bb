"""Writing files so that a failure never leaves an empty or half-written file behind.

Every file attnscope writes (views, figures, traces, command-line outputs, tracker artifacts) goes through
:func:`atomic_write`: the bytes go to a hidden temporary file in the same folder, which then takes the target's
name in one step (``os.replace``). Whoever reads the path sees the old file or the new one, never a torn one; on
any error (a full disk, a writer that raises, Ctrl+C) the temporary file is removed and the old file is left as
it was. A new file gets the permissions a plain ``open()`` gives (``0o666`` less the umask, so ``-rw-r--r--``
under the usual umask 022); a replaced file keeps its own.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

#: What a writer gets: the temporary path to write the whole file to (it exists, empty).
Writer = Callable[[Path], object]


def atomic_write(path: str | os.PathLike, data: str | bytes | Writer, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` all at once; returns ``path``.

    ``data`` is the text (encoded with ``encoding``), the bytes, or a function that writes the file at the
    temporary path it is given (``lambda tmp: fig.savefig(tmp, format="png")``). A symbolic link at ``path`` is
    written through (its target changes, the link stays).
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode(encoding)  # before any file exists: text that cannot be encoded leaves nothing behind
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    tmp = target.with_name(f".{target.name[:80]}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        mode = _mode_for(target, fd)
        if isinstance(data, (bytes, bytearray, memoryview)):
            with os.fdopen(fd, "wb", closefd=True) as f:
                fd = -1
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        else:
            os.close(fd)
            fd = -1
            data(tmp)
            _sync(tmp)
        os.chmod(tmp, mode)  # writers that make their own file (safetensors does) leave it 0o600
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return path


def _mode_for(target: Path, fd: int) -> int:
    """The replaced file's permission bits, or those the umask gave the fresh temporary file."""
    try:
        st = os.stat(target)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return stat.S_IMODE(os.fstat(fd).st_mode)


def _sync(path: Path) -> None:
    """Flush a file another library wrote to disk, so the rename never publishes a file still in flight."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
