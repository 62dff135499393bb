"""Head view of a trace made with generate=N, in Chromium: the step slider shows the prompt plus the first s generated
tokens and draws the row of the last of them; keyboard, buttons, play, "All" and the kinds of an encoder-decoder."""

from __future__ import annotations

import numpy as np
import pytest

import attnscope
from tiny_models import build

from .browser_helpers import expected_lines, lines_drawn, pixels, show, texts

pytestmark = pytest.mark.browser

LEFT, RIGHT, RANGE = ".as-left .as-tok", ".as-right .as-tok", "input.as-step-range"


@pytest.fixture(scope="module")
def llama_trace():
    model, tok = build("llama")
    return attnscope.capture(model, tok, "the cat sat on the mat", generate=3)


def step_of(page) -> int | None:
    return page.eval_on_selector(".attnscope[data-view=head]", "r => r.attnscope.probe.step()")


def step_token(page) -> tuple[int, str]:
    return tuple(page.eval_on_selector(".as-left .as-tok.as-step", "e => [Number(e.dataset.i), e.textContent]"))


def test_slider_steps_through_what_each_generated_token_attended_to(page, tmp_path, llama_trace):
    prompt, gen = llama_trace.segments["prompt"], llama_trace.segments["generated"]
    assert (gen.start, len(gen)) == (prompt.end, 3)
    P, toks = gen.start, llama_trace.tokens["input"]
    view = attnscope.head_view(llama_trace)
    show(page, view, tmp_path / "g.html")
    assert page.get_attribute(RANGE, "max") == "3" and step_of(page) is None  # every token and line until asked
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, range(4))
    assert page.eval_on_selector_all(".as-left .as-gen", "es => es.map(e => Number(e.dataset.i))") == [P, P + 1, P + 2]
    assert texts(page, ".as-step-status") == ["3 generated"]
    page.focus(RANGE)
    page.keyboard.press("Home")  # a native range: the keyboard moves it
    hashes = set()
    for s in range(4):
        if s:
            page.keyboard.press("ArrowRight")
        last = P + s - 1  # the query drawn at step s: the last prompt token, then generated token s
        assert step_of(page) == s
        assert texts(page, LEFT) == texts(page, RIGHT) == toks[: last + 1]
        assert step_token(page) == (last, toks[last])
        drawn = lines_drawn(page)
        assert drawn == expected_lines(view.payload, "self", 0, range(4), rows=(0, last + 1), cols=(0, last + 1),
                                       row=last)
        row = np.stack([llama_trace.row(0, h, last) for h in range(4)])
        assert 0 < drawn <= int((row[:, : last + 1] > 0).sum()) and not row[:, last + 1 :].any()  # keys before it
        nxt = f' \u2192 "{toks[last + 1]}"' if last + 1 < len(toks) else ""
        assert texts(page, ".as-step-status") == [f'{s}/3 \u00b7 "{toks[last]}"{nxt}']
        hashes.add(pixels(page, ".as-lines")["hash"])
    assert len(hashes) == 4  # every step draws a different row
    page.click(".as-step-btn >> text='All'")
    assert step_of(page) is None and texts(page, LEFT) == toks
    assert lines_drawn(page) == expected_lines(view.payload, "self", 0, range(4))


def test_buttons_play_and_the_pair_filter(page, tmp_path, llama_trace):
    view = attnscope.head_view(llama_trace, layer=1, heads=[2])
    show(page, view, tmp_path / "g.html")
    P = llama_trace.segments["generated"].start
    page.click(".as-step-btn[title^='Previous']")  # from "all tokens" (step 3): one step back
    assert step_of(page) == 2 and step_token(page)[0] == P + 1
    assert lines_drawn(page) == expected_lines(view.payload, "self", 1, [2], rows=(0, P + 2), cols=(0, P + 2), row=P + 1)
    page.click(".as-step-btn[title^='Next']")
    assert step_of(page) == 3
    page.click(".as-step-btn[title^='Play']")  # restarts at 0 and advances to the last step by itself
    page.wait_for_function("() => document.querySelector('.attnscope').attnscope.probe.step() === 3", timeout=10_000)
    assert page.get_attribute(".as-step-btn[title^='Play']", "aria-pressed") == "false"
    assert texts(page, ".as-seg-btn") == ["All", "prompt\u2192prompt", "generated\u2192prompt",
                                          "generated\u2192generated"]  # causal: prompt never sees generated
    page.click(".as-seg-btn >> text='generated\u2192prompt'")  # a filter leaves stepping
    assert step_of(page) is None
    assert len(texts(page, LEFT)) == 3 and len(texts(page, RIGHT)) == P


def test_encoder_decoder_steps_the_decoder_and_cross_attention(page, tmp_path):
    model, tok = build("bart")
    trace = attnscope.capture(model, tok, "the cat sat on the mat", generate=3)
    gen = trace.segments["generated"]
    assert gen.stream == "decoder" and gen.start == 1
    n_gen, enc = len(gen), trace.tokens["encoder"]
    view = attnscope.head_view(trace, kind="cross")
    show(page, view, tmp_path / "g.html")
    assert page.get_attribute(RANGE, "max") == str(n_gen)
    page.focus(RANGE)
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")  # step 1: the decoder start token and the first generated token
    assert texts(page, LEFT) == trace.tokens["decoder"][:2] and step_token(page)[0] == 1
    assert texts(page, RIGHT) == enc  # cross-attention: the generated token reads every encoder token
    assert lines_drawn(page) == expected_lines(view.payload, "cross", 0, range(4), rows=(0, 2), row=1) > 0
    page.locator(".as-field", has_text="Attention").locator("select").select_option(label="Encoder")
    assert page.locator(RANGE).count() == 0  # the encoder's tokens were not generated


def test_traces_without_generated_tokens_have_no_slider(page, tmp_path, make_trace):
    show(page, attnscope.head_view(make_trace(2, 2, 8, sentence_b_start=4)), tmp_path / "h.html")
    assert page.locator(RANGE).count() == 0 and page.locator(".as-gen").count() == 0
