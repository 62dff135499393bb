"""Diff view in Chromium: three aligned heatmaps and a row strip drawn, ranked heads switch the head, hover values,
the next-token table, inserted words painted as gaps."""

from __future__ import annotations

import numpy as np
import pytest

import attnscope
from attnscope.analysis import compare
from attnscope.analysis.compare import aligned_head
from tiny_models import build

from .browser_helpers import pixels, random_attention, show, texts

pytestmark = pytest.mark.browser

A_WORDS = ["[CLS]", "the", "doctor", "asked", "the", "nurse", ".", "she", "[SEP]"]
B_WORDS = ["[CLS]", "the", "doctor", "asked", "the", "nurse", ".", "he", "[SEP]"]


def pair(layers=3, heads=4, a_words=A_WORDS, b_words=B_WORDS):
    a = attnscope.Trace.from_arrays(random_attention(layers, heads, len(a_words), seed=1), a_words)
    b = attnscope.Trace.from_arrays(random_attention(layers, heads, len(b_words), seed=2), b_words)
    return a, b


def pixel(page, selector: str, index: int, x: int, y: int) -> list[int]:
    return page.evaluate(
        "([sel, i, x, y]) => [...document.querySelectorAll(sel)[i].getContext('2d').getImageData(x, y, 1, 1).data]",
        [selector, index, x, y])


def test_three_heatmaps_and_the_row_strip_are_drawn_on_the_aligned_tokens(page, tmp_path):
    a, b = pair()
    view = attnscope.diff_view(a, b, top=5)
    show(page, view, tmp_path / "d.html")
    assert page.locator(".as-heat").count() == 3
    for i in range(3):
        px = pixels(page, ".as-heat", i)
        assert (px["w"], px["h"]) == (9, 9) and px["ink"] > 40
    assert pixels(page, ".as-diff-strip")["h"] == 9
    assert texts(page, ".as-diff-ph") == ["A", "B", "B \u2212 A", "JS"]
    assert texts(page, ".as-mrows .as-mlabel")[7] == "she \u2192 he"
    assert "as-changed" in page.get_attribute(".as-mrows .as-mlabel >> nth=7", "class")
    assert len(texts(page, ".as-mcols .as-mlabel")) == 27  # one row of key labels per panel
    assert texts(page, ".as-diff-words") == [" ".join(A_WORDS), " ".join(B_WORDS)]
    layer, head, d = compare(a, b).ranked[0]
    assert page.get_attribute(".attnscope", "data-layer") == str(layer)
    assert page.get_attribute(".attnscope", "data-head") == str(head)
    assert page.text_content(".as-diff-title") == (
        f"Layer {layer} \u00b7 head {head} \u00b7 JS divergence {d:.3f} bits \u00b7 rank 1 of 12")
    assert page.locator(".as-rank").count() == 5
    assert page.get_attribute(".as-rank >> nth=0", "aria-pressed") == "true"


def test_difference_colours_follow_the_sign_of_b_minus_a(page, tmp_path):
    a, b = pair()
    comparison = compare(a, b)
    view = attnscope.diff_view(comparison, layer=1, head=2, dtype="float16")
    show(page, view, tmp_path / "d.html")
    delta = aligned_head(comparison, "b", 1, 2) - aligned_head(comparison, "a", 1, 2)
    i, j = np.unravel_index(np.argmax(delta), delta.shape)
    r, _, bl, _ = pixel(page, ".as-heat", 2, int(j), int(i))
    assert bl > r + 40  # purple: B attends more
    i, j = np.unravel_index(np.argmin(delta), delta.shape)
    r, _, bl, _ = pixel(page, ".as-heat", 2, int(j), int(i))
    assert r > bl + 60  # orange: A attends more
    assert float(page.get_attribute(".attnscope", "data-max-diff")) == pytest.approx(np.abs(delta).max(), abs=2e-3)


