"""Long q/k traces in Chromium: thumbnails from the overview, rows recomputed in the page as they come into view,
the minimap, search, layers a file does not carry, the neuron view at any length, and the web app streaming only
the blocks of rows on screen."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

import attnscope
from attnscope.encode_qk import decode_rows
from attnscope.server.payloads import ROWS_MAX
from long_qk import f16_bound, long_qk_trace
from served import app_in_thread
from tiny_models import build

from .browser_helpers import LEVELS, lines_drawn, pixels, show, texts, thumb_pixels

pytestmark = pytest.mark.browser

N = 2500
HEAD = ".attnscope[data-view=head]"


@pytest.fixture(scope="module")
def trace():
    return long_qk_trace(N)


def window(page, root: str = HEAD) -> tuple[int, ...]:
    return tuple(int(x) for x in page.get_attribute(root, "data-window").split(","))


def probe_row(page, layer: int, head: int, i: int, root: str = HEAD) -> np.ndarray:
    got = page.evaluate(f"([l, h, i]) => document.querySelector('{root}').attnscope.probe.row('self', l, h, i)",
                        [layer, head, i])
    assert got["indices"] is None
    return np.array(got["values"], dtype=np.float64)


def lines(spec: dict, layer: int, heads, rows: tuple[int, int], cols: tuple[int, int], row: int | None = None) -> int:
    """The lines the head view draws, from the rows the page recomputes (decode_rows mirrors web/recompute.js)."""
    total = 0
    for h in heads:
        a, b = (row, row + 1) if row is not None else rows
        w = decode_rows(spec, layer, h, a, b)[:, cols[0] : cols[1]]
        total += int((np.floor(w * LEVELS + 0.5) >= 1).sum())
    return total


def scroll_to(page, row: int, root: str = HEAD) -> None:
    page.eval_on_selector(f"{root} .as-scroll", f"s => {{ s.scrollTop = {row} * 18; }}")
    page.wait_for_function(f"() => document.querySelector('{root}').dataset.window.startsWith('{row},')")


def test_model_view_draws_thumbnails_from_the_overview_and_a_head_recomputed_in_the_page(page, tmp_path, trace):
    view = attnscope.model_view(trace)
    spec = view.payload["kinds"]["self"]
    assert spec["form"] == "qk" and spec["thumbSize"] == 64
    show(page, view, tmp_path / "m.html")
    thumbs = [thumb_pixels(page, li, hi) for li in range(2) for hi in range(4)]
    assert all(t["ink"] > 300 for t in thumbs) and len({t["hash"] for t in thumbs}) == 8
    assert page.evaluate("() => document.querySelector('.attnscope').attnscope.probe.decoded()") == 0
    caption = page.text_content(".as-caption")
    assert "exact rows recomputed from float16 q/k for every layer" in caption and "sampled rows" in caption
    page.click(".as-thumb[data-li='1'][data-hi='2']")
    detail = ".as-detail .attnscope[data-view=head]"
    assert window(page, detail) == (0, 40)
    assert lines_drawn(page, detail) == lines(spec, 1, [2], (0, 40), (0, 40)) > 40


def test_head_view_recomputes_the_rows_of_its_window_and_marks_it_on_the_minimap(page, tmp_path, trace):
    view = attnscope.head_view(trace)
    spec = view.payload["kinds"]["self"]
    show(page, view, tmp_path / "h.html")
    att = trace.attention["self"]
    for layer, head, i in [(0, 0, 0), (1, 2, 1700), (1, 3, N - 1)]:  # rows recomputed in the page vs Python's
        got, want = probe_row(page, layer, head, i), att.row(layer, head, i)
        assert (np.abs(got - want) <= f16_bound(att, layer, head, np.array([i]))[0]).all()
        assert abs(got.sum() - 1) < 0.01
    assert lines_drawn(page) == lines(spec, 0, range(4), (0, 40), (0, 40)) > 100
    scroll_to(page, 1000)
    assert window(page) == (1000, 1040)
    assert texts(page, ".as-left .as-tok") == trace.tokens["input"][1000:1040]
    assert lines_drawn(page) == lines(spec, 0, range(4), (1000, 1040), (1000, 1040)) > 40
    mini = page.locator(".as-mside")
    assert mini.is_visible() and mini.get_attribute("data-mark") == "1000,1040,1000,1040"
    canvas, box = page.locator(".as-overview").bounding_box(), page.locator(".as-viewport").bounding_box()
    assert abs(box["y"] - canvas["y"] - canvas["height"] * 1000 / N) < 3
    assert abs(box["x"] - canvas["x"] - canvas["width"] * 1000 / N) < 3
    assert pixels(page, ".as-overview")["ink"] > 500
    page.mouse.click(canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] * 0.75)  # go there
    v0, v1 = window(page)
    assert abs((v0 + v1) / 2 - 0.75 * N) < 30
    assert mini.get_attribute("data-mark") == f"{v0},{v1},{v0},{v1}"


def test_search_jumps_to_a_token_and_its_whole_row_is_recomputed(page, tmp_path, trace):
    view = attnscope.head_view(trace, heads=[1])
    spec = view.payload["kinds"]["self"]
    show(page, view, tmp_path / "h.html")
    page.fill(".as-search-input", "zanzibar")
    assert page.text_content(".as-search-count") == "1 / 2" and window(page)[0] <= 1000 < window(page)[1]
    page.keyboard.press("Enter")
    assert page.text_content(".as-search-count") == "2 / 2"
    assert window(page)[0] <= 1700 < window(page)[1]
    assert page.locator(".as-left .as-tok.as-match").text_content() == "Zanzibar"
    assert lines_drawn(page) == lines(spec, 0, [1], (0, N), (0, N), row=1700) > 5  # pinned: all its keys


def test_layers_the_file_does_not_carry_show_their_overview_and_say_so(page, tmp_path, trace):
    view = attnscope.head_view(trace, exact_layers=[0])
    show(page, view, tmp_path / "h.html")
    assert page.text_content(".as-badge") == "exact rows: layers 0 \u00b7 others: overview only"
    assert "for layers 0 " in page.text_content(".as-caption") and "other layers: overview only" in \
        page.text_content(".as-caption")
    assert lines_drawn(page) > 100 and page.locator(".as-head .as-note").is_hidden()
    page.select_option(".as-bar select", label="1")
    assert lines_drawn(page) == 0
    assert page.text_content(".as-head .as-note") == \
        "layer 1: overview only (this file carries the queries and keys of layers 0)"
    assert pixels(page, ".as-overview")["ink"] > 500  # the overview is all there is, and it is drawn


def test_matrix_view_paints_its_window_from_recomputed_rows(page, tmp_path, trace):
    root = ".attnscope[data-view=matrix]"
    show(page, attnscope.matrix_view(trace, layer=1, head=1), tmp_path / "x.html")
    assert window(page, root) == (0, 64, 0, 64) and pixels(page, ".as-heat")["ink"] > 60
    canvas = page.locator(".as-overview").bounding_box()
    page.mouse.click(canvas["x"] + canvas["width"] * 0.5, canvas["y"] + canvas["height"] * 0.6)
    r0, r1, c0, c1 = window(page, root)
    assert abs(r0 + 32 - 0.6 * N) < 30 and abs(c0 + 32 - 0.5 * N) < 30
    hb = page.locator(".as-heat").bounding_box()
    cell = hb["width"] / 64
    page.mouse.move(hb["x"] + cell * 40.5, hb["y"] + cell * 63.5)
    i, j = (int(x) for x in page.get_attribute(root, "data-hover").split(","))
    weight = float(page.text_content(".as-tip").splitlines()[2].split()[1])
    att = trace.attention["self"]
    assert abs(weight - att.row(1, 1, i)[j]) <= f16_bound(att, 1, 1, np.array([i]))[0, j] + 5e-5


def test_neuron_view_explains_any_query_of_a_long_input(page, tmp_path, trace):
    root = ".attnscope[data-view=neuron]"
    show(page, attnscope.neuron_view(trace, layer=1, head=3, query=1700), tmp_path / "n.html")
    now = page.eval_on_selector(root, "r => r.attnscope.current()")
    att = trace.attention["self"]
    assert (now["layer"], now["head"], now["query"]) == (1, 3, 1700)
    bound = f16_bound(att, 1, 3, np.array([1700]))[0]
    assert (np.abs(np.array(now["weights"]) - att.row(1, 3, 1700)) <= bound).all()
    v0, v1 = window(page, root)
    assert v0 <= 1700 < v1 and page.locator(".as-neuron .as-right .as-tok").count() == v1 - v0 <= 41
    assert pixels(page, ".as-kvec")["alpha"] > 5000
    page.fill(".as-search-input", "zanzibarian")
    assert page.eval_on_selector(root, "r => r.attnscope.current().query") == 1000
    page.fill(".as-query-num", "2400")
    page.press(".as-query-num", "Enter")
    assert page.eval_on_selector(root, "r => r.attnscope.current().query") == 2400
    assert window(page, root)[0] <= 2400 < window(page, root)[1]


@pytest.mark.parametrize("name", ["gemma2", "gpt_oss"])
def test_the_page_follows_sliding_windows_soft_capping_and_sinks(page, tmp_path, name):
    """The neuron view of a q/k trace recomputes in the page (web/recompute.js) with the model's own rule."""
    trace = attnscope.capture(*build(name), "the cat sat on the mat and it was very happy", form="qk")
    att = trace.attention["self"]
    q = att.shape[2]
    root = ".attnscope[data-view=neuron]"
    show(page, attnscope.neuron_view(trace, layer=0, head=1, query=q - 1), tmp_path / "n.html")
    for layer in (0, 1):  # a sliding window of 4 (and gemma2's soft-capping), then a global layer
        page.locator(".as-field", has_text="Layer").locator("select").select_option(label=str(layer))
        got = np.array(page.eval_on_selector(root, "r => r.attnscope.current().weights"))
        want = att.row(layer, 1, q - 1)
        assert (np.abs(got - want) <= f16_bound(att, layer, 1, np.array([q - 1]))[0]).all()
        assert (got[: q - 4] == 0).all() == (layer == 0)
    if name == "gpt_oss":
        assert got.sum() < 0.999  # the sink's share


