"""Long inputs in Chromium: pruned payloads decoded lazily and exactly, windows of tokens, search, thumbnails."""

from __future__ import annotations

import base64
import dataclasses
import time

import numpy as np
import pytest

import attnscope
from attnscope import codec
from attnscope.encode import VALUE_BYTES, dequantize
from attnscope.synthetic import synthetic_trace

from .browser_helpers import (
    expected_lines,
    lines_drawn,
    pixels,
    show,
    texts,
    thumb_pixels,
)

pytestmark = pytest.mark.browser

N = 2048
HEAD = ".attnscope[data-view=head]"
DETAIL = ".as-detail .attnscope[data-view=head]"


@pytest.fixture(scope="module")
def long_trace():
    """A pruned causal trace of 2048 tokens, 4 layers x 4 heads, with two tokens to search for."""
    trace = synthetic_trace(N, layers=4, heads=4, seed=3)
    tokens = list(trace.tokens["input"])
    tokens[700], tokens[1500] = "zanzibarian", "Zanzibar"
    return dataclasses.replace(trace, tokens={"input": tokens})


def probe(page, method: str, *args, root: str = ".attnscope[data-view]"):
    return page.evaluate(f"([r, a]) => document.querySelector(r).attnscope.probe.{method}(...a)", [root, list(args)])


def window(page, root: str = HEAD) -> tuple[int, ...]:
    return tuple(int(x) for x in page.get_attribute(root, "data-window").split(","))


def test_model_view_draws_every_thumbnail_without_decoding_a_head_and_enlarges_one(page, tmp_path, long_trace):
    view = attnscope.model_view(long_trace)
    spec = view.payload["kinds"]["self"]
    assert spec["form"] == "pruned" and spec["thumb"]["block"] == 32
    show(page, view, tmp_path / "m.html")
    assert page.locator(".as-thumb").count() == 16
    thumbs = [thumb_pixels(page, li, hi) for li in range(4) for hi in range(4)]
    assert all((t["rows"], t["cols"]) == (64, 64) and t["ink"] > 500 for t in thumbs)
    assert len({t["hash"] for t in thumbs}) == 16
    assert probe(page, "decoded") == 0  # the grid is drawn from the pooled thumbnails alone
    page.click(".as-thumb >> nth=9")  # layer 2, head 1
    assert page.text_content(".as-detail-title") == "Layer 2 \u00b7 head 1"
    assert probe(page, "decoded") == 1  # the detail decoded that head only
    assert window(page, DETAIL) == (0, 40)
    assert lines_drawn(page, DETAIL) == expected_lines(view.payload, "self", 2, [1], rows=(0, 40), cols=(0, 40)) > 40
    caption = page.text_content(".as-caption")
    kept = f"keeps {100 * long_trace.kept_mass():.1f}% of the attention on average, worst row 95.0%"
    assert kept in caption and "(rows as pruned in the trace)" in caption
    assert page.locator(".attnscope[data-view=model] > .as-bar .as-badge").is_visible()


@pytest.mark.parametrize("dtype", ["uint8", "float16"])
def test_rows_decoded_in_the_page_are_the_quantized_rows_python_wrote(page, tmp_path, long_trace, dtype):
    view = attnscope.head_view(long_trace, dtype=dtype)
    spec = view.payload["kinds"]["self"]
    show(page, view, tmp_path / "h.html")
    for layer, head, i in [(0, 0, 0), (1, 2, 1), (3, 3, N - 1), (2, 1, 1500)]:
        got = probe(page, "row", "self", layer, head, i)
        counts, indices, values = codec.unpack(spec["data"][layer][head], N, VALUE_BYTES[spec["dtype"]])
        a = int(counts[:i].sum())
        want = dequantize(values, spec["dtype"])[a : a + counts[i]]
        assert got["indices"] == indices[a : a + counts[i]].tolist()
        np.testing.assert_allclose(got["values"], want, rtol=1e-6, atol=0)
        exact = long_trace.row(layer, head, i)[got["indices"]]  # within half a quantization step of the trace
        if dtype == "uint8":
            assert np.abs(np.sqrt(got["values"]) - np.sqrt(exact)).max() <= 0.5 / 255 + 1e-6
        else:
            np.testing.assert_allclose(got["values"], exact, rtol=1e-3, atol=1e-7)


def test_dense_rows_decoded_in_the_page_match_too(page, tmp_path, make_trace):
    view = attnscope.head_view(make_trace(1, 2, 30, seed=8))
    show(page, view, tmp_path / "h.html")
    got = probe(page, "row", "self", 0, 1, 17)
    assert got["indices"] is None
    want = dequantize(base64.b64decode(view.payload["kinds"]["self"]["data"][0][1]), "sqrt8")
    np.testing.assert_allclose(got["values"], want.reshape(30, 30)[17], rtol=1e-6, atol=0)


def test_head_view_keeps_a_window_of_labels_and_draws_lines_between_tokens_on_screen(page, tmp_path, long_trace):
    view = attnscope.head_view(long_trace)
    show(page, view, tmp_path / "h.html")
    assert page.locator(".as-left .as-tok").count() == page.locator(".as-right .as-tok").count() == 40
    assert window(page) == (0, 40)
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, range(4), rows=(0, 40), cols=(0, 40)) > 100
    page.eval_on_selector(".as-scroll", "s => { s.scrollTop = 1000 * 18; }")
    page.wait_for_function(f"() => document.querySelector('{HEAD}').dataset.window === '1000,1040'")
    assert texts(page, ".as-left .as-tok") == long_trace.tokens["input"][1000:1040]
    assert page.locator(".as-left .as-tok").count() == 40  # only the labels on screen exist
    on_screen = expected_lines(view.payload, "self", 0, range(4), rows=(1000, 1040), cols=(1000, 1040))
    assert lines_drawn(page) == on_screen
    # hovering a token shows all its lines: those to keys off screen (the first token, far keys) end at the edge
    page.hover(".as-left .as-tok[data-i='1020']")
    everything = expected_lines(view.payload, "self", 0, range(4), row=1020)
    assert lines_drawn(page) == everything > expected_lines(view.payload, "self", 0, range(4), row=1020,
                                                            cols=(1000, 1040))


