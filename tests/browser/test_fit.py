"""Views fit their container: in a notebook output, MLflow's artifact pane or a phone-sized column, the model view's
thumbnails shrink until every head shows and the neuron view's columns compress; nothing scrolls sideways; a
container that changes width lays the view out again."""

from __future__ import annotations

import numpy as np
import pytest

import attnscope

from .browser_helpers import random_attention, wait_drawn

pytestmark = pytest.mark.browser

WIDTHS = (400, 625, 946)  # a narrow column, MLflow's artifact pane, a JupyterLab notebook output


def open_in_box(page, tmp_path, view, width: int) -> None:
    """The view's notebook fragment inside a container ``width`` px wide, as an output area holds it."""
    path = tmp_path / "box.html"
    path.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin: 8px">'
                    f'<div id="box" style="width: {width}px">{view.fragment()}</div></body></html>', encoding="utf-8")
    page.goto(path.as_uri())
    wait_drawn(page)


def overflow(page) -> dict:
    """Widths that would scroll sideways: the view's root, the container and the page, and the elements of the view
    whose box sticks out of the container."""
    return page.evaluate(
        """() => {
            const box = document.getElementById('box'), root = box.querySelector('.attnscope[data-view]');
            const edge = box.getBoundingClientRect().right + 0.5;
            const out = [...root.querySelectorAll('canvas, .as-thumb, .as-col, .as-bar, .as-nh')]
                .filter((e) => e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().right > edge)
                .map((e) => e.className || e.tagName);
            return {root: root.scrollWidth - root.clientWidth, box: box.scrollWidth - box.clientWidth,
                    page: document.documentElement.scrollWidth - document.documentElement.clientWidth, out};
        }"""
    )


def thumbs_inside(page) -> tuple[int, int]:
    """(thumbnails whose whole box lies inside the container, thumbnails)."""
    return tuple(page.evaluate(
        """() => {
            const box = document.getElementById('box').getBoundingClientRect();
            const cells = [...document.querySelectorAll('.attnscope[data-view=model] .as-thumb')];
            const inside = cells.filter((c) => { const r = c.getBoundingClientRect();
                return r.width > 0 && r.left >= box.left - 0.5 && r.right <= box.right + 0.5; });
            return [inside.length, cells.length];
        }"""
    ))


@pytest.mark.parametrize("width", WIDTHS)
def test_the_model_view_shows_every_head_inside_its_container(page, tmp_path, width):
    for heads in (12, 32):
        trace = attnscope.Trace.from_arrays(random_attention(4, heads, 20), [f"w{i}" for i in range(20)])
        open_in_box(page, tmp_path, attnscope.model_view(trace), width)
        assert overflow(page) == {"root": 0, "box": 0, "page": 0, "out": []}
        assert thumbs_inside(page) == (4 * heads, 4 * heads)


def test_the_model_view_keeps_its_size_on_a_wide_page(page, tmp_path, minilm_trace):
    open_in_box(page, tmp_path, attnscope.model_view(minilm_trace), 1300)
    side = page.eval_on_selector(".as-thumb", "c => c.getBoundingClientRect().width")
    assert side == 69  # min(84, 880 / 12 - 4): the size it always had where there is room


@pytest.mark.parametrize("width", WIDTHS)
def test_the_neuron_view_compresses_its_columns_to_fit(page, tmp_path, minilm_trace, width):
    open_in_box(page, tmp_path, attnscope.neuron_view(minilm_trace, layer=2, head=3, query=4), width)
    assert overflow(page) == {"root": 0, "box": 0, "page": 0, "out": []}
    assert page.eval_on_selector(".as-kvec", "c => c.getContext('2d').getImageData(0, 0, c.width, c.height)"
                                 ".data.filter((v, i) => i % 4 === 3 && v > 0).length") > 1000  # still drawn
    weights = page.eval_on_selector(".attnscope[data-view=neuron]", "r => r.attnscope.current().weights")
    assert np.allclose(weights, minilm_trace.row(2, 3, 4), atol=2e-3)


def test_a_container_that_narrows_or_widens_lays_the_views_out_again(page, tmp_path, minilm_trace):
    for view in (attnscope.model_view(minilm_trace), attnscope.neuron_view(minilm_trace, layer=1, head=0)):
        open_in_box(page, tmp_path, view, 1200)
        wide = page.eval_on_selector(".attnscope[data-view] canvas", "c => c.getBoundingClientRect().width")
        page.eval_on_selector("#box", "b => { b.style.width = '420px'; }")
        page.wait_for_function("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
                               " && [...document.querySelectorAll('#box canvas')].every((c) =>"
                               " c.getBoundingClientRect().right <= document.getElementById('box')"
                               ".getBoundingClientRect().right + 0.5)")
        assert overflow(page)["out"] == []
        if view.name == "model":
            assert thumbs_inside(page) == (72, 72)
        page.eval_on_selector("#box", "b => { b.style.width = '1200px'; }")
        page.wait_for_function("w => document.querySelector('.attnscope[data-view] canvas')"
                               ".getBoundingClientRect().width === w", arg=wide)
