"""Trace.from_nnsight on real nnsight models over tiny random Hugging Face GPT-2, Llama and BERT models: the weights
equal attnscope.capture's, interventions made in the user's own trace show up, batches lose their padding."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from nnsight import TransformersModel

import attnscope
import tiny_models
from attnscope.adapters.nnsight import attention_modules, eager_attention
from attnscope.errors import InputError, MissingDataError

TEXT = "the cat sat on the mat"


def wrap(name: str):
    """(nnsight model, the Hugging Face model inside, tokenizer) for a tiny model that starts on SDPA attention."""
    model, tok = tiny_models.build(name, attn_implementation="sdpa")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nnsight's note that the pre-loaded model has no hub id
        task = "feature-extraction" if name == "bert" else "text-generation"
        return TransformersModel(model, tokenizer=tok, task=task), model, tok


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_one_call_equals_capture_and_restores_the_attention_implementation(name):
    nn_model, model, tok = wrap(name)
    trace = attnscope.Trace.from_nnsight(nn_model, TEXT)
    reference = attnscope.capture(model, tok, TEXT)
    assert trace.tokens == reference.tokens and trace.token_ids == reference.token_ids
    assert np.abs(trace.dense() - reference.dense()).max() < 1e-6
    assert trace.meta["kinds"] == reference.meta["kinds"]  # scaling and causal mask of the attention modules
    assert trace.meta["source"] == "nnsight" and trace.meta["text"] == TEXT
    assert model.config._attn_implementation == "sdpa"


def test_the_users_own_trace_with_an_intervention():
    nn_model, model, tok = wrap("gpt2")
    assert attention_modules(nn_model) == ["model.transformer.h.0.attn", "model.transformer.h.1.attn"]
    with eager_attention(nn_model), nn_model.trace(TEXT) as tracer:
        cache = tracer.cache(modules=attention_modules(nn_model))
        nn_model.transformer.h[0].output[:] = 0  # layer 1 then sees a zero residual stream: uniform causal rows
    trace = attnscope.Trace.from_nnsight(nn_model, TEXT, cache=cache)
    clean = attnscope.capture(model, tok, TEXT)
    assert np.abs(trace.layer(0) - clean.layer(0)).max() < 1e-6  # before the intervention: unchanged
    uniform = np.tril(np.ones((6, 6))) / np.arange(1, 7)[:, None]
    assert np.abs(trace.layer(1) - uniform).max() < 1e-6 and np.abs(clean.layer(1) - uniform).max() > 1e-2
    assert model.config._attn_implementation == "sdpa"


def test_batched_invokes_lose_their_padding():
    nn_model, model, tok = wrap("llama")
    with eager_attention(nn_model), nn_model.trace() as tracer:
        with tracer.invoke(TEXT):
            long = tracer.cache(modules=attention_modules(nn_model))
        with tracer.invoke("a dog"):
            short = tracer.cache(modules=attention_modules(nn_model))
    trace = attnscope.Trace.from_nnsight(nn_model, "a dog", cache=short)  # left-padded to 6 positions
    assert trace.tokens["input"] == ["a", "dog"]
    assert np.abs(trace.dense() - attnscope.capture(model, tok, "a dog").dense()).max() < 1e-5
    assert np.abs(attnscope.Trace.from_nnsight(nn_model, TEXT, cache=long).dense()
                  - attnscope.capture(model, tok, TEXT).dense()).max() < 1e-5
    with pytest.raises(InputError, match="do not fit the 1 tokens of the text"):
        attnscope.Trace.from_nnsight(nn_model, "dog", cache=short)  # "a" got weight: it is no padding


def test_runs_without_weights_or_cache_and_bad_models_say_what_to_do():
    nn_model, _, _ = wrap("gpt2")
    with nn_model.trace(TEXT) as tracer:  # SDPA: modules return no weights
        sdpa = tracer.cache(modules=attention_modules(nn_model))
    with pytest.raises(MissingDataError, match="returned no attention weights.*eager_attention"):
        attnscope.Trace.from_nnsight(nn_model, TEXT, cache=sdpa)
    with eager_attention(nn_model), nn_model.trace(TEXT) as tracer:
        partial = tracer.cache(modules=attention_modules(nn_model)[:1])
    with pytest.raises(MissingDataError, match="no output of model.transformer.h.1.attn"):
        attnscope.Trace.from_nnsight(nn_model, TEXT, cache=partial)
    with pytest.raises(InputError, match="expected an nnsight model"):
        attnscope.Trace.from_nnsight(object(), TEXT)
    with pytest.raises(InputError, match="T5ForConditionalGeneration is an encoder-decoder"):
        attnscope.Trace.from_nnsight(tiny_models.build("t5")[0], TEXT)
