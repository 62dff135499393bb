"""The atlas view in Chromium: the grid is painted in each head's colour, hovering shows a head's distribution,
clicking lists its exemplar texts and opens their head views (embedded in the file, or captured by the web app),
and two atlases show B - A."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from attnscope.corpus import build, fortune_texts
from attnscope.views import atlas_view
from served import free_port, serving

from .browser_helpers import pixels, show

pytestmark = pytest.mark.browser

ROOT = ".attnscope[data-view=atlas]"
RAMP = {"low": [254, 217, 118], "high": [128, 0, 38]}  # the metric ramp's ends, light theme (model.js, atlas.js)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two atlases of MiniLM on different short fortunes, in a folder the web app serves as --traces."""
    root = tmp_path_factory.mktemp("atlases")
    texts = [t for t in fortune_texts() if len(t.split()) <= 25][:20]
    (root / "a.txt").write_text("\n".join(texts[:10]) + "\n")
    (root / "b.txt").write_text("\n".join(texts[10:]) + "\n")
    for name in ("a", "b"):
        build("minilm", root / f"{name}.txt", root / "atlases" / name, engine="local", shard_size=5, top_k=3)
    return root


@pytest.fixture(scope="module")
def a(folder):
    from attnscope.corpus import load

    return load(folder / "atlases" / "a")


@pytest.fixture(scope="module")
def b(folder):
    from attnscope.corpus import load

    return load(folder / "atlases" / "b")


def cell_rgb(page, li: int, hi: int) -> list[int]:
    return page.evaluate(
        """([li, hi]) => {
            const r = document.querySelector('.attnscope[data-view=atlas]'), c = r.attnscope.probe.cell(li, hi);
            const ctx = r.querySelector('canvas.as-atlas-cells').getContext('2d');
            return Array.from(ctx.getImageData(c.x + (c.size >> 1), c.y + (c.size >> 1), 1, 1).data.slice(0, 3));
        }""",
        [li, hi],
    )


def point(page, li: int, hi: int) -> tuple[float, float]:
    """Where head (li, hi) is on the page (its cell's centre)."""
    c = page.evaluate(f"() => document.querySelector('{ROOT}').attnscope.probe.cell({li}, {hi}).css")
    box = page.query_selector(f"{ROOT} canvas.as-atlas-cells").bounding_box()
    return box["x"] + c["x"], box["y"] + c["y"]


def test_the_grid_paints_each_head_in_the_colour_of_its_corpus_statistic(page, tmp_path, a):
    show(page, atlas_view(a, metric="previous", embed=0, theme="light"), tmp_path / "atlas.html")
    grid = a.grid("previous")
    hi_at = np.unravel_index(np.nanargmax(grid), grid.shape)
    lo_at = np.unravel_index(np.nanargmin(grid), grid.shape)
    assert cell_rgb(page, *map(int, hi_at)) == RAMP["high"]
    assert cell_rgb(page, *map(int, lo_at)) == RAMP["low"]
    drawn = pixels(page, f"{ROOT} canvas.as-atlas-cells")
    assert drawn["ink"] > 0.5 * drawn["w"] * drawn["h"] * 0.5
    colours = {tuple(cell_rgb(page, li, h)) for li in range(6) for h in range(12)}
    assert len(colours) > 20  # 72 heads, not one flat colour
    before = drawn["hash"]
    page.select_option(f"{ROOT} select >> nth=0", label="sink")  # "Colour by"
    assert pixels(page, f"{ROOT} canvas.as-atlas-cells")["hash"] != before
    sink = a.grid("sink")
    assert cell_rgb(page, *map(int, np.unravel_index(np.nanargmax(sink), sink.shape))) == RAMP["high"]
    assert page.text_content(f"{ROOT} .as-mmax") == _num(np.nanmax(sink))


