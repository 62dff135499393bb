"""Long-input capture on the real SmolLM2 (30 layers x 9 heads): attnscope's pruned capture against the anchor,
an eager forward with output_attentions=True that holds every dense attention matrix.

Each measurement runs in a fresh subprocess so its peak RSS is its own.
Run: .venv/bin/python benchmarks/capture_long.py [--sizes 1024,2048]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def one(mode: str, n: int) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    import attnscope
    from _inputs import text_of_tokens

    torch.set_num_threads(2)
    model, tok = attnscope.load_model("smollm2")
    text = text_of_tokens(tok, n)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if mode == "eager":
        model.set_attn_implementation("eager")
        with torch.no_grad():
            out = model(**tok(text, return_tensors="pt"), output_attentions=True, use_cache=False)
        kept, nbytes = 1.0, sum(a.numel() * 4 for a in out.attentions)
    else:
        trace = attnscope.capture(model, tok, text)
        att = trace.attention["self"]
        kept, nbytes = trace.kept_mass(), sum(a.nbytes for a in att.arrays().values())
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "n": n, "seconds": seconds, "peak_gb": peak / 1e6, "grow_gb": (peak - base) / 1e6,
            "kept": kept, "attention_mb": nbytes / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1024,2048")
    ap.add_argument("--one", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return
    rows = []
    for n in map(int, args.sizes.split(",")):
        for mode in ("eager", "attnscope"):
            res = subprocess.run([sys.executable, __file__, "--one", mode, str(n)], capture_output=True, text=True)
            if res.returncode != 0:
                rows.append({"mode": mode, "n": n, "error": res.stderr.strip().splitlines()[-1]})
            else:
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr, flush=True)
    print("\n| n | anchor: eager + output_attentions | attnscope.capture (auto-pruned past 2 GiB) | time ratio | "
          "peak RSS growth ratio | kept mass | attention held (MB): anchor / attnscope |")
    print("|---:|---|---|---:|---:|---:|---|")
    for n in sorted({r["n"] for r in rows}):
        e, a = (next(r for r in rows if r["n"] == n and r["mode"] == m) for m in ("eager", "attnscope"))
        if "error" in e or "error" in a:
            print(f"| {n} | {e.get('error', '')} | {a.get('error', '')} | | | | |")
            continue
        print(f"| {n} | {e['seconds']:.1f} s, +{e['grow_gb']:.2f} GB | {a['seconds']:.1f} s, +{a['grow_gb']:.2f} GB | "
              f"{a['seconds'] / e['seconds']:.2f}x | {a['grow_gb'] / e['grow_gb']:.2f}x | {a['kept']:.3f} | "
              f"{e['attention_mb']:.0f} / {a['attention_mb']:.0f} |")


if __name__ == "__main__":
    main()
