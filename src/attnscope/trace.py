"""The Trace: one forward pass of a transformer, captured once, read by every view, figure and analysis."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .attention import Attention, DenseAttention, PrunedAttention, PruneSpec, looks_causal
from .errors import InputError, MissingDataError, TraceFormatError
from .qk import QKAttention
from .trace_checks import WEIGHT_RANGE, check_dense, check_extras, check_pruned, check_qk, read_header

FORMAT = "attnscope-trace"
#: The newest trace format this attnscope reads and writes. 2: a q/k form may hold no cell sums and a rule may hold
#: learned sink logits (readers of format 1 required the sums). A file is written with the lowest version that can
#: read it (:func:`format_version`), so dense and pruned traces stay readable by older attnscope.
FORMAT_VERSION = 2

#: (query stream, key stream) of each attention kind.
KIND_STREAMS: dict[str, tuple[str, str]] = {
    "self": ("input", "input"),
    "encoder": ("encoder", "encoder"),
    "decoder": ("decoder", "decoder"),
    "cross": ("decoder", "encoder"),
}


@dataclass(frozen=True)
class Segment:
    """A named span ``[start, end)`` of one token stream: sentence A/B, prompt/generated."""

    stream: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    def slice(self) -> slice:
        return slice(self.start, self.end)


@dataclass(frozen=True)
class Trace:
    """One captured forward pass.

    Fields (``L`` layers, ``H`` heads, ``q``/``k`` query/key tokens, ``d`` head size):

    - ``tokens``: stream (``"input"``, or ``"encoder"`` and ``"decoder"``) -> display strings.
    - ``token_ids``: stream -> token ids (same length as ``tokens``; empty for array-made traces).
    - ``attention``: kind (``"self"``, or ``"encoder"``, ``"decoder"``, ``"cross"``) -> weights ``[L, H, q, k]``,
      dense or pruned (see :mod:`attnscope.attention`); read it with :meth:`head`, :meth:`row`, :meth:`layer`.
    - ``segments``: name (``"A"``, ``"B"``, ``"prompt"``, ``"generated"``) -> :class:`Segment`.
    - ``qkv``: kind -> ``{"query": [L, H, q, d], "key": [L, H, k, d], "value": [L, H, k, d]}`` float32, after
      rotary embedding, key/value heads repeated for grouped-query attention; empty unless captured with qkv.
    - ``bias``: kind -> additive score term ``[L, H, q, k]`` that is neither q·k nor the mask
      (T5's relative position bias); empty when the model has none.
    - ``meta``: JSON-able facts: model, architecture, text, version, capture time, and per kind
      ``meta["kinds"][kind] = {"scaling": float, "causal": bool}`` (the mask rule).
    """

    tokens: dict[str, list[str]]
    attention: dict[str, Attention]
    token_ids: dict[str, list[int]] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    qkv: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    bias: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.attention:
            raise InputError("a Trace needs attention for at least one kind")
        for kind, att in self.attention.items():
            if kind not in KIND_STREAMS:
                raise InputError(f"unknown attention kind {kind!r}; expected one of {sorted(KIND_STREAMS)}")
            qs, ks = KIND_STREAMS[kind]
            for stream in (qs, ks):
                if stream not in self.tokens:
                    raise InputError(f"attention kind {kind!r} needs tokens for stream {stream!r}")
            _, _, q, k = att.shape
            if (q, k) != (len(self.tokens[qs]), len(self.tokens[ks])):
                raise InputError(
                    f"attention {kind!r} has {q} query x {k} key positions but there are "
                    f"{len(self.tokens[qs])} {qs!r} and {len(self.tokens[ks])} {ks!r} tokens"
                )
        for name, seg in self.segments.items():
            n = len(self.tokens.get(seg.stream, ()))
            if not 0 <= seg.start <= seg.end <= n:
                raise InputError(f"segment {name!r} [{seg.start}, {seg.end}) is outside stream {seg.stream!r} ({n})")

    # ----------------------------------------------------------------- reading
    @property
    def kinds(self) -> list[str]:
        """Attention kinds in this trace, in a stable display order."""
        return [k for k in KIND_STREAMS if k in self.attention]

    @property
    def default_kind(self) -> str:
        return self.kinds[0]

    def _att(self, kind: str | None) -> Attention:
        kind = kind or self.default_kind
        if kind not in self.attention:
            raise MissingDataError(f"this trace has no {kind!r} attention; it has {self.kinds}")
        return self.attention[kind]

    def shape(self, kind: str | None = None) -> tuple[int, int, int, int]:
        """``(layers, heads, q, k)`` of one kind."""
        return self._att(kind).shape

    def head(self, layer: int, head: int, kind: str | None = None) -> np.ndarray:
        """One head's weights ``[q, k]`` float32."""
        return self._att(kind).head(layer, head)

    def layer(self, layer: int, kind: str | None = None) -> np.ndarray:
        """One layer's weights ``[H, q, k]`` float32."""
        return self._att(kind).layer(layer)

    def row(self, layer: int, head: int, query: int, kind: str | None = None) -> np.ndarray:
        """One query token's weights ``[k]`` float32."""
        return self._att(kind).row(layer, head, query)

    def dense(self, kind: str | None = None) -> np.ndarray:
        """All weights of a kind ``[L, H, q, k]`` float32 (large for long inputs: prefer head/row)."""
        return self._att(kind).dense()

    def kept_mass(self, kind: str | None = None) -> float:
        """Fraction of the attention mass kept, averaged over rows (1.0 unless pruned)."""
        return self._att(kind).kept_mass()

    def min_kept_mass(self, kind: str | None = None) -> float:
        """Fraction of the attention mass kept in the worst row (1.0 unless pruned)."""
        return self._att(kind).min_kept_mass()

    def streams(self, kind: str | None = None) -> tuple[str, str]:
        """(query stream, key stream) of a kind."""
        return KIND_STREAMS[kind or self.default_kind]

    def has_qkv(self, kind: str | None = None) -> bool:
        return (kind or self.default_kind) in self.qkv

    # ----------------------------------------------------------------- transforms
    def with_meta(self, **meta: Any) -> Trace:
        return replace(self, meta={**self.meta, **meta})

    def astype(self, dtype) -> Trace:
        """The same trace with attention stored as ``dtype`` (float16 halves the size)."""
        return replace(self, attention={k: a.astype(dtype) for k, a in self.attention.items()})

    def prune(self, mass: float = 0.95, top_k: int = 1024) -> Trace:
        """The same trace with every row pruned to its largest weights (see :class:`PruneSpec`)."""
        spec = PruneSpec(mass, top_k)
        att: dict[str, Attention] = {
            k: PrunedAttention.from_layers((a.layer(i) for i in range(a.shape[0])), spec)
            for k, a in self.attention.items()
        }
        return replace(self, attention=att)

    def aggregate(self, by="word") -> Trace:
        """The trace over words, sentences or paragraphs (``by="word" | "sentence" | "paragraph"``, or token spans):
        attention to a unit sums its pieces, attention from a unit averages them (see :mod:`attnscope.aggregate`)."""
        from .aggregate import aggregate

        return aggregate(self, by)

    def show(self, view: str = "head", **options):
        """Deprecated: draw a trace with :func:`attnscope.render` (``attnscope.render("head", trace)``) or a view
        function (:func:`attnscope.head_view`). A Trace is data; drawing belongs to the views, which read it."""
        warnings.warn("Trace.show is deprecated and will be removed; use attnscope.render(view, trace, ...) or a view "
                      "function such as attnscope.head_view(trace, ...)", DeprecationWarning, stacklevel=2)
        from .views import render  # only this deprecated alias reaches from the data type into the views

        return render(view, self, **options)

    # ----------------------------------------------------------------- arrays in
    @classmethod
    def from_arrays(
        cls,
        attention,
        tokens,
        *,
        kind: str = "self",
        sentence_b_start: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Trace:
        """Make a Trace from attention arrays that did not come from :func:`attnscope.capture`.

        ``attention`` is a tuple of per-layer ``[1, H, q, k]`` tensors (what Hugging Face returns), one
        ``[L, H, q, k]`` array (numpy or torch), or a mapping kind -> either of those. ``tokens`` is a list of
        strings, or a mapping stream -> list (``"encoder"``/``"decoder"`` for encoder-decoder models).
        """
        if isinstance(attention, Mapping):
            arrays = {k: _stack_layers(v, k) for k, v in attention.items()}
        else:
            arrays = {kind: _stack_layers(attention, kind)}
        if isinstance(tokens, Mapping):
            toks = {s: _token_list(t, s) for s, t in tokens.items()}
        else:
            streams = {KIND_STREAMS.get(k, ("?",))[0] for k in arrays}
            if len(streams) != 1:
                raise InputError("several attention kinds need tokens as a mapping stream -> list of strings")
            toks = {streams.pop(): _token_list(tokens, "tokens")}
        for k, arr in arrays.items():
            if k not in KIND_STREAMS:
                raise InputError(f"unknown attention kind {k!r}; expected one of {sorted(KIND_STREAMS)}")
            qs, ks = KIND_STREAMS[k]
            want = (len(toks.get(qs, ())), len(toks.get(ks, ())))
            if arr.shape[2:] != want:
                raise InputError(
                    f"attention {k!r} has shape {tuple(arr.shape)} but the tokens give [layers, heads, {want[0]}, "
                    f"{want[1]}]; expected [layers, heads, n_tokens, n_tokens] (or a tuple of [1, heads, n, n])"
                )
        segments = {}
        if sentence_b_start is not None:
            stream = KIND_STREAMS[next(iter(arrays))][0]
            n = len(toks[stream])
            if not 0 < sentence_b_start < n:
                raise InputError(f"sentence_b_start must be between 1 and {n - 1}; got {sentence_b_start}")
            segments = {"A": Segment(stream, 0, sentence_b_start), "B": Segment(stream, sentence_b_start, n)}
        return cls(
            tokens=toks,
            attention={k: DenseAttention(a) for k, a in arrays.items()},
            segments=segments,
            meta={"source": "arrays", "version": __version__, "created": _now(),
                  "kinds": {k: {"causal": looks_causal(a[0])} for k, a in arrays.items()}, **(meta or {})},
        )

    @classmethod
    def from_transformer_lens(cls, cache, model_or_tokens, input=None, *, batch: int = 0,
                              qkv: bool | None = None) -> Trace:
        """A Trace of a TransformerLens ``ActivationCache``: ``Trace.from_transformer_lens(cache, model, input)``
        (``input`` as given to ``model.run_with_cache``) or ``(cache, token_strings)``. The query/key/value vectors
        are kept for the neuron view when they reproduce the patterns (see :mod:`attnscope.adapters.transformer_lens`)."""
        from .adapters.transformer_lens import from_cache

        return from_cache(cache, model_or_tokens, input, batch=batch, qkv=qkv)

    @classmethod
    def from_nnsight(cls, model, text: str, *, cache=None, batch: int = 0) -> Trace:
        """A Trace of ``text`` through an nnsight-wrapped Hugging Face model: attnscope runs ``model.trace(text)``, or
        reads the ``tracer.cache(...)`` of your own trace (see :mod:`attnscope.adapters.nnsight`)."""
        from .adapters.nnsight import from_nnsight

        return from_nnsight(model, text, cache=cache, batch=batch)

    # ----------------------------------------------------------------- files
    def save(self, path: str | Path, *, dtype: str = "float32") -> Path:
        """Write one ``.safetensors`` file: arrays plus JSON metadata in its header; ``dtype="float16"`` halves it.

        The file appears whole or not at all (an existing one stays as it was if writing fails). Tokens and meta
        holding lone surrogates (which UTF-8 cannot encode) are kept as ``\\ud800`` JSON escapes in the header.
        """
        from safetensors.numpy import save_file

        from ._files import atomic_write

        def utf8_json(value) -> str:  # as it is, or all-ASCII JSON when the text holds a lone surrogate
            text = json.dumps(value, ensure_ascii=False, default=str)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = json.dumps(value, ensure_ascii=True, default=str)
            return text

        if dtype not in ("float32", "float16"):
            raise InputError(f"dtype must be 'float32' or 'float16'; got {dtype!r}")
        tensors: dict[str, np.ndarray] = {}
        forms = {}
        for kind, att in self.attention.items():
            forms[kind] = {"form": att.form, "shape": list(att.shape), **att.info()}
            for name, arr in att.arrays().items():
                if name in att.halvable:
                    arr = arr.astype(dtype)
                tensors[f"attention/{kind}" + (f"/{name}" if name else "")] = np.ascontiguousarray(arr)
        for stream, ids in self.token_ids.items():
            tensors[f"ids/{stream}"] = np.asarray(ids, dtype=np.int64).reshape(-1)
        for kind, parts in self.qkv.items():
            for name, arr in parts.items():
                tensors[f"qkv/{kind}/{name}"] = np.ascontiguousarray(arr.astype(dtype))
        for kind, arr in self.bias.items():
            tensors[f"bias/{kind}"] = np.ascontiguousarray(arr.astype(np.float32))
        header = {
            "format": FORMAT,
            "format_version": str(format_version(self)),
            "attention": json.dumps(forms),
            "tokens": utf8_json(self.tokens),
            "segments": utf8_json({k: [s.stream, s.start, s.end] for k, s in self.segments.items()}),
            "meta": utf8_json(self.meta),
        }
        path = Path(path)
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
        return path


def format_version(trace: Trace) -> int:
    """The lowest trace format that holds ``trace``: 2 for a q/k form without cell sums (format 1 readers need them),
    else 1."""
    needs_2 = any(isinstance(att, QKAttention) and att.sums is None for att in trace.attention.values())
    return 2 if needs_2 else 1


def load(path: str | Path, *, check_values: bool = True) -> Trace:
    """Read a trace written by :meth:`Trace.save`. Never unpickles; a bad file raises TraceFormatError.

    Arrays are memory-mapped from the file, so loading reads only what is then used. Everything the file holds is
    checked first (:mod:`attnscope.trace_checks`); ``check_values=False`` checks only the header, dtypes and
    shapes, not the values, so a large file opens at once for inspection (``attnscope info``): load it fully
    before reading weights from a file you did not write.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise TraceFormatError(f"no trace file at {str(path)!r}; check the path")
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise TraceFormatError(
                    f"{str(path)!r} is a safetensors file but not an attnscope trace (no 'format: {FORMAT}' in its "
                    "header); make traces with attnscope.capture(...).save(path)"
                )
            version_text = header.get("format_version", "0")
            if not (version_text.isdigit() and len(version_text) <= 6):
                raise TraceFormatError(f"{str(path)!r} has format_version {version_text[:20]!r}: not a version number")
            version = int(version_text)
            if version > FORMAT_VERSION:
                raise TraceFormatError(
                    f"{str(path)!r} has trace format {version}; this attnscope reads up to {FORMAT_VERSION}. "
                    "Upgrade attnscope: pip install -U attnscope"
                )
        tensors = _mapped(path)  # safe_open has checked the container: offsets, sizes, dtypes
        head = read_header(header, KIND_STREAMS)
        check_extras(tensors, head, KIND_STREAMS, check_values)
        attention: dict[str, Attention] = {}
        for kind, info in head.forms.items():
            if info["form"] == "dense":
                if f"attention/{kind}" not in tensors:
                    raise TraceFormatError(f"the header declares dense {kind!r} attention but attention/{kind} is missing")
                check_dense(kind, tensors[f"attention/{kind}"], info["shape"], check_values)
                attention[kind] = DenseAttention(tensors[f"attention/{kind}"])
            else:
                p = f"attention/{kind}/"
                arrays = {n[len(p):]: a for n, a in tensors.items() if n.startswith(p)}
                if info["form"] == "pruned":
                    check_pruned(kind, arrays, info["shape"], check_values)
                    attention[kind] = PrunedAttention(
                        info["shape"], np.asarray(arrays["indptr"], np.int64), np.asarray(arrays["indices"], np.int32),
                        arrays["values"], arrays["mass"],
                    )
                else:
                    rule = check_qk(kind, arrays, info, check_values)
                    attention[kind] = QKAttention(
                        arrays["query"], arrays["key"], arrays["lse"], rule, kv_index=info["kv_index"],
                        maxima=arrays.get("maxima"), sums=arrays.get("sums"), block=info["block"],
                    )
        qkv: dict[str, dict[str, np.ndarray]] = {}
        bias: dict[str, np.ndarray] = {}
        ids: dict[str, list[int]] = {}
        for name, arr in tensors.items():
            parts = name.split("/")
            if parts[0] == "qkv":
                qkv.setdefault(parts[1], {})[parts[2]] = arr.astype(np.float32)
            elif parts[0] == "bias":
                bias[parts[1]] = arr.astype(np.float32)
            elif parts[0] == "ids":
                ids[parts[1]] = arr.tolist()
        tokens, meta = head.tokens, head.meta
        segments = {k: Segment(*v) for k, v in head.segments.items()}
        return Trace(tokens=tokens, attention=attention, token_ids=ids, segments=segments, qkv=qkv, bias=bias,
                     meta=meta)
    except TraceFormatError as exc:
        if str(path) in str(exc):
            raise
        raise TraceFormatError(f"{str(path)!r} is not a valid attnscope trace: {exc}") from None
    except Exception as exc:  # safetensors, json and shape errors all mean the same thing here
        raise TraceFormatError(
            f"{str(path)!r} is not a readable attnscope trace ({type(exc).__name__}: {exc}); "
            "it may be truncated or corrupted: capture and save it again"
        ) from exc


_NUMPY_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4", "I64": "<i8",
                 "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}


def _mapped(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a read-only memory map (nothing is read until used)."""
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        entries = json.loads(f.read(size))
    out: dict[str, np.ndarray] = {}
    for name, e in entries.items():
        if name == "__metadata__":
            continue
        if e["dtype"] not in _NUMPY_DTYPES:
            raise TraceFormatError(f"{name} holds {e['dtype']} numbers, which attnscope traces never hold")
        dtype, shape = np.dtype(_NUMPY_DTYPES[e["dtype"]]), tuple(e["shape"])
        begin = 8 + size + e["data_offsets"][0]
        out[name] = np.memmap(path, dtype, "r", begin, shape) if np.prod(shape, dtype=object) else np.empty(shape, dtype)
    return out


def _stack_layers(attention, kind: str) -> np.ndarray:
    """Tuple of ``[1, H, q, k]`` or one ``[L, H, q, k]`` (numpy/torch) -> float32 ``[L, H, q, k]``."""
    if isinstance(attention, (list, tuple)):
        if not attention:
            raise InputError(f"attention {kind!r} is an empty sequence; expected one [1, heads, q, k] per layer")
        layers = [_to_numpy(a) for a in attention]
        for i, a in enumerate(layers):
            if a.ndim != 4 or a.shape[0] != 1:
                raise InputError(
                    f"attention {kind!r} layer {i} has shape {tuple(a.shape)}; expected [1, heads, q, k] "
                    "(batch of one, as Hugging Face returns with output_attentions=True)"
                )
        shapes = {a.shape for a in layers}
        if len(shapes) != 1:
            raise InputError(f"attention {kind!r} layers differ in shape: {sorted(shapes)}")
        arr = np.concatenate(layers, axis=0)
    else:
        arr = _to_numpy(attention)
        if arr.ndim != 4:
            raise InputError(
                f"attention {kind!r} has shape {tuple(arr.shape)}; expected [layers, heads, q, k] "
                "or a tuple of [1, heads, q, k]"
            )
    if not np.isfinite(arr).all():
        raise InputError(f"attention {kind!r} holds NaN or infinite values")
    if arr.size and (arr.min() < WEIGHT_RANGE[0] or arr.max() > WEIGHT_RANGE[1]):
        raise InputError(
            f"attention {kind!r} holds values outside [0, 1] (min {arr.min():.4g}, max {arr.max():.4g}); attention "
            "weights are softmax probabilities: pass those (output_attentions=True), not scores or differences"
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


def _to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().to("cpu").float().numpy()
    try:
        return np.asarray(a, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"attention must be numeric arrays or tensors; got {type(a).__name__}") from exc


def _token_list(tokens, name: str) -> list[str]:
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, (Sequence, np.ndarray)):
        raise InputError(f"{name} must be a list of strings; got {type(tokens).__name__}")
    if len(tokens) == 0:
        raise InputError(f"{name} is empty: a trace needs at least one token")
    return [str(t) for t in tokens]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
