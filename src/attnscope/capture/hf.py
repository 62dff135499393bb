"""Capture one forward pass of a Hugging Face model into a :class:`~attnscope.trace.Trace`."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._version import __version__
from ..attention import DenseAttention, PrunedAttention, PruneSpec
from ..errors import CaptureError, InputError, InputTooLongError
from ..trace import Segment, Trace

if TYPE_CHECKING:  # torch and the recording function are imported where used: `import attnscope` stays light
    from . import interface
from .models import load_cached

log = logging.getLogger(__name__)

#: Past this many bytes of dense float32 attention, capture prunes rows as it goes (``prune=None``: automatic).
AUTO_PRUNE_BYTES = 2 * 2**30
_CROSS_NAMES = ("encoder_attn", "encdecattention", "crossattention", "cross_attn")


@dataclass
class _Inputs:
    """Model inputs for a batch of one, plus what the Trace needs to know about them."""

    kwargs: dict  # passed to model(**kwargs)
    tokens: dict[str, list[str]]
    ids: dict[str, list[int]]
    segments: dict[str, Segment]


def capture(
    model,
    tokenizer=None,
    text: str | None = None,
    *,
    pair: str | None = None,
    target: str | None = None,
    generate: int = 0,
    qkv: bool = False,
    truncate: bool = False,
    prune: PruneSpec | bool | None = None,
    features=None,
) -> Trace:
    """Run ``text`` through ``model`` once and return its attention as a Trace.

    - ``capture(model, tokenizer, "text")``, or ``capture("minilm", "text")`` to load (and cache) a model by name.
    - ``pair``: a second sentence (segments ``A``/``B``). ``target``: the decoder text of an encoder-decoder.
    - ``generate=N``: greedily generate N tokens first (causal models, or encoder-decoders without a target);
      the trace then covers prompt + generated (segments ``prompt``/``generated``).
    - ``qkv=True``: also keep query/key/value vectors (after rotary embedding, GQA heads repeated).
    - ``truncate=True``: cut inputs longer than the model's positions instead of raising.
    - ``prune``: ``None`` prunes automatically past 2 GiB of dense attention; ``True`` always (default spec),
      ``False`` never, or a :class:`~attnscope.attention.PruneSpec`.
    - ``features``: audio features ``[1, n_mels, frames]`` for speech models such as Whisper (then ``text`` is unused).
    """
    if isinstance(model, str):
        if text is None and isinstance(tokenizer, str):
            tokenizer, text = None, tokenizer
        model, tokenizer = load_cached(model)
    _check_model(model, tokenizer)
    if not isinstance(generate, int) or generate < 0:
        raise InputError(f"generate must be a whole number >= 0; got {generate!r}")
    is_enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
    with _eval_no_grad(model):
        if generate and not is_enc_dec:
            if not (hasattr(model, "can_generate") and model.can_generate()):
                raise InputError(
                    f"{type(model).__name__} cannot generate text (an encoder, or a model without a language-model "
                    "head); capture with generate=0, or load a causal LM with attnscope.load_model(name)"
                )
            if pair is not None:
                raise InputError("generate= continues one text; pass pair=None (or put both in text)")
            inputs = _prepare_generated(model, tokenizer, text, generate, truncate)
        else:
            inputs = _prepare(model, tokenizer, text, pair=pair, target=target, generate=generate,
                              truncate=truncate, features=features)
        n = max(len(t) if t is not None else inputs.kwargs["input_features"].shape[-1] for t in inputs.tokens.values())
        spec = _prune_spec(model, prune, n)
        rec = _run(model, inputs.kwargs, qkv=qkv, prune=spec)
    trace = _to_trace(model, rec, inputs, item=0, lengths=None, qkv=qkv)
    return trace.with_meta(text=text if features is None else None, pair=pair, target=target, generate=generate)


def capture_batch(model, tokenizer, texts: Sequence[str], *, qkv: bool = False, truncate: bool = False) -> list[Trace]:
    """Capture several texts in one forward pass; one Trace per text with the padding cut away.

    Each Trace equals what :func:`capture` gives for that text alone (right padding keeps positions and the
    causal mask of the real tokens unchanged). Encoder-decoders are captured one text at a time.
    """
    import torch

    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise InputError("capture_batch takes a non-empty list of strings; for one text use capture()")
    _check_model(model, tokenizer)
    if getattr(model.config, "is_encoder_decoder", False):
        return [capture(model, tokenizer, t, qkv=qkv, truncate=truncate) for t in texts]
    with _eval_no_grad(model):
        items = [_prepare(model, tokenizer, t, truncate=truncate) for t in texts]
        lengths = [len(it.kwargs["input_ids"][0]) for it in items]
        width = max(lengths)
        ids = torch.zeros(len(items), width, dtype=torch.long)
        mask = torch.zeros(len(items), width, dtype=torch.long)
        for i, it in enumerate(items):
            ids[i, : lengths[i]] = it.kwargs["input_ids"][0]
            mask[i, : lengths[i]] = 1
        rec = _run(model, {"input_ids": ids, "attention_mask": mask}, qkv=qkv, prune=None)
    return [
        _to_trace(model, rec, it, item=i, lengths=lengths, qkv=qkv).with_meta(text=t, generate=0)
        for i, (it, t) in enumerate(zip(items, texts))
    ]


# --------------------------------------------------------------------------- running the model
@contextlib.contextmanager
def _eval_no_grad(model):
    import torch

    training = model.training
    if training:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if training:
            model.train()


@contextlib.contextmanager
def attnscope_attention(model):
    """Switch ``model`` (and its sub-models) to the recording attention; restore every config afterwards."""
    from . import interface

    interface.register()
    saved = [(c, c.__dict__.get("_attn_implementation_internal")) for c in _configs(model)]
    try:
        model.set_attn_implementation(interface.NAME)
        yield
    finally:
        for config, impl in saved:
            config._attn_implementation_internal = impl


def _configs(model) -> list:
    """Every config object reachable from the model (its own, sub-models', and nested sub-configs)."""
    seen, out, todo = set(), [], [m.config for m in model.modules() if hasattr(m, "config")]
    while todo:
        c = todo.pop()
        if id(c) in seen or not hasattr(c, "sub_configs"):
            continue
        seen.add(id(c))
        out.append(c)
        todo.extend(getattr(c, k, None) for k in c.sub_configs)
    return out


def kind_map(model) -> dict[int, str]:
    """``id(module) -> kind`` for an encoder-decoder's modules (encoder/decoder/cross); empty for one-stack models."""
    if not getattr(model.config, "is_encoder_decoder", False):
        return {}
    encoder = model.get_encoder()
    enc_ids = {id(m) for m in encoder.modules()}
    kinds = {}
    for name, m in model.named_modules():
        if id(m) in enc_ids:
            kinds[id(m)] = "encoder"
        elif getattr(m, "is_cross_attention", False) or any(s in name.lower() for s in _CROSS_NAMES):
            kinds[id(m)] = "cross"
        else:
            kinds[id(m)] = "decoder"
    return kinds


def _run(model, kwargs: dict, *, qkv: bool, prune: PruneSpec | None) -> interface.Recorder:
    import torch

    from . import interface

    rec = interface.Recorder(kind_map(model), qkv=qkv, prune=prune)
    kwargs = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    if model._can_set_attn_implementation():
        with attnscope_attention(model), interface.recording(rec):
            model(**kwargs, use_cache=False)
    if not rec.kinds:
        if qkv:
            raise CaptureError(
                f"{type(model).__name__} does not use transformers' attention interface, so its query/key vectors "
                "cannot be recorded; capture with qkv=False"
            )
        _run_eager(model, kwargs, rec)
    return rec


def _run_eager(model, kwargs: dict, rec: interface.Recorder) -> None:
    """Fallback for models off the attention interface: eager attention with ``output_attentions=True``."""
    from . import interface

    out = model(**kwargs, output_attentions=True, use_cache=False)
    names = {"attentions": "self", "encoder_attentions": "encoder", "decoder_attentions": "decoder",
             "cross_attentions": "cross"}
    if getattr(model.config, "is_encoder_decoder", False):
        names.pop("attentions")
    for field, kind in names.items():
        layers = getattr(out, field, None)
        if layers:
            kr = rec.kinds.setdefault(kind, interface.KindRecord(scaling=float("nan")))
            kr.weights = [a.float().numpy() for a in layers]
    if not rec.kinds:
        raise CaptureError(f"{type(model).__name__} returned no attention weights, even with output_attentions=True")


# --------------------------------------------------------------------------- inputs
def _check_model(model, tokenizer) -> None:
    import torch

    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
        raise InputError(
            f"model must be a Hugging Face model (or a model name); got {type(model).__name__}. "
            "Load one with attnscope.load_model(name)"
        )
    if tokenizer is None:
        raise InputError("a tokenizer is needed with a model object; attnscope.load_model(name) returns both")


def _tok(tokenizer):
    """The text tokenizer inside a processor, or the tokenizer itself."""
    return getattr(tokenizer, "tokenizer", tokenizer)


def _max_positions(model) -> int | None:
    configs = [model.config, getattr(model.config, "encoder", None), getattr(model.config, "text_config", None)]
    for c in configs:
        for key in ("max_position_embeddings", "n_positions", "max_source_positions"):
            value = getattr(c, key, None) if c is not None else None
            if isinstance(value, int) and value > 0:
                return value
    return None


def _encode(model, tokenizer, text, pair, truncate: bool, what: str = "text"):
    if not isinstance(text, str):
        raise InputError(f"{what} must be a string; got {type(text).__name__}")
    if not text.strip():
        raise InputError(f"{what} is empty; give at least one word")
    if pair is not None and (not isinstance(pair, str) or not pair.strip()):
        raise InputError("pair must be a non-empty string (or None)")
    limit = _max_positions(model)
    tok = _tok(tokenizer)
    enc = tok(text, pair, return_tensors="pt", truncation=bool(truncate and limit),
              max_length=limit if truncate else None)
    n = enc["input_ids"].shape[1]
    if n == 0:
        raise InputError(f"{what} gave no tokens with this tokenizer")
    if limit is not None and n > limit:
        raise InputTooLongError(
            f"{what} is {n} tokens but {type(model).__name__} takes at most {limit} positions; "
            "shorten it or pass truncate=True to cut it"
        )
    vocab = model.get_input_embeddings().num_embeddings if model.get_input_embeddings() is not None else None
    if vocab is not None and int(enc["input_ids"].max()) >= vocab:
        raise InputError(
            f"the tokenizer produced id {int(enc['input_ids'].max())} but the model's vocabulary has {vocab} entries; "
            "the tokenizer does not match the model: load both with attnscope.load_model(name)"
        )
    return enc


def _pair_start(enc, tokenizer, text: str) -> int:
    try:
        seq = enc.sequence_ids(0)
        return next(i for i, s in enumerate(seq) if s == 1)
    except (ValueError, AttributeError, StopIteration):
        pass
    if "token_type_ids" in enc and int(enc["token_type_ids"].max()) == 1:
        return int((enc["token_type_ids"][0] == 1).nonzero()[0])
    return len(_tok(tokenizer)(text)["input_ids"])


def _prepare(model, tokenizer, text, *, pair=None, target=None, generate=0, truncate=False, features=None) -> _Inputs:
    import torch

    tok = _tok(tokenizer)
    is_enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
    segments: dict[str, Segment] = {}
    if features is not None:
        feats = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
        feats = feats.to(dtype=model.dtype)
        if feats.ndim == 2:
            feats = feats[None]
        kwargs = {"input_features": feats}
        src_tokens, src_ids = None, []  # one token per encoder frame, named once their count is known
    else:
        enc = _encode(model, tokenizer, text, pair, truncate)
        kwargs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if "token_type_ids" in enc and not is_enc_dec:
            kwargs["token_type_ids"] = enc["token_type_ids"]
        src_ids = enc["input_ids"][0].tolist()
        src_tokens = tok.convert_ids_to_tokens(src_ids)
    stream = "encoder" if is_enc_dec else "input"
    if pair is not None:
        b = _pair_start(enc, tokenizer, text)
        segments = {"A": Segment(stream, 0, b), "B": Segment(stream, b, len(src_ids))}
    if not is_enc_dec:
        if target is not None:
            raise InputError("target is for encoder-decoder models; for a decoder put the whole text in text")
        return _Inputs(kwargs, {"input": src_tokens}, {"input": src_ids}, segments)
    dec_ids = _decoder_ids(model, tok, kwargs, target, generate)
    kwargs["decoder_input_ids"] = torch.tensor([dec_ids])
    if target is None and generate:
        segments["generated"] = Segment("decoder", 1, len(dec_ids))
    tokens = {"encoder": src_tokens, "decoder": tok.convert_ids_to_tokens(dec_ids)}
    return _Inputs(kwargs, tokens, {"encoder": src_ids, "decoder": dec_ids}, segments)


def _decoder_ids(model, tok, kwargs, target, generate) -> list[int]:
    start = model.config.decoder_start_token_id
    if target is not None:
        if not isinstance(target, str) or not target.strip():
            raise InputError("target must be a non-empty string: the decoder text of the encoder-decoder")
        ids = tok(text_target=target)["input_ids"]
        return [start, *ids]
    if not generate:
        raise InputError(
            "an encoder-decoder needs decoder text: pass target='...' or generate=N to let the model write it"
        )
    kwargs = {k: v.to(model.device) for k, v in kwargs.items()}
    out = model.generate(**kwargs, max_new_tokens=generate, do_sample=False, num_beams=1)
    return out[0].tolist()


def _prepare_generated(model, tokenizer, text, n: int, truncate: bool) -> _Inputs:
    """Greedy-generate ``n`` tokens after ``text`` (with the model's own attention); inputs for prompt + generated."""
    import torch

    tok = _tok(tokenizer)
    enc = _encode(model, tokenizer, text, None, truncate)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    enc = {k: v.to(model.device) for k, v in enc.items()}
    out = model.generate(**enc, max_new_tokens=n, do_sample=False, num_beams=1, pad_token_id=pad)
    ids = out[0].tolist()
    limit, prompt = _max_positions(model), enc["input_ids"].shape[1]
    if limit is not None and len(ids) > limit:
        raise InputTooLongError(f"prompt + {n} generated tokens exceed the model's {limit} positions; generate fewer")
    kwargs = {"input_ids": out.cpu(), "attention_mask": torch.ones_like(out).cpu()}
    segments = {"prompt": Segment("input", 0, prompt), "generated": Segment("input", prompt, len(ids))}
    return _Inputs(kwargs, {"input": tok.convert_ids_to_tokens(ids)}, {"input": ids}, segments)


def _prune_spec(model, prune, n: int) -> PruneSpec | None:
    if isinstance(prune, PruneSpec):
        return prune
    if prune is True:
        return PruneSpec()
    if prune is False:
        return None
    c = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = getattr(c, "num_hidden_layers", 12) or 12
    heads = getattr(c, "num_attention_heads", 12) or 12
    size = 4 * layers * heads * n * n
    if size > AUTO_PRUNE_BYTES:
        log.warning("dense attention would take %.1f GB at %d tokens: pruning rows to 0.95 of their mass "
                    "(pass prune=False to keep it dense)", size / 1e9, n)
        return PruneSpec()
    return None


# --------------------------------------------------------------------------- recorder -> Trace
def _to_trace(model, rec: interface.Recorder, inputs: _Inputs, *, item: int, lengths, qkv: bool) -> Trace:
    attention, qkv_out, bias, kinds = {}, {}, {}, {}
    for kind, kr in rec.kinds.items():
        n_q = n_k = lengths[item] if lengths else None
        if kr.pruned:
            attention[kind] = PrunedAttention.from_pruned_heads(
                (len(kr.allowed[0][0]), layer) for layer in kr.pruned
            )
        else:
            w = np.stack([layer[item, :, :n_q, :n_k] for layer in kr.weights])  # [L, H, q, k]
            if not kr.sinks:
                _check_rows(kind, w, kr.allowed[item, :n_q, :n_k] if kr.allowed is not None else None)
            attention[kind] = DenseAttention(np.ascontiguousarray(w))
        if qkv and kr.query:
            qkv_out[kind] = {
                "query": np.stack([a[item, :, :n_q] for a in kr.query]),
                "key": np.stack([a[item, :, :n_k] for a in kr.key]),
                "value": np.stack([a[item, :, :n_k] for a in kr.value]),
            }
        if kr.bias and any(np.any(b) for b in kr.bias):
            bias[kind] = np.stack([b[min(item, b.shape[0] - 1), :, :n_q, :n_k] for b in kr.bias])
        allowed = kr.allowed[item, :n_q, :n_k] if kr.allowed is not None else None
        kinds[kind] = {"scaling": kr.scaling, "causal": _is_causal(allowed)}
    if "encoder" in inputs.tokens and inputs.tokens["encoder"] is None:  # speech: one token per encoder frame
        inputs.tokens["encoder"] = [str(i) for i in range(attention["encoder"].shape[2])]
    config = model.config
    meta = {
        "model": getattr(model, "attnscope_name", None) or getattr(config, "_name_or_path", "") or "",
        "architecture": (getattr(config, "architectures", None) or [type(model).__name__])[0],
        "model_type": getattr(config, "model_type", ""),
        "dtype": str(model.dtype).removeprefix("torch."),
        "attn_implementation": config._attn_implementation,
        "kinds": kinds,
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return Trace(tokens=inputs.tokens, attention=attention, token_ids=inputs.ids, segments=inputs.segments,
                 qkv=qkv_out, bias=bias, meta=meta)


def _is_causal(allowed: np.ndarray | None) -> bool:
    if allowed is None or allowed.shape[0] != allowed.shape[1]:
        return False
    return bool(np.array_equal(allowed, np.tril(np.ones_like(allowed))))


def _check_rows(kind: str, w: np.ndarray, allowed: np.ndarray | None) -> None:
    """Every row with an allowed key must sum to 1; a broken attention function must not pass silently."""
    sums = w.sum(-1)  # [L, H, q]
    live = allowed.any(-1) if allowed is not None else np.ones(w.shape[2], dtype=bool)
    bad = np.abs(sums[..., live] - 1.0) > 1e-3
    if bad.any():
        raise CaptureError(f"captured {kind!r} attention rows do not sum to 1 (worst {sums[..., live].min():.4f}); "
                           "the model's attention may use a term attnscope does not know")
