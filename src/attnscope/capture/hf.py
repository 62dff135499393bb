"""Capture one forward pass of a Hugging Face model into a :class:`~attnscope.trace.Trace`."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._version import __version__
from ..attention import Attention, DenseAttention, PrunedAttention, PruneSpec
from ..errors import CaptureError, InputError
from ..trace import Trace
from .families import generates, is_encoder_decoder, kind_map, text_config
from .inputs import Inputs, check_model, prepare, prepare_generated
from .models import load_cached

if TYPE_CHECKING:  # torch and the recording function are imported where used: `import attnscope` stays light
    from . import interface

log = logging.getLogger(__name__)

#: Past this many bytes of dense float32 attention, ``form="auto"`` captures the q/k form instead of the weights.
DENSE_MAX_BYTES = 2 * 2**30


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
    form: str = "auto",
    features=None,
) -> Trace:
    """Run ``text`` through ``model`` once and return its attention as a Trace.

    - ``capture(model, tokenizer, "text")``, or ``capture("minilm", "text")`` to load (and cache) a model by name.
    - ``pair``: a second sentence (segments ``A``/``B``). ``target``: the decoder text of an encoder-decoder.
    - ``generate=N``: greedily generate N tokens first (causal models, or encoder-decoders without a target);
      the trace then covers prompt + generated (segments ``prompt``/``generated``).
    - ``qkv=True``: also keep query/key/value vectors (after rotary embedding, GQA heads repeated).
    - ``truncate=True``: cut inputs longer than the model's positions instead of raising.
    - ``form``: how attention is held. ``"dense"``: every weight. ``"qk"``: queries, keys and each row's
      log-sum-exp, every weight recomputed exactly on demand (:mod:`attnscope.qk`; long inputs, O(n) memory).
      ``"pruned"``: each row's largest weights (models whose q/k cannot be recomputed). ``"auto"`` (default):
      dense up to 2 GiB of dense attention, past it q/k, or pruned where q/k cannot serve (logged, with why).
    - ``prune``: the :class:`~attnscope.attention.PruneSpec` of the pruned form (``True``: the default spec, and
      the pruned form; ``False``: never pruned).
    - ``features``: audio features ``[1, n_mels, frames]`` for speech models such as Whisper (then ``text`` is unused).
    """
    if isinstance(model, str):
        if text is None and isinstance(tokenizer, str):
            tokenizer, text = None, tokenizer
        model, tokenizer = load_cached(model)
    check_model(model, tokenizer)
    if not isinstance(generate, int) or generate < 0:
        raise InputError(f"generate must be a whole number >= 0; got {generate!r}")
    is_enc_dec = is_encoder_decoder(model.config)
    with _eval_no_grad(model):
        if generate and not is_enc_dec:
            if not generates(model):
                raise InputError(
                    f"{type(model).__name__} cannot generate text (an encoder, or a model without a language-model "
                    "head); capture with generate=0, or load a causal LM with attnscope.load_model(name)"
                )
            if pair is not None:
                raise InputError("generate= continues one text; pass pair=None (or put both in text)")
            inputs = prepare_generated(model, tokenizer, text, generate, truncate)
        else:
            inputs = prepare(model, tokenizer, text, pair=pair, target=target, generate=generate,
                              truncate=truncate, features=features)
        n = max(len(t) if t is not None else inputs.kwargs["input_features"].shape[-1] for t in inputs.tokens.values())
        rec = _run(model, inputs.kwargs, qkv=qkv, **_choose_form(model, form, prune, n))
    trace = _to_trace(model, rec, inputs, item=0, lengths=None, qkv=qkv)
    return trace.with_meta(text=text if features is None else None, pair=pair, target=target, generate=generate)


def capture_batch(model, tokenizer, texts: Sequence[str], *, qkv: bool = False, truncate: bool = False,
                  form: str = "auto") -> list[Trace]:
    """Capture several texts in one forward pass; one Trace per text with the padding cut away.

    Each Trace equals what :func:`capture` gives for that text alone (right padding keeps positions and the
    causal mask of the real tokens unchanged). ``form`` as in :func:`capture`, chosen once for the batch from its
    longest text: dense weights, or the q/k form of each text over its own tokens. The pruned form, models whose
    attention cannot be recomputed from q/k (where ``"auto"``/``"qk"`` prune instead) and encoder-decoders are
    captured one text at a time.

        traces = attnscope.capture_batch(model, tok, ["A short text.", long_text], form="qk")
    """
    import torch

    from . import long

    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise InputError("capture_batch takes a non-empty list of strings; for one text use capture()")
    check_model(model, tokenizer)

    def one_at_a_time() -> list[Trace]:
        return [capture(model, tokenizer, t, qkv=qkv, truncate=truncate, form=form) for t in texts]

    if is_encoder_decoder(model.config):
        return one_at_a_time()
    with _eval_no_grad(model):
        items = [prepare(model, tokenizer, t, truncate=truncate) for t in texts]
        lengths = [len(it.kwargs["input_ids"][0]) for it in items]
        width = max(lengths)
        chosen = _choose_form(model, form, None, width, texts=len(items))
        if chosen["prune"] is not None:
            return one_at_a_time()
        ids = torch.zeros(len(items), width, dtype=torch.long)
        mask = torch.zeros(len(items), width, dtype=torch.long)
        for i, it in enumerate(items):
            ids[i, : lengths[i]] = it.kwargs["input_ids"][0]
            mask[i, : lengths[i]] = 1
        try:
            rec = _run(model, {"input_ids": ids, "attention_mask": mask}, qkv=qkv, prune=None, qk=chosen["qk"],
                       fallback=False)
        except long.NotRecomputable:
            return one_at_a_time()
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
def attnscope_attention(model, name: str | None = None):
    """Switch ``model`` (and its sub-models) to the recording attention, or to the attention function registered
    with transformers as ``name``; restore every config afterwards."""
    from . import interface

    interface.register()
    saved = [(c, c.__dict__.get("_attn_implementation_internal")) for c in _configs(model)]
    try:
        model.set_attn_implementation(name or interface.NAME)
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


def _run(model, kwargs: dict, *, qkv: bool, prune: PruneSpec | None, qk: bool = False,
         fallback: bool = True) -> interface.Recorder:
    """Run the model once, recording what the asked form holds. With ``qk``, a model whose attention cannot be
    recomputed from queries and keys is pruned instead (logged, with why), or, without ``fallback``, raises
    :class:`~attnscope.capture.long.NotRecomputable`."""
    import torch

    from . import interface, long, verify

    kinds = kind_map(model)
    layers = {} if kinds else {"self": getattr(_text_config(model), "num_hidden_layers", 0) or 0}
    kwargs = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    if qk:
        why = "it does not use transformers' attention interface"
        if model._can_set_attn_implementation():
            rec = interface.Recorder(kinds, qkv=qkv, qk=True)
            try:
                with attnscope_attention(model), interface.recording(rec):
                    model(**kwargs, use_cache=False)
                return rec
            except long.NotRecomputable as exc:
                if not fallback:
                    raise
                why = str(exc)
        if not fallback:
            raise long.NotRecomputable(why)
        log.warning("attention of %s cannot be recomputed from queries and keys (%s): pruning each row to "
                    "%.0f %% of its mass instead", type(model).__name__, why, 100 * PruneSpec().mass)
        prune = prune or PruneSpec()
    rec = interface.Recorder(kinds, qkv=qkv, prune=prune, layers=layers)
    if model._can_set_attn_implementation():
        checked = verify.watching(model, rec) if qkv and prune is None else contextlib.nullcontext()
        with attnscope_attention(model), interface.recording(rec), checked as watch:
            model(**kwargs, use_cache=False)
        if watch is not None and rec.kinds:
            rec.verified = watch.result(str(model.dtype).removeprefix("torch."))
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
    if is_encoder_decoder(model.config):
        names.pop("attentions")
    for field, kind in names.items():
        layers = getattr(out, field, None)
        if layers:
            kr = rec.kinds.setdefault(kind, interface.KindRecord(scaling=float("nan")))
            kr.weights = [a.float().numpy() for a in layers]
    if not rec.kinds:
        raise CaptureError(f"{type(model).__name__} returned no attention weights, even with output_attentions=True")


def _text_config(model):
    """The config of the model's language part (:func:`attnscope.capture.families.text_config`)."""
    return text_config(model.config)


