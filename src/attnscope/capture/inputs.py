"""Model inputs for capture: tokenization, sentence pairs, decoder text, generation, audio features."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, InputTooLongError
from ..trace import Segment
from .families import is_encoder_decoder, max_positions


@dataclass
class Inputs:
    """Model inputs for a batch of one, plus what the Trace needs to know about them."""

    kwargs: dict  # passed to model(**kwargs)
    tokens: dict[str, list[str]]
    ids: dict[str, list[int]]
    segments: dict[str, Segment]
    #: ``{"words": {stream: [...]}, "offsets": {stream: [...]}}`` for the trace's meta (:func:`token_positions`).
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- inputs
def check_model(model, tokenizer) -> None:
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


def check_encodable(text: str, what: str) -> None:
    """Refuse text that holds a lone surrogate, which no tokenizer can encode, saying where it is and what to do.

    Such text comes from bytes that were not UTF-8 (Python decodes a command-line argument or a file name with
    ``surrogateescape``: byte 0xff becomes ``"\\udcff"``) or from a ``"\\ud800"`` escape; it is an error here,
    not a silent replacement, because the tokens and the attention would then belong to other text.
    """
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        i, code = exc.start, ord(text[exc.start])
        if 0xDC80 <= code <= 0xDCFF:  # a byte that surrogateescape could not decode
            raise InputError(
                f"{what} is not valid UTF-8: byte 0x{code - 0xDC00:02x} at character {i}; convert it to UTF-8 first "
                "(e.g. iconv -f latin1 -t utf-8)"
            ) from None
        raise InputError(
            f"{what} holds a lone surrogate U+{code:04X} at character {i}, which no tokenizer can encode; remove "
            "it, or join a split surrogate pair with text.encode('utf-16', 'surrogatepass').decode('utf-16')"
        ) from None


def _encode(model, tokenizer, text, pair, truncate: bool, what: str = "text"):
    if not isinstance(text, str):
        several = " (for several texts use attnscope.capture_batch)" if isinstance(text, (list, tuple)) else ""
        raise InputError(f"{what} must be a string; got {type(text).__name__}{several}")
    if not text.strip():
        raise InputError(f"{what} is empty; give at least one word")
    if pair is not None and (not isinstance(pair, str) or not pair.strip()):
        raise InputError("pair must be a non-empty string (or None)")
    check_encodable(text, what)
    if pair is not None:
        check_encodable(pair, "pair")
    limit = max_positions(model.config)
    tok = _tok(tokenizer)
    enc = tok(text, pair, return_tensors="pt", truncation=bool(truncate and limit),
              max_length=limit if truncate else None, return_offsets_mapping=bool(getattr(tok, "is_fast", False)))
    enc.positions = token_positions(enc, enc.pop("offset_mapping", None), len(text) + 2)
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


def prepare(model, tokenizer, text, *, pair=None, target=None, generate=0, truncate=False, features=None) -> Inputs:
    import torch

    tok = _tok(tokenizer)
    is_enc_dec = is_encoder_decoder(model.config)
    segments: dict[str, Segment] = {}
    if features is not None:
        feats = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
        feats = feats.to(dtype=model.dtype)
        if feats.ndim == 2:
            feats = feats[None]
        kwargs = {"input_features": feats}
        src_tokens, src_ids = [], []  # one token per encoder frame, named by capture once their count is known
    else:
        enc = _encode(model, tokenizer, text, pair, truncate)
        kwargs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if "token_type_ids" in enc and not is_enc_dec:
            kwargs["token_type_ids"] = enc["token_type_ids"]
        src_ids = enc["input_ids"][0].tolist()
        src_tokens = tok.convert_ids_to_tokens(src_ids)
    stream = "encoder" if is_enc_dec else "input"
    positions = {name: {stream: v} for name, v in enc.positions.items()} if features is None else {}
    if pair is not None:
        b = _pair_start(enc, tokenizer, text)
        segments = {"A": Segment(stream, 0, b), "B": Segment(stream, b, len(src_ids))}
    if not is_enc_dec:
        if target is not None:
            raise InputError("target is for encoder-decoder models; for a decoder put the whole text in text")
        return Inputs(kwargs, {"input": src_tokens}, {"input": src_ids}, segments, positions)
    dec_ids, dec_positions = _decoder_ids(model, tok, kwargs, target, generate)
    for name, v in dec_positions.items():
        positions.setdefault(name, {})["decoder"] = v
    kwargs["decoder_input_ids"] = torch.tensor([dec_ids])
    if target is None and generate:
        segments["generated"] = Segment("decoder", 1, len(dec_ids))
    tokens = {"encoder": src_tokens, "decoder": tok.convert_ids_to_tokens(dec_ids)}
    return Inputs(kwargs, tokens, {"encoder": src_ids, "decoder": dec_ids}, segments, positions)


def token_positions(enc, offsets, pair_shift: int) -> dict[str, list]:
    """Where each token of a fast tokenizer's encoding sits: ``{"words": [word index or None], "offsets":
    [[start, end] or None]}``, None for special tokens; offsets index the text, and for the pair ``text + "\n\n" +
    pair`` (its offsets shifted by ``pair_shift``), as :func:`attnscope.units.stream_text` reads them. Empty for
    slow tokenizers, which know neither."""
    try:
        words, sequences = enc.word_ids(0), enc.sequence_ids(0)
    except (ValueError, AttributeError):
        return {}
    if offsets is None:
        return {}
    spans = [None if seq is None else [s + pair_shift * seq, e + pair_shift * seq]
             for (s, e), seq in zip(np.asarray(offsets[0]).tolist(), sequences)]
    return {"words": [None if seq is None else w for w, seq in zip(words, sequences)], "offsets": spans}


def _decoder_ids(model, tok, kwargs, target, generate) -> tuple[list[int], dict[str, list]]:
    start = model.config.decoder_start_token_id
    if target is not None:
        if not isinstance(target, str) or not target.strip():
            raise InputError("target must be a non-empty string: the decoder text of the encoder-decoder")
        check_encodable(target, "target")
        enc = tok(text_target=target, return_offsets_mapping=bool(getattr(tok, "is_fast", False)))
        ids = enc["input_ids"]
        offsets = enc.pop("offset_mapping", None)
        positions = token_positions(enc, None if offsets is None else [offsets], 0)
        return [start, *ids], {name: [None, *v] for name, v in positions.items()}
    if not generate:
        raise InputError(
            "an encoder-decoder needs decoder text: pass target='...' or generate=N to let the model write it"
        )
    kwargs = {k: v.to(model.device) for k, v in kwargs.items()}
    out = model.generate(**kwargs, max_new_tokens=generate, do_sample=False, num_beams=1)
    return out[0].tolist(), {}


def prepare_generated(model, tokenizer, text, n: int, truncate: bool) -> Inputs:
    """Greedy-generate ``n`` tokens after ``text`` (with the model's own attention); inputs for prompt + generated."""
    import torch

    tok = _tok(tokenizer)
    enc = _encode(model, tokenizer, text, None, truncate)
    positions = enc.positions
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    enc = {k: v.to(model.device) for k, v in enc.items()}
    out = model.generate(**enc, max_new_tokens=n, do_sample=False, num_beams=1, pad_token_id=pad)
    ids = out[0].tolist()
    limit, prompt = max_positions(model.config), enc["input_ids"].shape[1]
    if limit is not None and len(ids) > limit:
        raise InputTooLongError(f"prompt + {n} generated tokens exceed the model's {limit} positions; generate fewer")
    kwargs = {"input_ids": out.cpu(), "attention_mask": torch.ones_like(out).cpu()}
    segments = {"prompt": Segment("input", 0, prompt), "generated": Segment("input", prompt, len(ids))}
    positions = {name: {"input": v + [None] * (len(ids) - prompt)} for name, v in positions.items()}
    return Inputs(kwargs, {"input": tok.convert_ids_to_tokens(ids)}, {"input": ids}, segments, positions)
