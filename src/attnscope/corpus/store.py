"""The atlas folder: its manifest, and the shards written whole or not at all (so a re-run resumes).

::

    ATLAS_DIR/
      atlas.json                   what was measured: model, data files, options, counts (the manifest)
      texts/shard-000000.parquet   one row per chosen text: text_id, source, row, text, status, error, n_tokens,
                                   tokens
      heads/shard-000000.parquet   one row per measured text x layer x head: text_id, layer, head, one column per
                                   metric, label, peak_query, peak_key, peak_weight
      summary.parquet              one row per layer x head (attnscope.corpus.summary)
      exemplars.parquet            the top texts of each head and metric (attnscope.corpus.summary)

A shard's two files are written to temporary names and renamed into place, ``heads`` first: a shard is finished
when its ``texts`` file exists. A run killed at any moment leaves only finished shards and temporary files, which
the next run removes before it resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .._version import __version__
from ..analysis.metrics import LABELS
from ..errors import InputError
from .worker import METRICS

FORMAT = "attnscope-atlas"
VERSION = 1
MANIFEST = "atlas.json"
_TMP = ".tmp"


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.parquet"


class AtlasDir:
    """One atlas folder being written: its manifest and shard files."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def prepare(self, identity: dict, *, overwrite: bool) -> set[int]:
        """Make the folder ready for a run of ``identity`` (model, data, options); return the finished shards.

        An existing atlas of the same identity is resumed; one of another identity is refused unless
        ``overwrite`` (which empties the folder first). A folder that is not an atlas is never emptied.
        """
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{self.path} is a file; the atlas needs a folder: pass another -o")
        if self.path.exists() and any(self.path.iterdir()):
            if not self.manifest_path.exists():
                raise InputError(f"{self.path} is not empty and holds no {MANIFEST}: it is not an atlas, so "
                                 "attnscope will not write into it; pass an empty or new folder")
            old = self.read_manifest()
            if overwrite:
                shutil.rmtree(self.path)
            elif old.get("identity") != identity:
                raise InputError(f"{self.path} holds an atlas of other inputs ({_difference(old.get('identity'), identity)}"
                                 "); pass --overwrite to start it again, or write to another folder")
        for sub in ("texts", "heads"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
            for tmp in (self.path / sub).glob("*" + _TMP):
                tmp.unlink()
        if not self.manifest_path.exists():
            self.write_manifest({"format": FORMAT, "version": VERSION, "identity": identity, "complete": False,
                                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                 "attnscope": __version__})
        return self.finished()

    def finished(self) -> set[int]:
        """Indices of the shards written whole."""
        return {int(p.name[6:12]) for p in (self.path / "texts").glob("shard-*.parquet")}

    def read_manifest(self) -> dict:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.manifest_path} is not a readable atlas manifest ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"{self.manifest_path} is not an attnscope atlas manifest")
        return data

    def write_manifest(self, data: dict) -> None:
        _atomic(self.manifest_path, lambda p: p.write_text(json.dumps(data, indent=1), encoding="utf-8"))

    def update_manifest(self, **fields) -> dict:
        data = {**self.read_manifest(), **fields}
        self.write_manifest(data)
        return data

    def write_shard(self, index: int, table) -> None:
        """Write one shard's measured rows (the worker's table) as its ``heads`` then its ``texts`` file."""
        import pyarrow.parquet as pq

        name = shard_name(index)
        heads = heads_table(table)
        _atomic(self.path / "heads" / name, lambda p: pq.write_table(heads, p))
        texts = table.select(["text_id", "source", "row", "text", "status", "error", "n_tokens", "tokens"])
        _atomic(self.path / "texts" / name, lambda p: pq.write_table(texts.sort_by("text_id"), p))


def heads_table(table):
    """The worker's per-text rows -> the long ``heads`` table (one row per measured text x layer x head)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.filter(pc.equal(table.column("status"), "ok")).sort_by("text_id")
    n = table.num_rows
    labels = np.asarray(pc.list_flatten(table.column("labels")), dtype=np.int8)
    layers, heads = (int(table.column(c)[0].as_py()) for c in ("layers", "heads")) if n else (0, 0)
    per_text = layers * heads
    values = np.asarray(pc.list_flatten(table.column("values")), dtype=np.float32).reshape(n * per_text, len(METRICS))
    peaks = np.asarray(pc.list_flatten(table.column("peaks")), dtype=np.int32).reshape(n * per_text, 2)
    cols = {
        "text_id": np.repeat(np.asarray(table.column("text_id"), dtype=np.int64), per_text),
        "layer": np.tile(np.repeat(np.arange(layers, dtype=np.int16), heads), n),
        "head": np.tile(np.arange(heads, dtype=np.int16), n * layers),
    }
    cols.update({m: values[:, j] for j, m in enumerate(METRICS)})
    out = pa.table(cols)
    out = out.append_column("label", pa.DictionaryArray.from_arrays(pa.array(labels, pa.int8()), pa.array(LABELS)))
    out = out.append_column("peak_query", pa.array(peaks[:, 0]))
    out = out.append_column("peak_key", pa.array(peaks[:, 1]))
    return out.append_column("peak_weight", pa.array(np.asarray(pc.list_flatten(table.column("peak_weight")),
                                                                 dtype=np.float32)))


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + _TMP)
    write(tmp)
    os.replace(tmp, path)


def _difference(old: dict | None, new: dict) -> str:
    if not isinstance(old, dict):
        return "no identity recorded"
    return "differs in " + ", ".join(_paths(old, new)[:5])


def _paths(old, new, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ (``data.selection.limit``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [p for k in sorted(set(old) | set(new)) for p in _paths(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [prefix.rstrip(".") or "value"] if old != new else []
