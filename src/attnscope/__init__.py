"""attnscope: see what transformer models attend to.

Capture one forward pass into a :class:`Trace`, then show it at every scale (head, model, neuron, matrix views),
anywhere (notebook, offline HTML, PNG/SVG/PDF, CLI, web app), analyse it and compare it.
"""

from . import analysis
from ._version import __version__
from ._widget import widget
from .attention import PruneSpec
from .capture import capture, capture_batch, load_model
from .trace import Segment, Trace, load
from .views import diff_view, disagreement_view, head_view, matrix_view, model_view, neuron_view, render

__all__ = [
    "PruneSpec",
    "Segment",
    "Trace",
    "__version__",
    "analysis",
    "capture",
    "capture_batch",
    "diff_view",
    "disagreement_view",
    "head_view",
    "load",
    "load_model",
    "matrix_view",
    "model_view",
    "neuron_view",
    "render",
    "widget",
]
