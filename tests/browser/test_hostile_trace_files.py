"""Property: any trace file that loads renders views that draw in Chromium without a page error."""

from __future__ import annotations

import pytest

import attnscope
from hostile_traces import HOSTILE, write_raw

from .browser_helpers import pixels, show

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_file_that_loads_draws(page, tmp_path, name):
    trace = attnscope.load(write_raw(tmp_path / "t.safetensors", *HOSTILE[name]()))
    views = ["head", "model", "matrix"] + (["neuron"] if trace.has_qkv() else [])
    for view in views:
        show(page, attnscope.render(view, trace), tmp_path / f"{view}.html")  # waits until drawn, fails on a view error
        drawn = page.eval_on_selector_all(f".attnscope[data-view={view}] canvas", "cs => cs.length")
        assert drawn >= 1, view
        if view in ("model", "matrix") and name != "zero-weights":
            assert pixels(page, f".attnscope[data-view={view}] canvas")["ink"] > 0, view
