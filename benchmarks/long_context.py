"""Long contexts (2k-32k tokens): the q/k form against the model's own SDPA forward pass and against pruning.

For each model and length, in fresh subprocesses (each peak RSS its own), side by side in one run:

- ``sdpa``: the anchor, the model's plain SDPA forward pass (no attention weights at all);
- ``qk``: ``attnscope.capture(form="qk")``: queries, keys, row log-sum-exps and every head's overview;
- ``pruned``: ``attnscope.capture(form="pruned")``: each row cut to 95 % of its mass (what long inputs got before).

For the q/k trace it then measures the file (float16 q/k), the model view (build the HTML from the saved file,
time until drawn in headless Chromium), and reading rows: the first row after loading and the median of 20 random
rows. Models: the real SmolLM2 (30 x 9 heads, 3 key/value heads; 8192 positions) on real English text (the
docstrings of Python's standard library), and a random Llama with 32k positions (8 layers x 8 heads, 2 key/value
heads, head size 64) on the same text. Pruning at 32k would take hours (the full n x n softmax per head): it is
left out there and the table says so.

Run: .venv/bin/python benchmarks/long_context.py [--runs smollm2:2048,smollm2:8192,llama32k:32768] [--modes ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

DEFAULT_RUNS = "smollm2:2048,smollm2:4096,smollm2:8192,llama32k:32768"
PRUNED_MAX = 8192  # past this the pruned capture is left out (hours)


def load(name: str):
    import attnscope

    model, tok = attnscope.load_model("smollm2")
    if name == "llama32k":
        import torch
        import transformers as tf

        cfg = tf.LlamaConfig(vocab_size=len(tok), hidden_size=512, intermediate_size=1024, num_hidden_layers=8,
                             num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=32768)
        torch.manual_seed(0)
        model = tf.LlamaForCausalLM(cfg).eval()
        tok.model_max_length = 32768
    return model, tok


def one(name: str, mode: str, n: int, out: Path) -> dict:
    import torch

    import attnscope
    from _inputs import real_text_of_tokens

    torch.set_num_threads(os.cpu_count() or 1)
    model, tok = load(name)
    text = real_text_of_tokens(tok, n)
    res: dict = {"model": name, "mode": mode, "n": n}
    with PeakRSS() as rss:
        t = time.perf_counter()
        if mode == "sdpa":
            model.set_attn_implementation("sdpa")
            with torch.no_grad():
                model(**tok(text, return_tensors="pt"), use_cache=False)
        else:
            trace = attnscope.capture(model, tok, text, form=mode)
            att = trace.attention["self"]
            res.update(kept=trace.kept_mass(), held_mb=sum(a.nbytes for a in att.arrays().values()) / 1e6)
        res["seconds"] = time.perf_counter() - t
    res["grow_gb"] = rss.grown / 1e9
    if mode == "qk":
        path = trace.save(out / f"{name}-{n}.safetensors", dtype="float16")
        res["file_mb"] = path.stat().st_size / 1e6
        res["qk_mb"] = sum(a.nbytes for k, a in att.arrays().items() if k in ("query", "key")) / 1e6
        res["trace"] = str(path)
    return res


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 2 ms (ru_maxrss cannot see below the peak
    that loading the model left behind)."""

    def __enter__(self) -> PeakRSS:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self._now()
        self.peak, self._stop = self.start, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.grown = max(self.peak, self._now()) - self.start

    def _now(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._now())


