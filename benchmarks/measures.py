"""Context-mixing measures against one forward pass of the same model on the same input.

Run: .venv/bin/python benchmarks/measures.py [--reps 3] [--cases minilm:128,smollm2:256] [--skip-single] [--threads 1]

For each (model, tokens): the time of one plain forward pass (the model's own attention, no grad) is the
unit; ``analysis.contributions`` costs a verified capture with q/k/v (shared by every method: ``analysis.explain``
runs it once) plus the measure itself, timed on its own. Value zeroing runs batched (as many input copies per layer
call as fit in 512 MB) and one layer call per token (``batch=1``, the paper's loop), side by side. Wall and CPU
time (this process only) of the fastest of ``--reps`` runs are both reported (on a shared machine the fastest run
is the least disturbed one). Prints one markdown table at
the end; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import attnscope
from _inputs import text_of_tokens
from attnscope.analysis.measures import METHODS, measure, run
from attnscope.analysis.measures.value_zeroing import MEMORY_MB, variants_per_call


def best_seconds(fn, reps: int, warm: bool = True) -> tuple[float, float]:
    """The fastest of ``reps`` calls: (wall seconds, CPU seconds of this process). On a machine shared with other
    work the fastest run is the one least disturbed by it, and CPU time counts only what this process computed."""
    if warm:
        fn()
    wall, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cases", default="minilm:128,smollm2:256")
    ap.add_argument("--skip-single", action="store_true", help="skip value zeroing with one layer call per token")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU times that other work on a shared "
                    "machine barely moves)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"attnscope from {Path(attnscope.__file__).parent}", file=sys.stderr)
    rows = []
    for case in args.cases.split(","):
        name, n = case.split(":")
        n = int(n)
        model, tok = attnscope.load_model(name)
        text = text_of_tokens(tok, n)
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            forward = best_seconds(lambda m=model, e=enc: m(**e, use_cache=False), 4 * args.reps)
        _, _, ref = run((model, tok), text)
        reference = best_seconds(lambda m=model, t=tok, x=text: run((m, t), x), args.reps, warm=False)
        L, H, _, _ = ref.trace.shape("self")
        b = variants_per_call(model, n, H, MEMORY_MB)
        print(f"{name} n={n}: forward {forward[0] * 1e3:.0f} ms wall, {forward[1] * 1e3:.0f} ms CPU; verified "
              f"capture with q/k/v {reference[0]:.2f} s wall, {reference[1]:.2f} s CPU", file=sys.stderr, flush=True)
        jobs = [(m, {}, METHODS[m][0]) for m in ("norm", "alti", "grad_attention")]
        jobs.append(("value_zeroing", {}, f"value zeroing, batched ({b} input copies per layer call)"))
        if not args.skip_single:
            jobs.append(("value_zeroing", {"batch": 1}, "value zeroing, one layer call per token"))
        rows.append((name, n, forward, "verified capture with q/k/v (every method starts from it)", reference))
        for method, kw, label in jobs:
            reps = 1 if method == "value_zeroing" else args.reps  # n layer passes per layer: minutes, one run
            alone = best_seconds(functools.partial(measure, ref, model, tok, method, **kw), reps, warm=reps > 1)
            rows.append((name, n, forward, label, alone))
            print(f"  {label}: {alone[0]:.2f} s wall ({alone[0] / forward[0]:.0f}x), {alone[1]:.2f} s CPU "
                  f"({alone[1] / forward[1]:.0f}x)", file=sys.stderr, flush=True)
    print("\n| model | tokens | one forward pass (wall / CPU) | step | wall | x forward | CPU | x forward |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for name, n, (fw, fc), label, (w, c) in rows:
        print(f"| {name} | {n} | {fw * 1e3:.0f} / {fc * 1e3:.0f} ms | {label} | {w:.2f} s | {w / fw:.0f}x | "
              f"{c:.2f} s | {c / fc:.0f}x |")

if __name__ == "__main__":
    main()
