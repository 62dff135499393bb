"""attnscope.widget: an anywidget holding a view's scripts and payload, with selected/query traitlets checked on
the Python side (the browser side is tested in tests/browser/test_widget.py)."""

from __future__ import annotations

import json
import sys

import pytest

import attnscope
from attnscope import _widget
from attnscope.errors import InputError, MissingExtraError

pytest.importorskip("anywidget")


def test_a_widget_carries_the_view_its_scripts_and_starts_with_nothing_selected(make_trace):
    trace = make_trace(2, 3, 5)
    w = attnscope.widget(trace, view="matrix", layer=1, head=2)
    state = w.get_state()
    data = json.loads(state["_data"])
    assert data["view"] == "matrix" and data["options"] == {"layer": 1, "head": 2}
    assert data["payload"] == attnscope.matrix_view(trace, layer=1, head=2).payload
    assert "views.matrix = function" in state["_esm"] and state["_esm"].rstrip().endswith("export default { render };")
    assert ".attnscope" in state["_css"]
    assert (w.selected, w.query) == (None, None) and state["selected"] is None


def test_selected_and_query_take_what_the_browser_sends_and_refuse_the_rest(make_trace):
    w = attnscope.widget(make_trace())
    w.set_state({"selected": [1, 2], "query": 3})  # as a front end's message sets them
    assert (w.selected, w.query) == ((1, 2), 3)
    w.selected = (0, None)
    assert json.loads(json.dumps(w.get_state()["selected"])) == [0, None]  # as it is sent
    with pytest.raises(InputError, match=r"selected must be \(layer, head\)"):
        w.selected = (1, "x")
    seen = []
    w.observe(lambda change: seen.append(change["new"]), names="selected")
    w.set_state({"selected": [1, 0]})
    assert seen == [(1, 0)]


def test_a_view_made_already_or_a_view_without_a_widget(make_trace):
    trace = make_trace()
    view = attnscope.head_view(trace, layer=1)
    assert json.loads(attnscope.widget(view).get_state()["_data"])["options"]["layer"] == 1
    with pytest.raises(InputError, match="made already"):
        attnscope.widget(view, theme="dark")
    with pytest.raises(InputError, match="the diff view has no widget"):
        attnscope.widget(attnscope.diff_view(trace, trace.with_meta(model="other")))


def test_without_anywidget_the_error_names_the_extra(make_trace, monkeypatch):
    _widget._widget_class.cache_clear()
    monkeypatch.setitem(sys.modules, "anywidget", None)
    try:
        with pytest.raises(MissingExtraError, match=r"pip install 'attnscope\[widget\]'"):
            attnscope.widget(make_trace())
    finally:
        _widget._widget_class.cache_clear()
