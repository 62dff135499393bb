"""End to end: the ``attnscope serve`` command in a subprocess on a free loopback port, driven by Chromium.

A user types text, the views draw (pixels on their canvases), views switch, long inputs fetch heads from the
server as they are looked at, the compare page ranks heads in the diff view, the trace browser opens a saved
file, and a remote-mode server works in the browser once the token is given. Pages must log no JavaScript errors.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page

import attnscope
from served import free_port, serving

pytestmark = pytest.mark.browser

TOKEN = "e2e-token-0123456789abcdef"
#: ~210 tokens: its head view payload (72 heads x 210 x 210 bytes) passes the 2 MB budget, so heads come lazily
LONG_TEXT = " ".join(["The committee met on a grey morning to weigh the river plan, the budget and the old bridge."] * 10)


@contextlib.contextmanager
def server(*args: str):
    """``attnscope serve --port P *args`` (the installed command) in a subprocess; yields its base URL."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("attnscope")), "serve", "--port", str(port), *args]
    headers = {"authorization": f"Bearer {args[args.index('--token') + 1]}"} if "--token" in args else {}
    with serving(command, port, headers) as (url, _):
        yield url


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("traces")
    tokens = ["[CLS]", "saved", "trace", "tokens", "[SEP]"]
    att = np.random.default_rng(1).random((2, 4, 5, 5)).astype(np.float32)
    attnscope.Trace.from_arrays(att / att.sum(-1, keepdims=True), tokens).save(root / "saved.safetensors")
    return root


@pytest.fixture(scope="module")
def url(folder):
    with server("--traces", str(folder), "--mlflow", f"sqlite:///{folder}/none.db") as base:
        yield base




def drawn(page: Page, selector: str, timeout: float = 60_000) -> None:
    page.wait_for_selector(f"{selector}[data-state=drawn]", timeout=timeout)


def ink(page: Page, selector: str, index: int = 0) -> int:
    """Pixels of a canvas that are drawn and not white."""
    return page.evaluate(
        """([sel, i]) => {
            const c = document.querySelectorAll(sel)[i];
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let p = 0; p < d.length; p += 4) if (d[p + 3] > 8 && !(d[p] > 250 && d[p + 1] > 250 && d[p + 2] > 250)) n++;
            return n;
        }""",
        [selector, index],
    )


