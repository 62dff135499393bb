"""``attnscope corpus`` and ``attnscope atlas``: the corpus atlas from the command line (commands of
:data:`attnscope.cli.app`).

    attnscope corpus minilm texts.txt -o atlas/                       # a local Ray on this machine
    attnscope corpus minilm data/ --column body -o atlas/ --engine local
    attnscope corpus smollm2 big.parquet -o atlas/ --ray-address 10.0.0.5:6379 --gpus-per-actor 1

    attnscope atlas atlas/ -o atlas.html                                 # the atlas view (or .png/.svg/.pdf)
    attnscope atlas atlas/ --compare atlas-finetuned/ --metric previous  # B - A, the heads that moved most

Progress (texts done, texts/s, time left) goes to stderr; the atlas folder is printed on stdout when it is done.
A re-run with the same output resumes; ``--overwrite`` starts again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from ..cli import Debug, Dpi, Open, Quiet, Size, ThemeOpt, _start, app


class _Bar:
    """Renders :class:`~attnscope.corpus.Status` as a rich progress bar on stderr (nothing with ``--quiet``)."""

    def __init__(self, quiet: bool):
        self.console = Console(stderr=True, quiet=quiet, highlight=False)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[eta]}"),
                            console=self.console, transient=True, disable=quiet or not self.console.is_terminal)
        self.task: TaskID | None = None
        self.status: Any = None  # the last Status that build() reported

    def __call__(self, status) -> None:
        self.status = status
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("Starting", total=status.texts_total, rate="", eta="")
        done = status.texts_resumed + status.texts_done
        rate, left = status.rate, status.remaining_s
        what = {"starting": "Starting (Ray, models)" if status.phase == "starting" else "",
                "running": "Measuring texts", "summarising": "Summarising", "done": "Done"}[status.phase]
        self.bar.update(self.task, description=what, completed=done,
                        rate=f"{rate:.1f} texts/s" if rate else "", eta=f"{_clock(left)} left" if left else "")

    def close(self) -> None:
        if self.task is not None:
            self.bar.stop()


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@app.command("corpus")
def corpus(
    model: Annotated[str, typer.Argument(help="Offline name (see: attnscope models), folder, .gguf file or hub id.")],
    data: Annotated[Path, typer.Argument(help="Text file (one text a line), .jsonl/.csv/.parquet with a text column, "
                                         "or a folder of them.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Atlas folder to write (a re-run resumes it).")],
    column: Annotated[str, typer.Option(help="Column holding the text (JSONL, CSV, Parquet).")] = "text",
    engine: Annotated[str, typer.Option(help="ray (Ray Data; a local Ray unless --ray-address) or local (this "
                                        "process).")] = "ray",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Join this Ray cluster (e.g. "
                                                    "HEAD_IP:6379) instead of starting a local Ray.")] = None,
    actors: Annotated[int | None, typer.Option(help="Model actors (default: as many as the CPUs/GPUs fit).",
                                               min=1)] = None,
    cpus_per_actor: Annotated[float, typer.Option("--cpus-per-actor", help="CPUs (and torch threads) per actor.",
                                                  min=0.01)] = 1.0,
    gpus_per_actor: Annotated[float, typer.Option("--gpus-per-actor", help="GPUs per actor (0: CPU).", min=0)] = 0.0,
    threads: Annotated[int | None, typer.Option(help="Torch threads of --engine local.", min=1)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per forward pass.", min=1)] = 16,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Texts per shard (the unit of resume).",
                                            min=1)] = 256,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longer texts are counted as too long.",
                                            min=1)] = 256,
    limit: Annotated[int | None, typer.Option(help="Only the first N texts.", min=1)] = None,
    sample: Annotated[float | None, typer.Option(help="A fraction of the rows, e.g. 0.1 (the same every run).")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
    top_k: Annotated[int, typer.Option("--top-k", help="Exemplar texts per head and metric.", min=1)] = 5,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start the atlas again instead of resuming.")]
    = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Measure what every head of MODEL does across the texts of DATA; write the atlas folder.

    Per text and layer x head: entropy, distance, self/previous/next/local/first/special/sink mass, max, pattern
    label, and attention to punctuation, the same word and repeated tokens; per head a summary and exemplar texts.
    View it with: attnscope atlas ATLAS_DIR -o atlas.html
    """
    from . import build

    _start("corpus", debug)
    bar = _Bar(quiet)
    start = time.perf_counter()
    try:
        atlas = build(model, data, output, column=column, engine=engine, ray_address=ray_address, actors=actors,
                      cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor, threads=threads,
                      batch_size=batch_size, shard_size=shard_size, max_tokens=max_tokens, limit=limit,
                      sample=sample, seed=seed, top_k=top_k, overwrite=overwrite, progress=bar)
    finally:
        bar.close()
    status, counts = bar.status, atlas.manifest["counts"]
    took = time.perf_counter() - start
    L, H = atlas.shape
    line = (f"[green]✓[/] {counts['measured']} of {counts['texts']} texts measured, {L} layers x {H} heads "
            f"[dim]({took:.1f} s")
    if status.texts_done:
        line += f", {status.texts_done / took:.1f} texts/s"
    if status.texts_resumed:
        line += f", {status.texts_resumed} resumed from an earlier run"
    if status.ray_startup_s is not None:
        line += f", Ray start-up {status.ray_startup_s:.1f} s"
    bar.console.print(line + ")[/]")
    if counts["bad"]:
        bad = ", ".join(f"{n} {why}" for why, n in sorted(counts["bad"].items()))
        bar.console.print(f"[yellow]![/] not measured: {escape(bad)} (see the status and error columns of "
                          f"{escape(str(Path(output) / 'texts'))})")
    typer.echo(str(output))


