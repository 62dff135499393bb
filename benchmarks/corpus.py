"""The corpus atlas: throughput of the local engine against Ray Data with 1 and 2 actors, and memory as it grows.

Run: .venv/bin/python benchmarks/corpus.py [--minilm 2000] [--smollm2 500] [--small 500] [--batch-size 16]
                                          [--engines local,ray1,ray1x2,ray2]   (0 texts: skip that model)
Corpus: the first fortunes (Debian's fortunes package) of at most 60 words, one a line. Each configuration runs in
a fresh process (`attnscope.corpus.build`), sampled every 0.2 s for the memory of its whole process tree (driver, and Ray's own
processes and actors when it starts a local Ray) as the sum of each process's PSS (resident pages, each shared page
divided among the processes sharing it: Ray's object store is counted once, not once per process). Columns:

- texts/s: texts measured / (wall time - Ray start-up), model loading included (each actor loads the model);
- steady texts/s: texts per second from the first shard back to the last (every actor up, its model loaded): the
  rate a long corpus runs at;
- Ray start-up: ray.init of a local Ray until the pipeline can start, counted apart;
- peak memory: the largest sum of PSS over the process tree.

Every row measures the same texts with the same worker code; the tables they write are identical (the tests check
it). Ray with 1 actor x 2 CPUs gives the actor both cores (torch threads = 2), as the local engine has them.
"""

from __future__ import annotations

import argparse
import contextlib
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
    startup = next((m for m in marks if m is not None), 0.0)
    counts = atlas.manifest["counts"]
    # steady: from the first shard back to the last, when every actor is up and its model loaded (the
    # throughput a long corpus runs at; the fixed costs before it are in "rate")
    (t0, _, done0), (t1, _, done1) = (shards[0], shards[-1]) if len(shards) > 1 else ((0.0, 0, 0), (1.0, 0, 0))
    print(json.dumps({"measured": counts["measured"], "texts": counts["texts"], "wall": wall, "startup": startup,
                      "rate": counts["measured"] / (wall - startup),
                      "steady": (done1 - done0) / (t1 - t0) if done1 > done0 else None}))


def run(model: str, data: Path, engine: str, actors, cpus, batch_size: int, shard_size: int) -> dict:
    """Parent: one configuration in a fresh process; its peak tree memory (PSS) sampled meanwhile."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, str(HERE), "--one", "--model", model, "--data", str(data), "--out", out + "/atlas",
               "--engine", engine, "--batch-size", str(batch_size), "--shard-size", str(shard_size)]
        if actors:
            cmd += ["--actors", str(actors), "--cpus", str(cpus)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += p.memory_full_info().pss
            except psutil.NoSuchProcess:
                break
            peak = max(peak, total)
            time.sleep(0.2)
        out_text = proc.stdout.read()
        if proc.returncode != 0:
            raise SystemExit(f"{cmd} failed with {proc.returncode}")
    result = json.loads(out_text.strip().splitlines()[-1])
    result["peak_mb"] = peak / 2**20  # PSS
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minilm", type=int, default=2000, help="texts for MiniLM")
    ap.add_argument("--smollm2", type=int, default=500, help="texts for SmolLM2 (0: skip)")
    ap.add_argument("--small", type=int, default=500, help="the smaller corpus of the memory comparison (0: skip)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"which of {', '.join(ENGINES)}")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shard-size", type=int, default=100)
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
            r = run(model, data, engine, actors, cpus, args.batch_size, args.shard_size)
            rows.append((model, n, label, r))
            print(f"  {json.dumps(r)}", file=sys.stderr)
    for label, engine, actors, cpus in engines if args.small and args.minilm else ():
        print(f"minilm, {args.small} texts, {label} (memory)...", file=sys.stderr)
        r = run("minilm", corpus(tmp / f"minilm-{args.small}.txt", args.small), engine, actors, cpus, args.batch_size,
                args.shard_size)
        big = next(x for m, n, lab, x in rows if m == "minilm" and lab == label)
        memory.append((label, r["peak_mb"], big["peak_mb"], r["rate"]))
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}", file=sys.stderr)
    print("\n| model | texts | engine | texts/s | vs local | steady texts/s | vs local | Ray start-up | peak memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, _, label, r in rows:
        local = next((x for m, _, lab, x in rows if m == model and lab.startswith("local")), None)
        startup = f"{r['startup']:.1f} s" if r["startup"] else "–"
        ratio = f"{r['rate'] / local['rate']:.2f}x" if local else "–"
        steady = f"{r['steady']:.2f}" if r["steady"] else "–"
        steady_ratio = f"{r['steady'] / local['steady']:.2f}x" if local and local["steady"] and r["steady"] else "–"
        print(f"| {model} | {r['measured']} | {label} | {r['rate']:.2f} | {ratio} | {steady} | {steady_ratio} | "
              f"{startup} | {r['peak_mb']:.0f} MB |")
    if memory:
        print(f"\n| engine (minilm) | peak memory, {args.small} texts | peak memory, {args.minilm} texts | growth |")
        print("|---|---|---|---|")
    for label, a, b, _ in memory:
        print(f"| {label} | {a:.0f} MB | {b:.0f} MB | {100 * (b - a) / a:+.1f} % |")


if __name__ == "__main__":
    main()
