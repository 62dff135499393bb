"""capture() against a plain eager forward pass with output_attentions=True: same model, same input.

Run: .venv/bin/python benchmarks/capture_overhead.py [--reps 5] [--models minilm,smollm2] [--sizes 32,128,512]
Prints one row per (model, n) with the median wall time of each and their ratio (goal: <= 1.25x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import attnscope
from _inputs import text_of_tokens


def median_seconds(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def eager_forward(model, enc):
    """The anchor: what a user does without attnscope (eager attention, output_attentions=True)."""
    with torch.no_grad():
        out = model(**enc, output_attentions=True, use_cache=False)
    return [a.numpy() for a in out.attentions]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--models", default="minilm,smollm2")
    ap.add_argument("--sizes", default="32,128,512")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name in args.models.split(","):
        model, tok = attnscope.load_model(name)
        for n in map(int, args.sizes.split(",")):
            text = text_of_tokens(tok, n)
            enc = tok(text, return_tensors="pt")
            own = model.config._attn_implementation
            model.set_attn_implementation("eager")
            t_eager = median_seconds(lambda m=model, e=enc: eager_forward(m, e), args.reps)
            model.set_attn_implementation(own)
            t_cap = median_seconds(lambda m=model, t=tok, x=text: attnscope.capture(m, t, x), args.reps)
            rows.append((name, n, t_eager * 1e3, t_cap * 1e3, t_cap / t_eager))
            print(f"{name:8s} n={n:4d}  eager {t_eager * 1e3:9.1f} ms  capture {t_cap * 1e3:9.1f} ms  "
                  f"ratio {t_cap / t_eager:5.2f}x", file=sys.stderr, flush=True)
    print("\n| model | n | eager forward + output_attentions (ms) | attnscope.capture (ms) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, n, e, c, r in rows:
        print(f"| {name} | {n} | {e:.1f} | {c:.1f} | {r:.2f}x |")


if __name__ == "__main__":
    main()
