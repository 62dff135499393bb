"""Verified capture: the recorded weights must be what each attention module really computed its output with.

While capture records weights and q/k/v, a forward hook on every attention module keeps what the module returned.
Afterwards, for each layer, the softmax weights times the value vectors (heads merged, then through the output
projection when the module applies it itself) must reproduce that output. The largest absolute difference per
layer goes into ``trace.meta["verified"]``::

    {"self": {"ok": True, "max_abs_diff": [2.4e-07, ...], "tolerance": [1.3e-04, ...], "worst_layer": 1}}

A module whose output is not what its weights say is flagged (``"ok": False`` and a ``"problem"`` naming the worst
layer): a custom kernel, a patched or gated module, or one that never called the recording function at all.
``"ok": None`` means the check could not run (an attention module without a recognisable output projection).
The tolerance is relative to the size of the layer's output and follows the model's dtype (:data:`RTOL`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .blocks import AttentionModule, attention_modules

#: Allowed difference relative to ``max(1, largest |output|)`` of the layer, by the model's dtype. float32 models
#: run the same arithmetic as the check (measured differences: ~1e-7); half precision rounds the weights.
RTOL = {"float32": 1e-4, "float64": 1e-9, "float16": 4e-3, "bfloat16": 2e-2}


@dataclass
class _Call:
    kind: str
    layer: int | None  # the recorded layer this call wrote, None when it recorded nothing
    output: Any  # torch.Tensor [B, q, hidden or heads * head_size]
    module: AttentionModule | None  # None until the call returns


@dataclass
class Watch:
    """What the hooks saw during one forward pass; :meth:`result` compares it with the recorder."""

    recorder: Any  # interface.Recorder
    calls: list[_Call] = field(default_factory=list)
    problem: str | None = None  # why the check cannot run at all

    def result(self, dtype: str) -> dict[str, dict[str, Any]]:
        """``{kind: {"ok", "max_abs_diff", "tolerance", "worst_layer"[, "problem"]}}`` (see the module docstring)."""
        if self.problem is not None:
            return {kind: {"ok": None, "problem": self.problem} for kind in self.recorder.kinds}
        rtol = RTOL.get(dtype, RTOL["bfloat16"])
        out: dict[str, dict[str, Any]] = {}
        for kind in self.recorder.kinds:
            calls = [c for c in self.calls if c.kind == kind]
            diffs, tols, problems = [], [], []
            for i, call in enumerate(calls):
                diff, scale, problem = _compare(self.recorder.kinds[kind], call)
                diffs.append(None if diff is None else _round(diff))
                tols.append(_round(rtol * max(1.0, scale)))
                if problem:
                    problems.append(f"layer {i}: {problem}")
            bad = [i for i, (d, t) in enumerate(zip(diffs, tols)) if d is None or d > t]
            worst = bad[0] if any(diffs[i] is None for i in bad) else max(
                range(len(diffs)), key=lambda i: (diffs[i] or 0.0) / tols[i], default=0)
            record = {"ok": not bad and bool(calls), "max_abs_diff": diffs, "tolerance": tols, "worst_layer": worst}
            if not calls:
                record["problem"] = f"no {kind!r} attention module was seen running"
            elif bad:
                d = diffs[worst]
                record["problem"] = (problems[0] if problems else
                                     f"layer {worst}: the module's output differs from weights x values by {d:.3g} "
                                     f"(tolerance {tols[worst]:.3g})")
            out[kind] = record
        return out


@contextlib.contextmanager
def watching(model, recorder):
    """Hook every attention module of ``model`` for the duration of the block (hooks removed in ``finally``)."""
    watch = Watch(recorder)
    hooks = []
    try:
        kinds = sorted(set(recorder.kind_of.values())) or ["self"]
        modules = [(kind, m) for kind in kinds for m in attention_modules(model, kind)]
    except InputError as exc:
        watch.problem = str(exc)
        modules = []
    try:
        for kind, am in modules:
            hooks.append(am.module.register_forward_pre_hook(_before(watch, kind)))
            hooks.append(am.module.register_forward_hook(_after(watch, kind, am)))
        yield watch
    finally:
        for h in hooks:
            h.remove()


def _recorded(recorder, kind: str) -> int:
    kr = recorder.kinds.get(kind)
    return len(kr.weights) if kr is not None else 0


def _before(watch: Watch, kind: str):
    def hook(module, args):
        watch.calls.append(_Call(kind, _recorded(watch.recorder, kind), None, None))  # layer fixed after the call

    return hook


def _after(watch: Watch, kind: str, am: AttentionModule):
    def hook(module, args, output):
        call = next(c for c in reversed(watch.calls) if c.kind == kind and c.module is None)
        if call.layer is None or _recorded(watch.recorder, kind) != call.layer + 1:
            call.layer = None
        call.output = (output[0] if isinstance(output, tuple) else output).detach()
        call.module = am

    return hook


def _compare(kr, call: _Call) -> tuple[float | None, float, str | None]:
    """(max |weights x values (x W_O) - output|, max |output|, problem) for one recorded call."""
    import torch

    real = call.output.float()
    scale = float(real.abs().max()) if real.numel() else 0.0
    if call.layer is None:
        return None, scale, "the attention module did not run the recording attention function"
    weights = torch.from_numpy(kr.weights[call.layer])  # [B, H, q, k]
    values = torch.from_numpy(kr.value[call.layer])  # [B, H, k, d]
    context = torch.matmul(weights, values)  # [B, H, q, d]
    B, H, q, d = context.shape
    expected = context.transpose(1, 2).reshape(B, q, H * d)
    if call.module is not None and call.module.inside:
        proj = call.module.projection
        with torch.no_grad():
            expected = proj(expected.to(device=proj.weight.device, dtype=proj.weight.dtype)).float().cpu()
    real = real.cpu()
    if expected.shape != real.shape:
        return None, scale, (f"the module returned shape {tuple(real.shape)} but weights x values give "
                             f"{tuple(expected.shape)}")
    diff = float((expected - real).abs().max()) if real.numel() else 0.0
    if not math.isfinite(diff):
        return None, scale, "the module's output or the recorded weights hold NaN or infinity"
    return diff, scale, None


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def summary(meta: dict) -> dict[str, Any] | None:
    """The footer's view of ``meta["verified"]``: ``{"ok", "maxAbsDiff", "kind", "layer", "problem"}`` over all
    kinds (the first failed one, else the one with the largest difference), or None when nothing was checked.
    Entries that are not what :class:`Watch` writes (a hand-edited file) count as not verified."""
    verified = meta.get("verified")
    if not isinstance(verified, dict) or not verified:
        return None
    records = {str(k): v if isinstance(v, dict) else {"ok": None} for k, v in verified.items()}

    def diffs(v: dict) -> list[float]:
        found = v.get("max_abs_diff")
        return [float(d) for d in found if isinstance(d, (int, float))] if isinstance(found, list) else []

    failed = [(k, v) for k, v in records.items() if v.get("ok") is not True]
    kind, v = failed[0] if failed else max(records.items(), key=lambda kv: max(diffs(kv[1]), default=0.0))
    layer = v.get("worst_layer")
    return {"ok": v.get("ok") if isinstance(v.get("ok"), bool) else None, "maxAbsDiff": max(diffs(v), default=None),
            "kind": kind, "layer": layer if isinstance(layer, int) else None,
            "problem": str(v["problem"]) if v.get("problem") is not None else None}
