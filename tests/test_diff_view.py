"""The diff view of two inputs (Python side and figure): aligned payload, options, errors, files.

Drawing in Chromium is tested in tests/browser/test_diff.py.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader

import attnscope
from attnscope.analysis import compare
from attnscope.analysis.compare import aligned_head
from attnscope.encode import dequantize
from attnscope.errors import InputError, MissingDataError
from attnscope.figures import figure, save_figure
from attnscope.views import DiffView, render
from attnscope.views import diff as diff_module
from conftest import random_attention
from tiny_models import build

A_WORDS = "[CLS] the doctor asked the nurse . she [SEP]".split()
B_WORDS = "[CLS] the doctor asked the nurse . he [SEP]".split()
SVG_TEXT = "{http://www.w3.org/2000/svg}text"


def pair(layers=2, heads=3, *, a_words=A_WORDS, b_words=B_WORDS, causal=False):
    a = attnscope.Trace.from_arrays(random_attention(layers, heads, len(a_words), causal=causal, seed=1), a_words)
    b = attnscope.Trace.from_arrays(random_attention(layers, heads, len(b_words), causal=causal, seed=2), b_words)
    return a, b


def json_block(html: str) -> dict:
    blocks = re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', html, re.DOTALL)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def decoded(payload: dict, side: str, li: int, hi: int) -> np.ndarray:
    return dequantize(base64.b64decode(payload[side][li][hi]), payload["dtype"]).reshape(payload["shape"])


@pytest.fixture(scope="module")
def gpt2_comparison():
    """A tiny causal LM compared on two continuations, with next-token predictions."""
    model, tok = build("gpt2")
    a = attnscope.capture(model, tok, "the doctor asked the nurse a question . she")
    b = attnscope.capture(model, tok, "the doctor asked the nurse a question . he")
    return compare(a, b, model=model, tokenizer=tok, top_k=4)


# --------------------------------------------------------------------------- payload
def test_payload_holds_each_inputs_head_on_the_aligned_tokens():
    a, b = pair()
    view = attnscope.diff_view(a, b, dtype="float16")
    p = view.payload
    assert p["format"] == "attnscope-diff" and p["shape"] == [9, 9] and p["key"] is None
    assert p["query"]["a"] == A_WORDS and p["query"]["b"] == B_WORDS
    assert p["query"]["slots"][7] == [7, 8, 7, 8, 0] and p["query"]["slots"][6] == [6, 7, 6, 7, 1]
    for li in range(2):
        for hi in range(3):  # one-to-one slots: the aligned head is the head itself
            np.testing.assert_allclose(decoded(p, "a", li, hi), a.head(li, hi), atol=1e-3)
            np.testing.assert_allclose(decoded(p, "b", li, hi), b.head(li, hi), atol=1e-3)


def test_a_differing_span_is_one_slot_summed_over_keys_and_averaged_over_queries():
    a_words = ["x", "she", "y", "z"]
    b_words = ["x", "he", "was", "y", "z"]
    a, b = pair(1, 2, a_words=a_words, b_words=b_words)
    comparison = compare(a, b)
    view = attnscope.diff_view(comparison, dtype="float16")
    assert view.payload["query"]["slots"] == [[0, 1, 0, 1, 1], [1, 2, 1, 3, 0], [2, 3, 3, 4, 1], [3, 4, 4, 5, 1]]
    w = b.head(0, 1)
    expected = np.stack([
        [w[0, 0], w[0, 1] + w[0, 2], w[0, 3], w[0, 4]],
        [(w[1, 0] + w[2, 0]) / 2, (w[1, 1] + w[1, 2] + w[2, 1] + w[2, 2]) / 2, (w[1, 3] + w[2, 3]) / 2,
         (w[1, 4] + w[2, 4]) / 2],
        [w[3, 0], w[3, 1] + w[3, 2], w[3, 3], w[3, 4]],
        [w[4, 0], w[4, 1] + w[4, 2], w[4, 3], w[4, 4]],
    ])
    np.testing.assert_allclose(aligned_head(comparison, "b", 0, 1), expected, rtol=1e-5)
    np.testing.assert_allclose(decoded(view.payload, "b", 0, 1), expected, atol=2e-3)
    np.testing.assert_allclose(decoded(view.payload, "a", 0, 1).sum(1), 1.0, atol=5e-3)  # rows still sum to 1


def test_an_inserted_word_has_no_row_on_the_side_that_lacks_it():
    a, b = pair(1, 1, a_words=["x", "y", "z"], b_words=["x", "new", "y", "z"])
    comparison = compare(a, b)
    assert [s.in_both for s in comparison.query_alignment.slots] == [True, False, True, True]
    pooled = aligned_head(comparison, "a", 0, 0)
    assert (pooled[1] == 0).all() and (pooled[:, 1] == 0).all()  # A has neither a row nor a key there
    assert aligned_head(comparison, "b", 0, 0)[1].sum() == pytest.approx(1.0)
    assert attnscope.diff_view(comparison).payload["rows"] == [0, 2, 3]


def test_divergence_ranking_and_row_divergence_match_the_comparison():
    a, b = pair(3, 4)
    comparison = compare(a, b)
    p = attnscope.diff_view(a, b, top=5).payload
    grid = np.frombuffer(base64.b64decode(p["divergence"]), dtype="<f4").reshape(3, 4)
    np.testing.assert_array_equal(grid, comparison.divergence)
    assert [tuple(x) for x in p["ranked"]] == [(la, h) for la, h, _ in comparison.ranked[:5]]
    rows = dequantize(base64.b64decode(p["rowDivergence"][2][1]), "f16")
    np.testing.assert_allclose(rows, comparison.row_divergence[2, 1], atol=1e-3)
    assert p["rowMax"] == pytest.approx(float(comparison.row_divergence.max()), abs=1e-6)


def test_identical_inputs_differ_nowhere():
    a, _ = pair()
    p = attnscope.diff_view(a, a).payload
    assert p["a"] == p["b"]
    assert all(s[4] == 1 for s in p["query"]["slots"])
    assert p["rowMax"] == 0.0


def weight_chars(payload: dict) -> int:
    """Characters of base64 weights in a diff payload, the Units and Hide sinks states' included."""
    own = len(json.dumps([payload["a"], payload["b"]]))
    return own + sum(weight_chars(v) for v in payload.get("units", {}).get("variants", {}).values())


