"""``attnscope explain``: raw attention beside the context-mixing measures, from the command line (a command of
:data:`attnscope.cli.app`).

    attnscope explain "The cat sat on the mat because it was tired."              # minilm, all four measures
    attnscope explain "The doctor asked the nurse. She" -m smollm2 --method alti --method grad_attention
    attnscope explain "The cat sat." --layer 5 --query 3 -o why.png                 # a figure instead

Writes the disagreement view (HTML, or a PNG/SVG/PDF figure) and prints, for the chosen layer and query token,
each series' rank correlation with attention and its disagreement averaged over every head and row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ...cli import (
    Debug,
    Dpi,
    Open,
    Quiet,
    Raw,
    Size,
    ThemeOpt,
    _cell,
    _fit_model,
    _load,
    _Progress,
    _read_text,
    _start,
    _written,
    app,
    check_theme,
    view_output,
)
from ...errors import InputError
from . import METHODS, check_method


@app.command()
def explain(
    text: Annotated[str, typer.Argument(help="Text to explain ('-' reads stdin).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Offline name (see: attnscope models), folder, "
                                       ".gguf file or hub id.")] = "minilm",
    method: Annotated[list[str] | None, typer.Option(
        "--method", help=f"Measure to set beside attention (repeat it): {', '.join(METHODS)}. Default: all.")] = None,
    pair: Annotated[str | None, typer.Option(help="Second sentence (segments A and B).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="File to write: .html (interactive) or .png/.svg/.pdf (figure). "
        "Default: attnscope-disagreement.html here.")] = None,
    layer: Annotated[int | None, typer.Option(help="Layer of the bars (default: the last).", min=0)] = None,
    head: Annotated[int | None, typer.Option(help="Head of the bars (default: the mean of the heads).", min=0)]
    = None,
    query: Annotated[int | None, typer.Option(help="Query token of the bars (default: where the grid's measure "
                                              "disagrees most with attention).", min=0)] = None,
    grid: Annotated[str | None, typer.Option("--grid", help="Measure colouring the layer x head grid (default: "
                                             "the first --method).")] = None,
    rolled: Annotated[bool, typer.Option("--rolled", help="Show the layer-level measures rolled out across "
                                         "layers.")] = False,
    target: Annotated[str | None, typer.Option(help="What grad_attention explains: a token (its text or id) or a "
                                               "class (its label or index). Default: the prediction.")] = None,
    position: Annotated[int | None, typer.Option(help="Token whose prediction grad_attention explains (default: "
                                                 "the last token, or the mask token).", min=0)] = None,
    theme: ThemeOpt = None, raw_tokens: Raw = False, dpi: Dpi = None, size: Size = None, open_: Open = False,
    quiet: Quiet = False, debug: Debug = False,
) -> None:
    """Measure TEXT with context-mixing methods and write the disagreement view beside raw attention."""
    from ...views import disagreement_view
    from .explain import DEFAULT_METHODS
    from .explain import explain as run_explain

    _start("explain", debug)
    text = _read_text(text, "text")
    methods = list(method or DEFAULT_METHODS)
    for m in methods:
        check_method(m)
    if (target is not None or position is not None) and "grad_attention" not in methods:
        raise InputError("--target and --position choose what grad_attention explains; add --method grad_attention")
    if grid is not None and grid not in methods and grid != "rollout":
        raise InputError(f"--grid {grid!r} is not measured; choose one of {', '.join([*methods, 'rollout'])}")
    check_theme(theme)
    output, figure = view_output(output, "attnscope-disagreement.html", dpi, size)
    goal = int(target) if target is not None and target.isdigit() else target
    progress = _Progress(quiet)
    loaded = _load(progress, model, lambda config: _fit_model(config, model, layer=layer, head=head))
    with progress.step(f"Measuring with {', '.join(methods)}") as done:
        e = run_explain(loaded, text, methods=methods, pair=_read_text(pair, "pair"), target=goal,
                        position=position)
        L, H, n = e.shape
        done["message"] = f"Measured {n} tokens, {L} layers x {H} heads, with {len(methods)} methods"
    view = disagreement_view(e, layer=layer, query=query, head=head, measure=grid, rolled=rolled, theme=theme,
                             prettify=False if raw_tokens else None)
    with progress.step("Writing the disagreement view"):
        path = view.save(output, **figure)
    o = view.options
    where = f"layer {o['layer']}, query {o['query']} ({e.tokens[o['query']]})"
    where += f", head {o['head']}" if o.get("head") is not None else ", mean of heads"
    table = Table(title=_cell(f"Rank correlation with attention at {where}"), title_justify="left")
    table.add_column("series")
    table.add_column("\u03c1 here", justify="right")
    table.add_column("disagreement (all heads and rows)", justify="right")
    rho = e.correlations(o["layer"], o["query"], o.get("head"))
    for name, r in rho.items():
        d = e.disagreement(name)
        mean = f"{float(np.nanmean(d)):.3f}" if np.isfinite(d).any() else "n/a"
        table.add_row(_cell(e.series[name].label), f"{r:.2f}" if np.isfinite(r) else "n/a", mean)
    Console(highlight=False).print(table)
    _written(path, progress, open_)
