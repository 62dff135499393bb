"""The corpus atlas: throughput of the local engine against Ray Data with 1 and 2 actors, and memory as it grows.

Run: .venv/bin/python benchmarks/corpus.py [--minilm 2000] [--smollm2 500] [--small 500] [--batch-size 16]
                                          [--engines local,ray1,ray1x2,ray2]   (0 texts: skip that model)
Corpus: the first fortunes (Debian's fortunes package) of at most 60 words, one a line. Each configuration runs in
a fresh process (`attnscope.corpus.build`), timed; then once more, sampled every 0.5 s for the memory of its whole
process tree (driver, and Ray's own processes and actors when it starts a local Ray) as the sum of each process's
PSS (resident pages, each shared page divided among the processes sharing it: Ray's object store is counted once,
not once per process), read from /proc/PID/smaps_rollup. Columns:

- start-up: until the first shards are back, every actor having returned one (the local engine: its model loaded
  and its first shard measured; Ray: `ray.init` of a local Ray, shown apart in brackets, then Ray Data's own
  actors, each model actor's imports and model, and its first shard): a fixed cost, paid once per run;
- texts/s after start-up: texts per second from then to the last shard back, the rate a corpus runs at (goals:
  Ray with 1 actor >= 0.8x the local loop, 2 actors >= 1.6x one);
- whole run texts/s: texts measured / wall time, everything included (what a run as short as these gives);
- peak memory: the largest sum of PSS over the process tree, from a second run of the same configuration (reading
  PSS walks every page of every process: sampled during the timed run, it took up to a fifth of its throughput).

Every row measures the same texts with the same worker code; the tables they write are identical (the tests check
it). Ray with 1 actor x 2 CPUs gives the actor both cores (torch threads = 2), as the local engine has them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve()
#: name: (label, engine, actors, cpus per actor)
ENGINES = {"local": ("local (1 process, batched)", "local", None, None), "ray1": ("ray, 1 actor x 1 CPU", "ray", 1, 1.0),
           "ray1x2": ("ray, 1 actor x 2 CPUs", "ray", 1, 2.0), "ray2": ("ray, 2 actors x 1 CPU", "ray", 2, 1.0)}

#: Texts per shard: a shard is the unit of resume and of work handed to an actor (SmolLM2's take 10x longer)
SHARDS = {"minilm": 100, "smollm2": 50}


def corpus(path: Path, n: int) -> Path:
    from attnscope.corpus import fortune_texts

    texts = (t for t in fortune_texts() if len(t.split()) <= 60)
    path.write_text("".join(next(texts) + "\n" for _ in range(n)))
    return path


def one(args) -> None:
    """Child: build one atlas, print a JSON line of timings."""
    from attnscope.corpus import build

    marks, shards = [], []

    def seen(status) -> None:
        marks.append(status.ray_startup_s)
        if status.phase == "running" and status.shards_done and (not shards or shards[-1][1] != status.shards_done):
            shards.append((time.perf_counter(), status.shards_done, status.texts_done))

    start = time.perf_counter()
    atlas = build(args.model, args.data, args.out, engine=args.engine, actors=args.actors,
                  cpus_per_actor=args.cpus or 1.0, batch_size=args.batch_size, shard_size=args.shard_size,
                  max_tokens=128, overwrite=True, progress=seen)
    wall = time.perf_counter() - start
    counts = atlas.manifest["counts"]
    # after start-up: from the shard with which every actor has returned one (the local engine: the first) to the last
    (t0, _, done0), (t1, _, done1) = shards[min(args.actors or 1, len(shards)) - 1], shards[-1]
    print(json.dumps({"measured": counts["measured"], "texts": counts["texts"], "wall": wall,
                      "ray_init": next((m for m in marks if m is not None), None), "startup": t0 - start,
                      "whole": counts["measured"] / wall,
                      "rate": (done1 - done0) / (t1 - t0) if done1 > done0 else None}))


def _pss(pid: int) -> int:
    """A process's proportional set size in bytes (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def run(model: str, data: Path, engine: str, actors, cpus, batch_size: int, shard_size: int, *,
        memory: bool = False) -> dict:
    """Parent: one configuration in a fresh process; with ``memory``, its peak tree memory (PSS) sampled meanwhile
    (``peak_mb``), which slows the run it samples: timings come from runs without it."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, str(HERE), "--one", "--model", model, "--data", str(data), "--out", out + "/atlas",
               "--engine", engine, "--batch-size", str(batch_size), "--shard-size", str(shard_size)]
        if actors:
            cmd += ["--actors", str(actors), "--cpus", str(cpus)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        root, peak = psutil.Process(proc.pid), 0
        while memory and proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            peak = max(peak, sum(_pss(p.pid) for p in tree))
            time.sleep(0.5)
        out_text = proc.communicate()[0]
        if proc.returncode != 0:
            raise SystemExit(f"{cmd} failed with {proc.returncode}")
    result = json.loads(out_text.strip().splitlines()[-1])
    if memory:
        result["peak_mb"] = peak / 2**20  # PSS
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minilm", type=int, default=2000, help="texts for MiniLM")
    ap.add_argument("--smollm2", type=int, default=500, help="texts for SmolLM2 (0: skip)")
    ap.add_argument("--small", type=int, default=500, help="the smaller corpus of the memory comparison (0: skip)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"which of {', '.join(ENGINES)}")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shard-size", type=int, help=f"texts per shard (default: {SHARDS})")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    for name in ("model", "data", "out", "engine"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    ap.add_argument("--actors", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cpus", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args)
        return
    import attnscope

    print(f"attnscope from {Path(attnscope.__file__).parent}; {psutil.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in psutil.getloadavg())} at start", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp())
    rows, memory = [], []
    engines = [ENGINES[e] for e in args.engines.split(",")]
    plan = [(model, n) for model, n in (("minilm", args.minilm), ("smollm2", args.smollm2)) if n]
    for model, n in plan:
        data = corpus(tmp / f"{model}-{n}.txt", n)
        for label, engine, actors, cpus in engines:
            print(f"{model}, {n} texts, {label}...", file=sys.stderr)
            shards = args.shard_size or SHARDS[model]
            r = run(model, data, engine, actors, cpus, args.batch_size, shards)
            r["peak_mb"] = run(model, data, engine, actors, cpus, args.batch_size, shards, memory=True)["peak_mb"]
            rows.append((model, n, label, r))
            print(f"  {json.dumps(r)}", file=sys.stderr)
    for label, engine, actors, cpus in engines if args.small and args.minilm else ():
        print(f"minilm, {args.small} texts, {label} (memory)...", file=sys.stderr)
        r = run("minilm", corpus(tmp / f"minilm-{args.small}.txt", args.small), engine, actors, cpus, args.batch_size,
                args.shard_size or SHARDS["minilm"], memory=True)
        big = next(x for m, n, lab, x in rows if m == "minilm" and lab == label)
        memory.append((label, r["peak_mb"], big["peak_mb"]))
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}", file=sys.stderr)
    print("\n| model | texts | engine | start-up (ray.init) | texts/s after start-up | vs local | vs 1 actor x 1 CPU "
          "| whole run texts/s | vs local | peak memory |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for model, _, label, r in rows:
        local = next((x for m, _, lab, x in rows if m == model and lab.startswith("local")), None)
        one_actor = next((x for m, _, lab, x in rows if m == model and lab == ENGINES["ray1"][0]), None)
        init = f" ({r['ray_init']:.1f} s)" if r["ray_init"] else ""
        print(f"| {model} | {r['measured']} | {label} | {r['startup']:.1f} s{init} | {_num(r['rate'])} | "
              f"{_ratio(r['rate'], local and local['rate'])} | {_ratio(r['rate'], one_actor and one_actor['rate'])} | "
              f"{r['whole']:.1f} | {_ratio(r['whole'], local and local['whole'])} | {r['peak_mb']:.0f} MB |")
    if memory:
        print(f"\n| engine (minilm) | peak memory, {args.small} texts | peak memory, {args.minilm} texts | growth |")
        print("|---|---|---|---|")
    for label, a, b in memory:
        print(f"| {label} | {a:.0f} MB | {b:.0f} MB | {100 * (b - a) / a:+.1f} % |")


def _num(x) -> str:
    return f"{x:.1f}" if x else "–"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "–"


if __name__ == "__main__":
    main()
