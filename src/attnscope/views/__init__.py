"""Interactive HTML views of a Trace: head, model, neuron and matrix; and of two traces: diff.

Each view function returns a :class:`View`, which displays itself in Jupyter, VS Code and Colab, and saves
itself as a standalone HTML file (or a PNG/SVG/PDF figure). The drawing is plain JavaScript shipped in
``attnscope/web``; nothing is fetched from the network.
"""

from __future__ import annotations

from typing import Any

from ._view import View
from .atlas import AtlasView, atlas_view
from .diff import DiffView, diff_view, render_diff
from .disagreement import DisagreementView, disagreement_view
from .head import head_view
from .matrix import matrix_view
from .model import model_view
from .neuron import neuron_view
from .options import VIEW_OPTIONS
from .registry import VIEWS, spec


def render(view: str, trace: Any, **options: Any) -> View:
    """Render ``trace`` with the view named ``view`` (``"head"``, ``"model"``, ``"neuron"``, ``"matrix"``); two
    traces with ``"diff"``: ``render("diff", trace_a, other=trace_b)`` or ``render("diff", comparison)``; a corpus
    atlas with ``"atlas"`` and an Explanation with ``"disagreement"`` (the views of :data:`VIEWS`)."""
    reads = spec(view).reads
    if reads == "pair":
        return render_diff(trace, options)
    if reads == "atlas":  # a corpus atlas, not a trace: render("atlas", atlas, other=..., metric=...)
        return atlas_view(trace, **options)
    if reads == "explanation":  # an Explanation (attnscope.analysis.explain), not a trace
        return disagreement_view(trace, **options)
    return View(view, trace, options)


__all__ = [
    "VIEWS", "VIEW_OPTIONS", "AtlasView", "DiffView", "DisagreementView", "View", "atlas_view", "diff_view", "disagreement_view",
    "head_view", "matrix_view", "model_view", "neuron_view", "render",
]
