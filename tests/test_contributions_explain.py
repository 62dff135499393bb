"""explain(): attention beside the measures, their rank correlations and disagreement; the disagreement view's
payload and figure. Hand-made traces make every expected number known."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import scipy.stats

import attnscope
import tiny_models
from attnscope.analysis import explain
from attnscope.analysis.measures.explain import build, spearman
from attnscope.encode import dequantize
from attnscope.errors import InputError
from attnscope.figures import figure, save_figure
from attnscope.views import disagreement_view
from conftest import random_attention

TOKENS = ["<b>", "cat", "sat", "on", "the", "mat"]


def made(causal=False, measure=None, seed=0):
    att = random_attention(2, 3, 6, causal=causal, seed=seed)
    trace = attnscope.Trace.from_arrays(att, TOKENS, meta={"model": "made"})
    c = att.mean(1, keepdims=True) if measure is None else measure
    return build(trace, {"alti": attnscope.Trace.from_arrays(c, TOKENS)}), att


def test_spearman_matches_scipy_with_ties_and_constant_rows():
    rng = np.random.default_rng(1)
    a, b = rng.random((40, 7)), rng.random((40, 7))
    a[:10] = np.round(a[:10], 1)
    b[:, 2] = b[:, 5]
    b[3] = 0.25
    want = np.array([scipy.stats.spearmanr(x, y).statistic if y.std() else np.nan for x, y in zip(a, b)])
    np.testing.assert_allclose(spearman(a, b), want, atol=1e-12)
    assert np.isnan(spearman(a, b)[3])


def test_a_measure_ranking_keys_like_attention_does_not_disagree_and_a_reversed_one_does():
    same, att = made()
    mean = att.mean(1)
    np.testing.assert_allclose(same.rho["alti"][:, 3], 1.0, atol=1e-6)  # against the mean of the heads
    reversed_, _ = made(measure=(1.0 - mean)[:, None] / 5)
    np.testing.assert_allclose(reversed_.rho["alti"][:, 3], -1.0, atol=1e-6)
    per_head = same.rho["alti"][:, :3]  # the heads' own rankings differ from their mean's
    want = [[[scipy.stats.spearmanr(att[la, h, i], mean[la, i]).statistic for i in range(6)] for h in range(3)]
            for la in range(2)]
    np.testing.assert_allclose(per_head, want, atol=1e-6)
    np.testing.assert_allclose(same.disagreement("alti"), ((1 - per_head) / 2).mean(-1), atol=1e-6)


def test_causal_rows_compare_only_the_keys_the_query_sees():
    e, att = made(causal=True, seed=3)
    assert e.causal
    assert np.isnan(e.rho["alti"][:, :, :2]).all()  # fewer than 3 visible keys
    got = e.rho["rollout"][1, 0, 4]
    want = scipy.stats.spearmanr(att[1, 0, 4, :5], e.series["rollout"].row(1, 4)[:5]).statistic
    assert got == pytest.approx(want, abs=1e-6)


def test_view_payload_options_and_figure(tmp_path):
    e, _ = made(causal=True)
    view = disagreement_view(e)
    assert view.options["layer"] == 1 and view.options["measure"] == "alti"
    assert view.options["query"] == int(np.nanargmin(e.rho["alti"][1, 3]))
    p = view.payload
    assert [s["name"] for s in p["series"]] == ["attention", "rollout", "alti", "alti_rollout"]
    head = dequantize(base64.b64decode(p["series"][0]["values"][1][2]), "f16").reshape(6, 6)
    np.testing.assert_allclose(head, e.series["attention"].values[1, 2], atol=1e-3)
    rho = np.frombuffer(base64.b64decode(p["rho"]["alti"]), "<f4").reshape(2, 4, 6)
    np.testing.assert_array_equal(rho, e.rho["alti"])
    html = view.html()
    assert "<b>" not in html.split('type="application/json"')[1]  # tokens travel escaped in the JSON block
    assert "\\u003cb\\u003e" in html
    png = view.save(tmp_path / "d.png")
    assert png.stat().st_size > 20_000
    svg_a = save_figure("disagreement", e, tmp_path / "a.svg", layer=0, query=4, head=1).read_bytes()
    svg_b = attnscope.views.render("disagreement", e, layer=0, query=4, head=1).save(tmp_path / "b.svg").read_bytes()
    assert svg_a == svg_b and "\u03c1".encode() in svg_a and b"head 1" in svg_a
    assert len(figure("disagreement", e, rolled=True).axes) == 5  # attention, rollout, ALTI rollout, grid, colour bar


@pytest.mark.parametrize(("options", "message"), [
    ({"layer": 2}, "layer must be a whole number in 0..1"),
    ({"query": -1}, "query must be a whole number in 0..5"),
    ({"measure": "value_zeroing"}, "measure 'value_zeroing' is not in this explanation"),
    ({"theme": "blue"}, "theme must be one of"),
])
def test_bad_view_options_say_what_fits(options, message):
    e, _ = made()
    with pytest.raises(InputError, match=message):
        disagreement_view(e, **options)


def test_explain_runs_one_capture_for_every_method():
    model, tok = tiny_models.build("gpt2")
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        e = explain((model, tok), "the cat sat on the mat", methods=["alti", "norm"])
    finally:
        hook.remove()
    assert len(calls) == 1  # layer-level measures reuse the reference pass
    assert list(e.series) == ["attention", "rollout", "alti", "alti_rollout", "norm", "norm_rollout"]
    assert e.measures["alti"].meta["measure"]["method"] == "alti"
    with pytest.raises(InputError, match="distinct measures"):
        explain((model, tok), "the cat", methods=["alti", "alti"])
    with pytest.raises(InputError, match="add it to methods"):
        explain((model, tok), "the cat", methods=["alti"], target=3)


def test_cli_explain_writes_the_view_and_prints_the_correlations(tmp_path):
    from typer.testing import CliRunner

    from attnscope.cli import app

    def run(*args):
        return CliRunner().invoke(app, ["explain", *args], env={"COLUMNS": "200"})

    out = tmp_path / "why.html"
    result = run("The cat sat on the mat because it was tired.", "--method", "alti", "--method", "norm",
                 "--layer", "5", "--query", "8", "-o", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "Rank correlation with attention at layer 5, query 8 (it), mean of heads" in text
    assert "ALTI (Ferrando et al. 2022)" in text and "rolled out" in text and str(out) in text
    assert 'data-view="disagreement"' in out.read_text()
    png = run("The cat sat.", "--method", "norm", "-o", str(tmp_path / "why.png"), "--dpi", "60", "--quiet")
    assert png.exit_code == 0 and (tmp_path / "why.png").read_bytes()[:4] == b"\x89PNG"
    for args, message in ((["--method", "saliency"], "unknown method 'saliency'"),
                          (["--method", "alti", "--target", "cat"], "add --method grad_attention"),
                          (["--method", "alti", "--grid", "norm"], "--grid 'norm' is not measured"),
                          (["-o", str(tmp_path / "x.txt")], "use .html (interactive) or .png")):
        bad = run("The cat sat.", *args)
        assert bad.exit_code == 2 and message in bad.stderr, (args, bad.stderr)