def capture(page: Page, url: str, text: str) -> None:
    page.goto(url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.fill("#text", text)
    page.click("#run")
    drawn(page, "#view-host .attnscope[data-view=head]")


def test_typed_text_is_drawn_in_every_view(page, url):
    capture(page, url, "The cat sat on the mat because it was tired.")
    head = "#view-host .attnscope[data-view=head]"
    assert int(page.get_attribute(head, "data-lines")) > 100 and ink(page, f"{head} canvas.as-lines") > 500
    assert page.eval_on_selector_all(f"{head} .as-left .as-tok", "ts => ts.map(t => t.textContent)")[:3] == [
        "[CLS]", "the", "cat"]
    assert "minilm \u00b7 6 layers \u00d7 12 heads \u00b7 13 tokens" in page.text_content("#info")

    page.click("#views button[data-view=model]")
    drawn(page, "#view-host .attnscope[data-view=model]")
    assert page.locator("#view-host .as-thumb").count() == 72
    assert ink(page, "#view-host canvas.as-thumbs") > 72 * 50  # every thumbnail is painted in the grid's canvas
    page.click("#view-host .as-thumb >> nth=30")  # layer 2, head 6 opens as a head view beside the grid
    page.wait_for_selector("#view-host .as-detail:not([hidden]) canvas.as-lines")
    assert page.text_content("#view-host .as-detail-title") == "Layer 2 \u00b7 head 6"

    page.click("#views button[data-view=neuron]")
    drawn(page, "#view-host .attnscope[data-view=neuron]")
    assert ink(page, "#view-host canvas.as-kvec") > 500 and ink(page, "#view-host canvas.as-qvec") > 50

    page.click("#views button[data-view=matrix]")
    drawn(page, "#view-host .attnscope[data-view=matrix]")
    assert ink(page, "#view-host canvas.as-heat") > 20
    assert page.get_attribute("#views button[data-view=matrix]", "aria-pressed") == "true"

    page.select_option("#theme", "dark")
    page.wait_for_selector("#view-host .attnscope[data-view=matrix][data-theme=dark][data-state=drawn]")
    assert "view=matrix" in page.url and "trace=" in page.url
    png = page.request.get(page.get_attribute("#dl-png", "href"))
    assert png.status == 200 and png.body().startswith(b"\x89PNG")
    html = page.request.get(page.get_attribute("#dl-html", "href"))
    assert "attachment" in html.headers["content-disposition"] and "views.matrix" in html.text()

    page.reload()  # the address holds the trace and view: reopening shows them again
    drawn(page, "#view-host .attnscope[data-view=matrix]")


def test_long_input_fetches_heads_from_the_server_as_they_are_shown(page, url):
    heads: list[str] = []
    page.on("request", lambda r: heads.append(r.url) if "/head?" in r.url else None)
    capture(page, url, LONG_TEXT)
    root = "#view-host .attnscope[data-view=head]"
    assert page.get_attribute(root, "data-lazy") == "1"
    assert "fetched from the server" in page.text_content("#info")
    assert len(heads) == 1 and "layer=0" in heads[0] and "heads=0%2C1%2C2" in heads[0]
    assert ink(page, f"{root} canvas.as-lines") > 500

    page.select_option(f"{root} select.as-select", "3")  # layer 3: its heads come from the server now
    page.wait_for_function(f"() => Number(document.querySelector('{root}').dataset.lines) > 0")
    assert len(heads) == 2 and "layer=3" in heads[1]
    assert ink(page, f"{root} canvas.as-lines") > 500

    page.click("#views button[data-view=model]")
    drawn(page, "#view-host .attnscope[data-view=model]")
    assert len(heads) == 2  # the grid draws thumbnails sent with the skeleton
    page.click("#view-host .as-thumb >> nth=13")  # layer 1, head 1
    page.wait_for_selector("#view-host .as-detail:not([hidden]) canvas.as-lines")
    assert len(heads) == 3 and "layer=1" in heads[2] and "heads=1&" in heads[2]


def compare(page: Page, url: str, a: str, b: str) -> None:
    page.goto(url + "/compare")
    page.wait_for_selector("#model option", state="attached")
    page.fill("#text-a", a)
    page.fill("#text-b", b)
    page.click("#run")
    drawn(page, "#diff-host .attnscope[data-view=diff]")


def test_compare_page_ranks_the_heads_in_the_diff_view(page, url):
    compare(page, url, "The doctor asked the nurse a question. She answered.",
            "The doctor asked the nurse a question. He answered.")
    ranked = page.eval_on_selector_all("#diff-host .as-rank", "bs => bs.map(b => [b.dataset.li, b.dataset.hi, "
                                       "b.querySelector('.as-rank-v').textContent])")
    values = [float(v) for _, _, v in ranked]
    assert len(ranked) == 20 and values == sorted(values, reverse=True) and values[0] > 0
    assert page.is_hidden("#ranked-box")  # the diff view lists the ranked heads itself
    for i in range(3):  # A, B and B - A heatmaps
        assert ink(page, "#diff-host canvas.as-heat", i) > 20
    assert ink(page, "#grid") > 100
    li, hi = int(ranked[0][0]), int(ranked[0][1])
    title = page.text_content("#diff-host .as-diff-title")
    assert title.startswith(f"Layer {li} \u00b7 head {hi} \u00b7") and "rank 1 of 72" in title

    page.click("#grid", position={"x": 7 * 22 + 5, "y": 4 * 22 + 5})  # every head's grid: layer 4, head 7
    assert page.text_content("#diff-host .as-diff-title").startswith("Layer 4 \u00b7 head 7 \u00b7")
    page.click("#diff-host .as-rank >> nth=2")
    assert page.text_content("#diff-host .as-diff-title").startswith(
        f"Layer {ranked[2][0]} \u00b7 head {ranked[2][1]} \u00b7")


def test_long_compare_fetches_the_diff_view_head_by_head(page, url):
    diffs: list[str] = []
    page.on("request", lambda r: diffs.append(r.url) if "/api/compare/diff" in r.url else None)
    compare(page, url, LONG_TEXT + " She answered.", LONG_TEXT + " He answered.")
    assert "one head" in page.text_content("#summary") and page.is_visible("#ranked-box")
    rows = page.eval_on_selector_all("#ranked tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert len(rows) == 20 and diffs == []
    assert page.text_content("#diff-host .as-diff-title").startswith(f"Layer {rows[0][1]} \u00b7 head {rows[0][2]}")
    page.click("#ranked tbody tr >> nth=3")
    page.wait_for_function(f"() => document.querySelector('#diff-host .as-diff-title').textContent"
                           f".startsWith('Layer {rows[3][1]} \u00b7 head {rows[3][2]} ')")
    assert len(diffs) == 1 and f"layer={rows[3][1]}&head={rows[3][2]}" in diffs[0]
    assert ink(page, "#diff-host canvas.as-heat", 2) > 20


def test_trace_browser_opens_a_saved_file(page, url):
    page.goto(url + "/traces")
    page.wait_for_selector("#files tr[data-path='saved.safetensors']")
    page.click("#files tr[data-path='saved.safetensors'] button")
    page.wait_for_url(lambda u: "trace=" in u)
    drawn(page, "#view-host .attnscope[data-view=head]")
    tokens = page.eval_on_selector_all("#view-host .as-left .as-tok", "ts => ts.map(t => t.textContent)")
    assert tokens == ["[CLS]", "saved", "trace", "tokens", "[SEP]"]
    assert "file saved.safetensors" in page.text_content("#info")
    assert page.is_disabled("#views button[data-view=neuron]")  # no q/k vectors in this file


def test_trace_browser_reports_a_malformed_file_and_keeps_working(browser, url, folder):
    (folder / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))  # the 422 itself is logged to the console, as it should
    page.goto(url + "/traces")
    page.wait_for_selector("#files tr[data-path='broken.safetensors']")
    page.click("#files tr[data-path='broken.safetensors'] button")
    page.wait_for_selector("#status[data-kind=error]")
    assert "broken.safetensors" in page.text_content("#status") and "/traces" in page.url
    page.reload()  # nothing was kept: the list of held traces still loads
    page.wait_for_selector("#memory tbody tr")
    assert "broken.safetensors" not in page.text_content("#memory")
    assert errors == []
    context.close()


def test_remote_server_works_in_the_browser_with_its_token(browser, folder):
    with server("--allow-remote", "--token", TOKEN, "--mlflow", f"sqlite:///{folder}/none.db") as base:
        refused = httpx.get(base + "/api/config")
        assert refused.status_code == 401 and "token" in refused.json()["error"]
        context = browser.new_context(accept_downloads=True)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(f"{base}/#token={TOKEN}")  # a fragment never leaves the browser (no request line, no log)
        pg.wait_for_selector("#model option", state="attached")
        assert "token" not in pg.url  # removed from the address bar once kept
        assert pg.evaluate("typeof window.attnscope.views.head") == "function"
        pg.reload()  # kept for the tab (sessionStorage), sent as a header: the page still works
        pg.wait_for_selector("#model option", state="attached")
        pg.fill("#text", "The token travels as a header.")
        pg.click("#run")
        drawn(pg, "#view-host .attnscope[data-view=head]")
        with pg.expect_download() as download:  # a link cannot carry the header: the page fetches the file
            pg.click("#dl-png")
        assert Path(download.value.path()).read_bytes().startswith(b"\x89PNG")
        assert download.value.suggested_filename.endswith("-head.png")
        pg.click("header nav a[href='/traces']")
        pg.wait_for_selector("#memory tbody tr")
        assert context.cookies() == []  # no cookie: a browser would send it to every port of this host
        assert errors == []
        context.close()
