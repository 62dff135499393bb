"""Model view in Chromium: a thumbnail per layer x head, labels, click to enlarge, filters, long inputs."""

from __future__ import annotations

import pytest

import attnscope

from .browser_helpers import expected_lines, lines_drawn, pixels, random_attention, show, texts, thumb_pixels

pytestmark = pytest.mark.browser

DETAIL = ".as-detail .attnscope[data-view=head]"


def test_every_layer_and_head_gets_a_drawn_thumbnail_and_a_label(page, tmp_path, make_trace):
    show(page, attnscope.model_view(make_trace(3, 4, 10, seed=2)), tmp_path / "m.html")
    assert page.locator(".as-thumb").count() == 12
    assert texts(page, ".as-hlabel") == ["0", "1", "2", "3"]
    assert texts(page, ".as-llabel") == ["0", "1", "2"]
    hashes = set()
    for i in range(12):
        px = thumb_pixels(page, *divmod(i, 4))
        assert (px["rows"], px["cols"]) == (10, 10) and px["w"] == px["h"] >= 60  # 10 x 10 blocks of >= 6 px
        assert px["ink"] > 50 * (px["w"] // 10) ** 2
        hashes.add(px["hash"])
    assert len(hashes) == 12  # every head drawn from its own weights
    assert page.locator("canvas").count() == 2  # the grid and the colour scale: no canvas per head


def test_clicking_a_thumbnail_opens_that_head_as_a_head_view(page, tmp_path, make_trace):
    view = attnscope.model_view(make_trace(3, 4, 10, seed=2))
    show(page, view, tmp_path / "m.html")
    assert page.locator(".as-detail").is_hidden()
    page.click(".as-thumb >> nth=6")  # layer 1, head 2
    assert page.locator(".as-detail").is_visible()
    assert page.text_content(".as-detail-title") == "Layer 1 \u00b7 head 2"
    assert "as-picked" in page.get_attribute(".as-thumb >> nth=6", "class")
    assert lines_drawn(page, DETAIL) == expected_lines(view.payload, "self", 1, [2]) > 0
    assert pixels(page, ".as-detail .as-lines")["alpha"] > 500
    pressed = page.eval_on_selector_all(".as-detail .as-swatch", "bs => bs.map(b => b.getAttribute('aria-pressed'))")
    assert pressed == ["false", "false", "true", "false"]
    page.click(".as-thumb >> nth=11")
    assert page.text_content(".as-detail-title") == "Layer 2 \u00b7 head 3"
    assert lines_drawn(page, DETAIL) == expected_lines(view.payload, "self", 2, [3])
    page.click(".as-close")
    assert page.locator(".as-detail").is_hidden()


def test_pair_filter_crops_every_thumbnail_and_the_detail(page, tmp_path, make_trace):
    view = attnscope.model_view(make_trace(2, 2, 10, sentence_b_start=6))
    show(page, view, tmp_path / "m.html")
    page.click(".as-thumb >> nth=1")
    page.click(".as-bar .as-seg-btn >> text='A\u2192B'")
    px = thumb_pixels(page, 0, 0)
    assert (px["cols"], px["rows"]) == (4, 6)
    assert len(texts(page, ".as-detail .as-left .as-tok")) == 6
    assert len(texts(page, ".as-detail .as-right .as-tok")) == 4
    assert lines_drawn(page, DETAIL) == expected_lines(view.payload, "self", 0, [1], rows=(0, 6), cols=(6, 10))


def test_long_inputs_draw_pooled_thumbnails_and_full_detail(page, tmp_path, make_trace):
    trace = make_trace(2, 2, 300, seed=1)
    view = attnscope.model_view(trace, thumb_size=60)
    assert "thumb" not in view.payload["kinds"]["self"]  # pooled in the browser
    show(page, view, tmp_path / "m.html")
    px = thumb_pixels(page, 1, 1)
    assert (px["rows"], px["cols"]) == (60, 60) and px["ink"] > 1000
    page.click(".as-thumb >> nth=3")
    assert len(texts(page, ".as-detail .as-left .as-tok")) == 40  # a scrolling window of the 300 tokens
    assert page.get_attribute(DETAIL, "data-window") == "0,40"
    assert lines_drawn(page, DETAIL) == expected_lines(view.payload, "self", 1, [1], rows=(0, 40), cols=(0, 40))
    # a "pruned" trace that keeps every weight ships thumbnails pooled in Python: the same pixels
    everything = attnscope.model_view(trace.prune(mass=1.0, top_k=300), thumb_size=60)
    assert everything.payload["kinds"]["self"]["thumb"]["block"] == 5
    show(page, everything, tmp_path / "pruned.html")
    assert thumb_pixels(page, 1, 1) == px
    assert "pruned: keeps 100.0% of the attention" in page.text_content(".as-caption")


def test_kind_selector_switches_the_grid_to_cross_attention(page, tmp_path):
    trace = attnscope.Trace.from_arrays(
        {"encoder": random_attention(2, 3, 9), "decoder": random_attention(1, 3, 4, causal=True),
         "cross": random_attention(1, 3, 4, 9)}, {"encoder": list("abcdefghi"), "decoder": list("wxyz")})
    show(page, attnscope.model_view(trace), tmp_path / "m.html")
    assert page.locator(".as-thumb").count() == 6
    page.locator(".as-field", has_text="Attention").locator("select").select_option(label="Cross")
    assert page.locator(".as-thumb").count() == 3
    px = thumb_pixels(page, 0, 0)
    assert (px["cols"], px["rows"]) == (9, 4)


def test_dark_theme_paints_thumbnails_from_the_dark_scale(page, tmp_path, make_trace):
    trace = make_trace(1, 1, 8)
    show(page, attnscope.model_view(trace, theme="light"), tmp_path / "light.html")
    light = thumb_pixels(page, 0, 0)
    show(page, attnscope.model_view(trace, theme="dark"), tmp_path / "dark.html")
    dark = thumb_pixels(page, 0, 0)
    assert light["hash"] != dark["hash"] and page.get_attribute(".attnscope", "data-theme") == "dark"
