"""``build``: measure every head of a model over a corpus and write the atlas folder (resuming a killed run)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis.metrics import LABELS
from ..errors import InputError
from . import summary
from .engines import ENGINES, WorkerSpec, run_local, run_ray
from .sources import Selection, plan
from .store import AtlasDir
from .worker import METRICS

log = logging.getLogger(__name__)


@dataclass
class Status:
    """Where a run stands, passed to ``progress`` after each shard (and at each phase change).

    ``phase``: ``"starting"`` (planning, starting Ray, loading models), ``"running"``, ``"summarising"``,
    ``"done"``. ``texts_done`` counts texts finished by this run; ``texts_resumed`` those found finished before it.
    """

    phase: str
    texts_total: int
    shards_total: int
    texts_resumed: int = 0
    texts_done: int = 0
    shards_done: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    ray_startup_s: float | None = None

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float | None:
        """Texts per second of this run so far, start-up included (None before the first shard is back)."""
        spent = self.elapsed_s
        return self.texts_done / spent if self.texts_done and spent > 0 else None

    @property
    def remaining_s(self) -> float | None:
        rate = self.rate
        left = self.texts_total - self.texts_resumed - self.texts_done
        return left / rate if rate else None


def build(model: str, data: str | Path, out: str | Path, *, column: str = "text", engine: str = "ray",
          ray_address: str | None = None, actors: int | None = None, cpus_per_actor: float = 1.0,
          gpus_per_actor: float = 0.0, threads: int | None = None, batch_size: int = 16, shard_size: int = 256,
          max_tokens: int = 256, limit: int | None = None, sample: float | None = None, seed: int = 0,
          top_k: int = 5, overwrite: bool = False, progress: Callable[[Status], None] | None = None):
    """Measure every layer x head of ``model`` on each text of ``data``; write the atlas folder ``out``.

    - ``model``: an offline name (``"minilm"``), a folder, a ``.gguf`` file or a hub id; each actor loads it once.
    - ``data``: a text file (one text a line), a ``.jsonl``/``.csv``/``.parquet`` file with a ``column``, or a folder
      of them (see :mod:`attnscope.corpus.sources`). ``limit``: the first N texts; ``sample``: a fraction of the
      rows, chosen by a hash of each row and ``seed`` (the same every run).
    - ``engine``: ``"ray"`` (Ray Data; a local Ray unless ``ray_address``) or ``"local"`` (this process).
      ``actors`` x ``cpus_per_actor`` / ``gpus_per_actor``: Ray's model actors (default: as many as fit);
      ``threads``: torch threads of the local engine.
    - ``batch_size`` texts per forward pass; ``shard_size`` texts per shard (the unit of resume); texts longer than
      ``max_tokens`` are counted as ``"too long"``; ``top_k`` exemplars per head and metric.
    - A folder holding an unfinished atlas of the same model, data and options is resumed: finished shards are kept.
      ``overwrite=True`` starts again.
    - ``progress(status)``: called with a :class:`Status` as the run goes.

    Returns the finished :class:`~attnscope.corpus.Atlas`.
    """
    from .atlas import load

    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if ray_address is not None and engine != "ray":
        raise InputError("--ray-address needs --engine ray")
    for name, value in (("batch_size", batch_size), ("max_tokens", max_tokens), ("top_k", top_k)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name} must be a whole number >= 1; got {value!r}")
    if actors is not None and actors < 1:
        raise InputError(f"actors must be at least 1; got {actors!r}")
    if not isinstance(model, str) or not model:
        raise InputError("model must be a model name or path (each worker loads it by name)")
    the_plan = plan(data, Selection(column=column, sample=sample, seed=seed, limit=limit), shard_size)
    identity = {"model": model, "data": the_plan.fingerprint(), "shard_size": shard_size, "max_tokens": max_tokens}
    atlas = AtlasDir(out)
    finished = atlas.prepare(identity, overwrite=overwrite)
    pending = [s for s in the_plan.shards if s.index not in finished]
    status = Status("starting", the_plan.texts, len(the_plan.shards),
                    texts_resumed=sum(s.count for s in the_plan.shards if s.index in finished),
                    shards_done=len(the_plan.shards) - len(pending))
    tell = progress or (lambda s: None)
    tell(status)
    spec = WorkerSpec(model, batch_size=batch_size, max_tokens=max_tokens, cpus=cpus_per_actor, gpus=gpus_per_actor,
                      actors=actors, threads=threads)

    def started(seconds: float) -> None:
        status.ray_startup_s = seconds
        tell(status)

    results = run_local(the_plan, pending, spec) if engine == "local" else \
        run_ray(the_plan, pending, spec, ray_address, on_started=started)
    for index, table in results:
        atlas.write_shard(index, table)
        status.phase = "running"
        status.texts_done += table.num_rows
        status.shards_done += 1
        for s in table.column("status").to_pylist():
            if s != "ok":
                status.bad[s] = status.bad.get(s, 0) + 1
        tell(status)
    status.phase = "summarising"
    tell(status)
    counts = _counts(atlas.path)
    layers, heads = _shape(atlas.path)
    bounds = summary.ranges(max_tokens)
    summary.write(atlas.path, layers, heads, bounds, top_k)
    atlas.update_manifest(complete=True, layers=layers, heads=heads, metrics=list(METRICS), labels=list(LABELS),
                          ranges=bounds, bins=summary.BINS, top_k=top_k, counts=counts, column=column,
                          data=str(data), shards=len(the_plan.shards))
    status.phase = "done"
    tell(status)
    return load(atlas.path)


def _counts(path: Path) -> dict:
    """Texts chosen, measured, and not measured by reason, over every shard."""
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    for shard in sorted((path / "texts").glob("shard-*.parquet")):
        for s in pq.read_table(shard, columns=["status"]).column("status").to_pylist():
            counts[s] = counts.get(s, 0) + 1
    return {"texts": sum(counts.values()), "measured": counts.pop("ok", 0), "bad": counts}


def _shape(path: Path) -> tuple[int, int]:
    """Layers and heads, read from the first shard with a measured text (every text has all of them)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for shard in sorted((path / "heads").glob("shard-*.parquet")):
        t = pq.read_table(shard, columns=["layer", "head"])
        if t.num_rows:
            return int(pc.max(t.column("layer")).as_py()) + 1, int(pc.max(t.column("head")).as_py()) + 1
    raise InputError(f"no text of the corpus could be measured (see the status column of {path / 'texts'}); "
                     "check --column and --max-tokens")
