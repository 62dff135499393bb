"""The corpus atlas: throughput of the local engine against Ray Data with 1 and 2 actors, and memory as it grows.

Run: .venv/bin/python benchmarks/corpus.py [--minilm 2000] [--smollm2 500] [--small 500] [--batch-size 16]
Corpus: the first fortunes (Debian's fortunes package) of at most 60 words, one a line. Each configuration runs in
a fresh process (`attnscope.corpus.build`), sampled every 0.2 s for the resident memory of its whole process tree
(driver, and Ray's own processes and actors when it starts a local Ray). Columns:

- texts/s: texts measured / (wall time - Ray start-up), model loading included (each actor loads the model);
- steady texts/s: from the first finished shard to the last one (model loading and pipeline start-up left out);
- Ray start-up: ray.init of a local Ray until the pipeline can start, counted apart;
- peak RSS: the largest sum of resident memory over the process tree (shared pages counted in every process).

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
#: (label, engine, actors, cpus per actor)
ENGINES = [("local (1 process, batched)", "local", None, None), ("ray, 1 actor x 1 CPU", "ray", 1, 1.0),
           ("ray, 1 actor x 2 CPUs", "ray", 1, 2.0), ("ray, 2 actors x 1 CPU", "ray", 2, 1.0)]


def corpus(path: Path, n: int) -> Path:
    from attnscope.corpus import fortune_texts

    texts = (t for t in fortune_texts() if len(t.split()) <= 60)
    path.write_text("".join(next(texts) + "\n" for _ in range(n)))
    return path


def one(args) -> None:
    """Child: build one atlas, print a JSON line of timings."""
    from attnscope.corpus import build

    marks = []

    def seen(status) -> None:
        marks.append((time.perf_counter(), status.texts_done, status.ray_startup_s))

    start = time.perf_counter()
    atlas = build(args.model, args.data, args.out, engine=args.engine, actors=args.actors,
                  cpus_per_actor=args.cpus or 1.0, batch_size=args.batch_size, shard_size=args.shard_size,
                  max_tokens=128, overwrite=True, progress=seen)
    wall = time.perf_counter() - start
    startup = next((m[2] for m in marks if m[2] is not None), 0.0)
    done = [(t, n) for t, n, _ in marks if n > 0]
    steady = (done[-1][1] - done[0][1]) / (done[-1][0] - done[0][0]) if len(done) > 2 else float("nan")
    counts = atlas.manifest["counts"]
    print(json.dumps({"measured": counts["measured"], "texts": counts["texts"], "wall": wall, "startup": startup,
                      "rate": counts["measured"] / (wall - startup), "steady": steady}))


def run(model: str, data: Path, engine: str, actors, cpus, batch_size: int, shard_size: int) -> dict:
    """Parent: one configuration in a fresh process; its peak tree RSS sampled meanwhile."""
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
                        total += p.memory_info().rss
            except psutil.NoSuchProcess:
                break
            peak = max(peak, total)
            time.sleep(0.2)
        out_text = proc.stdout.read()
        if proc.returncode != 0:
            raise SystemExit(f"{cmd} failed with {proc.returncode}")
    result = json.loads(out_text.strip().splitlines()[-1])
    result["peak_mb"] = peak / 2**20
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minilm", type=int, default=2000, help="texts for MiniLM")
    ap.add_argument("--smollm2", type=int, default=500, help="texts for SmolLM2 (0: skip)")
    ap.add_argument("--small", type=int, default=500, help="the smaller corpus of the memory comparison")
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
    plan = [("minilm", args.minilm, ENGINES)]
    if args.smollm2:
        plan.append(("smollm2", args.smollm2, [e for e in ENGINES if e[3] != 1.0 or e[2] == 2]))
    for model, n, engines in plan:
        data = corpus(tmp / f"{model}-{n}.txt", n)
        for label, engine, actors, cpus in engines:
            print(f"{model}, {n} texts, {label}...", file=sys.stderr)
            r = run(model, data, engine, actors, cpus, args.batch_size, args.shard_size)
            rows.append((model, n, label, r))
            print(f"  {json.dumps(r)}", file=sys.stderr)
    small = corpus(tmp / f"minilm-{args.small}.txt", args.small)
    for label, engine, actors, cpus in (ENGINES[0], ENGINES[3]):
        print(f"minilm, {args.small} texts, {label} (memory)...", file=sys.stderr)
        r = run("minilm", small, engine, actors, cpus, args.batch_size, args.shard_size)
        big = next(x for m, n, lab, x in rows if m == "minilm" and lab == label)
        memory.append((label, r["peak_mb"], big["peak_mb"]))
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}", file=sys.stderr)
    print("\n| model | texts | engine | texts/s | steady texts/s | vs local | Ray start-up | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for model, _, label, r in rows:
        local = next(x for m, _, lab, x in rows if m == model and lab.startswith("local"))
        startup = f"{r['startup']:.1f} s" if r["startup"] else "–"
        print(f"| {model} | {r['measured']} | {label} | {r['rate']:.2f} | {r['steady']:.2f} | "
              f"{r['steady'] / local['steady']:.2f}x | {startup} | {r['peak_mb']:.0f} MB |")
    print(f"\n| engine (minilm) | peak RSS, {args.small} texts | peak RSS, {args.minilm} texts | growth |")
    print("|---|---|---|---|")
    for label, a, b in memory:
        print(f"| {label} | {a:.0f} MB | {b:.0f} MB | {100 * (b - a) / a:+.1f} % |")


if __name__ == "__main__":
    main()
