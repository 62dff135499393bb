"""Head view in Chromium: what is drawn, and how layer, head, hover, pin, pair filter and kind change it."""

from __future__ import annotations

import numpy as np
import pytest

import attnscope

from .browser_helpers import expected_lines, lines_drawn, pixels, random_attention, show, texts

pytestmark = pytest.mark.browser

LEFT, RIGHT = ".as-left .as-tok", ".as-right .as-tok"


@pytest.fixture
def pair_trace(make_trace):
    return make_trace(3, 4, 12, seed=5, sentence_b_start=7)


def test_every_token_label_head_swatch_and_line_is_drawn(page, tmp_path, pair_trace):
    view = attnscope.head_view(pair_trace)
    show(page, view, tmp_path / "h.html")
    assert texts(page, LEFT) == texts(page, RIGHT) == pair_trace.tokens["input"]
    assert texts(page, ".as-swatch") == ["0", "1", "2", "3"]
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, range(4)) > 100
    assert pixels(page, ".as-lines")["alpha"] > 2000


def test_changing_the_layer_redraws_that_layer(page, tmp_path, pair_trace):
    view = attnscope.head_view(pair_trace)
    show(page, view, tmp_path / "h.html")
    before = pixels(page, ".as-lines")["hash"]
    page.select_option(".as-bar select", label="2")
    assert lines_drawn(page) == expected_lines(view.payload, "self", 2, range(4))
    assert pixels(page, ".as-lines")["hash"] != before


def test_head_swatches_toggle_and_double_click_solos(page, tmp_path, pair_trace):
    view = attnscope.head_view(pair_trace)
    show(page, view, tmp_path / "h.html")
    page.click(".as-swatch >> text='0'")
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, [1, 2, 3])
    assert page.eval_on_selector_all(".as-swatch", "bs => bs.map(b => b.getAttribute('aria-pressed'))") == [
        "false", "true", "true", "true"]
    page.dblclick(".as-swatch >> text='2'")
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, [2])
    page.dblclick(".as-swatch >> text='2'")
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, range(4))
    for h in range(4):
        page.click(f".as-swatch >> text='{h}'")
    assert lines_drawn(page) == 0 and pixels(page, ".as-lines")["alpha"] == 0


def test_hovering_a_token_shows_only_its_lines_and_a_click_pins_it(page, tmp_path, pair_trace):
    view = attnscope.head_view(pair_trace, heads=[1, 3])
    show(page, view, tmp_path / "h.html")
    everything = lines_drawn(page)
    page.hover(f"{LEFT} >> nth=3")
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, [1, 3], row=3) < everything
    assert "as-on" in page.get_attribute(f"{LEFT} >> nth=3", "class")
    page.hover(f"{RIGHT} >> nth=5")
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, [1, 3], col=5)
    page.mouse.move(1300, 900)
    assert lines_drawn(page) == everything
    page.click(f"{LEFT} >> nth=4")
    page.hover(f"{LEFT} >> nth=8")
    page.mouse.move(1300, 900)
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, [1, 3], row=4)
    page.click(f"{LEFT} >> nth=4")
    page.mouse.move(1300, 900)
    assert lines_drawn(page) == everything


def test_pair_filter_shows_one_block_of_the_same_matrix(page, tmp_path, pair_trace):
    view = attnscope.head_view(pair_trace)
    show(page, view, tmp_path / "h.html")
    assert texts(page, ".as-seg-btn") == ["All", "A\u2192A", "A\u2192B", "B\u2192A", "B\u2192B"]
    page.click(".as-seg-btn >> text='A\u2192B'")
    tokens = pair_trace.tokens["input"]
    assert texts(page, LEFT) == tokens[:7] and texts(page, RIGHT) == tokens[7:]
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, range(4), rows=(0, 7), cols=(7, 12))
    page.click(".as-seg-btn >> text='B\u2192A'")
    assert texts(page, LEFT) == tokens[7:] and texts(page, RIGHT) == tokens[:7]
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, range(4), rows=(7, 12), cols=(0, 7))


def test_filter_given_in_python_applies_at_start(page, tmp_path, pair_trace):
    show(page, attnscope.head_view(pair_trace, filter="B->B"), tmp_path / "h.html")
    assert len(texts(page, LEFT)) == len(texts(page, RIGHT)) == 5
    assert page.get_attribute(".as-seg-btn >> text='B\u2192B'", "aria-pressed") == "true"


def test_kind_selector_switches_encoder_decoder_and_cross_token_columns(page, tmp_path):
    enc, dec = [f"e{i}" for i in range(9)], [f"d{i}" for i in range(4)]
    trace = attnscope.Trace.from_arrays(
        {"encoder": random_attention(2, 3, 9), "decoder": random_attention(2, 3, 4, causal=True),
         "cross": random_attention(2, 3, 4, 9)}, {"encoder": enc, "decoder": dec})
    view = attnscope.head_view(trace)
    show(page, view, tmp_path / "h.html")
    assert texts(page, LEFT) == enc and texts(page, RIGHT) == enc
    kind_select = page.locator(".as-field", has_text="Attention").locator("select")
    kind_select.select_option(label="Cross")
    assert texts(page, LEFT) == dec and texts(page, RIGHT) == enc
    assert lines_drawn(page) == expected_lines(view.payload, "cross", 0, range(3))
    kind_select.select_option(label="Decoder")
    assert texts(page, LEFT) == dec == texts(page, RIGHT)
    assert lines_drawn(page) == expected_lines(view.payload, "decoder", 0, range(3))


def test_prettified_tokens_keep_the_raw_token_on_hover(page, tmp_path, make_trace):
    raw = ["\u2581cat", "##ing", "\u2581the", "word</w>", "<0x0A>", "[CLS]"]  # byte-level BPE: test_token_labels.py
    show(page, attnscope.head_view(make_trace(1, 1, tokens=raw)), tmp_path / "h.html")
    assert texts(page, LEFT) == ["cat", "ing", "the", "word", "\u21b5", "[CLS]"]
    assert page.eval_on_selector_all(LEFT, "es => es.map(e => e.title)") == raw
    show(page, attnscope.head_view(make_trace(1, 1, tokens=raw), prettify=False), tmp_path / "raw.html")
    assert texts(page, LEFT) == raw


def test_dark_theme_draws_on_a_dark_background(page, tmp_path, make_trace):
    show(page, attnscope.head_view(make_trace(), theme="dark"), tmp_path / "h.html")
    assert page.get_attribute(".attnscope", "data-theme") == "dark"
    bg = page.eval_on_selector(".attnscope", "r => getComputedStyle(r).backgroundColor")
    assert sum(int(c) for c in bg[bg.index("(") + 1 : -1].split(",")[:3]) < 150


def test_a_pruned_trace_draws_its_kept_weights_and_states_the_kept_mass(page, tmp_path, make_trace):
    trace = make_trace(2, 2, 20, seed=4).prune(mass=0.8, top_k=5)
    view = attnscope.head_view(trace)
    show(page, view, tmp_path / "h.html")
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, range(2))
    caption = page.text_content(".as-caption")
    assert f"keeps {100 * trace.kept_mass():.1f}% of the attention" in caption
    spec = view.payload["kinds"]["self"]
    assert f"worst row {100 * spec['minKeptMass']:.1f}%" in caption
    assert np.isclose(spec["keptMass"], trace.kept_mass(), atol=1e-6)
