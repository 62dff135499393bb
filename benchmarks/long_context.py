"""Long contexts (2k-32k tokens): the q/k form against the model's own SDPA forward pass and against pruning.

For each model and length, each measurement in a fresh subprocess (its peak RSS its own), side by side in one run,
repetitions interleaved (SDPA, q/k, pruned, SDPA, q/k, ...) so that the load of a shared machine falls on every side
alike:

- ``sdpa``: the anchor, the model's plain SDPA forward pass (no attention weights at all);
- ``qk``: ``attnscope.capture(form="qk")``: queries, keys, row log-sum-exps and every head's overview (cell
  maxima). The time spent in the overview pass (``attnscope.qk.cell_maxima``) is measured inside the same run, so
  the table gives both "q/k + LSE" (the capture less that pass) and the whole capture;
- ``pruned``: ``attnscope.capture(form="pruned")``: each row cut to 95 % of its mass (what long inputs got before);
  only up to :data:`PRUNED_MAX` tokens (its full n x n softmax per head takes about 13 minutes at 8,192 tokens).

Each subprocess runs ``--threads`` torch threads (default one), warms up (the same call on 32 tokens), then
measures wall time, its own CPU time (user + system: less moved by other processes than wall time), peak RSS growth
(sampled every 2 ms) and the load average. The q/k trace is checked for exactness (:func:`exactness`: sampled rows
against a float64 recomputation, every row's mass of one head). It then measures the file (float16 q/k),
``attnscope info`` on it, loading it (values checked), its model view (HTML built from the file, time until drawn
in headless Chromium), and the web app (an in-process client of the real FastAPI app holding the loaded trace):
the model view's data, the first row and 20 random rows (one head each) through ``/api/traces/{id}/rows``.

Models: the real SmolLM2 (30 x 9 heads, 3 key/value heads, head size 64; 8,192 positions) on real English text (the
docstrings of Python's standard library), dequantized once from its GGUF file into attnscope's cache so the
subprocesses load it in a second; and a random Llama with 32k positions (``--synthetic-layers`` x 8 heads, 2
key/value heads, head size 64; the bare transformer, no LM head) on the same text.

Run: .venv/bin/python benchmarks/long_context.py [--runs smollm2:2048,llama32k:32768] [--modes sdpa,qk] [--reps 2]
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
PRUNED_MAX = 4096  # past this the pruned capture is left out (13 minutes at 8,192 tokens)
REPEATED_MAX = 2048  # longer inputs are measured once (the whole run stays under 25 minutes on 2 shared cores)
ROWS_ASKED = 20


def prepare() -> None:
    """Load SmolLM2 once, so that its GGUF file is dequantized into attnscope's cache (``$ATTNSCOPE_CACHE``) before
    the measuring processes start: each of them then loads it in under a second instead of 45 s."""
    import attnscope

    attnscope.load_model("smollm2")


def load(name: str, layers: int):
    """``(model, tokenizer)``: SmolLM2 (with its LM head; from the cache :func:`prepare` filled), or the random 32k Llama
    (the bare transformer) with SmolLM2's tokenizer."""
    import attnscope

    model, tok = attnscope.load_model("smollm2")
    if name == "llama32k":
        import torch
        import transformers as tf

        cfg = tf.LlamaConfig(vocab_size=len(tok), hidden_size=512, intermediate_size=1024, num_hidden_layers=layers,
                             num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=32768)
        torch.manual_seed(0)
        model = tf.LlamaModel(cfg).eval()  # no LM head: its logits at 32k tokens would be 6.4 GB on both sides
        tok.model_max_length = 32768
    return model, tok


def text_of(tok, n: int, out: Path) -> str:
    """Real text of exactly ``n`` tokens, made once per length and kept in ``out``."""
    from _inputs import real_text_of_tokens

    path = out / f"text-{n}.txt"
    if not path.exists():
        path.write_text(real_text_of_tokens(tok, n), encoding="utf-8")
    return path.read_text(encoding="utf-8")


