"""Static pictures of the views (attnscope.views.picture): what they draw, where they go in the HTML and the
notebook output, and how to leave them out."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

import attnscope
from attnscope.codec import sqrt8
from attnscope.errors import InputError
from attnscope.views import _raster, picture
from attnscope.views._html import fallback

VIEWS = ("head", "model", "neuron", "matrix")


def rgb(png: bytes) -> np.ndarray:
    """The picture's pixels as RGB ``[h, w, 3]`` (decoded by Pillow, an independent PNG reader)."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def near(a, b, tol: int = 3) -> bool:
    return bool(np.all(np.abs(np.asarray(a, int) - np.asarray(b, int)) <= tol))


@pytest.mark.parametrize("name", VIEWS)
def test_every_view_shows_a_png_of_its_first_state_in_its_html_and_its_notebook_output(name, minilm_trace):
    view = attnscope.views.render(name, minilm_trace)
    pic = view.picture()
    image = Image.open(io.BytesIO(pic.png))
    assert image.format == "PNG" and image.size == (pic.width, pic.height) and pic.width >= 300
    assert pic.alt.startswith(f"attnscope {name} view: ")
    html = view.html()
    src = re.search(r'<img class="as-picture" alt="[^"]*" style="[^"]*" src="data:image/png;base64,([^"]+)">', html)
    assert base64.b64decode(src.group(1)) == pic.png
    # the picture sits in the view's root after the fallback line, so the script's first draw replaces both
    root = html.index(f'data-view="{name}">')
    assert root < html.index('class="as-fallback"') < src.start() < html.index("<!--attnscope:")
    data, meta = view._repr_mimebundle_()
    assert set(data) == {"text/html", "text/plain", "image/png"}
    assert base64.b64decode(data["image/png"]) == pic.png and meta["image/png"] == {"width": pic.width, "height": pic.height}
    assert data["text/plain"] == repr(view)


def test_picture_false_leaves_it_out_and_other_values_are_refused(make_trace):
    trace = make_trace()
    for view in (attnscope.head_view(trace, picture=False), attnscope.views.render("matrix", trace, picture=False)):
        assert view.picture() is None and "<img" not in view.html()
        data, meta = view._repr_mimebundle_()
        assert set(data) == {"text/html", "text/plain"} and meta == {}
        assert "picture" not in view.data()["options"]  # an HTML option: it never reaches the script
    with pytest.raises(InputError, match="picture must be True or False; got 'no'"):
        attnscope.model_view(trace, picture="no")


