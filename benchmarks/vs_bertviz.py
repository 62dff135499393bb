"""attnscope against BertViz, side by side: HTML bytes and time until drawn in Chromium, head and model views.

Both tools get the same random 12 layer x 12 head attention (softmax rows, fixed seed) as BertViz expects it, a
tuple of ``[1, 12, n, n]`` torch tensors plus token strings, through the same call: ``bertviz.head_view(...)``
against ``attnscope.compat.head_view(...)`` (one import changed), ``html_action="return"``. Each ``.data`` is
written into the same minimal HTML document and opened from disk in headless Chromium (``_browser.py``);
BertViz's CDN scripts are served from npm (``_bertviz.py``); any other request is counted and refused.

"Drawn": BertViz's head view has every SVG line of its default layer (12 n^2), its model view every line of every
thumbnail (144 n^2); attnscope's view has set ``data-state="drawn"`` and every canvas it drew holds more than one
colour (checked after timing). Times run from navigation start to the first frame painted after that.

Run: .venv/bin/python benchmarks/vs_bertviz.py [--sizes 16,64,128,256] [--views head,model] [--reps 3]
     [--timeout 120]
A run that takes longer than 10 s is not repeated. Goals (n >= 64): bytes and time <= 1/30 and 1/10 of BertViz's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _bertviz
import attnscope
from _browser import ATTNSCOPE_CHECK, ATTNSCOPE_DRAWN, Chromium, Result
from _inputs import WORDS
from attnscope import compat

LAYERS, HEADS = 12, 12
OUT = _bertviz.BENCH / "vs_bertviz"
REPEAT_BELOW_MS = 10_000


def random_attention(n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """BertViz's input: one ``[1, HEADS, n, n]`` float32 tensor of softmax rows per layer."""
    scores = np.random.default_rng(seed).normal(size=(LAYERS, HEADS, n, n)).astype(np.float32) * 2
    w = np.exp(scores - scores.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return tuple(torch.from_numpy(w[layer][None].copy()) for layer in range(LAYERS))


def build_attnscope(view: str, attention, tokens: list[str]) -> tuple[str, float]:
    fn = compat.head_view if view == "head" else compat.model_view
    t = time.perf_counter()
    html = fn(attention, tokens, html_action="return").data
    return _bertviz.document(html), time.perf_counter() - t


def timed(chromium: Chromium, path: Path, reps: int, **kw) -> Result:
    """Median of up to ``reps`` loads (a load slower than 10 s, or one that fails, is not repeated)."""
    runs = [chromium.measure(path, **kw)]
    while len(runs) < reps and runs[-1].status == "ok" and runs[-1].ms < REPEAT_BELOW_MS:
        runs.append(chromium.measure(path, **kw))
    ok = [r for r in runs if r.status == "ok"]
    if not ok:
        return runs[0]
    best = sorted(ok, key=lambda r: r.ms)[len(ok) // 2]
    best.ms = statistics.median(r.ms for r in ok)
    return best


def check_attnscope(view: str, result: Result) -> None:
    """Fail loudly if attnscope's page did not draw what it should (a timing of a blank page is worthless)."""
    if result.status != "ok":
        return
    c = result.check
    want = LAYERS * HEADS if view == "model" else 1
    if c.get("state") != "drawn" or c.get("canvases") != want or c.get("painted") != want:
        result.status, result.detail = "error", f"not drawn: {c}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="16,64,128,256")
    ap.add_argument("--views", default="head,model")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a page may take to draw")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    _bertviz.install()
    print(f"attnscope from {Path(attnscope.__file__).parent}", file=sys.stderr, flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    with Chromium() as chromium:
        for n in map(int, args.sizes.split(",")):
            attention = random_attention(n, args.seed)
            tokens = [WORDS[i % len(WORDS)] for i in range(n)]
            for view in args.views.split(","):
                row = {"view": view, "n": n}
                for tool, build in (("bertviz", _bertviz.build), ("attnscope", build_attnscope)):
                    html, seconds = build(view, attention, tokens)
                    path = OUT / f"{tool}-{view}-{n}.html"
                    path.write_text(html, encoding="utf-8")
                    del html
                    if tool == "bertviz":
                        res = timed(chromium, path, args.reps, drawn=_bertviz.drawn(view, LAYERS, HEADS, n),
                                    timeout=args.timeout, cdn=_bertviz.CDN)
                    else:
                        res = timed(chromium, path, args.reps, drawn=ATTNSCOPE_DRAWN, timeout=args.timeout,
                                    check=ATTNSCOPE_CHECK)
                        check_attnscope(view, res)
                    row[tool] = {"bytes": path.stat().st_size, "build": seconds, "result": res}
                    print(f"{view:5s} n={n:4d} {tool:9s} {path.stat().st_size / 1e6:9.2f} MB  build {seconds:6.2f} s"
                          f"  drawn {res.cell()}  other requests {len(res.blocked)}", file=sys.stderr, flush=True)
                rows.append(row)
    print_table(rows)


def ratio(a: float | None, b: float | None, bound: bool = False) -> str:
    if a is None or b is None or b <= 0:
        return ""
    return f"{'> ' if bound else ''}{a / b:.0f}x" if a / b >= 10 else f"{'> ' if bound else ''}{a / b:.1f}x"


def print_table(rows: list[dict]) -> None:
    print("\n| view | n | HTML: BertViz | HTML: attnscope | bytes ratio | drawn: BertViz | drawn: attnscope | "
          "time ratio | Python build: BertViz / attnscope | other requests: BertViz / attnscope |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        b, a = r["bertviz"], r["attnscope"]
        rb, ra = b["result"], a["result"]
        if rb.status == "ok" and ra.status == "ok":
            t = ratio(rb.ms, ra.ms)
        elif rb.status == "timeout" and ra.status == "ok":
            t = ratio(float(rb.detail.strip("> s")) * 1000, ra.ms, bound=True)
        else:
            t = ""
        print(f"| {r['view']} | {r['n']} | {mb(b['bytes'])} | {mb(a['bytes'])} | {ratio(b['bytes'], a['bytes'])} | "
              f"{rb.cell()} | {ra.cell()} | {t} | {b['build']:.2f} s / {a['build']:.2f} s | "
              f"{len(rb.blocked)} / {len(ra.blocked)} |")


def mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB" if nbytes >= 1e5 else f"{nbytes / 1e3:.1f} kB"


if __name__ == "__main__":
    main()