def one(name: str, mode: str, n: int, out: Path, layers: int, threads: int) -> dict:
    """One measurement of ``mode`` (sdpa, qk, pruned) at ``n`` tokens, in this (fresh) process."""
    import torch

    import attnscope
    from attnscope.capture import long

    torch.set_num_threads(threads)
    model, tok = load(name, layers)
    text = text_of(tok, n, out)

    def call(text: str):
        if mode == "sdpa":
            model.set_attn_implementation("sdpa")
            with torch.no_grad():
                model(**tok(text, return_tensors="pt"), use_cache=False)
            return None
        return attnscope.capture(model, tok, text, form=mode)

    call(text_of(tok, 32, out))  # warm up: first calls pay for kernels' and allocators' setup
    overview = {"wall": 0.0, "cpu": 0.0}
    cell_maxima = long.cell_maxima

    def timed_cell_maxima(*args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        try:
            return cell_maxima(*args, **kwargs)
        finally:
            overview["wall"] += time.perf_counter() - t
            overview["cpu"] += time.process_time() - c

    long.cell_maxima = timed_cell_maxima
    res: dict = {"model": name, "mode": mode, "n": n, "load_before": os.getloadavg()[0]}
    with PeakRSS() as rss:
        t, c = time.perf_counter(), time.process_time()
        trace = call(text)
        res["seconds"], res["cpu"] = time.perf_counter() - t, time.process_time() - c
    res["load_after"] = os.getloadavg()[0]
    res["grow_gb"] = rss.grown / 1e9
    if trace is not None:
        att = trace.attention["self"]
        res.update(kept=trace.kept_mass(), worst=trace.min_kept_mass(),
                   held_mb=sum(a.nbytes for a in att.arrays().values()) / 1e6)
    if mode == "qk":
        res["overview_s"], res["overview_cpu"] = overview["wall"], overview["cpu"]
        res["qk_mb"] = sum(a.nbytes for k, a in att.arrays().items() if k in ("query", "key", "lse")) / 1e6
        res["nn_gb"] = 4 * n * n / 1e9  # one head's dense float32 weights
        res["row_error"], res["mass_error"] = exactness(att)
        path = trace.save(out / f"{name}-{n}.safetensors", dtype="float16")
        res["file_mb"] = path.stat().st_size / 1e6
        res["trace"] = str(path)
    return res


def exactness(att, samples: int = 16, block: int = 1024) -> tuple[float, float]:
    """How exact the q/k form is: the largest difference between sampled rows (``samples`` random rows of every
    head of the first and last layers) and a float64 recomputation from the same queries and keys, and the largest
    ``|mass - 1|`` over every row of the first head, read ``block`` rows at a time (the benchmark's models are
    causal, with neither windows nor soft-capping)."""
    import numpy as np

    assert att.rule.causal and not any(att.rule.windows) and att.rule.softcap is None and att.rule.sinks is None
    L, H, n, _ = att.shape
    rng, worst = np.random.default_rng(0), 0.0
    for layer in sorted({0, L - 1}):
        for head in range(H):
            for i in rng.integers(0, n, samples):
                q = att.query[layer, head, i].astype(np.float64)
                s = att.key[layer, att.kv_index[head], : i + 1].astype(np.float64) @ q * att.rule.scaling
                want = np.exp(s - s.max())
                row = att.row(layer, head, int(i))
                worst = max(worst, float(np.abs(row[: i + 1] - want / want.sum()).max()), row[i + 1 :].max(initial=0))
    mass = max(float(np.abs(att.rows(0, 0, a, min(n, a + block)).sum(-1, dtype=np.float64) - 1).max())
               for a in range(0, n, block))
    return worst, mass


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
    """A saved q/k trace: ``attnscope info``, load, model view (HTML build and time until drawn), and the web app's
    model view data, first row and any row."""
    import numpy as np
    from fastapi.testclient import TestClient

    import attnscope
    from _browser import ATTNSCOPE_DRAWN, Chromium
    from attnscope.server import create_app
    from attnscope.server.routes_traces import hold
    from attnscope.server.settings import Settings
    from attnscope.summary import describe

    t = time.perf_counter()
    describe(attnscope.load(path, check_values=False))  # what `attnscope info` prints
    res: dict = {"info_s": time.perf_counter() - t}
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
        res["drawn"] = chromium.measure(page, ATTNSCOPE_DRAWN, timeout=300).cell()

    L, H, q, _ = trace.shape()
    app = create_app(Settings())
    tid = hold(app.state.attnscope, trace, {"type": "benchmark"}).id
    rng = np.random.default_rng(0)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        def get(route: str, **params) -> float:
            t = time.perf_counter()
            got = client.get(f"/api/traces/{tid}/{route}", params=params)
            if got.status_code != 200:
                raise RuntimeError(f"{route} {params}: HTTP {got.status_code} {got.text[:200]}")
            return (time.perf_counter() - t) * 1e3

        res["app_view_ms"] = get("view", view="model")
        res["first_row_ms"] = get("rows", layer=L - 1, heads=str(H - 1), start=q - 1, stop=q)
        times = []
        for _ in range(ROWS_ASKED):
            i = int(rng.integers(q))
            times.append(get("rows", layer=int(rng.integers(L)), heads=str(int(rng.integers(H))), start=i, stop=i + 1))
    res["row_ms"], res["row_max_ms"] = statistics.median(times), max(times)
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
    ap.add_argument("--reps", type=int, default=2, help=f"repetitions up to {REPEATED_MAX} tokens (longer: one)")
    ap.add_argument("--synthetic-layers", type=int, default=2, help="layers of the random 32k Llama")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (on a shared machine a second thread mostly waits for a core, spinning, "
                         "which slows many small operations far more than a few large ones)")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "attnscope-long")
    ap.add_argument("--one", nargs=3, metavar=("MODEL", "MODE", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--views", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], int(args.one[2]), args.out, args.synthetic_layers,
                             args.threads)))
        return
    if args.views:
        print(json.dumps(views(args.views, args.out)))
        return
    started, loads = time.perf_counter(), [os.getloadavg()[0]]
    prepare()
    rows = []
    for spec in args.runs.split(","):
        name, n = spec.split(":")
        row: dict = {"model": name, "n": int(n)}
        modes = [m for m in args.modes.split(",") if m != "pruned" or int(n) <= PRUNED_MAX]
        for rep in range(args.reps if int(n) <= REPEATED_MAX else 1):
            for mode in modes if rep == 0 else [m for m in modes if m != "pruned"]:  # pruned: once (minutes)
                got = run(["--one", name, mode, n, "--out", str(args.out), "--threads", str(args.threads),
                           "--synthetic-layers", str(args.synthetic_layers)])
                row.setdefault(mode, []).append(got)
                loads += [got.get("load_before", loads[-1]), got.get("load_after", loads[-1])]
                print(spec, mode, got, file=sys.stderr, flush=True)
        if any("trace" in r for r in row.get("qk", [])):
            row["views"] = run(["--views", next(r["trace"] for r in row["qk"] if "trace" in r), "--out", str(args.out)])
            print(spec, "views", row["views"], file=sys.stderr, flush=True)
        rows.append(row)
    (args.out / "long_context.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print_tables(rows, args.synthetic_layers)
    print(f"\nwhole run: {(time.perf_counter() - started) / 60:.1f} min, {args.threads} torch thread(s); load average "
          f"(1 min) {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}")


def merged(runs: list[dict]) -> dict:
    """The median of each number over a mode's repetitions (or the first error)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0] if runs else {"error": "-"}
    out = dict(ok[0])
    for key, value in ok[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = statistics.median(r[key] for r in ok)
    out["reps"] = len(ok)
    return out


def print_tables(rows: list[dict], synthetic_layers: int) -> None:
    def cap(r: dict) -> str:
        return r["error"] if "error" in r else f"{r['seconds']:.1f} s ({r['cpu']:.1f} s CPU), +{r['grow_gb']:.2f} GB"

    def ratio(a: float, b: float) -> str:
        return f"{a / max(b, 1e-9):.2f}x"

    def times(r: dict, s: dict, less: tuple[str, str] = ("", "")) -> str:
        if "error" in r or "error" in s:
            return ""
        wall = r["seconds"] - (r[less[0]] if less[0] else 0.0)
        cpu = r["cpu"] - (r[less[1]] if less[1] else 0.0)
        return f"{ratio(wall, s['seconds'])} ({ratio(cpu, s['cpu'])})"

    def label(row: dict) -> str:
        return "SmolLM2 (30x9)" if row["model"] == "smollm2" else f"random Llama ({synthetic_layers}x8)"

    print("\nCapture against the model's own SDPA forward pass (median of the repetitions; time ratios wall (CPU)):\n")
    print("| model | n | reps | SDPA forward (anchor) | q/k capture | q/k + LSE | + overview (whole capture) "
          "| RSS growth | q/k held | pruned capture | time | RSS growth | kept mass q/k / pruned (worst row) |")
    print("|---|---:|---:|---|---|---:|---:|---:|---:|---|---:|---:|---|")
    for row in rows:
        s, q, p = (merged(row.get(m, [])) for m in ("sdpa", "qk", "pruned"))
        kept = "" if "error" in q else "1.000 / " + (f"{p['kept']:.3f} ({p['worst']:.3f})" if "kept" in p else "-")
        print(f"| {label(row)} | {row['n']} | {s.get('reps', 0)}/{q.get('reps', 0)} | {cap(s)} | {cap(q)} | "
              f"{times(q, s, ('overview_s', 'overview_cpu'))} | {times(q, s)} | "
              f"{'' if 'error' in q or 'error' in s else ratio(q['grow_gb'], s['grow_gb'])} | "
              f"{'' if 'error' in q else str(round(q['qk_mb'])) + ' MB'} | {cap(p) if row.get('pruned') else 'not run'} "
              f"| {times(p, s)} | {'' if 'error' in p or 'error' in s else ratio(p['grow_gb'], s['grow_gb'])} "
              f"| {kept} |")
    print("\nReading the q/k trace (file saved with float16 q/k; web app: in-process client of the FastAPI app):\n")
    print("| model | n | trace file | attnscope info | load (checked) | model view HTML | build | drawn "
          "| web app: model view | first row | any row (median / max of 20) | one head's n x n (float32) "
          "| rows vs float64 / row mass - 1 (max) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|")
    for row in rows:
        s, q, v = merged(row.get("sdpa", [])), merged(row.get("qk", [])), row.get("views", {"error": "-"})
        if "error" in q or "error" in v:
            print(f"| {label(row)} | {row['n']} | {q.get('error', '')} {v.get('error', '')} | | | | | | | | | | |")
            continue
        nn = f"{q['nn_gb']:.2f} GB"
        if "grow_gb" in s and q["nn_gb"] > s["grow_gb"]:  # only then can peak RSS tell whether one was allocated
            nn += ": peak growth below it, none allocated" if q["grow_gb"] < q["nn_gb"] else ": peak growth ABOVE it"
        print(f"| {label(row)} | {row['n']} | {q['file_mb']:.0f} MB | {v['info_s']:.2f} s | {v['load_s']:.2f} s | "
              f"{v['html_mb']:.1f} MB | {v['build_s']:.2f} s | {v['drawn']} | {v['app_view_ms']:.0f} ms | "
              f"{v['first_row_ms']:.0f} ms | {v['row_ms']:.0f} / {v['row_max_ms']:.0f} ms | {nn} "
              f"| {q['row_error']:.1e} / {q['mass_error']:.1e} |")


if __name__ == "__main__":
    main()