@app.command("atlas")
def atlas_command(
    atlas_dir: Annotated[Path, typer.Argument(metavar="ATLAS_DIR", help="An atlas folder written by attnscope corpus.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write: .html (interactive) or "
                                                ".png/.svg/.pdf (figure). Default: attnscope-atlas.html here.")]
    = None,
    compare: Annotated[Path | None, typer.Option("--compare", help="A second atlas (same layout): show B - A and the "
                                                 "heads that moved most.")] = None,
    metric: Annotated[str | None, typer.Option(help="Metric the grid shows (default previous).")] = None,
    stat: Annotated[str | None, typer.Option(help="mean, p10, p50 or p90 (default mean).")] = None,
    show: Annotated[str | None, typer.Option(help="With --compare: a, b or delta (default delta).")] = None,
    embed: Annotated[int | None, typer.Option(help="Exemplar texts whose head view the HTML carries (default 6; "
                                              "captured with the atlas's model).", min=0)] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model to capture the embedded exemplars with "
                                              "(default: the atlas's).")] = None,
    theme: ThemeOpt = None, dpi: Dpi = None, size: Size = None, open_: Open = False, quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Write the atlas view of ATLAS_DIR: every layer x head coloured by a corpus metric, exemplar texts per head."""
    from ..cli import _Progress, _written, view_output
    from ..views import atlas_view

    _start("atlas", debug)
    output, figure = view_output(output, "attnscope-atlas.html", dpi, size)
    progress = _Progress(quiet)
    with progress.step("Writing the atlas view") as done:
        view = atlas_view(atlas_dir, compare, metric=metric, stat=stat, show=show, theme=theme,
                          embed=0 if figure else embed, model=model)
        path = view.save(output, **figure)
        done["message"] = f"Wrote the atlas view of {view.atlas.model}"
    if view.other is not None:
        moved = view.atlas.compare(view.other, metric=view.options["metric"], top=10)
        table = Table(title=f"heads that moved most on {view.options['metric']} (B - A)", title_justify="left")
        for name in ("layer", "head", "A", "B", "B - A", "label A", "label B"):
            table.add_column(name, justify="right" if name in ("layer", "head", "A", "B", "B - A") else "left")
        m = view.options["metric"]
        for r in moved.itertuples(index=False):
            row = r._asdict()
            table.add_row(str(row["layer"]), str(row["head"]), f"{row[f'a_{m}']:.3f}", f"{row[f'b_{m}']:.3f}",
                          f"{row[f'delta_{m}']:+.3f}", str(row["label_a"]), str(row["label_b"]))
        Console(highlight=False).print(table)
    _written(path, progress, open_)
