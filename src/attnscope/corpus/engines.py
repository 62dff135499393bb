"""Engines: what runs the model actor over the pending shards, yielding each shard's measured rows.

- ``local``: a plain loop in this process (one :class:`~attnscope.corpus.worker.ShardWorker`), the reference.
- ``ray``: a Ray Data pipeline: a datasource with one read task per pending shard -> ``map_batches`` with
  :class:`~attnscope.corpus.worker.ShardWorker` as the actor class (the model loaded once per actor; one shard per
  call) -> the rows stream back to this process, which writes each shard as soon as it is whole. Ray Data's
  streaming executor keeps a bounded number of blocks in flight, so memory does not grow with the corpus.
  Without an address a local Ray starts quietly (no dashboard, workers' logs kept out of the terminal, a small
  object store) and stops afterwards; with ``address`` the job joins that cluster and leaves it running.

Both yield ``(shard index, pyarrow Table)`` pairs; the rows of a shard are computed by the same worker code with the
same batches whichever engine runs them, so the tables are identical.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, require
from .sources import Plan, Shard, read_shard, rows_table
from .worker import ShardWorker

log = logging.getLogger(__name__)

ENGINES = ("ray", "local")
#: Object store of a local Ray started here: shards of texts and metrics are small.
OBJECT_STORE_BYTES = 256 * 2**20
#: Read tasks at a time: reading a shard takes milliseconds beside its forward passes, and each concurrent read
#: task may hold a Ray worker process of its own (hundreds of MB), so a few suffice.
READERS = 2
#: Attempts at starting a local Ray (its start-up times out on an overloaded machine).
STARTS = 3


@dataclass(frozen=True)
class WorkerSpec:
    """What each model actor loads and how many resources it takes."""

    model: str
    batch_size: int = 16
    max_tokens: int = 256
    cpus: float = 1.0  # per actor (Ray); also torch's thread count there
    gpus: float = 0.0  # per actor (Ray)
    actors: int | None = None  # Ray: None = as many as the cluster's CPUs (or GPUs) allow
    threads: int | None = None  # local engine: torch threads (None: torch's default)

    def kwargs(self, *, threads: int | None, device: str | None = None) -> dict:
        return {"model": self.model, "batch_size": self.batch_size, "max_tokens": self.max_tokens,
                "threads": threads, "device": device}


def run_local(plan: Plan, pending: list[Shard], spec: WorkerSpec) -> Iterator[tuple[int, Any]]:
    """The in-process loop: load the model once, then each pending shard in order."""
    worker = ShardWorker(**spec.kwargs(threads=spec.threads))
    for shard in pending:
        rows = read_shard(plan.files[shard.file], plan.selection, shard)
        yield shard.index, worker(rows_table(shard, rows))


def run_ray(plan: Plan, pending: list[Shard], spec: WorkerSpec, address: str | None = None,
            on_started=None) -> Iterator[tuple[int, Any]]:  # (shard index, pyarrow Table)
    """The Ray Data pipeline (module docstring). ``on_started(seconds)`` is called once Ray is up."""
    require("ray", "corpus")
    import time

    import pyarrow as pa
    import ray.data

    start = time.perf_counter()
    with ray_session(address):
        if on_started is not None:
            on_started(time.perf_counter() - start)
        if not pending:
            return
        actors = spec.actors or _fitting_actors(spec)
        counts = {s.index: s.count for s in pending}
        # reading takes no CPU of its own (model actors may hold every CPU, and reads must still run), and few at once
        ds = ray.data.read_datasource(_shard_source(plan, pending), override_num_blocks=len(pending), num_cpus=0,
                                      concurrency=READERS)
        with warnings.catch_warnings():  # max_restarts has no named parameter: Ray warns about **ray_remote_args
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = _map(ds, spec, actors)
        parts: dict[int, list] = {}
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for index, table in _split_by_shard(batch):
                got = parts.setdefault(index, [])
                got.append(table)
                if sum(t.num_rows for t in got) == counts[index]:
                    yield index, pa.concat_tables(parts.pop(index))
        if parts:
            raise RuntimeError(f"Ray Data returned incomplete shards {sorted(parts)}; run again to resume them")


def _map(ds, spec: WorkerSpec, actors: int):
    """``map_batches`` with the model actor: one shard per call, ``actors`` actors of ``spec.cpus``/``spec.gpus``."""
    import ray.data

    # max_restarts=0: a lost actor fails the job (finished shards are kept; a re-run resumes the rest) instead of Ray
    # restarting it from constructor arguments its object store may have lost (ray-project/ray#53727)
    return ds.map_batches(
        ShardWorker, batch_size=None, batch_format="pyarrow", zero_copy_batch=True,
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs=spec.kwargs(threads=max(1, int(spec.cpus)), device="cuda" if spec.gpus else None),
        num_cpus=spec.cpus, num_gpus=spec.gpus or None, max_restarts=0,
    )


def _split_by_shard(batch) -> Iterator[tuple[int, object]]:
    import pyarrow.compute as pc

    shards = batch.column("shard")
    for index in pc.unique(shards).to_pylist():
        yield index, batch.filter(pc.equal(shards, index))


def _fitting_actors(spec: WorkerSpec) -> int:
    import ray

    res = ray.cluster_resources()
    if spec.gpus:
        return max(1, int(res.get("GPU", 0) // spec.gpus))
    return max(1, int(res.get("CPU", 1) // spec.cpus))


@contextlib.contextmanager
def ray_session(address: str | None):
    """Ray for the duration: join ``address``, or start a quiet local Ray (stopped on exit). An already
    initialised Ray (a notebook's) is used as it is and left running."""
    import ray
    import ray.data

    if ray.is_initialized():
        yield
        return
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:  # a local Ray listens on loopback only, never on the machine's network address
        kwargs.update(num_cpus=os.cpu_count() or 1, object_store_memory=OBJECT_STORE_BYTES,
                      _node_ip_address="127.0.0.1")
    for attempt in range(1, STARTS + 1):
        try:  # "local": always a new Ray of our own, even where a `ray start` cluster runs on this machine
            ray.init(address=address or "local", **kwargs)
            break
        except (ConnectionError, ValueError, RuntimeError) as exc:
            if address is None:
                raise
            raise InputError(f"could not join the Ray cluster at {address!r} ({str(exc).splitlines()[0]}); start it "
                             "with `ray start --head` or pass the address `ray status` shows (a cluster with token "
                             "authentication also needs RAY_AUTH_MODE=token and its token)") from None
        except Exception as exc:  # Ray gives its raylet 30 s to register, then raises a bare Exception
            if address is not None or "timed out during startup" not in str(exc) or attempt == STARTS:
                raise
            log.warning("Ray did not start in time (a busy machine?); trying again (%d of %d)", attempt + 1, STARTS)
            ray.shutdown()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    try:
        yield
    finally:
        ray.shutdown()


def _shard_source(plan: Plan, pending: list[Shard]):
    """A Ray Data datasource: one read task, and one block, per pending shard."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class ShardSource(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return sum(s.count for s in pending) * 512

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(_reader(plan, s), BlockMetadata(num_rows=s.count, size_bytes=s.count * 512,
                                                             exec_stats=None, input_files=None))
                    for s in pending]

    return ShardSource()


def _reader(plan: Plan, shard: Shard):
    f, selection = plan.files[shard.file], plan.selection  # only this shard's file travels with the task

    def read():
        return [rows_table(shard, read_shard(f, selection, shard))]

    return read
