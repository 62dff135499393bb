"""Head metrics of pruned traces: read from the kept weights (attnscope) against the anchor, reading each head as a
dense [q, k] matrix (what head_metrics did before, and what any tool that densifies has to do).

Run: .venv/bin/python benchmarks/metrics_pruned.py [--sizes 1024,2048,4096] [--shape 32x32]
Synthetic Llama-shaped traces (attnscope.synthetic), pruned to 95 % of each row's mass. Both paths give the same
numbers (checked here, max abs difference printed); the table gives the time of each and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from attnscope.analysis import head_metrics
from attnscope.analysis.metrics import _Context
from attnscope.encode import HEAD_METRICS
from attnscope.synthetic import synthetic_trace


def dense_reading(trace) -> list[dict]:
    """The anchor: every head made dense, then measured."""
    L, H, q, k = trace.shape()
    ctx = _Context(trace, "self", q, k)
    return [ctx.metrics(trace.head(layer, head)) for layer in range(L) for head in range(H)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024,2048,4096")
    ap.add_argument("--shape", default="32x32", help="layers x heads")
    args = ap.parse_args()
    layers, heads = (int(x) for x in args.shape.split("x"))
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        trace = synthetic_trace(n, layers, heads)
        t = time.perf_counter()
        fast = head_metrics(trace)
        t_fast = time.perf_counter() - t
        t = time.perf_counter()
        slow = dense_reading(trace)
        t_slow = time.perf_counter() - t
        diff = max(abs(f[m] - s[m]) for f, s in zip(fast, slow) for m in HEAD_METRICS if not np.isnan(s[m]))
        rows.append((n, trace.attention["self"].values.size, t_slow, t_fast, diff))
        print(f"n={n}: dense reading {t_slow:.2f} s, kept weights {t_fast:.2f} s, max diff {diff:.1e}",
              file=sys.stderr, flush=True)
    print("\n| shape | n | kept weights | anchor: dense reading | attnscope: kept weights | speed-up | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for n, kept, t_slow, t_fast, diff in rows:
        print(f"| {args.shape} | {n} | {kept / 1e6:.1f} M | {t_slow:.2f} s | {t_fast:.2f} s | {t_slow / t_fast:.0f}x | "
              f"{diff:.1e} |")


if __name__ == "__main__":
    main()
