"""Figures: the files are opened and checked (PNG pixels, SVG text, PDF pages), deterministic, long inputs bounded."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import xml.etree.ElementTree as ET

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from PIL import Image
from pypdf import PdfReader

import attnscope
from attnscope import views
from attnscope.errors import InputError, MissingDataError
from attnscope.figures import VIEW_OPTIONS, VIEWS, figure, save_figure
from attnscope.figures import head as head_figure
from attnscope.figures import model as model_figure
from attnscope.figures.neuron import explain
from attnscope.figures.options import resolve
from attnscope.tokens import prettify_tokens
from attnscope.views import render as render_view

SVG = "{http://www.w3.org/2000/svg}text"
ALL_VIEWS = sorted(VIEWS)


def svg_texts(path) -> list[str]:
    return ["".join(t.itertext()) for t in ET.parse(path).getroot().iter(SVG)]


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_png_has_the_asked_size_and_is_not_blank(view, minilm_trace, tmp_path):
    path = save_figure(view, minilm_trace, tmp_path / f"{view}.png", size=(5, 4), dpi=100)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (500, 400)
    pixels = png(path)
    assert pixels.std() > 20  # drawn, not a flat background
    assert (pixels.reshape(-1, 3) != pixels[0, 0]).any(axis=1).mean() > 0.05


@pytest.mark.parametrize("view", ["head", "matrix", "neuron"])
def test_svg_holds_the_token_labels_as_text(view, minilm_trace, tmp_path):
    texts = svg_texts(save_figure(view, minilm_trace, tmp_path / f"{view}.svg"))
    for token in ("[CLS]", "cat", "mat", "happy", "[SEP]"):
        assert token in texts, (token, texts)
    assert any("minilm" in t and view in t for t in texts)  # the title


def test_model_grid_labels_the_chosen_layers_and_heads_as_text(minilm_trace, tmp_path):
    options = {"include_layers": [1, 4], "include_heads": [0, 7, 11]}
    ax = figure("model", minilm_trace, **options).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "4"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "7", "11"]
    texts = svg_texts(save_figure("model", minilm_trace, tmp_path / "model.svg", **options))
    assert {"head", "layer", "1", "4", "7", "11"} <= set(texts)


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_pdf_has_one_page_and_extractable_text(view, minilm_trace, tmp_path):
    reader = PdfReader(save_figure(view, minilm_trace, tmp_path / f"{view}.pdf"))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    assert "minilm" in text
    if view != "model":
        assert "cat" in text and "happy" in text


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_same_trace_and_options_give_the_same_svg_bytes(view, minilm_trace, tmp_path):
    a = save_figure(view, minilm_trace, tmp_path / "a.svg", layer=None, theme="dark").read_bytes()
    with matplotlib.rc_context({"font.size": 30, "svg.hashsalt": None, "lines.linewidth": 9}):
        b = save_figure(view, minilm_trace, tmp_path / "b.svg", theme="dark").read_bytes()  # user rc: no effect
    assert a == b
    pdf_a = save_figure(view, minilm_trace, tmp_path / "a.pdf").read_bytes()
    assert pdf_a == save_figure(view, minilm_trace, tmp_path / "b.pdf").read_bytes()


def test_rendering_leaves_the_global_rcparams_alone(make_trace, tmp_path):
    before = dict(matplotlib.rcParams)
    for view in ("head", "model", "matrix"):
        save_figure(view, make_trace(), tmp_path / f"{view}.svg", theme="dark")
    assert dict(matplotlib.rcParams) == before


def test_figures_never_import_pyplot(tmp_path):
    code = (
        "import sys, attnscope, numpy as np\n"
        "from attnscope.figures import save_figure\n"
        "t = attnscope.Trace.from_arrays(np.full((1, 2, 3, 3), 1 / 3, np.float32), ['a', 'b', 'c'])\n"
        f"save_figure('head', t, {str(tmp_path / 'x.png')!r})\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("view", ["head", "model", "matrix"])
def test_dark_theme_differs_from_light(view, make_trace, tmp_path):
    light = png(save_figure(view, make_trace(), tmp_path / "light.png", size=(4, 4), dpi=50))
    dark = png(save_figure(view, make_trace(), tmp_path / "dark.png", size=(4, 4), dpi=50, theme="dark"))
    assert light.mean() > 180 and dark.mean() < 80  # mostly background: white vs near black


def test_tokens_are_prettified_unless_asked_for_raw(make_trace, tmp_path):
    raw = ["[CLS]", "play", "##ing", "▁cat", "word</w>", "<0x0A>"]
    trace = make_trace(n=len(raw), tokens=raw)
    texts = svg_texts(save_figure("matrix", trace, tmp_path / "pretty.svg"))
    assert {"[CLS]", "play", "ing", "cat", "word", "↵"} <= set(texts)
    assert not {"##ing", "▁cat", "word</w>"} & set(texts)
    texts = svg_texts(save_figure("matrix", trace, tmp_path / "raw.svg", prettify=False))
    assert {"##ing", "▁cat", "word</w>", "<0x0A>"} <= set(texts)
    byte_level = make_trace(n=4, tokens=["ĠThe", "Ġcaf", "Ã©", "Ċ"])
    assert {"The", "caf", "é", "↵"} <= set(svg_texts(save_figure("head", byte_level, tmp_path / "b.svg")))


def test_prettify_rules_per_tokenizer_family():
    assert prettify_tokens(["[CLS]", "play", "##ing", "the</w>", "▁The", "▁", "<0x0A>"]) == [
        "[CLS]", "play", "ing", "the", "The", "␣", "↵"]
    assert prettify_tokens(["ĠThe", "Ġcaf", "Ã©", "Ċ", "Ġ", "<|endoftext|>"]) == [
        "The", "caf", "é", "↵", "␣", "<|endoftext|>"]


def test_a_token_that_looks_like_mathtext_stays_literal(make_trace, tmp_path):
    trace = make_trace(n=3, tokens=["$x$", "a_b", "$"])
    assert {"$x$", "a_b", "$"} <= set(svg_texts(save_figure("head", trace, tmp_path / "m.svg")))


def test_neuron_view_needs_qkv_and_says_how_to_get_it(make_trace, tmp_path):
    with pytest.raises(MissingDataError, match="qkv=True"):
        save_figure("neuron", make_trace(), tmp_path / "n.png")


def test_neuron_scores_reproduce_the_captured_softmax(minilm_trace):
    opts = resolve("neuron", minilm_trace, layer=3, head=5, query=4)
    v = explain(minilm_trace, opts)
    softmax = np.exp(v.score - v.score.max())
    np.testing.assert_allclose(softmax / softmax.sum(), v.weight, atol=1e-4)
    np.testing.assert_allclose(v.product.sum(1) * minilm_trace.meta["kinds"]["self"]["scaling"], v.score, rtol=1e-4)


def test_neuron_view_greys_keys_hidden_by_a_causal_mask(make_trace):
    trace = make_trace(n=5, causal=True)
    L, H, n = 2, 3, 5
    rng = np.random.default_rng(0)
    qkv = {"self": {p: rng.normal(size=(L, H, n, 4)).astype(np.float32) for p in ("query", "key", "value")}}
    trace = dataclasses.replace(trace, qkv=qkv, meta={**trace.meta, "kinds": {"self": {"scaling": 0.5,
                                                                                        "causal": True}}})
    v = explain(trace, resolve("neuron", trace, query=2))
    assert v.masked.tolist() == [False, False, False, True, True]
    assert figure("neuron", trace, query=2) is not None


def test_head_view_of_1200_tokens_draws_only_the_strongest_lines_and_thins_labels(make_trace):
    trace = make_trace(layers=1, heads=2, n=1200)
    fig = figure("head", trace)
    ax = fig.axes[0]
    lines = next(c for c in ax.collections if isinstance(c, LineCollection))
    assert 0 < len(lines.get_segments()) <= head_figure.MAX_LINES
    alphas = lines.get_colors()[:, 3]
    w = trace.head(0, 0)
    assert alphas.max() == pytest.approx(min(1.0, max(w.max(), trace.head(0, 1).max())), abs=1e-6)
    labels = ax.get_yticklabels()
    assert 10 < len(labels) < 200  # thinned to fit, not 1200 overlapping labels


def test_strongest_keeps_the_largest_weights_weakest_first():
    w = np.array([[0.5, 0.01, 0.3], [0.05, 0.9, 0.1]], dtype=np.float32)
    q, k, v = head_figure.strongest(w, budget=3)
    assert v.tolist() == pytest.approx([0.3, 0.5, 0.9]) and q.tolist() == [0, 0, 1] and k.tolist() == [2, 0, 1]


def test_model_grid_of_long_input_is_built_from_pooled_thumbnails(make_trace):
    trace = make_trace(layers=2, heads=2, n=1000)
    image, (ch, cw), gap, block = model_figure.mosaic(trace, resolve("model", trace))
    assert block == 11 and ch == cw == 91  # ceil(1000 / 11): block-max pooled to <= 96 px
    assert image.shape[:2] == (2 * ch + 3 * gap, 2 * cw + 3 * gap)
    pooled = trace.attention["self"].pooled(1, 0, model_figure.THUMB)
    cell = image[2 * gap + ch : 2 * gap + 2 * ch, gap : gap + cw]
    expected = resolve("model", trace).theme.heat_cmap()(model_figure.style.heat_norm(1.0)(pooled))
    np.testing.assert_allclose(cell, expected)


def test_model_grid_frames_cells_by_a_metric_and_sorts_each_row_by_it(make_trace, tmp_path):
    trace = make_trace(layers=2, heads=4, n=8, causal=True, seed=3)
    opts = resolve("model", trace, metric="entropy", sort=True)
    values = model_figure.metric_grid(trace, opts)
    image, (ch, cw), gap, _ = model_figure.mosaic(trace, opts, values)
    colour = model_figure.metric_cmap(opts.theme)
    norm = Normalize(values.min(), values.max())
    for r in range(2):
        for c, hi in enumerate(np.argsort(-values[r], kind="stable")):  # highest first
            y, x = gap + r * (ch + gap), gap + c * (cw + gap)
            np.testing.assert_allclose(image[y, x], colour(norm(values[r, hi])))  # the frame's corner
            inner = image[y + ch // 2 - 2 : y + ch // 2 + 2, x + cw // 2 - 2 : x + cw // 2 + 2]
            thumb = opts.theme.heat_cmap()(model_figure.style.heat_norm(1.0)(trace.head(r, int(hi))))
            assert any(np.allclose(inner[0, 0], t) for t in thumb.reshape(-1, 4))  # head hi's weights inside
    top = np.unravel_index(values.argmax(), values.shape)
    assert np.allclose(image[gap + top[0] * (ch + gap), gap], colour(1.0))  # the highest entropy: the bar's top
    texts = svg_texts(save_figure("model", trace, tmp_path / "m.svg", metric="entropy", sort=True))
    assert "heads by entropy, highest first (corner: head)" in texts and "frame: entropy" in texts
    corners = [t.get_text() for t in figure("model", trace, metric="entropy", sort=True).axes[0].texts]
    assert corners == [str(h) for r in range(2) for h in np.argsort(-values[r], kind="stable")]  # each cell's head
    unsorted = model_figure.mosaic(trace, resolve("model", trace, metric="entropy"), values)[0]
    np.testing.assert_allclose(unsorted[gap, gap + (cw + gap)], colour(norm(values[0, 1])))  # column 1 is head 1
    with pytest.raises(InputError, match=r"unknown metric 'bogus'; choose one of \['entropy'"):
        figure("model", trace, metric="bogus")
    path = attnscope.model_view(trace, metric="max", sort=True).save(tmp_path / "m.png", dpi=60)
    assert png(path).std() > 10


def test_matrix_of_a_pruned_long_trace_renders(make_trace, tmp_path):
    trace = make_trace(layers=1, heads=1, n=1500).prune(0.9, 32)
    path = save_figure("matrix", trace, tmp_path / "m.png", size=(4, 4), dpi=80, query=700)
    assert Image.open(path).size == (320, 320)


def test_filter_shows_one_segment_against_another(make_trace):
    trace = make_trace(n=8, sentence_b_start=5)
    fig = figure("head", trace, filter="A->B")
    left = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    right = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert left == [f"tok{i}" for i in range(5)] and right == [f"tok{i}" for i in range(5, 8)]
    with pytest.raises(InputError, match="choose one of.*A->B"):
        figure("matrix", trace, filter="A->C")


def test_cross_attention_has_different_query_and_key_tokens(tmp_path):
    rng = np.random.default_rng(1)
    att = rng.random((1, 2, 3, 5)).astype(np.float32)
    att /= att.sum(-1, keepdims=True)
    trace = attnscope.Trace.from_arrays({"cross": att, "encoder": np.full((1, 2, 5, 5), 0.2, np.float32)},
                                        {"encoder": list("abcde"), "decoder": ["X", "Y", "Z"]})
    texts = svg_texts(save_figure("head", trace, tmp_path / "c.svg", kind="cross"))
    assert {"a", "e", "X", "Z"} <= set(texts) and any("cross" in t for t in texts)


@pytest.mark.parametrize(("options", "message"), [
    ({"layer": 9}, r"layer=9 is out of range: there are 2 layers \(0 to 1"),
    ({"heads": []}, "heads is empty"),
    ({"theme": "sepia"}, r"theme must be one of \['auto', 'light', 'dark'\]; got 'sepia'"),
    ({"query": 1}, r"the head view has no option\(s\) \['query'\]"),
    ({"size": (3, 0)}, "size must be between"),
    ({"dpi": 0}, "dpi must be"),
])
def test_bad_options_say_what_is_valid(options, message, make_trace, tmp_path):
    with pytest.raises(InputError, match=message):
        save_figure("head", make_trace(), tmp_path / "x.png", **options)


def test_unknown_view_and_suffix_are_refused(make_trace, tmp_path):
    with pytest.raises(InputError, match="unknown view 'flow'; expected one of head, model, neuron, matrix"):
        figure("flow", make_trace())
    with pytest.raises(InputError, match=r"use one of \.png, \.svg, \.pdf"):
        save_figure("head", make_trace(), tmp_path / "x.jpg")


def test_view_save_writes_figures_with_the_views_options(minilm_trace, tmp_path):
    view = render_view("matrix", minilm_trace, layer=2, head=1, query=3, filter="A->B", dtype="float16")
    path = view.save(tmp_path / "m.svg")
    texts = svg_texts(path)
    assert "it" in texts and "[CLS]" in texts and any("A → B" in t for t in texts)
    assert Image.open(io.BytesIO(view.save(tmp_path / "m.png", dpi=72).read_bytes())).size[0] > 100


def test_figures_take_the_same_options_as_the_html_views():
    assert {k: set(v) for k, v in VIEW_OPTIONS.items()} == {k: set(v) for k, v in views.VIEW_OPTIONS.items()}
