"""Deferred payloads in the web app: the views draw a placeholder, ask the page for their heads asynchronously, and
draw them when they arrive; nothing on the page makes a synchronous request.

The app is told that every payload is too large (``lazy_bytes=1``), so each view gets its deferred payload
(:mod:`attnscope.encode_deferred`). The head requests are held back by the test, so the placeholder can be seen
before they are answered.
"""

from __future__ import annotations

import time

import pytest

import attnscope
from served import app_in_thread
from tiny_models import build

from .browser_helpers import lines_drawn, pixels

pytestmark = pytest.mark.browser

ROOT = "#view-host .attnscope"
HEAD_ROUTE = "**/api/traces/*/head?*"
#: Records whether each XMLHttpRequest opened on the page was asynchronous (the third argument of open()).
RECORD_XHR = """
window.__xhrAsync = [];
const open = XMLHttpRequest.prototype.open;
XMLHttpRequest.prototype.open = function (method, url, async) {
  window.__xhrAsync.push(arguments.length < 3 || !!async);
  return open.apply(this, arguments);
};
"""


@pytest.fixture(scope="module")
def app_url():
    """The web app (uvicorn on a thread) holding a tiny GPT-2's trace with q/k vectors; every view deferred."""
    model, tok = build("gpt2")
    trace = attnscope.capture(model, tok, "the cat sat on the mat and the dog ran over the big red house", qkv=True)
    with app_in_thread(trace, lazy_bytes=1) as served:
        yield served


def held_heads(page) -> list:
    """Hold every head request the page makes; returns the list the held routes are added to."""
    held: list = []
    page.route(HEAD_ROUTE, lambda route: held.append(route))
    return held


def wait_for(page, done, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(50)


def release(page, held: list) -> None:
    """Answer the held head requests, and those the redraws make, from now on."""
    for route in list(held):
        route.continue_()
    page.unroute(HEAD_ROUTE)  # (answers any the redraws made meanwhile)


def note(page, root: str) -> str:
    return page.eval_on_selector(root, "r => [...r.querySelectorAll('.as-note')].map(n => n.textContent).join(' ')")


def no_synchronous_requests(page) -> None:
    assert page.evaluate("() => window.__xhrAsync.every(Boolean)"), "a synchronous XMLHttpRequest was made"


def test_head_and_neuron_views_draw_their_heads_when_the_async_fetch_answers(page, app_url):
    url, tid = app_url
    page.add_init_script(RECORD_XHR)
    for view, canvas in (("head", "canvas.as-lines"), ("neuron", "canvas.as-kvec")):
        held = held_heads(page)
        page.goto(f"{url}/?trace={tid}&view={view}")
        root = f"{ROOT}[data-view={view}]"
        wait_for(page, lambda: held, f"the {view} view's head request")  # noqa: B023 - used in this iteration
        assert "heads=0%2C1%2C2%2C3" in held[0].request.url if view == "head" else "qkv=1" in held[0].request.url
        page.wait_for_selector(f"{root} {canvas}", state="attached")
        assert page.get_attribute(root, "data-state") == "drawing"  # drawn, but its heads are not here yet
        assert "fetching heads" in note(page, root)
        assert pixels(page, f"{root} {canvas}")["ink"] == 0  # the placeholder: tokens, no weights
        release(page, held)
        page.wait_for_selector(f"{root}[data-state=drawn]")
        assert pixels(page, f"{root} {canvas}")["ink"] > 200
        assert note(page, root).strip() == ""
        if view == "head":
            assert lines_drawn(page, root) > 20
        no_synchronous_requests(page)


def test_model_view_draws_thumbnails_at_once_and_a_clicked_head_after_its_fetch(page, app_url):
    url, tid = app_url
    page.add_init_script(RECORD_XHR)
    held = held_heads(page)
    page.goto(f"{url}/?trace={tid}&view=model")
    root = f"{ROOT}[data-view=model]"
    page.wait_for_selector(f"{root}[data-state=drawn]")
    assert held == [] and pixels(page, f"{root} canvas.as-thumbs")["ink"] > 500  # thumbnails came with the payload
    page.click(f"{root} .as-thumb >> nth=5")  # layer 1, head 1
    wait_for(page, lambda: held, "the clicked head's request")
    assert "layer=1" in held[0].request.url and "heads=1&" in held[0].request.url
    detail = f"{root} .as-detail .attnscope"
    assert lines_drawn(page, detail) == 0 and "fetching heads" in note(page, detail)
    release(page, held)
    page.wait_for_function(f"() => Number(document.querySelector('{detail}').dataset.lines) > 20")
    assert pixels(page, f"{detail} canvas.as-lines")["ink"] > 200 and note(page, detail).strip() == ""
    no_synchronous_requests(page)
    sync = "() => { const x = new XMLHttpRequest(); x.open('GET', '/api/health', false); return window.__xhrAsync.at(-1); }"
    assert page.evaluate(sync) is False  # the recorder does see a synchronous request
