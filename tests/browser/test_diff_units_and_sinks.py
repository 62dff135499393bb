"""The diff view's Units and Hide sinks controls in Chromium: each state draws the comparison of both inputs as
shown (attnscope.sinks.shown_trace + attnscope.analysis.compare), and says what the hidden tokens held in A and B."""

from __future__ import annotations

import numpy as np
import pytest

import attnscope
from attnscope.analysis import compare
from attnscope.analysis.compare import aligned_head
from attnscope.sinks import held_share, shown_trace, sink_positions

from .browser_helpers import pixels, show, texts

pytestmark = pytest.mark.browser

ROOT = ".attnscope[data-view=diff]"
ROWS = ".as-mrows .as-mlabel"
UNITS = ".as-field:has-text('Units') select"


@pytest.fixture(scope="module")
def she_he(minilm):
    return (attnscope.capture(*minilm, "The doctor said she was unbelievably tired. Then she left."),
            attnscope.capture(*minilm, "The doctor said he was unbelievably tired. Then he left."))


def note(page) -> str:
    return page.eval_on_selector(ROOT, "r => r.attnscope.units.note()")


def panel(page, index: int) -> np.ndarray:
    """Canvas ``index`` (0: A, 1: B, 2: B - A) as an RGB array [rows, cols, 3]."""
    data = page.eval_on_selector_all(".as-heat", "(cs, i) => { const c = cs[i]; return Array.from("
                                     "c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }", index)
    return np.array(data, dtype=np.uint8).reshape(-1, pixels(page, ".as-heat", index)["w"], 4)[..., :3]


def test_hide_sinks_compares_both_inputs_without_them_and_says_what_they_held(page, tmp_path, she_he):
    a, b = she_he
    show(page, attnscope.diff_view(a, b, layer=2, head=5, picture=False, prettify=False), tmp_path / "d.html")
    n = len(compare(a, b).query_alignment.slots)
    assert pixels(page, ".as-heat")["w"] == n and "[CLS]" in texts(page, ROWS)
    assert page.locator(".as-units-note").is_hidden()

    page.click(".as-units-btn >> text='Hide sinks'")
    hidden = compare(shown_trace(a, hide_sinks=True), shown_trace(b, hide_sinks=True))
    assert texts(page, ROWS)[:4] == ["the", "doctor", "said", "she \u2192 he"]
    assert "[CLS]" not in texts(page, ROWS) and "[SEP]" not in texts(page, ROWS)
    assert pixels(page, ".as-heat")["w"] == len(hidden.key_alignment.slots) == n - 2
    assert page.get_attribute(ROOT, "data-layer") == "2" and page.get_attribute(ROOT, "data-head") == "5"  # kept
    held_a = held_share(a, sink_positions(a, "auto"))[2, 5]
    held_b = held_share(b, sink_positions(b, "auto"))[2, 5]
    assert (f"[CLS] and [SEP] hidden: they held {round(100 * held_a)} % of this head's attention in A, "
            f"{round(100 * held_b)} % in B") in note(page)
    assert "colours scale to the largest weight shown" in note(page)
    # colours scale to what is shown: the largest weight of either input is the ramp's darkest colour
    wa, wb = aligned_head(hidden, "a", 2, 5), aligned_head(hidden, "b", 2, 5)
    side, w = (0, wa) if wa.max() >= wb.max() else (1, wb)
    i, j = np.unravel_index(w.argmax(), w.shape)
    assert panel(page, side)[i, j].tolist() == [8, 48, 107]  # the end of the light theme's ramp
    # another head: the note follows it
    page.locator(".as-field:has-text('Head') select").select_option(label="7")
    share = held_share(a, sink_positions(a, "auto"))[2, 7]
    assert f"they held {round(100 * share)} % of this head's attention in A" in note(page)

    page.click(".as-units-btn >> text='Renormalise'")
    assert "rows renormalised over what is shown" in note(page)
    page.click(".as-units-btn >> text='Hide sinks'")
    assert "[CLS]" in texts(page, ROWS) and pixels(page, ".as-heat")["w"] == n and note(page) == ""


def test_units_line_up_words_and_the_title_ranks_their_divergence(page, tmp_path, she_he):
    a, b = she_he
    show(page, attnscope.diff_view(a, b, picture=False, prettify=False), tmp_path / "d.html")
    page.select_option(UNITS, label="words")
    words = compare(a.aggregate("word"), b.aggregate("word"))
    assert "unbelievably" in texts(page, ROWS) and "un" not in texts(page, ROWS)
    assert pixels(page, ".as-heat")["w"] == len(words.key_alignment.slots)
    layer, head = int(page.get_attribute(ROOT, "data-layer")), int(page.get_attribute(ROOT, "data-head"))
    d = float(words.divergence[layer, head])
    assert f"JS divergence {d:.3f} bits" in page.text_content(".as-diff-title")
    assert note(page).startswith("words: attention to a word sums its pieces")
    # sentences: the inputs differ in both sentences, so only [CLS] and [SEP] line up; hiding them leaves nothing
    page.select_option(UNITS, label="sentences")
    assert len(texts(page, ROWS)) == 3
    hide = page.locator(".as-units-btn >> text='Hide sinks'")
    assert hide.is_disabled() and "share no sentence" in hide.get_attribute("title")


def test_options_set_the_first_state_and_a_comparison_has_no_controls(page, tmp_path, she_he):
    a, b = she_he
    show(page, attnscope.diff_view(a, b, by="word", hide_sinks=True, picture=False), tmp_path / "d.html")
    assert page.eval_on_selector(ROOT, "r => r.attnscope.units.state()") == {"level": "word", "hide": True,
                                                                             "renorm": False}
    assert page.locator(UNITS).evaluate("s => s.selectedOptions[0].textContent") == "words"
    assert "hidden: they held" in note(page) and "[CLS]" not in texts(page, ROWS)
    page.select_option(UNITS, label="tokens")  # back to the tokens, sinks still hidden
    assert texts(page, ROWS)[:3] == ["the", "doctor", "said"] and "un" in texts(page, ROWS)
    show(page, attnscope.diff_view(compare(a, b), picture=False), tmp_path / "c.html")
    assert page.locator(".as-units").count() == 0
