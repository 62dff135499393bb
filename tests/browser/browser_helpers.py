"""Helpers for the browser tests: open a view, wait until drawn, read canvases, labels and line counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from playwright.sync_api import Page

from attnscope.encode import decode_head

LEVELS = 64  # as head.js: a line is drawn when round(weight * LEVELS) >= 1


def random_attention(layers: int, heads: int, q: int, k: int | None = None, *, causal: bool = False,
                     seed: int = 0) -> np.ndarray:
    """Softmax rows ``[layers, heads, q, k]``."""
    k = q if k is None else k
    scores = np.random.default_rng(seed).normal(size=(layers, heads, q, k)) * 2
    if causal:
        scores = np.where(np.tril(np.ones((q, k), dtype=bool)), scores, -np.inf)
    w = np.exp(scores - scores.max(-1, keepdims=True))
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


def show(page: Page, view_or_html, path: Path) -> None:
    """Save a View (or write an HTML string) to ``path``, open it and wait until every view on it is drawn."""
    if isinstance(view_or_html, str):
        path.write_text(view_or_html, encoding="utf-8")
    else:
        view_or_html.save(path)
    page.goto(path.as_uri())
    wait_drawn(page)


def wait_drawn(page: Page, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "() => { const r = [...document.querySelectorAll('.attnscope[data-view]:not(.as-embedded)')];"
        " return r.length > 0 && r.every(e => e.dataset.state === 'drawn' || e.dataset.state === 'error'); }",
        timeout=timeout,
    )
    states = page.eval_on_selector_all(".attnscope[data-view]", "rs => rs.map(r => r.dataset.state || 'none')")
    bad = [s for s in states if s == "error"]
    assert not bad, page.eval_on_selector_all(".attnscope.as-error", "rs => rs.map(r => r.textContent)")


def pixels(page: Page, selector: str, index: int = 0) -> dict:
    """What one canvas holds: {'ink': opaque-enough pixels that are not white, 'alpha': non-transparent pixels,
    'hash': a checksum of every pixel, 'w', 'h'}."""
    return page.evaluate(
        """([sel, i]) => {
            const c = document.querySelectorAll(sel)[i];
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let ink = 0, alpha = 0, hash = 0;
            for (let p = 0; p < d.length; p += 4) {
                if (d[p + 3] > 0) alpha++;
                if (d[p + 3] > 8 && !(d[p] > 250 && d[p + 1] > 250 && d[p + 2] > 250)) ink++;
                hash = (Math.imul(hash, 31) + d[p] + 3 * d[p + 1] + 7 * d[p + 2] + 11 * d[p + 3]) | 0;
            }
            return {ink, alpha, hash, w: c.width, h: c.height};
        }""",
        [selector, index],
    )


def texts(page: Page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "es => es.map(e => e.textContent)")


def lines_drawn(page: Page, root: str = ".attnscope[data-view=head]") -> int:
    return int(page.eval_on_selector(root, "r => r.dataset.lines"))


def expected_lines(payload: dict, kind: str, layer: int, heads, rows=None, cols=None, row=None, col=None) -> int:
    """How many lines the head view must draw, from the weights the page decodes (same quantization)."""
    spec = payload["kinds"][kind]
    q, k = spec["shape"]
    r0, r1 = rows or (0, q)
    c0, c1 = cols or (0, k)
    total = 0
    for h in heads:
        w = decode_head(payload, kind, layer, h).astype(np.float64)[r0:r1, c0:c1]
        if row is not None:
            w = w[row - r0 : row - r0 + 1]
        if col is not None:
            w = w[:, col - c0 : col - c0 + 1]
        total += int((np.floor(w * LEVELS + 0.5) >= 1).sum())
    return total


def head_labels(page: Page, root: str, selector: str, prop: str = "textContent") -> list[str]:
    """Every label ``selector`` matches in a head view, scrolling its token window from top to bottom (only the
    labels on screen exist at any time), in token order."""
    return page.evaluate(
        """async ([root, sel, prop]) => {
            const r = document.querySelector(root), sc = r.querySelector('.as-scroll'), seen = new Map();
            const frames = () => new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(res)));
            for (let top = 0; ; top += 20 * 18) {
                sc.scrollTop = top;
                await frames();
                for (const e of r.querySelectorAll(sel)) seen.set(Number(e.dataset.i), e[prop]);
                if (top >= sc.scrollHeight - sc.clientHeight) break;
            }
            return [...seen.entries()].sort((a, b) => a[0] - b[0]).map((x) => x[1]);
        }""",
        [root, selector, prop],
    )


def matrix_labels(page: Page, root: str, prop: str = "textContent") -> tuple[list[str], list[str]]:
    """(row labels, column labels) of a matrix view, panning its window over the whole matrix by wheel events."""
    return tuple(page.evaluate(
        """([root, prop]) => {
            const r = document.querySelector(root), plot = r.querySelector('.as-plot'), out = [new Map(), new Map()];
            const win = () => r.dataset.window.split(',').map(Number);
            const read = () => ['.as-mrows', '.as-mcols'].forEach((box, n) => {
                for (const e of r.querySelectorAll(box + ' .as-mlabel')) out[n].set(Number(e.dataset.i), e[prop]);
            });
            const cell = r.querySelector('.as-heat').getBoundingClientRect().height / (win()[1] - win()[0]);
            plot.dispatchEvent(new WheelEvent('wheel', {deltaX: -1e7, deltaY: -1e7, cancelable: true}));  // to 0, 0
            for (const [dx, dy] of [[0, 1], [1, 0]]) {
                for (let before = null; before !== r.dataset.window;) {
                    before = r.dataset.window;
                    read();
                    plot.dispatchEvent(new WheelEvent('wheel', {deltaX: dx * 32 * cell, deltaY: dy * 32 * cell,
                                                                cancelable: true}));
                }
            }
            return out.map((m) => [...m.entries()].sort((a, b) => a[0] - b[0]).map((x) => x[1]));
        }""",
        [root, prop],
    ))


def thumb_pixels(page: Page, li: int, hi: int, root: str = ".attnscope[data-view=model]") -> dict:
    """What the model view drew for the thumbnail of (layer index, head index) in its grid canvas: as
    :func:`pixels`, plus 'rows'/'cols' (the thumbnail's own resolution, each drawn as a block of pixels)."""
    return page.evaluate(
        """([root, li, hi]) => {
            const r = document.querySelector(root), g = r.attnscope.probe.cell(li, hi);
            const d = r.querySelector('canvas.as-thumbs').getContext('2d').getImageData(g.x, g.y, g.w, g.h).data;
            let ink = 0, alpha = 0, hash = 0;
            for (let p = 0; p < d.length; p += 4) {
                if (d[p + 3] > 0) alpha++;
                if (d[p + 3] > 8 && !(d[p] > 250 && d[p + 1] > 250 && d[p + 2] > 250)) ink++;
                hash = (Math.imul(hash, 31) + d[p] + 3 * d[p + 1] + 7 * d[p + 2] + 11 * d[p + 3]) | 0;
            }
            return {ink, alpha, hash, w: g.w, h: g.h, rows: g.rows, cols: g.cols};
        }""",
        [root, li, hi],
    )
