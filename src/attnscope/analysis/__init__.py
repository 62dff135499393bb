"""Measuring attention instead of only drawing it.

- :func:`head_metrics` / :func:`head_table`: per-head entropy, distance, positional and sink mass, a pattern label.
- :func:`rollout` / :func:`flow`: how much of each input token reaches each position through all layers.
- :func:`norm_attention`: ``||a_ij f(x_j)||``, attention weighted by what the value vectors carry.
- :func:`compare`: two inputs side by side: aligned tokens, per-head Jensen-Shannon divergence, next tokens.
- :func:`contributions`: context mixing beyond the weights (norm with residual and LayerNorm, ALTI, value
  zeroing, attention x gradient), each as a Trace the views draw (:mod:`attnscope.analysis.measures`).
- :func:`explain`: attention, its rollout and the measures of one input side by side, with their rank
  correlations and where they disagree (:class:`Explanation`, drawn by the disagreement view).
"""

from .align import Alignment, Slot, align_tokens
from .compare import Comparison, NextToken, compare, js_divergence, next_tokens
from .measures import contributions
from .measures.explain import Explanation, explain
from .metrics import head_metrics, head_table, is_special_token, label
from .norms import norm_attention, output_projections
from .rollout import flow, rollout

__all__ = [
    "Alignment",
    "Comparison",
    "Explanation",
    "NextToken",
    "Slot",
    "align_tokens",
    "compare",
    "contributions",
    "explain",
    "flow",
    "head_metrics",
    "head_table",
    "is_special_token",
    "js_divergence",
    "label",
    "next_tokens",
    "norm_attention",
    "output_projections",
    "rollout",
]
