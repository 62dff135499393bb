"""Where scripts never run the HTML shows a picture of the view and one line; where they run the view replaces it,
also in a sandboxed iframe and under a strict Content-Security-Policy; an escaping sanitizer (nbconvert's
sanitize_html) shows the line, not the payload."""

from __future__ import annotations

import html as html_lib

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

import attnscope

from .browser_helpers import thumb_pixels, wait_drawn

pytestmark = pytest.mark.browser


def picture_state(page) -> dict:
    """What the page shows of the first view's root: its fallback line, and its picture as decoded by the browser."""
    return page.evaluate(
        """() => {
            const r = document.querySelector('.attnscope[data-view]'), img = r.querySelector('img.as-picture');
            const line = r.querySelector('.as-fallback');
            return {line: line ? line.innerText : null, state: r.dataset.state || null,
                    img: img ? {w: img.naturalWidth, h: img.naturalHeight, shown: img.getBoundingClientRect().width,
                                complete: img.complete} : null};
        }"""
    )


@pytest.mark.parametrize("name", ["model", "head", "neuron", "matrix"])
def test_without_scripts_the_picture_and_the_trust_line_show(browser, tmp_path, minilm_trace, name):
    view = attnscope.views.render(name, minilm_trace)
    path = tmp_path / f"{name}.html"
    view.save(path)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(path.as_uri())
    got = picture_state(page)
    pic = view.picture()
    assert got["state"] is None and got["line"].startswith(f"A static picture of an attnscope {name} view")
    assert "Trust Notebook" in got["line"]
    assert got["img"]["complete"] and (got["img"]["w"], got["img"]["h"]) == (pic.width, pic.height)
    assert 0 < got["img"]["shown"] <= 1200
    text = page.inner_text("body")
    assert "attnscope-payload" not in text and "views." not in text and len(text) < 600  # nothing but the line
    context.close()


def test_with_scripts_the_view_replaces_its_picture(page, tmp_path, minilm_trace):
    path = tmp_path / "model.html"
    attnscope.model_view(minilm_trace).save(path)
    page.goto(path.as_uri())
    wait_drawn(page)
    assert picture_state(page)["img"] is None and picture_state(page)["line"] is None
    assert page.eval_on_selector(".attnscope[data-view]", "r => getComputedStyle(r).borderRadius") == "8px"  # its CSS
    assert thumb_pixels(page, 5, 11)["ink"] > 10


def test_views_draw_under_a_strict_content_security_policy_and_in_a_sandboxed_iframe(browser, tmp_path, minilm_trace):
    """Inline script and style only, no eval (the loader adds the view's code as a new inline script), and an
    iframe allowed to run scripts and nothing else (as MLflow's artifact viewer shows HTML)."""
    csp = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:")
    doc = attnscope.head_view(minilm_trace).html().replace(
        "<head>", f'<head><meta http-equiv="Content-Security-Policy" content="{csp}">')
    strict = tmp_path / "strict.html"
    strict.write_text(doc, encoding="utf-8")
    outer = tmp_path / "outer.html"
    inner = attnscope.model_view(minilm_trace).html()
    outer.write_text(f'<!DOCTYPE html><iframe sandbox="allow-scripts" width="1000" height="900" '
                     f'srcdoc="{html_lib.escape(inner, quote=True)}"></iframe>', encoding="utf-8")
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(strict.as_uri())
    wait_drawn(page)
    assert page.eval_on_selector(".attnscope[data-view]", "r => Number(r.dataset.lines)") > 0
    page.goto(outer.as_uri())
    frame = page.frames[1]
    frame.wait_for_function("() => document.querySelector('.attnscope[data-view]').dataset.state === 'drawn'")
    assert frame.eval_on_selector(".attnscope[data-view]", "r => r.querySelectorAll('.as-thumb').length") == 72
    context.close()
    assert problems == []


@pytest.mark.slow
def test_an_escaping_sanitizer_shows_the_line_and_no_payload(browser, tmp_path):
    """nbconvert's sanitize_html escapes every tag it does not allow (script, style, img) as text: the view's code
    and payload sit in a comment, which it drops, so the output is the line, the picture's tag and the loader, a few
    lines high, instead of the whole payload."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import numpy as np, attnscope\n"
        "w = np.random.default_rng(0).dirichlet(np.ones(40), size=(4, 6, 40)).astype('float32')\n"
        "attnscope.model_view(attnscope.Trace.from_arrays(w, [f'w{i}' for i in range(40)]))")])
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    data = nb.cells[0].outputs[0]["data"]
    assert set(data) == {"text/html", "text/plain", "image/png"} and len(data["text/html"]) > 100_000
    body, _ = HTMLExporter(sanitize_html=True).from_notebook_node(nb)
    path = tmp_path / "sanitized.html"
    path.write_text(body, encoding="utf-8")
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto(path.as_uri(), wait_until="domcontentloaded")
    out = page.locator(".jp-OutputArea-output").first
    text = out.inner_text()
    assert text.startswith("A static picture of an attnscope model view") and "Trust Notebook" in text
    assert "attnscope-payload" not in text and "views.model" not in text and ".attnscope" not in text
    assert out.bounding_box()["height"] < 250  # the line (three lines at this width), the tag, the loader
    context.close()


@pytest.mark.slow
def test_jupyterlab_shows_an_untrusted_notebooks_picture_and_draws_the_view_once_trusted(browser, tmp_path):
    """A notebook run elsewhere is untrusted here: JupyterLab sanitizes its HTML (no scripts), so the picture and
    the line show; doing what the line says (the command palette's "Trust Notebook") draws the view."""
    from .jupyterlab import jupyterlab, lab_page

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import numpy as np, attnscope\n"
        "w = np.random.default_rng(0).dirichlet(np.ones(12), size=(3, 4, 12)).astype('float32')\n"
        "attnscope.model_view(attnscope.Trace.from_arrays(w, [f'w{i}' for i in range(12)]))")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "shared.ipynb")
    with jupyterlab(tmp_path) as (base, token):
        page = lab_page(browser, base, token, "shared.ipynb")
        out = page.locator(".jp-OutputArea-output").first
        img = out.locator("img.as-picture")
        img.wait_for(timeout=60_000)
        assert img.evaluate("i => i.complete && i.naturalWidth") > 300
        assert "Trust Notebook" in out.inner_text() and out.locator(".attnscope[data-state]").count() == 0
        page.keyboard.press("Control+Shift+C")  # the command palette, as the line says
        page.keyboard.type("Trust Notebook")
        page.keyboard.press("Enter")
        page.locator(".jp-Dialog .jp-mod-accept").click()
        out.locator(".attnscope[data-state='drawn']").wait_for(timeout=60_000)
        assert out.locator("img.as-picture").count() == 0 and out.locator(".as-thumb").count() == 12
        page.context.close()
