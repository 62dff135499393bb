"""What attnscope knows about each model family (attnscope.capture.families), checked on the tiny random models of
tests/tiny_models.py: one row per family, read from the config alone, from the loaded model, from its modules, and
from what its attention function receives during a real capture."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

import attnscope
from attnscope.capture import blocks, families, interface
from attnscope.capture.models import OFFLINE_MODELS, load_cached
from attnscope.errors import InputError
from tiny_models import build


@dataclass(frozen=True)
class Family:
    """What the tiny model of one family must be found to be."""

    enc_dec: bool = False
    writes: bool = False  # a causal language model or an encoder-decoder
    speech: bool = False
    positions: int | None = 64  # the tiny configs' max_position_embeddings (or its alias)
    post_ln: bool | None = None  # None: no layout for the context-mixing measures
    terms: frozenset[str] = field(default_factory=frozenset)  # extra score terms the attention function receives


FAMILIES = {
    "bert": Family(post_ln=True),
    "roberta": Family(positions=66, post_ln=True),
    "distilbert": Family(post_ln=True),
    "gpt2": Family(writes=True, post_ln=False),
    "llama": Family(writes=True, post_ln=False),
    "mistral": Family(writes=True, post_ln=False, terms=frozenset({"window"})),
    "gemma2": Family(writes=True, terms=frozenset({"softcap", "window"})),
    "gpt_oss": Family(writes=True, terms=frozenset({"sinks", "window"})),
    "t5": Family(enc_dec=True, writes=True, positions=None, terms=frozenset({"bias"})),
    "bart": Family(enc_dec=True, writes=True),
    "marian": Family(enc_dec=True, writes=True),
    "whisper": Family(enc_dec=True, writes=True, speech=True, positions=16),  # max_source_positions
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    """``(name, model, tokenizer, expected)``; the config carries ``architectures`` as a saved model's does."""
    model, tok = build(request.param)
    model.config.architectures = [type(model).__name__]
    return request.param, model, tok, FAMILIES[request.param]


def test_config_says_what_the_model_is(family):
    name, model, _, want = family
    config = model.config
    assert families.is_encoder_decoder(config) is want.enc_dec
    assert families.attention_kinds(config) == (("encoder", "decoder", "cross") if want.enc_dec else ("self",))
    assert families.is_causal_lm(config) is (want.writes and not want.enc_dec)
    assert families.can_generate(config) is want.writes
    assert families.is_speech(config) is want.speech
    assert families.max_positions(config) == want.positions
    assert families.counts(config) == {"layer": 2, "head": 4}


def test_the_loaded_model_agrees_with_its_config(family):
    name, model, _, want = family
    assert families.generates(model) is want.writes is families.can_generate(model.config)
    expected = "encoder-decoder" if want.enc_dec else "decoder" if want.writes else "encoder"
    assert families.display_kind(model) == expected


def test_every_attention_kind_has_a_module_and_an_output_projection_per_layer(family):
    name, model, _, want = family
    for kind in families.attention_kinds(model.config):
        found = blocks.attention_modules(model, kind)
        assert len(found) == 2, kind
        assert all(hasattr(a.projection, "weight") for a in found)
    marked = families.kind_map(model)
    if want.enc_dec:  # every attention module of the decoder is its self-attention or its cross-attention
        cross = [a.module for a in blocks.attention_modules(model, "cross")]
        assert {marked[id(m)] for m in cross} == {"cross"}
    else:
        assert marked == {}


def test_layouts_say_where_the_norms_are(family):
    name, model, _, want = family
    if want.post_ln is None:
        with pytest.raises(InputError, match="families.LAYOUTS"):
            blocks.layers(model)
        return
    layers = blocks.layers(model)
    assert [la.index for la in layers] == [0, 1]
    assert all((la.post_norm is not None) is want.post_ln for la in layers)
    assert all(la.projection is a.projection for la, a in zip(layers, blocks.attention_modules(model, "self")))


def test_score_terms_are_what_the_attention_function_receives(family, monkeypatch):
    name, model, tok, want = family
    seen = []

    def spy(module, kwargs):
        terms = families.score_terms(module, kwargs)
        seen.append(terms)
        return terms

    monkeypatch.setattr(interface, "score_terms", spy)
    if want.speech:
        trace = attnscope.capture(model, tok, features=torch.randn(1, 8, 32), target="the cat")
    elif want.enc_dec:
        trace = attnscope.capture(model, tok, "the cat sat", target="the dog")
    else:
        trace = attnscope.capture(model, tok, "the cat sat on the mat")
    assert len(seen) == 2 * len(trace.kinds)  # one call per layer and kind
    present = {f for t in seen for f in ("bias", "softcap", "window", "sinks") if getattr(t, f) is not None}
    assert present == want.terms
    if "window" in want.terms:  # the trace records each layer's window as the function received it
        assert trace.meta["kinds"]["self"]["windows"] == [t.window for t in seen]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OFFLINE_MODELS))
def test_offline_models_state_the_kind_they_load_as(name):
    if OFFLINE_MODELS[name].path() is None:
        pytest.skip(f"{name} is not installed: {OFFLINE_MODELS[name].pip}")
    model, _ = load_cached(name)
    assert OFFLINE_MODELS[name].kind == families.display_kind(model)
