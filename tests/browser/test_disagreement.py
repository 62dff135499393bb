"""The disagreement view in Chromium: bar heights, rank correlations and the grid's colours are what the
Explanation holds; clicking a head or a token changes what is drawn."""

from __future__ import annotations

import numpy as np
import pytest

import tiny_models
from attnscope.analysis import explain
from attnscope.views import disagreement_view

from .browser_helpers import show

pytestmark = pytest.mark.browser

TEXT = "the cat sat on the mat and it was very happy"
BAR_H = 54  # px, as web/disagreement.js


@pytest.fixture(scope="module")
def explanation():
    return explain(tiny_models.build("llama"), TEXT, methods=("alti", "value_zeroing", "grad_attention"))


def current(page) -> dict:
    return page.eval_on_selector(".attnscope[data-view=disagreement]", "r => r.attnscope.current()")


def column_heights(page, series: str) -> list[int]:
    """Per key, how many pixels of that key's column in the bar chart of ``series`` are painted with the bar."""
    return page.evaluate(
        """(name) => {
            const c = document.querySelector(`.as-dis-bar[data-series="${name}"]`);
            const n = Number(document.querySelector('.attnscope').dataset.n);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, w = c.width / n;
            const out = [];
            for (let j = 0; j < n; j++) {
                const x = Math.floor(j * w + w / 2);
                let h = 0;
                for (let y = 0; y < c.height - 2; y++) {
                    const p = (y * c.width + x) * 4;
                    if (d[p + 3] > 200 && Math.max(d[p], d[p + 1], d[p + 2]) - Math.min(d[p], d[p + 1], d[p + 2]) > 40) h++;
                }
                out.push(h);
            }
            return out;
        }""", series)


def test_bars_rank_correlations_and_grid_are_the_explanations(page, tmp_path, explanation):
    e = explanation
    L, H, n = e.shape
    show(page, disagreement_view(e, layer=1, query=8), tmp_path / "d.html")
    page.eval_on_selector(".attnscope", f"r => r.dataset.n = '{n}'")
    now = current(page)
    assert (now["layer"], now["query"], now["head"], now["measure"]) == (1, 8, None, "alti")
    names = page.eval_on_selector_all(".as-dis-bar", "cs => cs.map(c => c.dataset.series)")
    assert names == ["attention", "rollout", "alti", "value_zeroing", "grad_attention"]
    want = e.series["attention"].row(1, 8)
    np.testing.assert_allclose(now["rows"]["attention"]["values"], want, atol=1e-3)
    for name in ("attention", "alti", "value_zeroing"):
        heights = np.array(column_heights(page, name))
        row = e.series[name].row(1, 8)
        want = np.round(row / row.max() * (BAR_H - 4))  # each chart is scaled to its own largest bar
        assert np.abs(heights - want).max() <= 1, (name, heights, want)
        assert heights[9:].tolist() == [0, 0]  # causal: keys after the query are never drawn
    labels = page.eval_on_selector_all(".as-dis-rho", "ss => ss.map(s => s.textContent)")
    rho = e.correlations(1, 8)
    assert not np.isfinite(rho["grad_attention"])  # the last layer's gradient reaches only the last row
    for text, name in zip(labels[1:], names[1:]):
        shown = f"{rho[name]:.2f}".replace("-", "\u2212") if np.isfinite(rho[name]) else "n/a"
        assert f"\u03c1 {shown} vs attention" in text, (name, text)
    # the grid: the most disagreeing head is painted darker than the least
    d = e.disagreement("alti")
    lo, hi = np.unravel_index(np.nanargmin(d), d.shape), np.unravel_index(np.nanargmax(d), d.shape)
    lum = page.evaluate(
        """([cells]) => {
            const c = document.querySelector('.as-dis-grid'), size = Number(c.dataset.cell), ctx = c.getContext('2d');
            const r = window.devicePixelRatio || 1;
            return cells.map(([l, h]) => { const p = ctx.getImageData(Math.round((h + 0.3) * size * r),
                Math.round((l + 0.3) * size * r), 1, 1).data; return p[0] + p[1] + p[2]; });
        }""", [[[int(lo[0]), int(lo[1])], [int(hi[0]), int(hi[1])]]])
    assert lum[0] > lum[1] + 60
    text = page.inner_text(".as-caption")
    assert "\u2713 verified" in text and "ALTI (Ferrando et al. 2022)" in text


def test_clicking_a_head_a_token_and_rolling_out_change_the_bars(page, tmp_path, explanation):
    e = explanation
    show(page, disagreement_view(e, layer=1, query=8), tmp_path / "d.html")
    size = page.eval_on_selector(".as-dis-grid", "c => Number(c.dataset.cell)")
    page.click(".as-dis-grid", position={"x": 2 * size + size / 2, "y": 0 * size + size / 2})
    now = current(page)
    assert (now["layer"], now["head"]) == (0, 2)
    np.testing.assert_allclose(now["rows"]["attention"]["values"], e.series["attention"].row(0, 8, 2), atol=1e-3)
    np.testing.assert_allclose(now["rows"]["grad_attention"]["values"], e.series["grad_attention"].row(0, 8, 2),
                               atol=1e-3)
    assert now["rows"]["alti"]["rho"] == pytest.approx(e.correlations(0, 8, 2)["alti"], abs=1e-6)
    cw = page.eval_on_selector(".as-dis-bar", "c => c.getBoundingClientRect().width") / e.shape[2]
    page.click(".as-dis-labels", position={"x": 4 * cw + cw / 2, "y": 10})
    assert current(page)["query"] == 4
    assert page.eval_on_selector(".attnscope", "r => r.dataset.query") == "4"
    page.check(".as-bar input[type=checkbox]")
    names = page.eval_on_selector_all(".as-dis-bar", "cs => cs.map(c => c.dataset.series)")
    assert names == ["attention", "rollout", "alti_rollout", "value_zeroing_rollout", "grad_attention"]
    np.testing.assert_allclose(current(page)["rows"]["alti_rollout"]["values"],
                               e.series["alti_rollout"].row(0, 4), atol=1e-3)
