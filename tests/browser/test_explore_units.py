"""The web app's page-level Units selector and Hide sinks toggle (explore.js): every view that takes them is asked
for by= / hide_sinks=, draws words or hides sinks, and the address and downloads carry them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from served import free_port, serving

pytestmark = pytest.mark.browser

HOST = "#view-host .attnscope"


@pytest.fixture(scope="module")
def url():
    port = free_port()
    with serving([str(Path(sys.executable).with_name("attnscope")), "serve", "--port", str(port)], port) as (base, _):
        yield base


def drawn(page, view: str) -> None:
    page.wait_for_selector(f"{HOST}[data-view={view}][data-state=drawn]", timeout=60_000)


def test_page_units_and_hide_sinks_reach_every_view(page, url):
    page.goto(url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.fill("#text", "The unbelievably tall giraffe ate leaves.")
    page.click("#run")
    drawn(page, "head")
    left = f"{HOST} .as-left .as-tok"
    assert "un" in page.eval_on_selector_all(left, "ts => ts.map(t => t.textContent)")

    with page.expect_response(lambda r: "/view?" in r.url and "by=word" in r.url):
        page.select_option("#units", "word")
    drawn(page, "head")
    tokens = page.eval_on_selector_all(left, "ts => ts.map(t => t.textContent)")
    assert "unbelievably" in tokens and "un" not in tokens
    assert page.locator(f"{HOST} .as-field:has-text('Units') select").evaluate(
        "s => s.selectedOptions[0].textContent") == "words"  # the view's own control starts there

    with page.expect_response(lambda r: "/view?" in r.url and "hide_sinks=true" in r.url and "by=word" in r.url):
        page.check("#hide-sinks")
    drawn(page, "head")
    tokens = page.eval_on_selector_all(left, "ts => ts.map(t => t.textContent)")
    assert "[CLS]" not in tokens and "[SEP]" not in tokens and "unbelievably" in tokens
    assert "[CLS] and [SEP] hidden: they held" in page.text_content(f"{HOST} .as-units-note")
    assert "by=word" in page.url and "hide_sinks=1" in page.url
    for link in ("#dl-html", "#dl-png"):
        assert "by=word" in page.get_attribute(link, "href") and "hide_sinks=true" in page.get_attribute(link, "href")

    page.click("#views button[data-view=neuron]")  # no units for vectors; sinks hidden
    drawn(page, "neuron")
    assert page.is_disabled("#units") and "do not apply" in page.get_attribute("#units-field", "title")
    assert not page.is_disabled("#hide-sinks")
    assert "of this query's attention" in page.text_content(f"{HOST} .as-units-note")

    page.click("#views button[data-view=matrix]")
    drawn(page, "matrix")
    labels = page.eval_on_selector_all(f"{HOST} .as-mrows .as-mlabel", "ls => ls.map(l => l.textContent)")
    assert "unbelievably" in labels and "[CLS]" not in labels

    page.reload()  # the address holds the choices
    drawn(page, "matrix")
    assert page.input_value("#units") == "word" and page.is_checked("#hide-sinks")
