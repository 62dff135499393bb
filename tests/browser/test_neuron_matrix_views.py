"""Neuron and matrix views in Chromium: the neuron view recomputes attention from q and k for BERT, GPT-2, Llama
(RoPE, grouped-query) and T5 (position bias, three kinds); the matrix view shows exact values on hover."""

from __future__ import annotations

import re

import numpy as np
import pytest

import attnscope
from tiny_models import build

from .browser_helpers import pixels, show, texts

pytestmark = pytest.mark.browser

TEXT = "the cat sat on the mat and it was very happy ."


def current(page) -> dict:
    return page.eval_on_selector(".attnscope[data-view=neuron]", "r => r.attnscope.current()")


def test_neuron_view_draws_vectors_and_its_softmax_matches_the_captured_attention(page, tmp_path, minilm_trace):
    view = attnscope.neuron_view(minilm_trace, layer=2, head=5, query=3)
    show(page, view, tmp_path / "n.html")
    now = current(page)
    assert (now["layer"], now["head"], now["query"]) == (2, 5, 3)
    np.testing.assert_allclose(now["weights"], minilm_trace.row(2, 5, 3), atol=3e-3)
    assert pixels(page, ".as-qvec")["alpha"] > 300 and pixels(page, ".as-kvec")["alpha"] > 5000
    assert len(texts(page, ".as-left .as-tok")) == len(texts(page, ".as-right .as-tok")) == 15
    before = pixels(page, ".as-kvec")["hash"]
    page.click(".as-left .as-tok >> nth=9")
    assert current(page)["query"] == 9 and pixels(page, ".as-kvec")["hash"] != before
    page.locator(".as-field", has_text="Layer").locator("select").select_option(label="4")
    page.locator(".as-field", has_text="Head").locator("select").select_option(label="0")
    now = current(page)
    np.testing.assert_allclose(now["weights"], minilm_trace.row(4, 0, 9), atol=3e-3)


def test_neuron_view_hover_explains_the_score_and_weight(page, tmp_path, minilm_trace):
    show(page, attnscope.neuron_view(minilm_trace, query=1), tmp_path / "n.html")
    box = page.locator(".as-kvec").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 30, box["y"] + 18 * 2 + 9)  # softmax cell of key 2
    tip = page.text_content(".as-tip")
    assert tip.startswith("key 2: cat") and "softmax = " in tip
    weight = float(re.search(r"softmax = ([0-9.]+)", tip).group(1))
    assert weight == pytest.approx(float(minilm_trace.row(0, 0, 1)[2]), abs=2e-3)


@pytest.mark.parametrize("name", ["gpt2", "llama", "t5"])
def test_neuron_view_recomputes_every_kind_of_tiny_models(page, tmp_path, name):
    model, tok = build(name)
    extra = {"target": "the dog runs over the lazy fox"} if name == "t5" else {}
    trace = attnscope.capture(model, tok, TEXT, qkv=True, **extra)
    show(page, attnscope.neuron_view(trace, layer=1, head=3), tmp_path / "n.html")
    kinds = trace.kinds
    for kind in kinds:
        if len(kinds) > 1:
            page.locator(".as-field", has_text="Attention").locator("select").select_option(value=str(kinds.index(kind)))
        q = trace.shape(kind)[2]
        page.locator(".as-field", has_text="Query").locator("select").select_option(value=str(q - 2))
        now = current(page)
        assert now["kind"] == kind and now["query"] == q - 2
        np.testing.assert_allclose(now["weights"], trace.row(now["layer"], now["head"], q - 2, kind), atol=3e-3)


def test_matrix_view_paints_one_head_with_labels_and_exact_values_on_hover(page, tmp_path, make_trace):
    trace = make_trace(2, 3, 9, seed=3, sentence_b_start=4)
    show(page, attnscope.matrix_view(trace, layer=1, head=2, query=5), tmp_path / "m.html")
    assert texts(page, ".as-mrows .as-mlabel") == texts(page, ".as-mcols .as-mlabel") == trace.tokens["input"]
    px = pixels(page, ".as-heat")
    assert (px["w"], px["h"]) == (9, 9) and px["ink"] > 60
    assert page.locator(".as-rowmark").is_visible()
    box = page.locator(".as-heat").bounding_box()
    cell = box["width"] / 9
    page.mouse.move(box["x"] + cell * 6.5, box["y"] + cell * 2.5)
    tip = page.text_content(".as-tip")
    assert tip.splitlines()[:2] == ["query 2: tok2", "key 6: tok6"]
    assert float(tip.splitlines()[2].split()[1]) == pytest.approx(float(trace.head(1, 2)[2, 6]), abs=5e-4)
    assert "as-on" in page.get_attribute(".as-mrows .as-mlabel >> nth=2", "class")


def test_matrix_view_head_layer_and_filter_change_the_heatmap(page, tmp_path, make_trace):
    show(page, attnscope.matrix_view(make_trace(2, 3, 9, seed=3, sentence_b_start=4)), tmp_path / "m.html")
    first = pixels(page, ".as-heat")["hash"]
    page.locator(".as-field", has_text="Head").locator("select").select_option(label="1")
    second = pixels(page, ".as-heat")["hash"]
    page.locator(".as-field", has_text="Layer").locator("select").select_option(label="1")
    assert len({first, second, pixels(page, ".as-heat")["hash"]}) == 3
    page.click(".as-seg-btn >> text='B\u2192A'")
    px = pixels(page, ".as-heat")
    assert (px["w"], px["h"]) == (4, 5)
    assert len(texts(page, ".as-mrows .as-mlabel")) == 5


def test_bertviz_neuron_show_runs_on_a_grouped_query_rope_model(page, tmp_path):
    """BertViz's neuron view needs its forked 2019 models; compat's show takes any model (here Llama with GQA)."""
    from attnscope.compat.neuron_view import show as neuron_show

    model, tok = build("llama")
    html = neuron_show(model, "llama", tok, TEXT, layer=1, head=3, html_action="return")
    show(page, html.data, tmp_path / "n.html")  # written as it is, as BertViz users save html.data
    trace = attnscope.capture(model, tok, TEXT)
    now = current(page)
    assert (now["layer"], now["head"]) == (1, 3)
    np.testing.assert_allclose(now["weights"], trace.row(1, 3, now["query"]), atol=3e-3)
    assert pixels(page, ".as-kvec")["alpha"] > 1000
