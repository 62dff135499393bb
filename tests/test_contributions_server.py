"""The web app's Measure selector: POST /api/traces/{id}/measure holds a context-mixing measure of a held trace's
text as a new trace, drawn by the same views (API through TestClient; the page through Chromium)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import attnscope
from attnscope.analysis import contributions
from attnscope.server import Settings, create_app
from served import free_port, serving

TEXT = "The cat sat on the mat because it was tired."


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings()), base_url="http://127.0.0.1") as c:
        yield c


def test_a_measure_is_held_as_a_trace_the_views_draw(client, minilm, tmp_path):
    config = client.get("/api/config").json()
    assert [m["value"] for m in config["measures"]] == ["norm", "alti", "value_zeroing", "grad_attention"]
    base = client.post("/api/capture", json={"text": TEXT}).json()
    got = client.post(f"/api/traces/{base['id']}/measure", json={"method": "alti"})
    assert got.status_code == 200, got.text
    alti = got.json()
    assert alti["source"] == {"type": "measure", "method": "alti", "of": base["id"], "model": "minilm"}
    assert alti["kinds"]["self"]["heads"] == 1 and alti["kinds"]["self"]["layers"] == 6
    view = client.get(f"/api/traces/{alti['id']}/view", params={"view": "matrix"}).json()
    assert view["payload"]["kinds"]["self"]["shape"] == [13, 13]
    path = tmp_path / "alti.safetensors"
    path.write_bytes(client.get(f"/api/traces/{alti['id']}/download/trace").content)
    held = attnscope.load(path)
    want = contributions(minilm, TEXT, method="alti")
    np.testing.assert_allclose(held.dense(), want.dense(), atol=1e-6)
    assert held.meta["measure"]["method"] == "alti"
    again = client.post(f"/api/traces/{base['id']}/measure", json={"method": "alti"}).json()
    assert again["id"] == alti["id"]  # made once
    norm = client.post(f"/api/traces/{alti['id']}/measure", json={"method": "norm"}).json()
    assert norm["source"]["of"] == base["id"]  # a measure of a measure is one of the captured trace


def test_bad_measure_requests_say_why(client, tmp_path):
    base = client.post("/api/capture", json={"text": TEXT}).json()
    bad = client.post(f"/api/traces/{base['id']}/measure", json={"method": "saliency"})
    assert bad.status_code == 422 and "choose one of norm, alti, value_zeroing, grad_attention" in bad.json()["error"]
    assert client.post(f"/api/traces/{base['id']}/measure", json={"method": "alti", "x": 1}).status_code == 422
    assert client.post("/api/traces/nope/measure", json={"method": "alti"}).status_code == 404


@pytest.mark.browser
def test_the_measure_selector_redraws_the_view_with_the_measure(page):
    port = free_port()
    command = [str(Path(sys.executable).with_name("attnscope")), "serve", "--port", str(port)]
    with serving(command, port) as (url, _):
        page.goto(url + "/")
        page.wait_for_selector("#model option", state="attached")
        page.fill("#text", TEXT)
        page.click("#run")
        page.wait_for_selector("#view-host .attnscope[data-view=head][data-state=drawn]", timeout=60_000)
        page.click("#views button[data-view=matrix]")
        page.wait_for_selector("#view-host .attnscope[data-view=matrix][data-state=drawn]")
        assert page.locator("#measure option").count() == 5
        page.select_option("#measure", "value_zeroing")
        page.wait_for_function("() => document.querySelector('#info').textContent.includes('value zeroing')",
                               timeout=60_000)
        page.wait_for_selector("#view-host .attnscope[data-view=matrix][data-state=drawn]")
        assert page.locator("#view-host .as-field", has_text="Head").locator("option").count() == 1
        assert "measured on the captured text" in page.text_content("#info")
        page.select_option("#measure", "")
        page.wait_for_function("() => !document.querySelector('#info').textContent.includes('measured')")
        page.wait_for_selector("#view-host .attnscope[data-view=matrix][data-state=drawn]")
        assert page.locator("#view-host .as-field", has_text="Head").locator("option").count() == 12
