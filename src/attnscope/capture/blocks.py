"""Finding the parts of a loaded model: attention modules, output projections, norms, the residual stream.

Everything that reaches into a model's modules asks here; the names and layouts of each family it looks for are
the tables of :mod:`attnscope.capture.families` (:data:`~attnscope.capture.families.QUERY_NAMES`,
:data:`~attnscope.capture.families.OUTPUT_NAMES`, :data:`~attnscope.capture.families.LAYOUTS`).

- :func:`attention_modules`: every attention module of one kind (``"self"``, ``"encoder"``, ``"decoder"``,
  ``"cross"``) in module order, with its output projection ``W_O``. Found by child names, so it covers every family
  capture handles (BERT, RoBERTa, DistilBERT, GPT-2, Llama and its kin, T5, BART, Marian, Whisper, ViT). The
  verified capture and norm-based attention use it.
- :func:`layers`: the transformer layers of one self-attention stack, each with the layer module (whose input is
  the residual stream ``x``), its attention module, ``W_O`` and, for post-LN models, the LayerNorm applied after
  the residual add. Whether a family normalises before attention (pre-LN: GPT-2, Llama) or after the residual
  (post-LN: BERT) decides how the context-mixing measures decompose a layer, so these come from ``LAYOUTS``, a
  table by ``config.model_type``; a family missing from it gets an error that names the supported ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .families import LAYOUTS, OUTPUT_NAMES, QUERY_NAMES, Layout, kind_map

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class AttentionModule:
    """One attention module and its output projection.

    ``inside`` says whether the projection is the module's own child (then the module's output is already
    projected: GPT-2, Llama, T5, BART) or sits in the parent as ``output.dense`` (BERT, ViT: the module returns
    the heads' merged context and the parent projects it).
    """

    name: str
    module: nn.Module
    projection: Any  # nn.Linear, or GPT-2's Conv1D
    inside: bool


def attention_modules(model, kind: str = "self") -> list[AttentionModule]:
    """The attention modules of ``kind`` in module order (the order capture numbers layers in)."""
    from torch import nn  # imported here so `import attnscope` stays light

    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a Hugging Face model or an offline model name; got {type(model).__name__}")
    kinds = kind_map(model)
    modules = dict(model.named_modules())
    out = []
    for name, module in modules.items():
        children = dict(module.named_children())
        if not any(c in children for c in QUERY_NAMES) or kinds.get(id(module), "self") != kind:
            continue
        proj = next((children[c] for c in OUTPUT_NAMES if c in children), None)
        inside = proj is not None
        if proj is None:  # BERT, ViT: the projection sits in the parent, as attention.output.dense
            parent = modules.get(name.rpartition(".")[0])
            proj = getattr(getattr(parent, "output", None), "dense", None)
        if proj is None or not hasattr(proj, "weight"):
            raise InputError(
                f"cannot find the output projection of attention module {name!r} ({type(module).__name__}); "
                f"attnscope knows children named {OUTPUT_NAMES} or a parent's output.dense"
            )
        out.append(AttentionModule(name, module, proj, inside))
    return out


def projection_matrix(projection) -> np.ndarray:
    """An output projection as a ``[heads * head_size, hidden]`` float32 matrix in ``x @ W`` form
    (``nn.Linear`` weights are transposed; GPT-2's ``Conv1D`` is already in that form)."""
    from torch import nn

    w = projection.weight.detach().float().cpu().numpy()
    return w.T if isinstance(projection, nn.Linear) else w


# --------------------------------------------------------------------------- layers (measures)
@dataclass(frozen=True)
class Layer:
    """One transformer layer as the measures see it: ``x`` (the layer's input) -> attention sub-block -> rest.

    ``post_norm`` is the LayerNorm that follows the residual add in post-LN models (None: pre-LN, where the
    attention sub-block's output is ``x + attention(norm(x))`` itself).
    """

    index: int
    module: nn.Module  # the whole layer
    attention: nn.Module  # calls the attention function
    projection: Any  # W_O: nn.Linear, or GPT-2's Conv1D
    post_norm: Any  # nn.LayerNorm (or an RMS norm), None for pre-LN families


def layout(model) -> Layout:
    """The :class:`Layout` of ``model``'s family, or InputError naming the families that have one."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in LAYOUTS:
        raise InputError(
            f"context-mixing measures need to know where the norms and residuals of a {model_type!r} model are, "
            f"and attnscope knows them for {', '.join(sorted(LAYOUTS))}; add the family to "
            "attnscope.capture.families.LAYOUTS"
        )
    return LAYOUTS[model_type]


def layers(model) -> list[Layer]:
    """The layers of ``model``'s self-attention stack, in order (their attention kind is ``"self"``)."""
    lay = layout(model)
    stack = next((m for name, m in model.named_modules() if name == lay.stack or name.endswith("." + lay.stack)),
                 None)
    if stack is None:
        raise InputError(f"found no layer list named {lay.stack!r} in {type(model).__name__}")
    out = []
    for i, module in enumerate(stack):
        out.append(Layer(i, module, _get(module, lay.attention), _get(module, lay.output),
                         _get(module, lay.post_norm) if lay.post_norm else None))
    return out


def _get(module, path: str):
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module
