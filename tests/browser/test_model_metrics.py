"""Model view coloured and sorted by a head metric, in Chromium: frame colours follow the values, sorting moves the
thumbnails and their buttons, the legend gives the range, tooltips name each head's pattern label."""

from __future__ import annotations

import numpy as np
import pytest

import attnscope
from attnscope.analysis import head_metrics

from .browser_helpers import pixels, show, texts, thumb_pixels

pytestmark = pytest.mark.browser

ROOT = ".attnscope[data-view=model]"
RAMP_END = {"light": [128, 0, 38], "dark": [254, 224, 139]}  # the metric ramp's high end (model.js, figures/model.py)


def frame_rgb(page, li: int, hi: int) -> list[int]:
    """The colour of thumbnail (li, hi)'s frame: the first device pixel of its cell, outside the heatmap."""
    return page.evaluate(
        """([li, hi]) => {
            const r = document.querySelector('.attnscope[data-view=model]'), f = r.attnscope.probe.cell(li, hi).frame;
            const ctx = r.querySelector('canvas.as-thumbs').getContext('2d');
            return Array.from(ctx.getImageData(f.x + 1, f.y + 1, 1, 1).data.slice(0, 3));
        }""",
        [int(li), int(hi)],
    )


def legend_rgb(page) -> list[list[int]]:
    """The 128 colours of the metric legend, low to high."""
    return page.evaluate(
        """() => { const c = document.querySelector('canvas.as-metric-bar'), d = c.getContext('2d').getImageData(0, 0, 128, 1).data;
                   return Array.from({length: 128}, (_, x) => Array.from(d.slice(4 * x, 4 * x + 3))); }"""
    )


def values(view, name: str, kind: str = "self") -> np.ndarray:
    """``[layers, heads]`` values of one metric as the payload carries them (None -> NaN)."""
    return np.array(view.payload["kinds"][kind]["metrics"]["values"][name], dtype=float)


def choose(page, metric: str) -> None:
    page.locator(".as-field", has_text="Colour by").locator("select").select_option(label=metric)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_colour_by_a_metric_paints_each_frame_at_its_value_on_the_legend(page, tmp_path, make_trace, theme):
    trace = make_trace(3, 4, 10, causal=True, seed=4)
    view = attnscope.model_view(trace, theme=theme)
    show(page, view, tmp_path / "m.html")
    assert page.locator("canvas.as-metric-bar").count() == 0  # no metric chosen: no frames, no second legend
    assert page.is_disabled(".as-toggle")
    choose(page, "entropy")
    ent = values(view, "entropy")
    lo, top_value = ent.min(), ent.max()
    legend = np.array(legend_rgb(page))
    assert legend[-1].tolist() == RAMP_END[theme]
    assert texts(page, ".as-mmin") == [f"{lo:.3g}"] and texts(page, ".as-mmax") == [f"{top_value:.3g}"]
    top, bottom = np.unravel_index(ent.argmax(), ent.shape), np.unravel_index(ent.argmin(), ent.shape)
    assert frame_rgb(page, *top) == legend[-1].tolist()  # the highest-entropy head gets the legend's max colour
    assert frame_rgb(page, *bottom) == legend[0].tolist()
    for li in range(3):
        for hi in range(4):  # every frame sits where its value falls on the legend
            nearest = int(np.abs(legend - np.array(frame_rgb(page, li, hi))).sum(1).argmin())
            assert abs(nearest - (ent[li, hi] - lo) / (top_value - lo) * 127) <= 2
    assert len({tuple(frame_rgb(page, li, hi)) for li in range(3) for hi in range(4)}) == 12
    choose(page, "previous")  # another metric repaints the frames from its own values
    prev = values(view, "previous")
    top = np.unravel_index(prev.argmax(), prev.shape)
    assert frame_rgb(page, *top) == RAMP_END[theme]
    choose(page, "none")
    assert page.locator("canvas.as-metric-bar").count() == 0 and page.locator("canvas").count() == 2


