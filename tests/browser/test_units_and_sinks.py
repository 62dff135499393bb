"""The Units and Hide sinks controls in Chromium: what the views draw matches attnscope.aggregate and hide_sinks."""

from __future__ import annotations

import re

import numpy as np
import pytest

import attnscope
from attnscope.analysis import head_metrics
from attnscope.sinks import shown_trace
from tiny_models import build

from .browser_helpers import lines_drawn, pixels, show, texts

pytestmark = pytest.mark.browser

LEFT = ".as-left .as-tok"
ROOT = ".attnscope[data-view]:not(.as-embedded)"


@pytest.fixture(scope="module")
def pair_trace(minilm):
    return attnscope.capture(*minilm, "The unbelievably tall giraffe ate leaves. It was happy.", pair="Another one.")


def units(page, expr: str):
    return page.eval_on_selector(ROOT, f"r => r.attnscope.units.{expr}")


def weights(page, trace, kind="self", layer=0, head=0) -> np.ndarray:
    q, k = trace.shape(kind)[2:]
    return np.array(page.eval_on_selector(
        ROOT, "(r, [k, l, h, q, n]) => Array.from({length: q}, (_, i) => Array.from({length: n}, "
              "(_, j) => r.attnscope.units.weight(k, l, h, i, j)))", [kind, layer, head, q, k]))


def test_units_switch_the_head_view_to_words_and_sentences(page, tmp_path, pair_trace):
    show(page, attnscope.head_view(pair_trace, dtype="float16", picture=False, prettify=False), tmp_path / "h.html")
    assert texts(page, LEFT) == pair_trace.tokens["input"]
    assert page.locator(".as-field", has_text="Units").locator("select").input_value() is not None
    page.locator(".as-field", has_text="Units").locator("select").select_option(label="words")
    words = pair_trace.aggregate("word")
    assert texts(page, LEFT) == words.tokens["input"] and lines_drawn(page) > 50
    np.testing.assert_allclose(weights(page, words, layer=0, head=3), words.head(0, 3), atol=2e-3)
    assert units(page, "note()").startswith("words: attention to a word sums its pieces")
    page.locator(".as-field", has_text="Units").locator("select").select_option(label="sentences")
    sentences = pair_trace.aggregate("sentence")
    assert texts(page, LEFT) == sentences.tokens["input"]
    np.testing.assert_allclose(weights(page, sentences, layer=5, head=11), sentences.head(5, 11), atol=2e-3)
    assert texts(page, ".as-seg-btn") == ["All", "A\u2192A", "A\u2192B", "B\u2192A", "B\u2192B"]  # segments kept


def test_hide_sinks_leaves_them_out_and_states_what_they_held(page, tmp_path, pair_trace):
    show(page, attnscope.matrix_view(pair_trace, layer=2, head=5, picture=False, prettify=False), tmp_path / "m.html")
    page.click(".as-units-btn >> text='Hide sinks'")
    hidden = shown_trace(pair_trace, hide_sinks=True)
    labels = texts(page, ".as-mrows .as-mlabel")
    assert labels == hidden.tokens["input"] and "[CLS]" not in labels and "[SEP]" not in labels
    share = [m["sink"] for m in head_metrics(pair_trace) if (m["layer"], m["head"]) == (2, 5)][0]
    note = units(page, "note()")
    assert f"[CLS] and [SEP] hidden: they held {round(100 * share)} % of this head's attention" in note
    assert "colours scale to the largest weight shown" in note
    drawn = weights(page, hidden, layer=2, head=5)
    np.testing.assert_allclose(drawn, hidden.head(2, 5), atol=2e-3)  # nothing else changes
    gain = page.eval_on_selector(ROOT, "r => r.attnscope.units.gain('self', 2, 5)")
    assert gain == pytest.approx(1 / drawn.max(), rel=1e-3)  # the largest weight shown is the darkest colour
    i, j = np.unravel_index(drawn.argmax(), drawn.shape)
    darkest = page.eval_on_selector(".as-heat", "(c, [i, j]) => Array.from(c.getContext('2d')"
                                    ".getImageData(j, i, 1, 1).data)", [int(i), int(j)])
    assert darkest[:3] == [8, 48, 107]  # the end of the light theme's ramp
    page.click(".as-units-btn >> text='Renormalise'")
    np.testing.assert_allclose(weights(page, hidden, layer=2, head=5).sum(1), 1.0, atol=2e-3)
    assert "rows renormalised over what is shown" in units(page, "note()")
    page.click(".as-units-btn >> text='Hide sinks'")
    assert texts(page, ".as-mrows .as-mlabel") == pair_trace.tokens["input"]


def test_options_set_the_controls_first_state_for_several_heads(page, tmp_path, pair_trace):
    show(page, attnscope.head_view(pair_trace, by="word", hide_sinks=True, layer=1, picture=False, prettify=False), tmp_path / "h.html")
    assert units(page, "state()") == {"level": "word", "hide": True, "renorm": False}
    both = shown_trace(pair_trace, by="word", hide_sinks=True)
    assert texts(page, LEFT) == both.tokens["input"]
    held = np.array(both.meta["hidden_sinks"]["held"]["self"][1])
    found = re.search(r"held (\d+) % of these 12 heads' attention on average \((\d+)-(\d+) %\)", units(page, "note()"))
    assert found and [int(x) for x in found.groups()] == pytest.approx(
        [100 * held.mean(), 100 * held.min(), 100 * held.max()], abs=0.51)
    page.eval_on_selector(ROOT, "r => r.attnscope.update({by: 'token', hideSinks: false})")
    assert texts(page, LEFT) == pair_trace.tokens["input"] and units(page, "note()") == ""


def test_a_learned_sink_is_its_own_first_column(page, tmp_path):
    trace = attnscope.capture(*build("gpt_oss"), "the cat sat on the mat . the dog", form="dense")
    show(page, attnscope.matrix_view(trace, dtype="float16", hide_sinks="first", picture=False, prettify=False), tmp_path / "m.html")
    hidden = shown_trace(trace, hide_sinks="first")
    assert texts(page, ".as-mrows .as-mlabel")[0] == "<sink>" == hidden.tokens["input"][0]
    drawn = weights(page, hidden, layer=1, head=2)
    np.testing.assert_allclose(drawn[:, 0], hidden.head(1, 2)[:, 0], atol=5e-3)  # 1 - row sum, sqrt8 rounding
    assert drawn[1:, 0].min() > 0.01 and "the learned sink is shown as <sink>" in units(page, "note()")
    page.click(".as-units-btn >> text='Renormalise'")
    renormed = shown_trace(trace, hide_sinks="first", renormalize=True)
    np.testing.assert_allclose(weights(page, renormed, layer=1, head=2), renormed.head(1, 2), atol=5e-3)


def test_the_model_view_repaints_its_grid_and_opens_units(page, tmp_path, pair_trace):
    show(page, attnscope.model_view(pair_trace, picture=False, prettify=False), tmp_path / "m.html")
    before = pixels(page, ".as-thumbs")["hash"]
    page.locator(".as-field", has_text="Units").locator("select").select_option(label="sentences")
    assert pixels(page, ".as-thumbs")["hash"] != before
    page.click(".as-thumb >> nth=0")
    page.wait_for_selector(".as-detail .attnscope[data-view=head]")
    assert texts(page, ".as-detail .as-left .as-tok") == pair_trace.aggregate("sentence").tokens["input"]
    page.click(".as-units-btn >> text='Hide sinks'")
    assert "hidden: they held" in units(page, "note()") and "of these 72 heads' attention" in units(page, "note()")