# ----------------------------------------------------------------------------- the web app


@pytest.fixture(scope="module")
def app_url(trace):
    """The web app in this process (uvicorn on a thread), holding the trace; yields (base URL, trace id)."""
    with app_in_thread(trace, lazy_bytes=500_000) as served:  # every view lazy: the neuron view fetches vectors
        yield served


def streamed(page, root: str = "#view-host .attnscope") -> None:
    """Wait until the view has drawn and holds every block it asked for."""
    page.wait_for_selector(f"{root}[data-state=drawn]", timeout=30_000)
    page.wait_for_function(f"() => {{ const r = document.querySelector('{root}'); return r && r.attnscope && "
                           "Number(r.dataset.lines || 1) > 0; }", timeout=30_000)
    page.wait_for_timeout(300)  # the last answer arrives and redraws


def test_the_web_app_streams_only_the_rows_on_screen(page, trace, app_url):
    url, tid = app_url
    asked: list[dict] = []
    vectors: list[str] = []
    page.on("request", lambda r: asked.append({k: v[0] for k, v in parse_qs(urlparse(r.url).query).items()})
            if "/rows" in r.url else vectors.append(r.url) if "/vectors" in r.url else None)
    page.goto(f"{url}/?trace={tid}&view=head")
    streamed(page)
    att = trace.attention["self"]

    def expected(rows, cols, row=None) -> int:
        total = 0
        for h in range(4):
            a, b = (row, row + 1) if row is not None else rows
            w = att.rows(0, h, a, b)[:, cols[0] : cols[1]].astype(np.float16).astype(np.float64)  # sent as float16
            total += int((np.floor(w * LEVELS + 0.5) >= 1).sum())
        return total

    root = "#view-host .attnscope"
    assert lines_drawn(page, root) == expected((0, 40), (0, 40)) > 100
    assert len(asked) == 1 and asked[0]["heads"] == "0,1,2,3"
    page.eval_on_selector(f"{root} .as-scroll", "s => { s.scrollTop = 1000 * 18; }")
    page.wait_for_function(f"() => document.querySelector('{root}').dataset.window === '1000,1040'")
    page.wait_for_timeout(500)
    assert lines_drawn(page, root) == expected((1000, 1040), (1000, 1040))
    page.hover(f"{root} .as-left .as-tok[data-i='1020']")  # a token's whole row: one row, every key
    page.wait_for_timeout(500)
    assert lines_drawn(page, root) == expected(None, (0, N), row=1020)
    assert {"start": "1020", "stop": "1021", "key_start": "0", "key_stop": str(N)}.items() <= asked[-1].items()
    for a in asked:  # blocks only: never a whole head, never more than the server allows
        rows, keys = int(a["stop"]) - int(a["start"]), int(a["key_stop"]) - int(a["key_start"])
        assert rows * keys * len(a["heads"].split(",")) <= ROWS_MAX and rows * keys < N * N // 8
    assert 2 <= len(asked) <= 6
    page.click("button[data-view=neuron]")  # the neuron view fetches one head's vectors, then recomputes
    neuron = "#view-host .attnscope[data-view=neuron]"
    page.wait_for_function(f"() => {{ const r = document.querySelector('{neuron}');"
                           " return r && r.attnscope && r.attnscope.current().weights !== null; }", timeout=30_000)
    now = page.eval_on_selector(neuron, "r => r.attnscope.current()")
    assert len(vectors) == 1 and f"layer={now['layer']}&head={now['head']}" in vectors[0]
    bound = f16_bound(att, now["layer"], now["head"], np.array([now["query"]]))[0]
    assert (np.abs(np.array(now["weights"]) - att.row(now["layer"], now["head"], now["query"])) <= bound).all()
