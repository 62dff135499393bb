"""attnscope.compat takes BertViz's arguments: a BertViz user switches by changing one import."""

from __future__ import annotations

import inspect
import json
import re

import pytest
import torch

from attnscope import compat
from attnscope.errors import InputError
from conftest import random_attention
from tiny_models import build


def hf_attention(layers=3, heads=2, n=6, k=None, seed=0):
    """What a Hugging Face model returns with output_attentions=True: a tuple of [1, heads, q, k] tensors."""
    w = torch.from_numpy(random_attention(layers, heads, n, k, seed=seed))
    return tuple(w[i : i + 1] for i in range(layers))


def data_of(html) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', html.data, re.S).group(1))


def test_signatures_are_bertviz_s():
    assert list(inspect.signature(compat.head_view).parameters) == [
        "attention", "tokens", "sentence_b_start", "prettify_tokens", "layer", "heads", "encoder_attention",
        "decoder_attention", "cross_attention", "encoder_tokens", "decoder_tokens", "include_layers", "html_action"]
    assert list(inspect.signature(compat.model_view).parameters) == [
        "attention", "tokens", "sentence_b_start", "prettify_tokens", "display_mode", "encoder_attention",
        "decoder_attention", "cross_attention", "encoder_tokens", "decoder_tokens", "include_layers",
        "include_heads", "html_action"]


def test_head_view_return_gives_html_in_data_with_the_options_mapped():
    tokens = ["[CLS]", "the", "Ġcat", "[SEP]", "it", "[SEP]"]
    html = compat.head_view(hf_attention(), tokens, sentence_b_start=4, layer=2, heads=[1],
                            include_layers=[0, 2], prettify_tokens=False, html_action="return")
    assert 'class="attnscope"' in html.data and "<script>" in html.data
    data = data_of(html)
    assert data["options"] == {"layer": 2, "heads": [1], "prettify": False}
    assert data["payload"]["kinds"]["self"]["layers"] == [0, 2]
    assert data["payload"]["tokens"]["input"] == tokens
    assert data["payload"]["segments"]["B"] == {"stream": "input", "start": 4, "end": 6}


def test_model_view_maps_display_mode_and_include_heads():
    html = compat.model_view(hf_attention(heads=4), list("abcdef"), display_mode="light", include_heads=[3, 1],
                             html_action="return")
    data = data_of(html)
    assert data["view"] == "model" and data["options"]["theme"] == "light"
    assert data["payload"]["kinds"]["self"]["heads"] == [3, 1]


def test_encoder_decoder_arguments_give_three_kinds_with_their_token_columns():
    html = compat.head_view(encoder_attention=hf_attention(n=5), decoder_attention=hf_attention(n=3),
                            cross_attention=hf_attention(n=3, k=5), encoder_tokens=list("abcde"),
                            decoder_tokens=list("xyz"), html_action="return")
    kinds = data_of(html)["payload"]["kinds"]
    assert list(kinds) == ["encoder", "decoder", "cross"]
    assert (kinds["cross"]["query"], kinds["cross"]["key"], kinds["cross"]["shape"]) == ("decoder", "encoder", [3, 5])


def test_view_displays_through_ipython_and_returns_nothing(capsys):
    assert compat.head_view(hf_attention(), list("abcdef")) is None
    assert "HTML object" in capsys.readouterr().out  # IPython's display() outside a notebook prints the repr


def test_misuse_gets_bertviz_like_messages():
    att = hf_attention()
    with pytest.raises(InputError, match=r"'tokens' is required"):
        compat.head_view(att)
    with pytest.raises(InputError, match=r"not both; got attention and \['encoder_tokens'\]"):
        compat.head_view(att, list("abcdef"), encoder_tokens=list("abc"))
    with pytest.raises(InputError, match=r"you must pass 'attention'"):
        compat.model_view()
    with pytest.raises(InputError, match=r"'encoder_tokens' is required with 'cross_attention'"):
        compat.head_view(cross_attention=hf_attention(n=3, k=5), decoder_tokens=list("xyz"))
    with pytest.raises(InputError, match=r"layer 1 is not shown; choose one of \[0, 2\]"):
        compat.head_view(att, list("abcdef"), layer=1, include_layers=[0, 2])
    with pytest.raises(InputError, match=r"html_action must be 'view' or 'return'"):
        compat.head_view(att, list("abcdef"), html_action="show")
    with pytest.raises(InputError, match=r"display_mode must be 'dark' or 'light'"):
        compat.model_view(att, list("abcdef"), display_mode="grey")
    with pytest.raises(ValueError, match=r"the tokens give \[layers, heads, 5, 5\]"):
        compat.head_view(att, list("abcde"))


def test_empty_attention_from_bertviz_s_readme_names_the_fix():
    """On transformers 5, BertViz's README (``attention = outputs[-1]``) hands over BERT's empty cross_attentions,
    and SDPA, the default attention, gives no weights even with output_attentions=True."""
    fix = r"attn_implementation='eager', or call attnscope\.capture"
    eager, tok = build("bert", attn_implementation="eager")
    encoded = tok("the cat sat on the mat", return_tensors="pt")
    tokens = tok.convert_ids_to_tokens(encoded["input_ids"][0])
    outputs = eager(**encoded, output_attentions=True)
    with pytest.raises(InputError, match=rf"'attention' holds no attention weights \(an empty tuple\).*{fix}"):
        compat.head_view(outputs[-1], tokens, html_action="return")
    assert data_of(compat.head_view(outputs.attentions, tokens, html_action="return"))["view"] == "head"

    sdpa, _ = build("bert")
    assert sdpa.config._attn_implementation == "sdpa"
    no_weights = sdpa(**encoded, output_attentions=True).attentions
    with pytest.raises(InputError, match=rf"holds no attention weights.*SDPA.*{fix}"):
        compat.model_view(no_weights, tokens, html_action="return")
    with pytest.raises(InputError, match=rf"None for 2 of its 2 layers\).*{fix}"):  # SDPA's answer elsewhere
        compat.head_view((None, None), tokens, html_action="return")
    with pytest.raises(InputError, match=rf"'attention' holds no attention weights \(None\).*{fix}"):
        compat.head_view(None, tokens, html_action="return")
    with pytest.raises(InputError, match=rf"'cross_attention' holds no attention weights.*{fix}"):
        compat.head_view(encoder_attention=hf_attention(n=3), cross_attention=(), encoder_tokens=list("abc"),
                         decoder_tokens=list("xyz"), html_action="return")


def test_neuron_view_show_has_bertviz_s_signature_and_checks_its_arguments():
    from attnscope.compat.neuron_view import show


    assert list(inspect.signature(show).parameters) == [
        "model", "model_type", "tokenizer", "sentence_a", "sentence_b", "display_mode", "layer", "head", "html_action"]
    model, tok = build("bert")
    html = show(model, "bert", tok, "the cat sat on the mat", "it was happy", display_mode="light", layer=1, head=2,
                html_action="return")
    data = data_of(html)
    assert data["view"] == "neuron" and data["options"] == {"layer": 1, "head": 2, "theme": "light"}
    assert data["payload"]["segments"]["B"]["start"] > 0 and data["payload"]["kinds"]["self"]["qkv"]
    with pytest.raises(InputError, match="display_mode must be 'dark' or 'light'"):
        show(model, "bert", tok, "the cat", display_mode="blue", html_action="return")
    with pytest.raises(InputError, match="model_type must be a string"):
        show(model, None, tok, "the cat", html_action="return")