def test_hover_click_and_exemplars_open_their_head_views(page, tmp_path, a):
    grid = a.grid("previous")
    li, hi = map(int, np.unravel_index(np.nanargmax(grid), grid.shape))
    show(page, atlas_view(a, metric="previous", embed=1), tmp_path / "atlas.html")
    page.mouse.move(*point(page, 0, 0))
    page.mouse.move(*point(page, li, hi))
    info = page.text_content(f"{ROOT} .as-atlas-stats")
    assert info.startswith(f"layer {li} · head {hi}") and f"mean {_num(grid[li, hi])}" in info
    assert page.get_attribute(f"{ROOT} canvas.as-atlas-hist", "data-head") == f"{li},{hi}"
    assert pixels(page, f"{ROOT} canvas.as-atlas-hist")["ink"] > 0
    page.mouse.click(*point(page, li, hi))
    items = page.query_selector_all(f"{ROOT} .as-exemplar")
    top = a.top(li, hi, "previous")
    assert len(items) == len(top) == 3
    for item, tokens in zip(items, top.tokens):  # a window of the text's tokens (word pieces without ##)
        words = item.query_selector(".as-exemplar-text").text_content().replace("\u2026", " ").split()
        assert words and " ".join(words) in " ".join(t.removeprefix("##") for t in tokens)
    assert items[0].query_selector(".as-peak-q") is not None and items[0].query_selector(".as-peak-k") is not None
    items[0].click()  # the top exemplar of the head highest on the metric is embedded (embed=1)
    page.wait_for_selector(f"{ROOT} .as-atlas-detail .attnscope[data-view=head] canvas")
    assert int(page.get_attribute(f"{ROOT} .as-atlas-detail .attnscope[data-view=head]", "data-lines") or 0) > 0
    assert page.text_content(f"{ROOT} .as-detail-title") == f"Text {top.text_id.iloc[0]} · layer {li} · head {hi}"
    not_embedded = [i for i, t in enumerate(top.text_id) if t != top.text_id.iloc[0]]
    items[not_embedded[0]].click()
    assert "not in this file" in page.text_content(f"{ROOT} .as-atlas-detail")


def test_two_atlases_show_b_minus_a_in_blue_and_orange(page, tmp_path, a, b):
    show(page, atlas_view(a, b, metric="previous", embed=0, theme="light"), tmp_path / "compare.html")
    delta = b.grid("previous") - a.grid("previous")
    up = tuple(map(int, np.unravel_index(np.nanargmax(delta), delta.shape)))
    down = tuple(map(int, np.unravel_index(np.nanargmin(delta), delta.shape)))
    r, g, bl = cell_rgb(page, *up)
    assert bl > r and delta[up] > 0  # B higher: blue
    r, g, bl = cell_rgb(page, *down)
    assert r > bl and delta[down] < 0  # A higher: orange
    page.click(f"{ROOT} .as-seg-btn >> text=A")
    grid = a.grid("previous")
    assert cell_rgb(page, *map(int, np.unravel_index(np.nanargmax(grid), grid.shape))) == RAMP["high"]


def test_the_web_app_atlas_page_captures_a_clicked_exemplar(page, folder, a):
    port = free_port()
    command = [str(Path(sys.executable).with_name("attnscope")), "serve", "--port", str(port), "--traces", str(folder)]
    with serving(command, port) as (url, _):
        page.goto(f"{url}/atlas")
        page.wait_for_selector(f"#view {ROOT}[data-state=drawn]", timeout=60_000)
        assert page.eval_on_selector_all("#atlas option", "os => os.map(o => o.value)") == ["atlases/a", "atlases/b"]
        grid = a.grid("previous")
        li, hi = map(int, np.unravel_index(np.nanargmax(grid), grid.shape))
        page.mouse.click(*point(page, li, hi))
        page.click(f"{ROOT} .as-exemplar >> nth=1")  # not embedded: the page captures it with the atlas's model
        page.wait_for_selector(f"{ROOT} .as-atlas-detail .attnscope[data-view=head][data-state=drawn]", timeout=60_000)
        head = f"{ROOT} .as-atlas-detail .attnscope[data-view=head]"
        assert int(page.get_attribute(head, "data-lines") or 0) > 0
        page.select_option("#other", "atlases/b")
        page.click("#open")
        page.wait_for_selector(f"#view {ROOT} .as-seg-btn[aria-pressed=true]", timeout=60_000)
        assert page.text_content(f"#view {ROOT} .as-seg-btn[aria-pressed=true]") == "B \u2212 A"
        assert "other=atlases%2Fb" in page.url  # a link to this comparison


def _num(v: float) -> str:
    """As atlas.js writes numbers (model.js's num): 3 significant digits, no trailing ".0"."""
    text = repr(float(f"{float(v):.3g}"))
    return text.removesuffix(".0")
