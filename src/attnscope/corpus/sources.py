"""Reading a corpus: which files, how they are cut into shards, and the texts of one shard.

DATA is a text file (one text a line), a JSON Lines, CSV or Parquet file with a text column, or a folder holding
such files (read recursively, in sorted path order). Every text gets a ``text_id``: its position among the texts
chosen (after ``sample`` and ``limit``), so the same data and options always give the same ids, whatever engine or
how many workers run them.

The corpus is cut into **shards** of ``shard_size`` chosen texts (a shard never spans two files). A shard is
described by where it starts (a byte offset for line-based files, a row for Parquet) so any worker can read it
without reading the file from its start, and so a plan costs O(shards) memory, not O(texts). Shards are the unit
of work and of resume: each is written whole or not at all.

Rows that cannot be a text (a JSON line that does not parse, a value that is not a string, an empty line) are not
errors here: they travel as rows with a ``status`` and are counted in the atlas. A file that cannot be read at all
(missing, unknown format, no such column, not UTF-8) raises :class:`~attnscope.errors.InputError` at planning time,
before any model loads.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError

#: File suffix -> format.
FORMATS = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
           ".parquet": "parquet"}
#: Why a row is not a text (the ``status`` of the row); ``"ok"`` for a text.
BAD_ROWS = ("empty", "not text", "too long", "failed")


@dataclass(frozen=True)
class SourceFile:
    """One input file: its path, format, and what identifies its content (size and modification time)."""

    path: str
    format: str
    size: int
    mtime_ns: int
    name: str  # path relative to DATA (the file name when DATA is a file), stored with each text


@dataclass(frozen=True)
class Shard:
    """``count`` chosen texts of one file, starting at source row ``row`` (byte ``offset`` for line files)."""

    index: int
    file: int  # index into Plan.files
    base: int  # source rows in the files before this one (rows are numbered over all files for ``sample``)
    row: int  # first source row read (0-based, data rows: a CSV header is not a row)
    offset: int  # byte offset of that row (line-based formats); 0 for Parquet
    rows: int  # source rows to read (chosen ones and the ones ``sample`` skips)
    first_id: int  # text_id of the shard's first chosen text
    count: int  # chosen texts in the shard


@dataclass(frozen=True)
class Selection:
    """Which texts are chosen: every row, or a ``sample`` fraction (by a seeded hash of the row), up to ``limit``."""

    column: str = "text"
    sample: float | None = None
    seed: int = 0
    limit: int | None = None

    def keeps(self, global_row: int) -> bool:
        """Whether the source row numbered ``global_row`` (over all files) is in the sample."""
        if self.sample is None or self.sample >= 1.0:
            return True
        digest = hashlib.blake2b(f"{self.seed}:{global_row}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") < self.sample * 2**64


@dataclass(frozen=True)
class Plan:
    """The files, the shards and the total number of chosen texts."""

    files: list[SourceFile]
    shards: list[Shard]
    texts: int
    selection: Selection

    def fingerprint(self) -> dict:
        """What identifies the input of an atlas (to refuse resuming with other data or options)."""
        return {"files": [asdict(f) for f in self.files], "selection": asdict(self.selection)}


# --------------------------------------------------------------------------- planning
def plan(data: str | Path, selection: Selection, shard_size: int) -> Plan:
    """Find the files of ``data``, check they can be read, and cut the chosen rows into shards."""
    if not isinstance(shard_size, int) or shard_size < 1:
        raise InputError(f"shard_size must be a whole number >= 1; got {shard_size!r}")
    if selection.sample is not None and not 0.0 < selection.sample <= 1.0:
        raise InputError(f"sample must be a fraction in (0, 1]; got {selection.sample!r}")
    if selection.limit is not None and selection.limit < 1:
        raise InputError(f"limit must be at least 1; got {selection.limit!r}")
    files = find_files(data)
    shards: list[Shard] = []
    chosen = 0
    base = 0  # source rows in the files before this one
    for fi, f in enumerate(files):
        check_file(f, selection.column)
        left = None if selection.limit is None else selection.limit - chosen
        rows = _cut(f, fi, base, selection, shard_size, shards, chosen, left)
        chosen = shards[-1].first_id + shards[-1].count if shards else 0
        base += rows
        if selection.limit is not None and chosen >= selection.limit:
            break
    if chosen == 0:
        raise InputError(f"{data} holds no rows to read" + (" in the sample; raise --sample" if selection.sample
                                                            else ""))
    return Plan(files, shards, chosen, selection)


def _cut(f: SourceFile, fi: int, base: int, selection: Selection, shard_size: int, shards: list[Shard],
         first_id: int, left: int | None) -> int:
    """Append the shards of file ``f`` to ``shards`` (at most ``left`` texts); return the source rows it read."""
    start: tuple[int, int] | None = None  # (row, offset) of the open shard's first row
    count = last = rows = 0
    for row, offset in _row_offsets(f):
        if left is not None and left <= 0:
            break
        rows = row + 1
        if not selection.keeps(base + row):
            continue
        if start is None:
            start = (row, offset)
        count, last, first_id = count + 1, row, first_id + 1
        left = None if left is None else left - 1
        if count == shard_size:
            shards.append(Shard(len(shards), fi, base, *start, last + 1 - start[0], first_id - count, count))
            start, count = None, 0
    if start is not None:
        shards.append(Shard(len(shards), fi, base, *start, last + 1 - start[0], first_id - count, count))
    return rows


def find_files(data: str | Path) -> list[SourceFile]:
    """The readable files of ``data`` (a file, or a folder searched recursively), in sorted order."""
    root = Path(data).expanduser()
    if not root.exists():
        raise InputError(f"no file or folder {str(data)!r}; give a text file (one text a line), a .jsonl, .csv or "
                         ".parquet file with a text column, or a folder of them")
    if root.is_file():
        paths, base = [root], root.parent
        if _format(root) is None:
            raise InputError(f"{root.name!r} is not a format attnscope reads as a corpus; use one of "
                             f"{', '.join(FORMATS)} (text files: one text a line)")
    else:
        paths = sorted(p for p in root.rglob("*") if p.is_file() and _format(p) is not None
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        base = root
        if not paths:
            raise InputError(f"the folder {str(data)!r} holds no {', '.join(FORMATS)} files to read as a corpus")
    out = []
    for p in paths:
        st = p.stat()
        out.append(SourceFile(str(p.resolve()), _format(p) or "", st.st_size, st.st_mtime_ns, p.relative_to(base).as_posix()))
    return out


def _format(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def check_file(f: SourceFile, column: str) -> None:
    """Refuse a file that cannot be read as a corpus at all, with one line saying why and what to do."""
    if f.format == "parquet":
        _parquet_columns(f, column)
        return
    with open(f.path, "rb") as fh:
        head = fh.read(64 * 1024)
    if b"\x00" in head:
        raise InputError(f"{f.name!r} looks binary (it holds NUL bytes), not {f.format} text; give UTF-8 text")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a character cut at the end of the sample
            raise InputError(f"{f.name!r} is not UTF-8 text (byte {exc.start}); convert it with iconv -t utf-8") from None
    if f.format == "csv":
        first = next(csv.reader(io.StringIO(head.decode("utf-8", "replace"))), None)
        if not first:
            raise InputError(f"{f.name!r} is empty; a CSV corpus needs a header row naming a {column!r} column")
        if column not in first:
            raise InputError(f"{f.name!r} has no column {column!r} (its header: {', '.join(first)[:200]}); "
                             "pick one with --column")
    elif f.format == "jsonl":
        line = next((ln for ln in head.decode("utf-8", "replace").splitlines() if ln.strip()), None)
        if line is None:
            return
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"the first line of {f.name!r} is not JSON; a .jsonl corpus holds one JSON object a "
                             "line") from None
        if not isinstance(value, dict):
            raise InputError(f"the first line of {f.name!r} is a JSON {type(value).__name__}, not an object with a "
                             f"{column!r} field")
        if column not in value:
            raise InputError(f"the first line of {f.name!r} has no field {column!r} (it has: "
                             f"{', '.join(list(value)[:20])}); pick one with --column")


def _parquet_columns(f: SourceFile, column: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(f.path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{f.name!r} is not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    names = meta.schema_arrow.names
    if column not in names:
        raise InputError(f"{f.name!r} has no column {column!r} (it has: {', '.join(names[:20])}); pick one with "
                         "--column")
    return meta


def _row_offsets(f: SourceFile) -> Iterator[tuple[int, int]]:
    """``(row, byte offset)`` of every data row of a file (Parquet: offset 0)."""
    if f.format == "parquet":
        yield from ((r, 0) for r in range(_parquet_rows(f)))
        return
    with open(f.path, "rb") as fh:
        if f.format == "csv":
            lines = _Lines(fh)
            reader = csv.reader(lines)
            next(reader, None)  # the header
            row = 0
            while True:
                offset = lines.position
                if next(reader, None) is None:
                    return
                yield row, offset
                row += 1
        offset = 0
        for row, raw in enumerate(fh):
            yield row, offset
            offset += len(raw)


def _parquet_rows(f: SourceFile) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(f.path).metadata.num_rows


class _Lines:
    """Lines of a binary file decoded as UTF-8, with the byte position of the next unread line (for csv.reader)."""

    def __init__(self, fh):
        self.fh = fh
        self.position = fh.tell()

    def __iter__(self):
        return self

    def __next__(self) -> str:
        raw = self.fh.readline()
        if not raw:
            raise StopIteration
        self.position += len(raw)
        return raw.decode("utf-8", "replace")


# --------------------------------------------------------------------------- reading one shard
@dataclass(frozen=True)
class Row:
    """One chosen row: its id, where it came from, its text (None when it is not one) and why not."""

    text_id: int
    source: str
    row: int
    text: str | None
    status: str  # "ok", or one of BAD_ROWS


def read_shard(f: SourceFile, selection: Selection, shard: Shard) -> list[Row]:
    """The chosen rows of ``shard`` (of file ``f``), in order: ``shard.count`` of them."""
    out: list[Row] = []
    for row, value in _values(f, selection.column, shard):
        if len(out) == shard.count:
            break
        if not selection.keeps(shard.base + row):
            continue
        text, status = _as_text(value)
        out.append(Row(shard.first_id + len(out), f.name, row, text, status))
    return out


def rows_table(shard: Shard, rows: list[Row]):
    """A shard's rows as the pyarrow table the worker takes (``shard, text_id, source, row, text, status``)."""
    import pyarrow as pa

    return pa.table({
        "shard": pa.array([shard.index] * len(rows), pa.int32()),
        "text_id": pa.array([r.text_id for r in rows], pa.int64()),
        "source": pa.array([r.source for r in rows], pa.string()),
        "row": pa.array([r.row for r in rows], pa.int64()),
        "text": pa.array([r.text for r in rows], pa.string()),
        "status": pa.array([r.status for r in rows], pa.string()),
    })