def test_include_layers_and_heads_keep_only_those_heads_and_rank_among_them():
    a, b = pair(3, 4)
    full = attnscope.diff_view(a, b).payload
    view = attnscope.diff_view(a, b, include_layers=[2], include_heads=[0, 3])
    p = view.payload
    assert p["layers"] == [2] and p["heads"] == [0, 3] and len(p["a"]) == 1 and len(p["a"][0]) == 2
    assert weight_chars(p) < weight_chars(full) / 3
    assert p["units"]["variants"] and all(len(v["a"]) == 1 and len(v["a"][0]) == 2 and v["heads"] == [0, 3]
                                          for v in p["units"]["variants"].values())  # the controls' states too
    comparison = compare(a, b)
    best = max(((2, 0), (2, 3)), key=lambda lh: comparison.divergence[lh])
    assert (view.options["layer"], view.options["head"]) == best
    li, hi = p["ranked"][0]
    assert (p["layers"][li], p["heads"][hi]) == best


def test_cross_attention_aligns_queries_and_keys_separately():
    def ed(dec):
        return attnscope.Trace.from_arrays(
            {"encoder": random_attention(1, 2, 5), "decoder": random_attention(1, 2, len(dec), causal=True),
             "cross": random_attention(1, 2, len(dec), 5)},
            {"encoder": list("abcde"), "decoder": dec})
    view = attnscope.diff_view(ed(["<s>", "she", "runs"]), ed(["<s>", "he", "runs"]), kind="cross")
    p = view.payload
    assert p["kind"] == "cross" and p["shape"] == [3, 5]
    assert p["key"]["a"] == list("abcde") and p["query"]["slots"][1][4] == 0


def test_pruned_traces_compare_like_dense_ones():
    a, b = pair()
    dense = attnscope.diff_view(a, b).payload
    pruned = attnscope.diff_view(a.prune(mass=1.0, top_k=9), b.prune(mass=1.0, top_k=9)).payload
    assert pruned["a"] == dense["a"] and pruned["ranked"] == dense["ranked"]


def test_next_token_predictions_travel_with_a_comparison_made_with_the_model(gpt2_comparison):
    p = attnscope.diff_view(gpt2_comparison).payload
    table = gpt2_comparison.next_token_table()
    assert len(p["next"]["a"]) == len(p["next"]["b"]) == 4
    assert [x["token"] for x in p["next"]["a"]] == [r["a_token"] for r in table]
    assert p["next"]["b"][0]["prob"] == pytest.approx(table[0]["b_prob"], abs=1e-6)
    assert p["next"]["a"][0]["other"] == pytest.approx(table[0]["a_prob_in_b"], abs=1e-6)
    assert attnscope.diff_view(gpt2_comparison.trace_a, gpt2_comparison.trace_b).payload["next"] is None