def test_clicking_a_ranked_head_shows_it_in_every_panel(page, tmp_path):
    a, b = pair()
    comparison = compare(a, b)
    show(page, attnscope.diff_view(comparison), tmp_path / "d.html")
    before = [pixels(page, ".as-heat", i)["hash"] for i in range(3)]
    layer, head, d = comparison.ranked[3]
    page.click(".as-rank >> nth=3")
    after = [pixels(page, ".as-heat", i)["hash"] for i in range(3)]
    assert all(x != y for x, y in zip(before, after))
    assert page.get_attribute(".attnscope", "data-layer") == str(layer)
    assert page.get_attribute(".attnscope", "data-head") == str(head)
    assert page.text_content(".as-diff-title").endswith(f"{d:.3f} bits \u00b7 rank 4 of 12")
    assert page.get_attribute(".as-rank >> nth=3", "aria-pressed") == "true"
    assert page.get_attribute(".as-rank >> nth=0", "aria-pressed") == "false"
    selects = page.eval_on_selector_all(".as-bar select", "ss => ss.map(s => s.selectedOptions[0].textContent)")
    assert selects == [str(layer), str(head)]
    # the selects work the other way round
    page.locator(".as-field", has_text="Layer").locator("select").select_option(label="0")
    page.locator(".as-field", has_text="Head").locator("select").select_option(label="0")
    assert page.get_attribute(".attnscope", "data-layer") == "0" and page.get_attribute(".attnscope", "data-head") == "0"
    shown = [p for p, (la, h, _) in enumerate(comparison.ranked[:10]) if (la, h) == (0, 0)]
    pressed = page.eval_on_selector_all(".as-rank", "bs => bs.map(b => b.getAttribute('aria-pressed'))")
    assert [i for i, v in enumerate(pressed) if v == "true"] == shown


def test_hovering_a_cell_shows_both_weights_and_their_difference(page, tmp_path):
    a, b = pair()
    comparison = compare(a, b)
    show(page, attnscope.diff_view(comparison, layer=0, head=1, dtype="float16"), tmp_path / "d.html")
    box = page.locator(".as-heat >> nth=1").bounding_box()
    cell = box["width"] / 9
    page.mouse.move(box["x"] + 2.5 * cell, box["y"] + 7.5 * cell)  # query "she -> he", key "doctor"
    assert page.get_attribute(".attnscope", "data-hover") == "7,2"
    tip = page.text_content(".as-tip").split("\n")
    wa, wb = aligned_head(comparison, "a", 0, 1)[7, 2], aligned_head(comparison, "b", 0, 1)[7, 2]
    assert tip[:4] == ["query: she \u2192 he", "key: doctor", f"A {wa:.4f}", f"B {wb:.4f}"]
    assert tip[4].startswith("B \u2212 A ") and abs(float(tip[4].split()[-1].replace("\u2212", "-")) - (wb - wa)) < 2e-3
    assert tip[5].startswith("row JS ")
    assert page.locator(".as-cursor:visible").count() == 3


def test_an_inserted_word_is_a_gap_row_on_the_side_without_it(page, tmp_path):
    a, b = pair(1, 2, a_words=["x", "y", "z"], b_words=["x", "new", "y", "z"])
    show(page, attnscope.diff_view(a, b, theme="light"), tmp_path / "d.html")
    gap = [216, 222, 228, 255]  # the light theme's grid colour
    assert pixel(page, ".as-heat", 0, 0, 1) == gap  # A has no row "new"
    assert pixel(page, ".as-heat", 1, 0, 1) != gap  # B has
    assert pixel(page, ".as-heat", 2, 0, 1) == gap  # no difference without both
    assert texts(page, ".as-mrows .as-mlabel")[1] == "\u2205 \u2192 new"


def test_next_token_table_lists_both_inputs_predictions(page, tmp_path):
    model, tok = build("gpt2")
    a = attnscope.capture(model, tok, "the doctor asked the nurse a question . she")
    b = attnscope.capture(model, tok, "the doctor asked the nurse a question . he")
    comparison = compare(a, b, model=model, tokenizer=tok, top_k=3)
    show(page, attnscope.diff_view(comparison, theme="dark"), tmp_path / "d.html")
    assert page.get_attribute(".attnscope", "data-theme") == "dark"
    assert page.locator(".as-next tbody tr").count() == 3
    assert texts(page, ".as-next th") == ["#", "after A", "p", "p after B", "after B", "p", "p after A"]
    first = texts(page, ".as-next tbody tr >> nth=0 >> td")
    row = comparison.next_token_table()[0]
    assert first == ["1", row["a_token"], f"{row['a_prob']:.3f}", f"{row['a_prob_in_b']:.3f}", row["b_token"],
                     f"{row['b_prob']:.3f}", f"{row['b_prob_in_a']:.3f}"]
    assert "Next-token predictions" in page.text_content(".as-next caption")


def test_views_without_next_tokens_have_no_table_and_say_what_was_compared(page, tmp_path):
    a, b = pair()
    show(page, attnscope.diff_view(a, b), tmp_path / "d.html")
    assert page.locator(".as-next").count() == 0
    caption = page.text_content(".as-caption")
    assert "Self attention" in caption and "9 aligned tokens, 1 differing span" in caption
    assert "over 9 compared rows" in caption
