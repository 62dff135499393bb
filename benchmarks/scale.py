"""Long inputs and big models: attnscope's model and head views at n = 512 ... 4096 tokens, 12x12 and 32x32.

For each shape, n and view, a fresh Python subprocess builds a synthetic pruned trace
(``attnscope.synthetic.synthetic_trace``, layer by layer) and the view's standalone HTML, and reports the build
seconds (trace -> HTML, the trace's own generation apart), HTML bytes, kept attention mass and its peak RSS.
The parent then opens each file in a fresh headless Chromium (``_browser.py``) and records the time until drawn,
the JS heap after drawing (CDP ``Runtime.getHeapUsage``), the renderer's peak RSS, and one interaction timed to the
next painted frame: head view, a layer change (median of three); model view, a click on a thumbnail that opens its
head view. BertViz is run where asked (``--bertviz``, 12x12 only, default n = 512) from the dense form of the same
weights, so its failure is measured rather than assumed.

Run: .venv/bin/python benchmarks/scale.py [--sizes 512,1024,2048,4096] [--shapes 12x12,32x32] [--views model,head]
     [--bertviz 512] [--timeout 60]
Goals: 4096 x 32 x 32 model view drawn < 5 s, file <= 100 MB, kept mass >= 0.95; head view layer change < 200 ms
at 4096 tokens.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _bertviz  # noqa: E402
import attnscope  # noqa: E402
from _browser import ATTNSCOPE_CHECK, ATTNSCOPE_DRAWN, Chromium  # noqa: E402

OUT = _bertviz.BENCH / "scale"
ROOT = ".attnscope[data-view]:not(.as-embedded)"
LAYER_SELECT = ("const sel = [...root.querySelectorAll('label.as-field')]"
                ".find((l) => l.querySelector('.as-label').textContent === 'Layer').querySelector('select');")
# Head view: change the layer (three times), each timed until the frame after the redraw is painted.
HEAD_ACTIONS = [LAYER_SELECT + f"sel.value = '{li}'; sel.dispatchEvent(new Event('change'));" for li in (1, 2, 3)]
# Model view: click the thumbnail of layer 1, head 1 to open its head view beside the grid.
MODEL_ACTIONS = ["root.querySelector('.as-thumb[data-li=\"1\"][data-hi=\"1\"]').click();"]


def build(tool: str, view: str, n: int, layers: int, heads: int) -> dict:
    """In a subprocess: the trace, then one view's HTML written to disk; seconds, bytes, kept mass, peak RSS."""
    from attnscope.synthetic import synthetic_trace

    t = time.perf_counter()
    trace = synthetic_trace(n, layers, heads, dense=tool == "bertviz")
    trace_s = time.perf_counter() - t
    path = OUT / f"{tool}-{view}-{layers}x{heads}-{n}.html"
    t = time.perf_counter()
    if tool == "bertviz":
        import torch

        dense = trace.dense()
        attention = tuple(torch.from_numpy(dense[layer][None]) for layer in range(layers))
        del trace, dense
        html, _ = _bertviz.build(view, attention, [f"t{i}" for i in range(n)])
        kept = None
    else:
        html = (attnscope.model_view if view == "model" else attnscope.head_view)(trace).html()
        kept = trace.kept_mass()
    build_s = time.perf_counter() - t
    path.write_text(html, encoding="utf-8")
    return {"path": str(path), "bytes": path.stat().st_size, "trace_s": trace_s, "build_s": build_s, "kept": kept,
            "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def run_build(tool: str, view: str, n: int, layers: int, heads: int) -> dict:
    cmd = [sys.executable, __file__, "--one", tool, view, str(n), str(layers), str(heads)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
        return {"error": f"Python build failed (exit {res.returncode}): {last[:100]}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure(chromium: Chromium, tool: str, view: str, built: dict, layers: int, heads: int, n: int,
            timeout: float) -> dict:
    path = Path(built["path"])
    if tool == "bertviz":
        res = chromium.measure(path, _bertviz.drawn(view, layers, heads, n), timeout=timeout, cdn=_bertviz.CDN,
                               memory=True)
    else:
        actions = HEAD_ACTIONS if view == "head" else MODEL_ACTIONS
        res = chromium.measure(path, ATTNSCOPE_DRAWN, timeout=timeout, check=ATTNSCOPE_CHECK, memory=True,
                               interactions=(ROOT, actions))
        want = layers * heads if view == "model" else 1
        c = res.check
        if res.status == "ok" and (c.get("state") != "drawn" or c.get("canvases") != want or c.get("painted") != want):
            res.status, res.detail = "error", f"not drawn: {c}"
    return {"result": res, **built}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512,1024,2048,4096")
    ap.add_argument("--shapes", default="12x12,32x32")
    ap.add_argument("--views", default="model,head")
    ap.add_argument("--bertviz", default="512", help="sizes at which BertViz (12x12) is run; '' for none")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a page may take to draw")
    ap.add_argument("--one", nargs=5, metavar=("TOOL", "VIEW", "N", "LAYERS", "HEADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.one:
        tool, view, n, layers, heads = args.one
        print(json.dumps(build(tool, view, int(n), int(layers), int(heads))))
        return
    _bertviz.install()
    print(f"attnscope from {Path(attnscope.__file__).parent}", file=sys.stderr, flush=True)
    bertviz_sizes = {int(s) for s in args.bertviz.split(",") if s}
    cases = []
    for shape in args.shapes.split(","):
        layers, heads = map(int, shape.split("x"))
        for n in map(int, args.sizes.split(",")):
            for view in args.views.split(","):
                cases.append(("attnscope", view, n, layers, heads))
                if (layers, heads) == (12, 12) and n in bertviz_sizes:
                    cases.append(("bertviz", view, n, layers, heads))
    rows = []
    with Chromium() as chromium:
        for tool, view, n, layers, heads in cases:
            built = run_build(tool, view, n, layers, heads)
            row = {"tool": tool, "view": view, "n": n, "shape": f"{layers}x{heads}", **built}
            if "error" not in built:
                row.update(measure(chromium, tool, view, built, layers, heads, n, args.timeout))
                Path(built["path"]).unlink()  # hundreds of MB each at the larger sizes
            rows.append(row)
            print(progress(row), file=sys.stderr, flush=True)
    print_table(rows)


def progress(r: dict) -> str:
    head = f"{r['shape']:5s} n={r['n']:4d} {r['view']:5s} {r['tool']:9s}"
    if "error" in r:
        return f"{head} {r['error']}"
    return f"{head} {r['bytes'] / 1e6:8.1f} MB  build {r['build_s']:6.1f} s  drawn {r['result'].cell()}"


def print_table(rows: list[dict]) -> None:
    print("\n| shape | n | view | tool | HTML | Python build (trace -> HTML) | Python peak RSS | drawn in Chromium | "
          "JS heap after drawn | renderer peak RSS | kept mass | interaction (to painted frame) |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        lead = f"| {r['shape']} | {r['n']} | {r['view']} | {r['tool']} |"
        if "error" in r:
            print(f"{lead} | {r['error']} | | | | | | |")
            continue
        res = r["result"]
        heap = f"{res.heap_mb:.0f} MB" if res.heap_mb is not None else ""
        peak = f"{res.renderer_peak_mb:.0f} MB" if res.renderer_peak_mb else ""
        kept = f"{r['kept']:.3f}" if r["kept"] is not None else "all given (dense)"
        act = res.after
        if res.interactions_ms:
            what = "layer change" if r["view"] == "head" else "click to enlarge"
            runs = len(res.interactions_ms)
            act = f"{what}: {statistics.median(res.interactions_ms):.0f} ms"
            act += f" (median of {runs})" if runs > 1 else ""
            act += f"; then {res.after}" if res.after else ""
        print(f"{lead} {r['bytes'] / 1e6:.1f} MB | {r['build_s']:.2f} s | {r['rss_gb']:.2f} GB | {res.cell()} | "
              f"{heap} | {peak} | {kept} | {act} |")


if __name__ == "__main__":
    main()