# --------------------------------------------------------------------------- options and entry points
def test_the_most_changed_head_is_shown_first_unless_one_is_asked_for():
    a, b = pair(3, 4)
    comparison = compare(a, b)
    top_layer, top_head, _ = comparison.ranked[0]
    assert attnscope.diff_view(a, b).data()["options"] == {"layer": top_layer, "head": top_head}
    in_layer = attnscope.diff_view(a, b, layer=1).options
    assert in_layer["head"] == int(np.argmax(comparison.divergence[1])) and in_layer["layer"] == 1
    for_head = attnscope.diff_view(a, b, head=2).options
    assert for_head["layer"] == int(np.argmax(comparison.divergence[:, 2]))
    chosen = attnscope.diff_view(a, b, layer=0, head=3, theme="dark", prettify=False, top=2)
    assert chosen.data()["options"] == {"layer": 0, "head": 3, "theme": "dark", "prettify": False}
    assert len(chosen.payload["ranked"]) == 2


def test_render_and_a_comparison_give_the_same_view():
    a, b = pair()
    direct = attnscope.diff_view(a, b, layer=1, head=0)
    assert isinstance(direct, DiffView) and isinstance(direct, attnscope.views.View)
    for other in (render("diff", a, other=b, layer=1, head=0), attnscope.render("diff", a, other=b, layer=1, head=0)):
        assert other.data() == direct.data()
    shown = render("diff", compare(a, b), layer=1, head=0).data()  # a Comparison: no Units / Hide sinks states
    whole = direct.data()
    assert shown == {**whole, "payload": {k: v for k, v in whole["payload"].items() if k not in ("units", "scaled")}}
    assert "diff_view" in attnscope.__all__ and attnscope.__all__ == sorted(attnscope.__all__)
    assert repr(direct) == "<attnscope diff view: trace, 2 layers x 3 heads, self attention, 9 aligned tokens>"


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda a, b: attnscope.diff_view(a), InputError, r"compares two traces; pass the second one"),
    (lambda a, b: attnscope.diff_view("text", b), InputError, r"takes two Traces or a Comparison; got str"),
    (lambda a, b: attnscope.diff_view(a, "text"), InputError, r"must be a Trace; got str"),
    (lambda a, b: attnscope.diff_view(compare(a, b), b), InputError, r"either a Comparison or two traces"),
    (lambda a, b: attnscope.diff_view(compare(a, b), kind="cross"), InputError, r"kind='cross' needs compare"),
    (lambda a, b: attnscope.diff_view(a, b, kind="cross"), MissingDataError, r"has no 'cross' attention"),
    (lambda a, b: attnscope.diff_view(a, b, layer=5), InputError, r"layer=5 is out of range: there are 2 layers \(0 to 1"),
    (lambda a, b: attnscope.diff_view(a, b, head=1, include_heads=[0, 2]), InputError, r"head 1 is not shown"),
    (lambda a, b: attnscope.diff_view(a, b, include_layers=[0, 2]), InputError, r"include_layers=2 is out of range"),
    (lambda a, b: attnscope.diff_view(a, b, top=0), InputError, r"top must be a whole number >= 1"),
    (lambda a, b: attnscope.diff_view(a, b, theme="blue"), InputError, r"theme must be one of"),
    (lambda a, b: attnscope.diff_view(a, b, dtype="int4"), InputError, r"dtype must be one of"),
    (lambda a, b: render("diff", a, other=b, filter="A->B"), InputError, r"diff view has no option\(s\) \['filter'\]"),
])
def test_bad_input_says_what_was_wrong(call, error, message):
    a, b = pair()
    with pytest.raises(error, match=message):
        call(a, b)


def test_traces_of_different_shapes_or_with_nothing_in_common_are_refused():
    a, _ = pair(2, 3)
    _, wider = pair(2, 4)
    with pytest.raises(InputError, match=r"cannot compare 2 layers x 3 heads with 2 layers x 4 heads"):
        attnscope.diff_view(a, wider)
    _, other_words = pair(2, 3, b_words=["x"] * 9)
    with pytest.raises(InputError, match=r"share no query tokens, so their attention cannot be lined up"):
        attnscope.diff_view(a, other_words)