def views(path: Path, out: Path) -> dict:
    """Model view of a saved q/k trace: HTML build time and bytes, time until drawn; row reading times."""
    import numpy as np

    import attnscope
    from _browser import ATTNSCOPE_DRAWN, Chromium
    from attnscope.cli import describe

    t = time.perf_counter()
    describe(attnscope.load(path, check_values=False), path)  # what `attnscope info` does
    res = {"info_s": time.perf_counter() - t}
    t = time.perf_counter()
    trace = attnscope.load(path)
    res["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    html = attnscope.model_view(trace).html()
    res["build_s"] = time.perf_counter() - t
    page = out / (path.stem + "-model.html")
    page.write_text(html, encoding="utf-8")
    res["html_mb"] = len(html.encode()) / 1e6
    with Chromium() as chromium:
        drawn = chromium.measure(page, ATTNSCOPE_DRAWN, timeout=300)
    res["drawn"] = drawn.cell()
    L, H, q, _ = trace.shape()
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    trace.row(0, 0, q - 1)
    res["first_row_ms"] = (time.perf_counter() - t) * 1e3
    times = []
    for _ in range(20):
        layer, head, i = int(rng.integers(L)), int(rng.integers(H)), int(rng.integers(q))
        t = time.perf_counter()
        row = trace.row(layer, head, i)
        times.append((time.perf_counter() - t) * 1e3)
        assert abs(float(row.sum(dtype=np.float64)) - 1.0) < 2e-2  # float16 q/k on file: rows sum to 1 +- rounding
    res["row_ms"] = statistics.median(times)
    return res


def run(args: list[str]) -> dict:
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=DEFAULT_RUNS, help="model:n pairs (models: smollm2, llama32k)")
    ap.add_argument("--modes", default="sdpa,qk,pruned")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "attnscope-long")
    ap.add_argument("--one", nargs=3, metavar=("MODEL", "MODE", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--views", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], int(args.one[2]), args.out)))
        return
    if args.views:
        print(json.dumps(views(args.views, args.out)))
        return
    rows = []
    for spec in args.runs.split(","):
        name, n = spec.split(":")
        row = {"model": name, "n": int(n)}
        for mode in args.modes.split(","):
            if mode == "pruned" and int(n) > PRUNED_MAX:
                row[mode] = {"error": "not run: the full n x n softmax per head takes hours at this length"}
                continue
            row[mode] = run(["--one", name, mode, n, "--out", str(args.out)])
            print(spec, mode, row[mode], file=sys.stderr, flush=True)
        if "trace" in row.get("qk", {}):
            row["views"] = run(["--views", row["qk"]["trace"], "--out", str(args.out)])
            print(spec, "views", row["views"], file=sys.stderr, flush=True)
        rows.append(row)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    def cap(r: dict) -> str:
        return r["error"] if "error" in r else f"{r['seconds']:.1f} s, +{r['grow_gb']:.2f} GB"

    def ratio(r: dict, anchor: dict, key: str) -> str:
        return "" if "error" in r or "error" in anchor else f"{r[key] / max(anchor[key], 1e-9):.2f}x"

    print("\n| model | n | SDPA forward (anchor) | q/k capture | time | RSS growth | pruned capture | time | RSS growth "
          "| kept mass: q/k / pruned |")
    print("|---|---:|---|---|---:|---:|---|---:|---:|---|")
    for row in rows:
        s, q, p = row.get("sdpa", {"error": "-"}), row.get("qk", {"error": "-"}), row.get("pruned", {"error": "-"})
        kept = f"{q.get('kept', float('nan')):.3f} / " + (f"{p['kept']:.3f}" if "kept" in p else "-")
        print(f"| {row['model']} | {row['n']} | {cap(s)} | {cap(q)} | {ratio(q, s, 'seconds')} | "
              f"{ratio(q, s, 'grow_gb')} | {cap(p)} | {ratio(p, s, 'seconds')} | {ratio(p, s, 'grow_gb')} | {kept} |")
    print("\n| model | n | q/k held | trace file (float16 q/k) | info | load (checked) | model view HTML | build | drawn "
          "| first row | any row (median of 20) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for row in rows:
        q, v = row.get("qk", {}), row.get("views", {})
        if "error" in q or "error" in v or not v:
            print(f"| {row['model']} | {row['n']} | {q.get('error', '')} {v.get('error', '')} | | | | | | | | |")
            continue
        print(f"| {row['model']} | {row['n']} | {q['held_mb']:.0f} MB | {q['file_mb']:.0f} MB | {v['info_s']:.2f} s | "
              f"{v['load_s']:.2f} s | "
              f"{v['html_mb']:.1f} MB | {v['build_s']:.2f} s | {v['drawn']} | {v['first_row_ms']:.1f} ms | "
              f"{v['row_ms']:.1f} ms |")


if __name__ == "__main__":
    main()
