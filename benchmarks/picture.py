"""What the static picture costs each view: HTML bytes and build time with and without it, side by side.

Budget (issue 16): the picture adds at most 15 % to a view's bytes and at most 150 ms to building it at 128 tokens.
Each row builds the same view twice per repetition, ``picture=False`` and with the picture (the default), from a
fresh View each time (payload encoding, picture, HTML assembly: what showing it in a notebook costs), and reports
the median of ``--reps``. Inputs at 128 tokens: MiniLM on real English text (6 x 12 heads, q/k kept), a random
12 x 12 attention (noise: the worst case for a PNG), the diff view of two MiniLM texts that differ in one word, and
the atlas view of a small MiniLM corpus (Debian's fortunes).

    .venv/bin/python benchmarks/picture.py [--n 128] [--reps 5] [--views head,model,neuron,matrix,diff,atlas]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import attnscope
from _inputs import real_text_of_tokens
from attnscope.views import View, atlas_view, diff_view


def random_trace(layers: int, heads: int, n: int) -> attnscope.Trace:
    scores = np.random.default_rng(0).normal(size=(layers, heads, n, n)) * 2
    w = np.exp(scores - scores.max(-1, keepdims=True))
    return attnscope.Trace.from_arrays((w / w.sum(-1, keepdims=True)).astype(np.float32), [f"t{i}" for i in range(n)])


def measure(make, reps: int) -> dict:
    """Median build time and bytes of ``make(picture).html()`` without and with the picture, and the picture's."""
    out = {}
    for picture in (False, True):
        times, html = [], ""
        for _ in range(reps):
            start = time.perf_counter()
            view = make(picture)
            html = view.html()
            times.append(time.perf_counter() - start)
        out[picture] = (statistics.median(times), len(html.encode("utf-8")))
    pic = make(True).picture()
    out["png"] = len(pic.png) if pic is not None else 0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--views", default="head,model,neuron,matrix,diff,atlas")
    args = ap.parse_args()
    views = args.views.split(",")
    print(f"attnscope from {Path(attnscope.__file__).parent}", file=sys.stderr)
    model, tok = attnscope.load_model("minilm")
    text = real_text_of_tokens(tok, args.n)
    real = attnscope.capture(model, tok, text, qkv=True)
    noise = random_trace(12, 12, args.n)
    rows = []
    for name in ("head", "model", "neuron", "matrix"):
        if name not in views:
            continue
        for label, trace in (("MiniLM, real text", real), ("random 12x12", noise)):
            if name == "neuron" and not trace.has_qkv():
                continue
            print(f"{name} / {label} ...", file=sys.stderr)
            rows.append((name, label, measure(lambda p, n=name, t=trace: View(n, t, {"picture": p}), args.reps)))
    if "diff" in views:
        words = text.split(" ")
        other = " ".join(["a" if i == 3 else w for i, w in enumerate(words)])
        b = attnscope.capture(model, tok, other)
        cmp = attnscope.analysis.compare(real, b)
        print("diff ...", file=sys.stderr)
        rows.append(("diff", "MiniLM, one word changed", measure(lambda p: diff_view(cmp, picture=p), args.reps)))
    if "atlas" in views:
        from attnscope.corpus import build, fortune_texts

        with tempfile.TemporaryDirectory() as tmp:
            texts = [t for t in fortune_texts() if len(t.split()) <= 25][:16]
            (Path(tmp) / "corpus.txt").write_text("\n".join(texts) + "\n")
            print("atlas (building a 16-text corpus atlas) ...", file=sys.stderr)
            atlas = build("minilm", Path(tmp) / "corpus.txt", Path(tmp) / "atlas", engine="local", shard_size=8, top_k=2)
            rows.append(("atlas", "MiniLM, 16 fortunes", measure(lambda p: atlas_view(atlas, embed=0, picture=p), args.reps)))
    print(f"\n{args.n} tokens, median of {args.reps} builds (View + html()), picture=False vs the default picture\n")
    print("| view | input | HTML without | HTML with | bytes ratio | PNG | build without | build with | added |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, label, m in rows:
        (t0, b0), (t1, b1) = m[False], m[True]
        print(f"| {name} | {label} | {b0 / 1e6:.2f} MB | {b1 / 1e6:.2f} MB | {b1 / b0:.3f} | {m['png'] / 1e3:.1f} kB "
              f"| {t0 * 1e3:.0f} ms | {t1 * 1e3:.0f} ms | {(t1 - t0) * 1e3:+.0f} ms |")


if __name__ == "__main__":
    main()