def _as_text(value) -> tuple[str | None, str]:
    if not isinstance(value, str):
        return None, "not text"
    if not value.strip():
        return None, "empty"
    return value, "ok"


_NOT_JSON = object()


def _values(f: SourceFile, column: str, shard: Shard) -> Iterator[tuple[int, object]]:
    """``(row, value)`` for the rows of ``shard`` in file ``f`` (a value that is not a string is passed on)."""
    if f.format == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(f.path)
        start = 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if start + n > shard.row and start < shard.row + shard.rows:
                values = pf.read_row_group(g, columns=[column]).column(0).to_pylist()
                for i, v in enumerate(values):
                    if shard.row <= start + i < shard.row + shard.rows:
                        yield start + i, v
            start += n
        return
    with open(f.path, "rb") as fh:
        fh.seek(shard.offset)
        if f.format == "csv":
            at = _csv_header(f).index(column)
            reader = csv.reader(_Lines(fh))
            for i, rec in zip(range(shard.rows), reader):
                yield shard.row + i, rec[at] if at < len(rec) else None
            return
        for i, raw in zip(range(shard.rows), fh):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if f.format == "text":
                yield shard.row + i, line
            else:
                yield shard.row + i, _json_field(line, column)


def _csv_header(f: SourceFile) -> list[str]:
    with open(f.path, "rb") as fh:
        return next(csv.reader(_Lines(fh)), [])


def _json_field(line: str, column: str):
    if not line.strip():
        return ""
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return _NOT_JSON
    return value.get(column) if isinstance(value, dict) else _NOT_JSON
