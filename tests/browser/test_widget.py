"""attnscope.widget in a browser: its front-end module with a stand-in for anywidget's model (fast), and the real
thing in JupyterLab and marimo driven by Playwright (slow: each starts a server and a kernel)."""

from __future__ import annotations

import json

import pytest

import attnscope
from attnscope._widget import esm

pytestmark = pytest.mark.browser

# A stand-in for anywidget's model: get/set/on/off/save_changes over a plain object; what was saved is logged.
FAKE = """async ([code, data]) => {
    const state = {_data: data, selected: null, query: null}, handlers = {}, saved = [];
    const model = {
        get: (k) => state[k],
        set: (k, v) => { state[k] = v; (handlers['change:' + k] || []).forEach((f) => f()); },
        save_changes: () => saved.push(JSON.stringify([state.selected, state.query])),
        on: (e, f) => { (handlers[e] = handlers[e] || []).push(f); },
        off: (e, f) => { handlers[e] = (handlers[e] || []).filter((g) => g !== f); },
    };
    const url = URL.createObjectURL(new Blob([code], {type: 'text/javascript'}));
    const mod = await import(url);
    const el = document.createElement('div');
    document.body.append(el);
    window.widget = {model, state, saved, el, cleanup: mod.default.render({model, el})};
}"""


def start(page, view) -> None:
    page.set_content("<!DOCTYPE html><html><body></body></html>")
    page.add_style_tag(content=__import__("attnscope.views._html", fromlist=["styles"]).styles(view.name))
    page.evaluate(FAKE, [esm(view.name), json.dumps(view.data())])


def synced(page) -> list:
    return page.evaluate("() => [window.widget.state.selected, window.widget.state.query]")


def test_the_model_widget_sends_the_clicked_head_and_follows_python(page, minilm_trace):
    start(page, attnscope.model_view(minilm_trace))
    assert synced(page) == [None, None]
    page.locator(".as-thumb[data-li='2'][data-hi='5']").click()
    page.wait_for_function("() => window.widget.state.selected !== null")
    assert synced(page) == [[2, 5], None]
    page.locator(".as-detail .as-tok[data-side='q'][data-i='3']").click()  # pin a query token in the enlarged head
    page.wait_for_function("() => window.widget.state.query === 3")
    page.evaluate("() => window.widget.model.set('selected', [4, 1])")  # Python sets it
    assert page.evaluate("() => window.widget.el.querySelector('.attnscope').attnscope.current()")["layer"] == 4
    assert page.inner_text(".as-detail-title") == "Layer 4 \u00b7 head 1"
    page.evaluate("() => window.widget.cleanup()")
    assert page.evaluate("() => window.widget.el.textContent") == ""


def test_the_neuron_and_head_widgets_send_layer_head_and_query(page, minilm_trace):
    start(page, attnscope.neuron_view(minilm_trace, layer=1, head=2))
    assert synced(page) == [[1, 2], 0]
    page.select_option(".as-bar label:has-text('Head') select", label="7")
    page.locator(".as-tok[data-side='q'][data-i='5']").click()
    page.wait_for_function("() => window.widget.state.query === 5")
    assert synced(page) == [[1, 7], 5]
    start(page, attnscope.head_view(minilm_trace, layer=3))
    assert synced(page) == [[3, None], None]  # every head shown
    page.locator(".as-swatch").nth(4).dblclick()  # solo head 4
    page.locator(".as-tok[data-side='q'][data-i='2']").click()
    page.wait_for_function("() => window.widget.state.query === 2")
    assert synced(page) == [[3, 4], 2]


@pytest.mark.slow
def test_in_jupyterlab_a_click_on_a_thumbnail_reaches_the_kernel(browser, tmp_path):
    from .jupyterlab import jupyterlab, lab_page, notebook, run_cell

    notebook(tmp_path / "widget.ipynb",
             "import numpy as np, attnscope\n"
             "w8 = np.random.default_rng(0).dirichlet(np.ones(12), size=(4, 6, 12)).astype('float32')\n"
             "w = attnscope.widget(attnscope.Trace.from_arrays(w8, [f'w{i}' for i in range(12)]))\n"
             "clicks = []\n"
             "w.observe(lambda change: clicks.append(change['new']), names='selected')  # a cell reacting\n"
             "w",
             "print('selected', w.selected, 'query', w.query, 'clicks', clicks)")
    with jupyterlab(tmp_path) as (base, token):
        page = lab_page(browser, base, token, "widget.ipynb")
        run_cell(page, 0)
        widget = page.locator(".jp-OutputArea-output .attnscope[data-state='drawn']")
        widget.wait_for(timeout=120_000)
        widget.locator(".as-thumb[data-li='2'][data-hi='5']").click()
        widget.locator(".as-detail .as-tok[data-side='q'][data-i='4']").click()
        run_cell(page, 1)
        out = page.locator(".jp-NotebookPanel .jp-Cell").nth(1).locator(".jp-OutputArea-output")
        out.wait_for(timeout=60_000)
        assert out.inner_text().strip() == "selected (2, 5) query 4 clicks [(2, 5)]"
        page.context.close()


MARIMO_APP = '''import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo
    import numpy as np

    import attnscope

    w8 = np.random.default_rng(0).dirichlet(np.ones(12), size=(4, 6, 12)).astype("float32")
    view = mo.ui.anywidget(attnscope.widget(attnscope.Trace.from_arrays(w8, [f"w{i}" for i in range(12)])))
    view
    return mo, view


@app.cell
def _(mo, view):
    mo.md(f"selected {view.widget.selected} query {view.widget.query}")
    return
'''


@pytest.mark.slow
def test_in_marimo_a_click_reruns_the_cells_that_read_the_widget(browser, tmp_path):
    """marimo's server runs the app; a click sends the head to the kernel and marimo reruns the dependent cell."""
    import importlib.util
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from served import free_port, stop

    # Only look marimo up: importing it here fails once nnsight (imported by an earlier test) has patched the
    # process's dataclasses; the app runs in its own process below.
    if importlib.util.find_spec("marimo") is None:
        pytest.skip("marimo is not installed (make setup installs it)")
    (tmp_path / "app.py").write_text(MARIMO_APP, encoding="utf-8")
    port, token = free_port(), "attnscope-test-token"
    env = {**os.environ, "MARIMO_SKIP_UPDATE_CHECK": "1", "HOME": str(tmp_path)}
    marimo = [sys.executable, "-m", "marimo", "-y", "-q", "run", str(tmp_path / "app.py"), "--headless", "--host",
              "127.0.0.1", "--port", str(port), "--token-password", token]
    with open(tmp_path / "marimo.log", "wb") as log:
        proc = subprocess.Popen(marimo, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "marimo.log").read_text()
                time.sleep(0.5)
        context = browser.new_context(viewport={"width": 1300, "height": 900})
        page = context.new_page()
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())
        page.goto(f"{base}/?access_token={token}")
        page.get_by_text("selected None query None").wait_for(timeout=180_000)
        page.locator(".attnscope .as-thumb[data-li='1'][data-hi='3']").click()  # inside marimo's shadow root
        page.get_by_text("selected (1, 3) query None").wait_for(timeout=60_000)
        context.close()
    finally:
        stop(proc, timeout=20)
