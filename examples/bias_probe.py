"""The doctor/nurse probe: does a language model read "She" and "He" differently after the same sentence?

    python examples/bias_probe.py                 # SmolLM2 (offline), about 30 s
    python examples/bias_probe.py --top 15 --words She He --out probe/

Captures both inputs once, ranks every head by how much its attention changed (Jensen-Shannon divergence of the
last token's row, in bits), shows where the most changed heads look from the pronoun (weight on "doctor" vs
"nurse"), and the model's next-token predictions after each input. Writes the diff view (open
bias-probe-diff.html in a browser: click a head in the ranked list to see it) and the same as a PNG figure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

import attnscope
from attnscope.analysis import compare

PROMPT = "The doctor asked the nurse a question. {}"


def weight_on(trace, layer: int, head: int, word: str) -> float:
    """Weight the last token puts on the tokens spelling ``word`` (Ġ/▁ word-start markers ignored)."""
    row = trace.row(layer, head, len(trace.tokens["input"]) - 1)
    return float(sum(row[i] for i, t in enumerate(trace.tokens["input"]) if t.lstrip("Ġ▁").lower() == word))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="offline name, folder or .gguf file of a causal LM")
    parser.add_argument("--words", nargs=2, default=["She", "He"], help="the two continuations to compare")
    parser.add_argument("--top", type=int, default=10, help="how many heads to list")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for bias-probe-diff.html and .png")
    args = parser.parse_args()

    console = Console()
    with console.status(f"loading {args.model} and capturing both inputs"):
        model, tokenizer = attnscope.load_model(args.model)
        a = attnscope.capture(model, tokenizer, PROMPT.format(args.words[0]))
        b = attnscope.capture(model, tokenizer, PROMPT.format(args.words[1]))
        result = compare(a, b, model=model, tokenizer=tokenizer, top_k=8)

    wa, wb = args.words
    heads = Table(title=f"Heads whose attention changed most: '{wa}' vs '{wb}'")
    for col in ("rank", "layer", "head", "JS\n(bits)", f"{wa}\n→doctor", f"{wa}\n→nurse", f"{wb}\n→doctor",
                f"{wb}\n→nurse"):
        heads.add_column(col, justify="right")
    for r in result.top(args.top):
        layer, head = r["layer"], r["head"]
        heads.add_row(str(r["rank"]), str(layer), str(head), f"{r['divergence']:.3f}",
                      *(f"{weight_on(t, layer, head, w):.2f}" for t in (a, b) for w in ("doctor", "nurse")))
    console.print(heads)

    nxt = Table(title="Next-token predictions (probability under both inputs)")
    for col in ("rank", f"after\n'{wa}'", "p", f"p after\n'{wb}'", f"after\n'{wb}'", "p", f"p after\n'{wa}'"):
        nxt.add_column(col, justify="right")
    for row in result.next_token_table():
        nxt.add_row(str(row["rank"]), repr(row["a_text"]), f"{row['a_prob']:.3f}", f"{row['a_prob_in_b']:.3f}",
                    repr(row["b_text"]), f"{row['b_prob']:.3f}", f"{row['b_prob_in_a']:.3f}")
    console.print(nxt)
    changed = result.divergence
    console.print(f"{(changed > 0.1).sum()} of {changed.size} heads changed by more than 0.1 bits; "
                  f"mean {changed.mean():.3f} bits, largest {changed.max():.3f}.")

    args.out.mkdir(parents=True, exist_ok=True)
    view = attnscope.diff_view(result, top=args.top)  # opens on the most changed head
    for path in (view.save(args.out / "bias-probe-diff.html"), view.save(args.out / "bias-probe-diff.png")):
        console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
