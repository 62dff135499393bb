"""BertViz's ``neuron_view.show``, for any Hugging Face model.

BertViz's neuron view needs its own forked copies of three 2019 models (BERT, GPT-2, RoBERTa) to reach the query
and key vectors. attnscope records them through transformers' attention interface, so ``show`` takes the model
you already have, with rotary embeddings and grouped-query attention handled.
"""

from __future__ import annotations

from typing import Any

from ..capture import capture
from ..errors import InputError
from ..views import neuron_view
from . import act


def show(model, model_type, tokenizer, sentence_a, sentence_b=None, display_mode="dark", layer=None, head=None,
         html_action="view") -> Any:
    """BertViz's ``show``: capture ``sentence_a`` (and ``sentence_b`` as the second sentence of a pair) with
    ``model`` and ``tokenizer`` and draw the neuron view at ``layer`` and ``head`` (0-based; the first by default).

    ``model_type`` ("bert", "gpt2", "roberta" in BertViz) is accepted for compatibility and not needed: any
    model works. ``display_mode`` is "dark" or "light"; ``html_action`` as in :func:`attnscope.compat.head_view`.
    """
    if not isinstance(model_type, str):
        raise InputError(f"model_type must be a string such as 'bert' or 'gpt2'; got {type(model_type).__name__}")
    if display_mode not in ("dark", "light"):
        raise InputError(f"display_mode must be 'dark' or 'light'; got {display_mode!r}")
    trace = capture(model, tokenizer, sentence_a, pair=sentence_b, qkv=True)
    return act(neuron_view(trace, layer=layer, head=head, theme=display_mode), html_action)