def test_the_model_picture_draws_each_head_in_the_views_colours_where_the_view_does():
    n, L, H = 8, 2, 3
    w = np.full((L, H, n, n), 1 / n, np.float32)
    w[1, 2] = np.eye(n, dtype=np.float32)  # layer 1, head 2 attends to itself only
    pic = attnscope.model_view(attnscope.Trace.from_arrays(w, [f"w{i}" for i in range(n)])).picture()
    px = rgb(pic.png)
    heat = picture._stops(picture.THEMES["light"]["heat"], picture.HEAT_LEVELS)
    uniform, full = heat[sqrt8(np.float32(1 / n)) >> 1], heat[255 >> 1]
    cell = max(12, min(40, 760 // H - picture.GAP))  # 40 px: each token a block of 5 x 5 pixels
    label_w = int(_raster.font(_raster.SMALL).width("1")) + 8
    x0, y0, step, u = picture.PAD + label_w, picture.PAD + 16, cell + picture.GAP, cell // n

    def block(li, hi, i, j):  # the pixel in the middle of token block (i, j) of thumbnail (li, hi)
        return px[y0 + li * step + i * u + u // 2, x0 + hi * step + j * u + u // 2]

    for li in range(L):
        for hi in range(H):
            if (li, hi) == (1, 2):
                assert all(near(block(li, hi, i, i), full) for i in range(n))
                assert near(block(li, hi, 0, 5), heat[0]) and near(block(li, hi, 6, 1), heat[0])
            else:
                assert all(near(block(li, hi, i, j), uniform) for i in range(n) for j in (0, 3, 7))
    assert near(px[y0 - 1, x0 + 5], picture.THEMES["light"]["grid"])  # the thumbnail's outline
    labels = px[picture.PAD : y0, x0 : x0 + H * step]  # head numbers above the grid: dark ink on white
    assert (labels.sum(-1) < 600).sum() > 20


def test_the_head_picture_draws_each_heads_lines_in_its_colour_between_the_right_tokens():
    n = 6
    w = np.zeros((1, 2, n, n), np.float32)
    w[0, 0, np.arange(n), n - 1 - np.arange(n)] = 1  # head 0: token i -> token n-1-i
    w[0, 1, np.arange(n), np.arange(n)] = 1  # head 1: token i -> itself (horizontal lines)
    trace = attnscope.Trace.from_arrays(w, ["alpha", "b", "c", "d", "e", "omega"])
    view = attnscope.head_view(trace)
    px = rgb(view.picture().png)
    f = _raster.font(_raster.TOKEN)
    lw = min(int(max(f.width(t) for t in trace.tokens["input"])) + 12, 180)
    top, ROW = picture.PAD + 24, picture.ROW
    x_mid = picture.PAD + lw + 272 // 2  # the middle of the lines: head 0's lines all cross there
    c0, c1 = picture._head_colour(0, 2), picture._head_colour(1, 2)
    y_cross = top + n * ROW // 2
    column = px[top : top + n * ROW, x_mid]
    assert near(px[y_cross - 1, x_mid], c0, 40) or near(px[y_cross, x_mid], c0, 40)
    for i in range(n):  # head 1's horizontal lines at every row's middle, away from the crossing
        y = top + i * ROW + ROW // 2 - 1
        x = picture.PAD + lw + 60
        assert near(px[y, x], c1, 40) or near(px[y + 1, x], c1, 40), (i, px[y - 1 : y + 3, x])
    assert (column == 255).all(-1).sum() > n * ROW // 2  # mostly background between the lines
    ink = px[top : top + ROW, picture.PAD : picture.PAD + lw]  # the first query label, right-aligned
    assert (ink.sum(-1) < 300).sum() > 15


def test_text_is_drawn_from_the_glyph_tables_and_characters_they_lack_as_a_box():
    f = _raster.font(_raster.TOKEN)
    assert 52 < f.width("attention") < 62  # DejaVu Sans at 12.5 px: 57 px
    assert f.fit("a" * 50, 60).endswith("\u2026") and f.width(f.fit("a" * 50, 60)) <= 60
    assert np.array_equal(f.render("\u732b"), f.render(_raster.MISSING))  # a CJK token: the box glyph
    trace = attnscope.Trace.from_arrays(np.full((1, 1, 3, 3), 1 / 3, np.float32), ["\u732b", "</script>", "x"])
    assert Image.open(io.BytesIO(attnscope.head_view(trace).picture().png)).size[0] > 0


def test_the_fallback_line_names_each_notebooks_way_to_trust_it():
    line = fallback("model", True)
    assert line.startswith("A static picture of an attnscope model view")
    assert "JupyterLab, \u201cTrust Notebook\u201d in the command palette" in line
    assert "classic Notebook, File \u203a Trust Notebook" in line and "VS Code" in line and "run the cell again" in line
    assert fallback("head", False).startswith("An attnscope head view")


def test_pictures_are_deterministic_and_follow_the_theme(make_trace):
    trace = make_trace()
    a, b = attnscope.model_view(trace).picture().png, attnscope.model_view(trace).picture().png
    assert a == b
    dark = rgb(attnscope.model_view(trace, theme="dark").picture().png)
    assert near(dark[2, 2], picture.THEMES["dark"]["bg"], 0)


def test_the_diff_view_has_a_picture_of_a_b_and_their_difference(minilm):
    model, tok = minilm
    she = attnscope.capture(model, tok, "The doctor said she was late.")
    he = attnscope.capture(model, tok, "The doctor said he was late.")
    view = attnscope.diff_view(she, he)
    pic = view.picture()
    assert "diff view" in pic.alt and rgb(pic.png).shape[:2] == (pic.height, pic.width)
    assert "data:image/png" in view.html() and attnscope.diff_view(she, he, picture=False).picture() is None


def test_a_pruned_traces_model_picture_comes_from_the_thumbnails_its_payload_ships(make_trace):
    dense = make_trace(2, 3, 80)
    pruned = dense.prune(mass=1.0, top_k=80)  # every weight kept: the same heads, another form
    view = attnscope.model_view(pruned, thumb_size=40)  # 40 x 40 thumbnails of 2 x 2 tokens, as the picture's cells
    assert view.payload["kinds"]["self"]["thumb"]["shape"] == [40, 40]
    a, b = rgb(attnscope.model_view(dense, thumb_size=40).picture().png), rgb(view.picture().png)
    assert a.shape == b.shape and (np.abs(a.astype(int) - b.astype(int)).max(-1) > 8).mean() < 0.005


@pytest.mark.slow
def test_a_long_qk_trace_gets_pictures_of_its_first_rows_and_its_overview():
    from long_qk import long_qk_trace

    trace = long_qk_trace()  # 2,500 tokens in the q/k form
    for name in VIEWS:
        pic = attnscope.views.render(name, trace).picture()
        px = rgb(pic.png)
        assert px.shape[:2] == (pic.height, pic.width) and (px.sum(-1) < 600).mean() > 0.002, name
    head = attnscope.head_view(trace).picture()  # the view's window: 40 rows
    assert head.height == picture.PAD + 24 + picture.WINDOW * picture.ROW + 8 + picture.ROW + picture.PAD
