"""Two-way notebook widgets: a view whose selection flows back to Python (anywidget; extra ``[widget]``).

``attnscope.widget(trace, view="model")`` draws the same JavaScript view as the HTML output, inside an anywidget
(JupyterLab, classic Notebook, VS Code, Colab, marimo), and keeps two traitlets in step with what the user does:

- ``selected``: ``(layer, head)`` of the head clicked in the model view, or shown in the other views (``head`` is
  None while a head view shows several heads; ``selected`` is None until a model view's thumbnail is clicked);
- ``query``: the query token pinned in a head view (click a token) or picked in the neuron view, else None.

Both can be set from Python too, and the view follows. A cell can react to a click::

    w = attnscope.widget(trace)
    w.observe(lambda change: print(change["new"]), names="selected")

The payload travels once, as the widget's ``_data`` state; nothing is fetched from the network.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .encode import script_json
from .errors import InputError, require
from .views import View, assets, render
from .views.registry import TRACE_VIEWS


def widget(trace_or_view: Any, view: str = "model", **options: Any):
    """A :class:`Widget` showing ``view`` (``"model"``, ``"head"``, ``"neuron"``, ``"matrix"``) of a trace with
    ``options`` as the view functions take them, or showing a :class:`~attnscope.views.View` made already.

    Needs anywidget: ``pip install 'attnscope[widget]'``.
    """
    shown = trace_or_view if isinstance(trace_or_view, View) else render(view, trace_or_view, **options)
    if isinstance(trace_or_view, View) and options:
        raise InputError(f"options {sorted(options)} apply when making a view from a trace; this one is made already")
    if shown.name not in WIDGET_VIEWS:
        raise InputError(f"the {shown.name} view has no widget; attnscope.widget shows one of {sorted(WIDGET_VIEWS)}")
    return _widget_class()(shown)


#: Views a widget can show: the views of one trace (each script tells what is selected: ``current()``).
WIDGET_VIEWS = TRACE_VIEWS


@cache
def esm(view: str) -> str:
    """The widget's front-end module for ``view``: the view's scripts, web/widget.js and its export."""
    return assets.scripts(view) + "\n" + assets.asset("widget.js") + "\nexport default { render };\n"


@cache
def _widget_class():
    anywidget: Any = require("anywidget", "widget")  # a module: its class is a base class below
    import traitlets

    class Widget(anywidget.AnyWidget):
        """An attnscope view as a two-way widget: ``selected`` ``(layer, head)`` and ``query`` follow the user's
        clicks and can be set from Python (see :func:`attnscope.widget`)."""

        _data = traitlets.Unicode("").tag(sync=True)
        selected = traitlets.Tuple(default_value=None, allow_none=True).tag(sync=True)
        query = traitlets.Int(default_value=None, allow_none=True).tag(sync=True)

        def __init__(self, view: View):
            self._esm, self._css = esm(view.name), assets.styles(view.name)  # anywidget makes them synced traits
            super().__init__(_data=script_json(view.data()))
            self.view = view

        @traitlets.validate("selected")
        def _check_selected(self, proposal):
            value = proposal["value"]
            if value is None:
                return None
            if len(value) != 2 or not all(v is None or isinstance(v, int) for v in value):
                raise InputError(f"selected must be (layer, head) with whole numbers (head may be None); got {value!r}")
            return tuple(value)

        def __repr__(self) -> str:
            return f"<attnscope widget: {self.view!r}, selected={self.selected}, query={self.query}>"

    return Widget
