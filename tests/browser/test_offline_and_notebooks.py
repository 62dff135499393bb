"""Views are self-contained: a saved file makes no network request, and a notebook holding several views,
executed and exported to HTML, draws every one of them without interference."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

import attnscope

from .browser_helpers import pixels, show, thumb_pixels, wait_drawn

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("name", ["head", "model", "neuron", "matrix"])
def test_a_saved_view_makes_no_network_request(browser, tmp_path, minilm_trace, name):
    context = browser.new_context()
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    path = tmp_path / f"{name}.html"
    show(page, attnscope.views.render(name, minilm_trace), path)
    page.wait_for_timeout(200)
    context.close()
    assert [u for u in requests if not u.startswith("file:")] == []
    assert requests == [path.as_uri()]


NOTEBOOK = [
    "import numpy as np, torch\nimport attnscope\nfrom attnscope import compat\n"
    "rng = np.random.default_rng(0)\n"
    "w = np.exp(rng.normal(size=(3, 4, 10, 10)) * 2); w /= w.sum(-1, keepdims=True)\n"
    "trace = attnscope.Trace.from_arrays(w.astype('float32'), [f'w{i}' for i in range(10)], sentence_b_start=6)\n"
    "real = attnscope.capture('minilm', 'The cat sat on the mat.', qkv=True)",
    "attnscope.head_view(trace)",
    "attnscope.model_view(trace, theme='dark')",
    "from IPython.display import display\ndisplay(attnscope.matrix_view(trace, layer=2, head=1))\n"
    "display(attnscope.head_view(trace, layer=1, heads=[0]))",
    "attnscope.render('neuron', real, layer=3, head=2, query=4)",
    "compat.head_view(tuple(torch.from_numpy(w[i:i+1].astype('float32')) for i in range(3)), "
    "[f'w{i}' for i in range(10)])",
]


def open_executed(browser, nb, tmp_path):
    """Execute ``nb`` in ``tmp_path``, export it to HTML like nbconvert does, open it; returns (page, errors)."""
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell in nb.cells:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"cell failed: {cell.source[:80]!r}: {errors[0].get('evalue')}"
    body, _ = HTMLExporter().from_notebook_node(nb)
    path = tmp_path / "notebook.html"
    path.write_text(body, encoding="utf-8")
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # nbconvert's template asks a CDN for require.js and MathJax: refuse (offline), our views need neither
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto(path.as_uri(), wait_until="domcontentloaded")
    wait_drawn(page)
    return page, errors


def shown_views(page) -> list[str]:
    return page.eval_on_selector_all(".attnscope[data-view]:not(.as-embedded)", "rs => rs.map(r => r.dataset.view)")


@pytest.mark.slow
def test_several_views_in_an_executed_exported_notebook_all_draw(browser, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in NOTEBOOK])
    page, errors = open_executed(browser, nb, tmp_path)
    assert shown_views(page) == ["head", "model", "matrix", "head", "neuron", "head"]
    ids = page.eval_on_selector_all(".attnscope[data-view]", "rs => rs.map(r => r.id)")
    assert len(set(ids)) == len(ids)
    assert all(pixels(page, ".as-lines", i)["alpha"] > 200 for i in range(3))
    assert all(thumb_pixels(page, *divmod(i, 4))["ink"] > 10 for i in range(12))
    assert pixels(page, ".as-heat")["ink"] > 50 and pixels(page, ".as-kvec")["alpha"] > 1000
    # each view keeps its own state: a layer change in the first head view leaves the others as they were
    others = [pixels(page, ".as-lines", i)["hash"] for i in (1, 2)]
    page.locator(".attnscope[data-view=head] >> nth=0").locator(".as-bar select").first.select_option(label="2")  # Layer
    assert [pixels(page, ".as-lines", i)["hash"] for i in (1, 2)] == others
    assert page.get_attribute(".attnscope[data-view=model]", "data-theme") == "dark"
    page.context.close()
    assert errors == []


@pytest.mark.slow
def test_the_quickstart_notebook_runs_and_draws_every_view(browser, tmp_path):
    nb = nbformat.read(Path(__file__).parents[2] / "examples" / "quickstart.ipynb", as_version=4)
    page, errors = open_executed(browser, nb, tmp_path)
    assert shown_views(page) == ["head", "model", "neuron", "matrix", "head"]
    assert (tmp_path / "model_view.html").stat().st_size > 10_000
    assert (tmp_path / "head_view.png").read_bytes()[:4] == b"\x89PNG"
    assert pixels(page, ".as-lines")["alpha"] > 200 and thumb_pixels(page, 5, 11)["ink"] > 10
    page.context.close()
    assert errors == []