FORMS = ("auto", "dense", "qk", "pruned")


def _choose_form(model, form: str, prune, n: int, texts: int = 1) -> dict:
    """``_run``'s ``prune`` and ``qk`` for the asked ``form`` and ``prune`` (see :func:`capture`), for a batch of
    ``texts`` texts padded to ``n`` tokens."""
    if form not in FORMS:
        raise InputError(f"form must be one of {list(FORMS)}; got {form!r}")
    spec = prune if isinstance(prune, PruneSpec) else PruneSpec() if prune is True else None
    if prune is not None and not isinstance(prune, (bool, PruneSpec)):
        raise InputError(f"prune must be True, False, None or an attnscope.PruneSpec; got {prune!r}")
    if spec is not None and form in ("dense", "qk") or prune is False and form == "pruned":
        raise InputError(f"prune={prune!r} contradicts form={form!r}; pass one of them")
    if form == "auto":
        c = _text_config(model)
        size = 4 * (getattr(c, "num_hidden_layers", 12) or 12) * (getattr(c, "num_attention_heads", 12) or 12) * n * n
        size *= texts
        form = "pruned" if spec is not None else "dense" if prune is False or size <= DENSE_MAX_BYTES else "qk"
        if form == "qk":
            log.warning("dense attention would take %.1f GB at %d tokens%s: capturing queries, keys and row "
                        "log-sum-exps instead (every weight is recomputed exactly on demand; form='dense' keeps "
                        "the weights)", size / 1e9, n, f" x {texts} texts" if texts > 1 else "")
    if form == "pruned":
        return {"prune": spec or PruneSpec(), "qk": False}
    return {"prune": None, "qk": form == "qk"}