def test_inputs_too_long_for_one_file_ask_for_fewer_heads(monkeypatch):
    a, b = pair(2, 3)
    monkeypatch.setattr(diff_module, "MAX_BYTES", 2 * 6 * 81 - 1)  # one byte short of every head of both inputs
    with pytest.raises(InputError, match=r"keep fewer heads with include_layers= / include_heads="):
        _ = attnscope.diff_view(a, b).payload
    assert attnscope.diff_view(a, b, include_heads=[0]).payload["heads"] == [0]


# --------------------------------------------------------------------------- HTML and files
def test_html_is_one_offline_view_with_tokens_as_escaped_text(tmp_path):
    hostile = "</script><img src=x onerror=alert(1)>"
    a, b = pair(a_words=[*A_WORDS[:7], hostile, "[SEP]"])
    view = attnscope.diff_view(a, b)
    doc = view.html()
    assert doc.startswith("<!DOCTYPE html>") and "diff view" in doc
    assert doc.count('class="attnscope"') == 1 and "as-ranked-box" in doc  # diff.css is inlined
    assert hostile not in doc and json_block(doc)["payload"]["query"]["a"][7] == hostile
    for needle in ("http:", "https:", "//cdn", "fetch(", "XMLHttpRequest"):
        assert needle not in doc
    path = view.save(tmp_path / "d.html")
    assert path.read_text(encoding="utf-8").count('data-view="diff"') == 1
    with pytest.raises(InputError, match=r"only apply to figures"):
        view.save(tmp_path / "d.html", dpi=72)
    with pytest.raises(InputError, match=r"cannot save a view as 'd.txt'"):
        view.save(tmp_path / "d.txt")


def test_saved_figures_hold_the_aligned_labels_as_text(tmp_path, gpt2_comparison):
    view = attnscope.diff_view(gpt2_comparison)
    svg = view.save(tmp_path / "d.svg")
    texts = ["".join(t.itertext()) for t in ET.parse(svg).getroot().iter(SVG_TEXT)]
    for label in ("she \u2192 he", "doctor", "nurse", "A", "B", "B \u2212 A", "next-token predictions"):
        assert label in texts, label
    assert any("diff view" in t and "layer" in t for t in texts)
    assert gpt2_comparison.next_token_table()[0]["b_token"].lstrip("\u0120") in texts
    with Image.open(view.save(tmp_path / "d.png", dpi=60, size=(9, 6))) as im:
        assert im.size == (540, 360)
        assert np.asarray(im.convert("L")).std() > 10
    pdf = PdfReader(view.save(tmp_path / "d.pdf")).pages[0].extract_text()
    assert "doctor" in pdf and "most changed heads" in pdf


def test_figure_takes_two_traces_or_a_comparison_and_is_deterministic(tmp_path):
    a, b = pair()
    one = save_figure("diff", a, tmp_path / "one.svg", other=b, layer=1, head=2, theme="dark").read_bytes()
    two = save_figure("diff", compare(a, b), tmp_path / "two.svg", layer=1, head=2, theme="dark").read_bytes()
    assert one == two
    light = figure("diff", a, other=b, layer=1, head=2)
    assert [ax.get_title() for ax in light.axes[:3]] == ["A", "B", "B \u2212 A"]
    assert light.axes[0].images[0].get_array().shape == (9, 9)
    with pytest.raises(InputError, match=r"the diff view has no option\(s\) \['query'\]"):
        figure("diff", a, other=b, query=2)
    with pytest.raises(InputError, match=r"compares two traces"):
        figure("diff", a)
    with pytest.raises(InputError, match=r"expected one of head, model, neuron, matrix, diff"):
        figure("difference", a)


def test_minilm_pronoun_probe_end_to_end(minilm, tmp_path):
    model, tok = minilm
    a = attnscope.capture(model, tok, "The doctor asked the nurse a question. She")
    b = attnscope.capture(model, tok, "The doctor asked the nurse a question. He")
    view = attnscope.diff_view(a, b)
    labels = [s for s in view.payload["query"]["slots"] if not s[4]]
    assert len(labels) == 1 and view.payload["shape"] == [11, 11]
    html = view.save(tmp_path / "d.html")
    states = view.payload["units"]["variants"]
    assert set(states) == {"token|1|0", "token|1|1", "sentence|0|0", "sentence|1|0", "sentence|1|1", "paragraph|0|0"}
    assert html.stat().st_size < 40_000 * (1 + len(states))  # each Units / Hide sinks state adds one comparison
    assert view.save(tmp_path / "d.png").stat().st_size > 10_000
