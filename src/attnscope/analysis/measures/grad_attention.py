"""Gradient-weighted attention: each weight times the gradient of one chosen output with respect to it.

``a^h_ij * dF/da^h_ij`` for every layer, head, query and key (attention x gradient, as in Hao et al. 2021,
"Self-Attention Attribution", at the full attention: one forward and one backward pass). ``F`` is what is
explained, chosen with ``target=`` and ``position=``:

- a model with token logits (causal or masked language model): the logit of token ``target`` (an id or a token
  string; default: the predicted one) at ``position`` (default: the last token for a causal model, the first
  mask token for a masked one);
- a sequence classifier: the logit of class ``target`` (default: the predicted class);
- a model without a head (a sentence encoder such as MiniLM): the length of the mean-pooled last hidden state,
  the sentence embedding such models give (one token's last hidden state would not do: a final LayerNorm or
  RMSNorm fixes its length, so its gradient vanishes); ``target`` and ``position`` do not apply.

Since ``output = A @ V`` in every head, ``dF/dA = dF/d(output) @ V^T``: the gradient is asked of each layer's
attention output (kept by :mod:`._attention`), never of the model's weights, whose ``.grad`` stay untouched.
Trace values must lie in [0, 1], so the result keeps the positive part (what supports ``F``) divided by its
largest value; the scale and the share of negative attribution go into the trace's meta.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import CaptureError, InputError
from ._attention import Interventions, evaluating, intervening
from ._forward import KIND, Reference


def grad_attention(ref: Reference, model, tokenizer, *, target=None, position: int | None = None
                   ) -> tuple[np.ndarray, dict[str, Any]]:
    """``(contributions [L, H, n, n] float32 in [0, 1], facts about F and the scale)``."""
    import torch

    L, H, n, _ = ref.trace.shape(KIND)
    act = Interventions(keep=True)
    with evaluating(model), torch.enable_grad(), intervening(model, act):
        output = model(**ref.inputs)
        score, explained = _score(ref, model, tokenizer, output, target, position)
        grads = torch.autograd.grad(score, act.outputs, allow_unused=True)
    if len(act.outputs) != L:
        raise CaptureError(f"{len(act.outputs)} attention calls ran in the gradient pass but the trace has {L} layers")
    raw = np.zeros((L, H, n, n), dtype=np.float32)
    for layer, (grad, value) in enumerate(zip(grads, act.values)):
        if grad is None:  # a layer F does not depend on
            continue
        d_weights = torch.matmul(grad.transpose(1, 2).float(), value.float().transpose(2, 3))  # [B, H, q, k]
        raw[layer] = ref.trace.layer(layer, KIND) * d_weights[0].cpu().numpy()
    positive = np.clip(raw, 0.0, None)
    scale = float(positive.max(initial=0.0))
    total = float(np.abs(raw).sum())
    facts = {**explained, "score": round(float(score.detach()), 6), "scale": scale,
             "negative_share": round(float(-raw[raw < 0].sum() / total), 6) if total > 0 else 0.0}
    return (positive / scale if scale > 0 else positive).astype(np.float32), facts


def _score(ref: Reference, model, tokenizer, output, target, position) -> tuple[Any, dict[str, Any]]:
    """The scalar ``F`` and what it is (see the module docstring)."""
    tokens = ref.trace.tokens["input"]
    n = len(tokens)
    causal = bool(ref.trace.meta.get("kinds", {}).get(KIND, {}).get("causal"))
    logits = getattr(output, "logits", None)
    if logits is None:
        if target is not None or position is not None:
            raise InputError(f"{type(model).__name__} has no output head, so it explains the length of the "
                             "mean-pooled last hidden state (the sentence embedding); target= and position= apply "
                             "to models with logits")
        return output.last_hidden_state[0].mean(0).norm(), {"explains": "sentence_embedding_norm"}
    if logits.dim() == 3:
        if position is None:
            position = _default_position(tokens, tokenizer, causal)
        if isinstance(position, bool) or not isinstance(position, int) or not -n <= position < n:
            raise InputError(f"position must be a token index in 0..{n - 1}; got {position!r}")
        position %= n
        row = logits[0, position]
        index = _token_index(target, row, tokenizer)
        return row[index], {"explains": "token_logit", "position": position, "token": tokens[position],
                            "target": index, "target_text": _text(tokenizer, index)}
    row = logits[0]
    index = _class_index(target, row, model)
    return row[index], {"explains": "class_logit", "target": index,
                        "target_text": (getattr(model.config, "id2label", None) or {}).get(index, str(index))}


def _default_position(tokens: list[str], tokenizer, causal: bool) -> int:
    if causal:
        return len(tokens) - 1
    mask = getattr(getattr(tokenizer, "tokenizer", tokenizer), "mask_token", None)
    if mask in tokens:
        return tokens.index(mask)
    raise InputError("this masked language model predicts a token at every position; say which one to explain "
                     f"with position= (or put {mask or 'a mask token'} in the text)")


def _token_index(target, row, tokenizer) -> int:
    vocab = row.shape[-1]
    if target is None:
        return int(row.argmax())
    if isinstance(target, str):
        tok = getattr(tokenizer, "tokenizer", tokenizer)
        ids = tok(target, add_special_tokens=False)["input_ids"] if tok is not None else []
        if len(ids) != 1:
            raise InputError(f"target {target!r} is {len(ids)} tokens for this tokenizer; give one token (as text or "
                             "its id)")
        return int(ids[0])
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < vocab:
        raise InputError(f"target must be a token (text or an id in 0..{vocab - 1}); got {target!r}")
    return target


def _class_index(target, row, model) -> int:
    classes = row.shape[-1]
    if target is None:
        return int(row.argmax())
    if isinstance(target, str):
        labels = {v: k for k, v in (getattr(model.config, "id2label", None) or {}).items()}
        if target not in labels:
            raise InputError(f"target {target!r} is not a class of this model; its classes are {sorted(labels)}")
        return int(labels[target])
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < classes:
        raise InputError(f"target must be a class index in 0..{classes - 1} or a label; got {target!r}")
    return target


def _text(tokenizer, index: int) -> str:
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    return tok.convert_ids_to_tokens(index) if hasattr(tok, "convert_ids_to_tokens") else str(index)