def test_frames_leave_every_thumbnail_drawn(page, tmp_path, make_trace):
    trace = make_trace(2, 3, 10, seed=1)
    show(page, attnscope.model_view(trace, metric="max"), tmp_path / "m.html")
    for li in range(2):
        for hi in range(3):
            px = thumb_pixels(page, li, hi)
            assert (px["rows"], px["cols"]) == (10, 10) and px["ink"] > 50 * (px["w"] // 10) ** 2


def test_sort_orders_each_layers_heads_by_the_metric_and_names_them(page, tmp_path, make_trace):
    trace = make_trace(3, 5, 12, causal=True, seed=7)
    view = attnscope.model_view(trace, metric="entropy")
    show(page, view, tmp_path / "m.html")
    ent = values(view, "entropy")
    before = {(li, hi): thumb_pixels(page, li, hi)["hash"] for li in range(3) for hi in range(5)}

    def lefts(li):
        return page.eval_on_selector_all(f".as-thumb[data-li='{li}']", "bs => bs.map(b => b.getBoundingClientRect().left)")

    assert [np.argsort(lefts(li)).tolist() for li in range(3)] == [list(range(5))] * 3
    page.click(".as-toggle")
    assert page.get_attribute(".as-toggle", "aria-pressed") == "true"
    for li in range(3):
        order = np.argsort(-ent[li], kind="stable").tolist()
        assert np.argsort(lefts(li)).tolist() == order  # the buttons moved: highest entropy leftmost
        xs = [page.evaluate(f"() => document.querySelector('{ROOT}').attnscope.probe.cell({li}, {h}).x") for h in order]
        assert xs == sorted(xs)  # and so did the painted thumbnails
        assert texts(page, f".as-thumb[data-li='{li}'] .as-hnum") == ["0", "1", "2", "3", "4"]  # DOM order kept
    for (li, hi), h in before.items():
        assert thumb_pixels(page, li, hi)["hash"] == h  # each head drawn as before, in its new place
    assert texts(page, ".as-hlabel") == ["#1", "#2", "#3", "#4", "#5"] and texts(page, ".as-corner") == ["L \\ rank"]
    page.click(".as-thumb[data-li='1'][data-hi='1']")  # the head view opened is the one clicked, wherever it sits
    assert page.text_content(".as-detail-title") == "Layer 1 \u00b7 head 1"
    page.click(".as-toggle")
    assert [np.argsort(lefts(li)).tolist() for li in range(3)] == [list(range(5))] * 3
    assert texts(page, ".as-hlabel") == ["0", "1", "2", "3", "4"] and page.locator(".as-hnum").count() == 0


def test_sort_option_starts_sorted_and_the_tooltip_names_the_label_and_metrics(page, tmp_path, make_trace):
    trace = make_trace(2, 4, 9, causal=True, seed=3)
    view = attnscope.model_view(trace, metric="distance", sort=True)
    show(page, view, tmp_path / "m.html")
    assert page.get_attribute(".as-toggle", "aria-pressed") == "true"
    records = {(r["layer"], r["head"]): r for r in head_metrics(trace)}
    for li in range(2):
        for hi in range(4):
            title = page.get_attribute(f".as-thumb[data-li='{li}'][data-hi='{hi}']", "title")
            rec = records[li, hi]
            assert title.startswith(f"layer {li} \u00b7 head {hi} \u00b7 {rec['label']}\ndistance {rec['distance']:.3g}")
            assert f"entropy {rec['entropy']:.3g}" in title and title.endswith("click for its head view")
    dist = values(view, "distance")
    first = page.eval_on_selector_all(".as-thumb[data-li='0']", "bs => bs.map(b => b.getBoundingClientRect().left)")
    assert int(np.argmin(first)) == int(dist[0].argmax())


def test_cross_attention_frames_metrics_that_do_not_apply_in_the_grid_colour(page, tmp_path):
    rng = np.random.default_rng(0)

    def att(q, k):
        w = rng.random((1, 3, q, k)).astype(np.float32) ** 4
        return w / w.sum(-1, keepdims=True)

    trace = attnscope.Trace.from_arrays({"encoder": att(6, 6), "decoder": att(3, 3), "cross": att(3, 6)},
                                        {"encoder": list("abcdef"), "decoder": list("xyz")})
    view = attnscope.model_view(trace, kind="cross", metric="distance", theme="light")
    assert view.payload["kinds"]["cross"]["metrics"]["values"]["distance"] == [[None, None, None]]
    show(page, view, tmp_path / "m.html")
    grid = [0xD8, 0xDE, 0xE4]  # THEMES.light.grid: "does not apply"
    assert [frame_rgb(page, 0, h) for h in range(3)] == [grid] * 3
    assert "distance n/a" in page.get_attribute(".as-thumb[data-hi='0']", "title")
    choose(page, "max")  # max applies to cross-attention: coloured again
    assert frame_rgb(page, 0, int(np.argmax(values(view, "max", "cross")[0]))) == RAMP_END["light"]
    assert pixels(page, "canvas.as-thumbs")["ink"] > 0