def test_search_jumps_to_the_token_and_pins_its_lines(page, tmp_path, long_trace):
    view = attnscope.head_view(long_trace)
    show(page, view, tmp_path / "h.html")
    page.fill(".as-search-input", "zanzibar")  # typing finds the first match at or after the window's top
    assert page.text_content(".as-search-count") == "1 / 2"
    assert "as-match" in page.get_attribute(".as-left .as-tok[data-i='700']", "class")
    page.keyboard.press("Enter")
    assert page.text_content(".as-search-count") == "2 / 2"
    token = page.locator(".as-left .as-tok[data-i='1500']")
    assert token.text_content() == "Zanzibar" and "as-match" in token.get_attribute("class")
    box, frame = token.bounding_box(), page.locator(".as-scroll").bounding_box()
    assert frame["y"] <= box["y"] and box["y"] + box["height"] <= frame["y"] + frame["height"]
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, range(4), row=1500)
    page.mouse.move(1300, 900)  # the match stays pinned when the mouse leaves
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, range(4), row=1500)
    page.keyboard.press("Shift+Enter")
    assert page.text_content(".as-search-count") == "1 / 2" and window(page)[0] <= 700 < window(page)[1]
    page.fill(".as-search-input", "no such token")
    assert page.text_content(".as-search-count") == "no match"


def test_changing_the_layer_redraws_the_window(page, tmp_path, long_trace):
    view = attnscope.head_view(long_trace)
    show(page, view, tmp_path / "h.html")
    before = pixels(page, ".as-lines")["hash"]
    page.select_option(".as-bar select", label="2")
    assert lines_drawn(page) == expected_lines(view.payload, "self", 2, range(4), rows=(0, 40), cols=(0, 40))
    assert pixels(page, ".as-lines")["hash"] != before
    assert probe(page, "decoded", root=HEAD) == 8  # layers 0 and 2, four heads each


def test_matrix_view_shows_a_window_beside_a_pooled_overview_of_the_head(page, tmp_path, long_trace):
    root = ".attnscope[data-view=matrix]"
    view = attnscope.matrix_view(long_trace, layer=1, head=3)
    show(page, view, tmp_path / "x.html")
    assert window(page, root) == (0, 64, 0, 64)
    heat, overview = pixels(page, ".as-heat"), pixels(page, ".as-overview")
    assert (heat["w"], heat["h"]) == (64, 64) and heat["ink"] > 200
    assert (overview["w"], overview["h"]) == (228, 228) and overview["ink"] > 2000  # 2048 tokens in blocks of 9
    assert len(texts(page, ".as-mrows .as-mlabel")) == 64
    box = page.locator(".as-overview").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.75)  # centre the window there
    r0, r1, c0, c1 = window(page, root)
    assert (r1 - r0, c1 - c0) == (64, 64) and abs(r0 + 32 - 1536) < 12 and abs(c0 + 32 - 1024) < 12
    assert pixels(page, ".as-heat")["hash"] != heat["hash"]
    hb = page.locator(".as-heat").bounding_box()
    cell = hb["width"] / 64
    page.mouse.move(hb["x"] + cell * 40.5, hb["y"] + cell * 63.5)  # hover the window's last row, column 40
    i, j = (int(x) for x in page.get_attribute(root, "data-hover").split(","))
    assert (i, j) == (r0 + 63, c0 + 40)
    weight = float(page.text_content(".as-tip").splitlines()[2].split()[1])
    assert weight == pytest.approx(float(long_trace.row(1, 3, i)[j]), abs=5e-4)


@pytest.mark.slow
def test_4096_tokens_32x32_model_view_draws_fast_and_enlarges(page, tmp_path, record_property):
    trace = synthetic_trace(4096)
    t = time.perf_counter()
    view = attnscope.model_view(trace)
    path = view.save(tmp_path / "big.html")
    record_property("build_s", round(time.perf_counter() - t, 1))
    record_property("html_mb", round(path.stat().st_size / 1e6, 1))
    assert path.stat().st_size <= 100e6
    spec = view.payload["kinds"]["self"]
    assert spec["keptMass"] >= 0.95 and spec["minKeptMass"] >= 0.95 - 1e-6
    page.goto(path.as_uri())
    page.wait_for_function("() => document.querySelector('.attnscope').dataset.state === 'drawn'", timeout=120_000)
    drawn_ms = float(page.get_attribute(".attnscope", "data-drawn-ms"))
    record_property("drawn_ms", drawn_ms)
    assert drawn_ms < 30_000  # the goal is 5 s; a shared test machine gets room
    assert page.locator(".as-thumb").count() == 1024 and thumb_pixels(page, 31, 31)["ink"] > 100
    page.click(".as-thumb[data-li='20'][data-hi='7']")
    assert probe(page, "decoded") == 1
    assert lines_drawn(page, DETAIL) == expected_lines(view.payload, "self", 20, [7], rows=(0, 40), cols=(0, 40))
