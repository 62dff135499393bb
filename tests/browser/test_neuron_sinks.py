"""The neuron view's Hide sinks in Chromium: the sink keys leave the lines and softmax bars of the chosen query, and
the view says what share of that query's attention they held."""

from __future__ import annotations

import numpy as np
import pytest

import attnscope
from attnscope.errors import InputError
from attnscope.figures import figure

from .browser_helpers import pixels, show

pytestmark = pytest.mark.browser

ROOT = ".attnscope[data-view=neuron]"


@pytest.fixture(scope="module")
def trace(minilm):
    return attnscope.capture(*minilm, "The unbelievably tall giraffe ate leaves.", qkv=True)


def current(page) -> dict:
    return page.eval_on_selector(ROOT, "r => r.attnscope.current()")


def test_hide_sinks_leaves_the_sink_keys_out_and_says_what_they_held(page, tmp_path, trace):
    show(page, attnscope.neuron_view(trace, layer=2, head=5, query=3, picture=False), tmp_path / "n.html")
    page.click(f"{ROOT} .as-left .as-tok >> nth=3")  # as the end of the test leaves it: the query clicked
    before = {c: pixels(page, f"{ROOT} canvas.{c}")["hash"] for c in ("as-qvec", "as-kvec")}
    weights = current(page)["weights"]
    assert page.locator(".as-units-note").is_hidden() and current(page)["held"] is None

    page.click(".as-units-btn >> text='Hide sinks'")
    row = trace.head(2, 5)[3]
    cls_sep = [i for i, t in enumerate(trace.tokens["input"]) if t in ("[CLS]", "[SEP]")]
    assert current(page)["held"] == pytest.approx(row[cls_sep].sum(), abs=1e-3)
    assert (f"[CLS] and [SEP] hidden: they held {round(100 * row[cls_sep].sum())} % of this query's attention"
            in page.text_content(".as-units-note"))
    np.testing.assert_allclose(current(page)["weights"], weights)  # the softmax itself is not renormalised
    for c, h in before.items():  # lines and bars redrawn without the sink keys
        assert pixels(page, f"{ROOT} canvas.{c}")["hash"] != h

    page.click(f"{ROOT} .as-left .as-tok >> nth=5")  # another query: the note follows it
    other = trace.head(2, 5)[5][cls_sep].sum()
    assert f"they held {round(100 * other)} % of this query's attention" in page.text_content(".as-units-note")
    page.click(f"{ROOT} .as-left .as-tok >> nth=3")
    page.click(".as-units-btn >> text='Hide sinks'")
    assert {c: pixels(page, f"{ROOT} canvas.{c}")["hash"] for c in before} == before
    assert page.locator(".as-units-note").is_hidden()


def test_named_sinks_set_the_first_state_and_units_do_not_apply(page, tmp_path, trace):
    show(page, attnscope.neuron_view(trace, layer=0, head=0, query=2, hide_sinks=["[SEP]"], picture=False),
         tmp_path / "n.html")
    assert page.get_attribute(".as-units-btn >> text='Hide sinks'", "aria-pressed") == "true"
    share = trace.head(0, 0)[2][-1]
    assert f"[SEP] hidden: it held {round(100 * share)} % of this query's attention" in page.text_content(
        ".as-units-note")
    with pytest.raises(InputError, match=r"the neuron view has no option\(s\) \['by'\]"):
        attnscope.views.render("neuron", trace, by="word")
    # the figure greys the same keys and says the same share (figures/neuron.py)
    fig = figure("neuron", trace, layer=0, head=0, query=2, hide_sinks=["[SEP]"])
    texts = [t.get_text() for t in fig.texts]
    assert any(f"[SEP] hidden: it held {round(100 * share)} % of this query's attention" in t for t in texts), texts
    softmax = next(ax for ax in fig.axes if ax.get_title(loc="left") == "softmax")
    widths = [path.vertices[:, 0].max() for path in softmax.collections[0].get_paths()]
    # the hidden key has no bar, the others keep their weights
    assert widths[-1] == 0.0 and max(widths) == pytest.approx(trace.head(0, 0)[2][:-1].max(), rel=1e-4)
