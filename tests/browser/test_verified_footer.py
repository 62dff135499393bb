"""The verified-capture note in every view's footer: a "verified" mark for an honest capture, a warning naming the
layer (in the footer and the toolbar badge) when an attention module's output is not what its weights say."""

from __future__ import annotations

import pytest

import attnscope
from tiny_models import build

from .browser_helpers import show

pytestmark = pytest.mark.browser

TEXT = "the cat sat on the mat and it was very happy ."


def patched_trace():
    model, tok = build("llama")
    attn = model.model.layers[1].self_attn
    original = attn.forward
    attn.forward = lambda *a, **k: (lambda out: (out[0] * 1.5, *out[1:]))(original(*a, **k))
    return attnscope.capture(model, tok, TEXT, qkv=True)


def footer(page) -> tuple[str, str | None, str]:
    cap = page.locator(".attnscope:not(.as-embedded) > .as-caption").first
    badge = page.locator(".attnscope:not(.as-embedded) .as-badge").first
    return cap.inner_text(), cap.get_attribute("data-verified"), badge.inner_text() if badge.is_visible() else ""


@pytest.mark.parametrize("view", ["head", "model", "matrix", "neuron"])
def test_a_patched_layer_is_named_in_every_views_footer(page, tmp_path, view):
    trace = patched_trace()
    show(page, attnscope.render(view, trace), tmp_path / f"{view}.html")
    text, mark, badge = footer(page)
    assert mark == "failed"
    assert "NOT verified" in text and "layer 1" in text
    assert "not verified: layer 1" in badge


def test_an_honest_capture_carries_the_verified_mark(page, tmp_path, minilm_trace):
    show(page, attnscope.head_view(minilm_trace), tmp_path / "ok.html")
    text, mark, badge = footer(page)
    assert mark == "ok" and "\u2713 verified" in text and "max diff" in text
    assert badge == ""
    plain = attnscope.capture(*build("bert"), TEXT)  # no q/k/v: nothing was checked, nothing is claimed
    show(page, attnscope.head_view(plain), tmp_path / "plain.html")
    text, mark, _ = footer(page)
    assert mark is None and "verified" not in text


def test_the_diff_view_names_the_input_that_is_not_verified(page, tmp_path):
    model, tok = build("llama")
    honest = attnscope.capture(model, tok, TEXT, qkv=True)
    show(page, attnscope.diff_view(honest, patched_trace()), tmp_path / "diff.html")
    text, mark, _ = footer(page)
    assert mark == "failed" and "NOT verified: input B: layer 1" in text
    show(page, attnscope.diff_view(honest, honest), tmp_path / "same.html")
    text, mark, _ = footer(page)
    assert mark == "ok" and "\u2713 verified" in text
