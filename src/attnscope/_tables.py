"""Rich tables of analyses for the command line: per-head statistics, most changed heads, next-token predictions.

Every string that came from a tokenizer is wrapped in :class:`rich.text.Text`, so a token such as ``[CLS]`` or
``[bold]`` is shown as it is, never read as console markup, after :func:`~attnscope._terminal.for_terminal` has
escaped its control characters.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from ._terminal import for_terminal
from .tokens import prettify_tokens

#: head_metrics keys shown by ``attnscope stats`` (all of them are in ``--json``), with short column names.
STAT_COLUMNS = {"entropy": "entr", "distance": "dist", "self": "self", "previous": "prev", "next": "next",
                "local": "local", "sink": "sink", "max": "max"}


def number(value: float, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def stats_table(records: list[dict[str, Any]], title: str | Text) -> Table:
    """One row per head: layer, head, label and the :data:`STAT_COLUMNS` metrics; a caption counts the labels."""
    counts = Counter(r["label"] for r in records)
    table = Table(title=title, title_justify="left", caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption="labels: " + ", ".join(f"{name} {n}" for name, n in counts.most_common()))
    table.add_column("layer", justify="right")
    table.add_column("head", justify="right")
    table.add_column("label", no_wrap=True)
    for short in STAT_COLUMNS.values():
        table.add_column(short, justify="right")
    for r in records:
        dist = number(r["distance"], 1)
        cells = [number(r[key]) if key != "distance" else dist for key in STAT_COLUMNS]
        table.add_row(str(r["layer"]), str(r["head"]), Text(r["label"]), *cells)
    return table


def changed_heads_table(comparison, top: int, labels_a: dict, labels_b: dict) -> Table:
    """The ``top`` most changed heads: divergence, the query token whose row changed most, pattern labels A -> B."""
    slots = comparison.query_alignment.slot_labels(prettify_tokens)
    table = Table(title=f"Heads whose attention changed most ({comparison.kind} attention)", title_justify="left")
    for name in ("rank", "layer", "head", "JS bits"):
        table.add_column(name, justify="right")
    for name in ("most changed row", "pattern A → B"):
        table.add_column(name, justify="left")
    for r in comparison.top(top):
        layer, head = r["layer"], r["head"]
        rows = comparison.row_divergence[layer, head]
        where = Text(for_terminal(slots[comparison.rows[int(rows.argmax())]]) if len(rows) else "–")
        la, lb = labels_a[layer, head], labels_b[layer, head]
        table.add_row(str(r["rank"]), str(layer), str(head), f"{r['divergence']:.3f}", where,
                      Text(la if la == lb else f"{la} → {lb}"))
    return table


def next_token_table(comparison) -> Table:
    """Top next-token predictions after each input, each with its probability after the other input."""
    table = Table(title="Next-token predictions (probability after each input)", title_justify="left")
    for name in ("rank", "after A", "p", "p after B", "after B", "p", "p after A"):
        table.add_column(name, justify="right")
    rows = comparison.next_token_table()
    shown_a = prettify_tokens([r["a_token"] for r in rows])
    shown_b = prettify_tokens([r["b_token"] for r in rows])
    for r, ta, tb in zip(rows, shown_a, shown_b):
        table.add_row(str(r["rank"]), Text(for_terminal(ta)), f"{r['a_prob']:.3f}", f"{r['a_prob_in_b']:.3f}",
                      Text(for_terminal(tb)), f"{r['b_prob']:.3f}", f"{r['b_prob_in_a']:.3f}")
    return table


def summary(comparison, threshold: float = 0.1) -> str:
    d = comparison.divergence
    return (f"{int((d > threshold).sum())} of {d.size} heads changed by more than {threshold} bits; "
            f"mean {float(d.mean()):.3f} bits, largest {float(d.max()):.3f}.")