# --------------------------------------------------------------------------- recorder -> Trace
def _to_trace(model, rec: interface.Recorder, inputs: Inputs, *, item: int, lengths, qkv: bool) -> Trace:
    attention: dict[str, Attention] = {}
    qkv_out, bias, kinds = {}, {}, {}
    for kind, texts in rec.qk_kinds.items():
        qk = texts[item]
        att = qk.attention()
        attention[kind] = att
        kinds[kind] = _mask_facts(qk.scaling, qk.causal, qk.windows)
        if qkv:  # the neuron view's vectors: the same queries, keys repeated per query head
            qkv_out[kind] = {"query": att.query, "key": att.key[:, att.kv_index]}
    for kind, kr in rec.kinds.items():
        n_q = n_k = lengths[item] if lengths else None
        if kr.pruned:
            assert kr.allowed is not None  # set by the first recorded layer
            attention[kind] = PrunedAttention.from_pruned_heads(
                (len(kr.allowed[0][0]), layer) for layer in kr.pruned
            )
        else:
            whole = kr.stacked()  # [L, B, H, q, k] as written, when it was
            if whole is not None and whole.shape[1] == 1 and n_q is None:
                w = whole[:, 0]
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
        kinds[kind] = _mask_facts(kr.scaling, _is_causal(allowed), kr.windows)
    if "encoder" in inputs.tokens and not inputs.tokens["encoder"]:  # speech: one token per encoder frame
        inputs.tokens["encoder"] = [str(i) for i in range(attention["encoder"].shape[2])]
    config = model.config
    meta = {
        "model": getattr(model, "attnscope_name", None) or getattr(config, "_name_or_path", "") or "",
        "architecture": (getattr(config, "architectures", None) or [type(model).__name__])[0],
        "model_type": getattr(config, "model_type", ""),
        "dtype": str(model.dtype).removeprefix("torch."),
        "attn_implementation": config._attn_implementation,
        "kinds": kinds,
        **({"verified": rec.verified} if rec.verified else {}),
        **inputs.meta,  # where each token sits in the text: "words" and "offsets" (attnscope.units)
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return Trace(tokens=inputs.tokens, attention=attention, token_ids=inputs.ids, segments=inputs.segments,
                 qkv=qkv_out, bias=bias, meta=meta)


def _is_causal(allowed: np.ndarray | None) -> bool:
    """Whether no query may attend to a later key (causal, with or without a sliding window)."""
    if allowed is None or allowed.shape[0] != allowed.shape[1] or allowed.shape[0] < 2:
        return False
    return not np.triu(allowed, 1).any()


def _mask_facts(scaling: float, causal: bool, windows: list[int | None]) -> dict:
    """``meta["kinds"][kind]``: the scaling, whether the mask is causal, and each layer's sliding window (only
    when some layer has one)."""
    return {"scaling": scaling, "causal": causal, **({"windows": list(windows)} if any(windows) else {})}


def _check_rows(kind: str, w: np.ndarray, allowed: np.ndarray | None) -> None:
    """Every row with an allowed key must sum to 1; a broken attention function must not pass silently."""
    sums = w.sum(-1)  # [L, H, q]
    live = allowed.any(-1) if allowed is not None else np.ones(w.shape[2], dtype=bool)
    bad = np.abs(sums[..., live] - 1.0) > 1e-3
    if bad.any():
        raise CaptureError(f"captured {kind!r} attention rows do not sum to 1 (worst {sums[..., live].min():.4f}); "
                           "the model's attention may use a term attnscope does not know")
