"""What attnscope knows about model families, in one place: every rule that depends on which kind of model it is.

From a config alone (before any weights load, so the CLI and the web app can check options first):

- :func:`is_encoder_decoder` / :func:`attention_kinds`: one stack (``"self"``) or ``"encoder"``, ``"decoder"`` and
  ``"cross"`` attention;
- :func:`is_causal_lm` / :func:`can_generate`: whether the model writes text (a causal language model, or an
  encoder-decoder); :func:`is_speech`: an encoder-decoder whose encoder reads audio features (Whisper);
- :func:`max_positions`: the longest input (None where positions are relative, as in T5);
- :func:`text_config` and :func:`counts`: the language part of a config, and its layer and head counts.

From a loaded model:

- :func:`kind_map`: which attention modules of an encoder-decoder are encoder, decoder or cross attention;
- :func:`generates` / :func:`display_kind`: whether it writes text; ``"encoder"``, ``"decoder"`` or
  ``"encoder-decoder"`` for people;
- :func:`score_terms`: what a family adds to ``q . k * scaling`` before the softmax, as the attention function
  receives it: T5's relative position bias, Gemma 2's soft-capping, sliding windows, gpt-oss's learned sinks.

Where things sit inside the modules (:mod:`attnscope.capture.blocks` walks them with these tables):
:data:`QUERY_NAMES` and :data:`OUTPUT_NAMES` mark an attention module and its output projection ``W_O``;
:data:`LAYOUTS` says per ``config.model_type`` where a layer's attention, ``W_O`` and norms are (pre-LN or
post-LN), which the context-mixing measures need.

A family on transformers' attention interface needs nothing here unless it names modules or config fields in a
new way or adds a new term to its scores; then the rule goes here, with a tiny config in ``tests/tiny_models.py``
and a row in ``tests/test_families.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Substrings (lower case) of a decoder module's name that mark it as cross-attention (BART, Marian and Whisper's
#: ``encoder_attn``, T5's ``EncDecAttention``); a module that says ``is_cross_attention`` itself needs none.
CROSS_NAMES = ("encoder_attn", "encdecattention", "crossattention", "cross_attn")
#: ``model_type`` of encoder-decoders whose encoder reads audio features (loaded as speech sequence-to-sequence).
SPEECH_TYPES = ("whisper", "speech_to_text")
#: Config fields holding the longest input, the first found wins (in the config, its encoder's, its text config's).
POSITION_FIELDS = ("max_position_embeddings", "n_positions", "max_source_positions")
#: Config fields that count a model's layers and attention heads (per stack, for encoder-decoders).
LAYER_FIELDS = ("num_hidden_layers", "num_layers", "encoder_layers", "decoder_layers", "num_decoder_layers")
HEAD_FIELDS = ("num_attention_heads", "num_heads", "encoder_attention_heads", "decoder_attention_heads")
#: Children that project queries: a module owning one of these is an attention module.
QUERY_NAMES = ("q_proj", "query", "q", "q_lin", "c_attn", "qkv_proj", "Wqkv", "query_key_value", "qkv")
#: Children that are the output projection, looked up on the attention module itself.
OUTPUT_NAMES = ("o_proj", "out_proj", "c_proj", "o", "out_lin", "dense", "wo")


# --------------------------------------------------------------------------- from a config
def is_encoder_decoder(config) -> bool:
    """Whether the config describes an encoder-decoder (T5, BART, Marian, Whisper)."""
    return bool(getattr(config, "is_encoder_decoder", False))


def attention_kinds(config) -> tuple[str, ...]:
    """The attention kinds a capture of this model holds: ``("self",)``, or encoder, decoder and cross."""
    return ("encoder", "decoder", "cross") if is_encoder_decoder(config) else ("self",)


def is_causal_lm(config, gguf: bool = False) -> bool:
    """Whether a one-stack config is a causal language model: its architecture is a ``...CausalLM`` or
    ``...LMHeadModel``, or it says ``is_decoder`` (a GGUF file always holds one)."""
    if is_encoder_decoder(config):
        return False
    archs = " ".join(getattr(config, "architectures", None) or [])
    return gguf or "CausalLM" in archs or "LMHeadModel" in archs or bool(getattr(config, "is_decoder", False))


def can_generate(config) -> bool:
    """Whether :func:`attnscope.load_model` gives a model that writes text for this config (encoder-decoders and
    causal language models do; plain encoders such as BERT do not)."""
    return is_encoder_decoder(config) or is_causal_lm(config, gguf=bool(getattr(config, "attnscope_gguf", False)))


def is_speech(config) -> bool:
    """Whether the config is an encoder-decoder whose encoder reads audio features (:data:`SPEECH_TYPES`)."""
    return is_encoder_decoder(config) and getattr(config, "model_type", None) in SPEECH_TYPES


def max_positions(config) -> int | None:
    """The longest input the model takes, or None when its config sets no limit (relative positions)."""
    for c in (config, getattr(config, "encoder", None), getattr(config, "text_config", None)):
        for key in POSITION_FIELDS:
            value = getattr(c, key, None) if c is not None else None
            if isinstance(value, int) and value > 0:
                return value
    return None


def text_config(config):
    """The config of the language part (a multimodal model's text config; the config itself otherwise)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def counts(config) -> dict[str, int | None]:
    """``{"layer": n, "head": n}``: the largest layer and head counts over the config's stacks (its own, text,
    encoder and decoder configs); None where no field says."""
    subs = [config] + [getattr(config, name, None) for name in ("text_config", "encoder", "decoder")]
    subs = [c for c in subs if c is not None and not isinstance(c, (int, float, str, bool))]
    return {what: max((v for c in subs for f in fields if isinstance(v := getattr(c, f, None), int)
                       and not isinstance(v, bool) and v > 0), default=None)
            for what, fields in (("layer", LAYER_FIELDS), ("head", HEAD_FIELDS))}


# --------------------------------------------------------------------------- from a loaded model
def kind_map(model) -> dict[int, str]:
    """``id(module) -> kind`` for an encoder-decoder's modules (encoder/decoder/cross); empty for one-stack models."""
    if not is_encoder_decoder(model.config):
        return {}
    encoder = model.get_encoder()
    enc_ids = {id(m) for m in encoder.modules()}
    kinds = {}
    for name, m in model.named_modules():
        if id(m) in enc_ids:
            kinds[id(m)] = "encoder"
        elif getattr(m, "is_cross_attention", False) or any(s in name.lower() for s in CROSS_NAMES):
            kinds[id(m)] = "cross"
        else:
            kinds[id(m)] = "decoder"
    return kinds


def generates(model) -> bool:
    """Whether a loaded model writes text (transformers' ``can_generate()``: a language-model head, or an
    encoder-decoder), so it can continue a prompt and predict next tokens."""
    can = getattr(model, "can_generate", None)
    return bool(callable(can) and can())


def display_kind(model) -> str:
    """``"encoder-decoder"``, ``"decoder"`` (writes text) or ``"encoder"``, as the web app shows a loaded model."""
    if is_encoder_decoder(model.config):
        return "encoder-decoder"
    return "decoder" if generates(model) else "encoder"


@dataclass(frozen=True)
class ScoreTerms:
    """What a family adds to its scores ``q . k * scaling`` besides the mask (None / absent when it adds nothing)."""

    bias: Any = None  # torch [B or 1, H, q, k]: an additive term the model computes (T5's relative position bias)
    softcap: float | None = None  # scores become tanh(scores / softcap) * softcap (Gemma 2)
    window: int | None = None  # sliding window: a query sees only its last `window` keys (Mistral, Gemma 2, gpt-oss)
    sinks: Any = None  # torch [H]: learned logits that join each row's softmax but attend to nothing (gpt-oss)


def score_terms(module, kwargs: dict[str, Any]) -> ScoreTerms:
    """The extra score terms of one attention call, from the keywords transformers passes the attention function
    (``position_bias``, ``softcap``, ``sliding_window``) and the module itself (``sinks``)."""
    window = kwargs.get("sliding_window")
    return ScoreTerms(kwargs.get("position_bias"), kwargs.get("softcap"), int(window) if window else None,
                      getattr(module, "sinks", None))


# --------------------------------------------------------------------------- layer layouts (measures)
@dataclass(frozen=True)
class Layout:
    """Dotted paths of one family's parts: ``stack`` ends the name of the layers' ``ModuleList``; the others are
    relative to one layer. ``post_norm`` is the LayerNorm after the attention residual add (post-LN models), or
    None when the family normalises before attention (pre-LN)."""

    stack: str
    attention: str
    output: str
    post_norm: str | None


_BERT = Layout("encoder.layer", "attention.self", "attention.output.dense", "attention.output.LayerNorm")
_LLAMA = Layout("layers", "self_attn", "self_attn.o_proj", None)
#: Families the context-mixing measures can decompose, by ``config.model_type``.
LAYOUTS: dict[str, Layout] = {
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "electra": _BERT,
    "distilbert": Layout("transformer.layer", "attention", "attention.out_lin", "sa_layer_norm"),
    "gpt2": Layout("h", "attn", "attn.c_proj", None),
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
}
