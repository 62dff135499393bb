"""The Python side of the views: HTML structure, options, ids, files and errors (drawing is in tests/browser)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import attnscope
from attnscope.analysis import head_metrics
from attnscope.encode import HEAD_METRICS, script_json
from attnscope.errors import InputError, MissingDataError
from attnscope.views import View, render
from attnscope.views.assets import asset
from attnscope.views.options import js_options
from attnscope.views.registry import VIEWS as REGISTRY

VIEWS = ("head", "model", "neuron", "matrix")


def json_block(html: str) -> dict:
    blocks = re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', html, re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


@pytest.mark.parametrize("name", VIEWS)
def test_every_view_is_one_root_one_json_block_and_one_script_with_no_network_reference(name, minilm_trace):
    view = render(name, minilm_trace)
    frag = view._repr_html_()
    assert frag.count('class="attnscope"') == 1
    assert frag.count("<script") == 3  # the payload and the code (inside one comment), and the loader
    data = json_block(frag)
    assert data["view"] == name and data["payload"]["format"] == "attnscope-payload"
    doc = view.html()
    assert doc.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in doc
    assert doc.count('src="data:image/png;base64,') == 1  # the static picture, the one thing with a source
    doc = re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', "", doc)
    for needle in ("http:", "https:", "//cdn", "require(", "import(", "fetch(", "XMLHttpRequest", "src="):
        assert needle not in doc


def test_assets_are_ascii_so_a_fragment_saved_without_a_charset_still_reads_right():
    for name in {f for s in REGISTRY.values() for f in (*s.scripts, *s.styles)} | {"boot.js", "style.css"}:
        asset(name).encode("ascii")


def test_ids_are_unique_per_display_and_pinnable_for_snapshots(make_trace):
    view = attnscope.head_view(make_trace())
    ids = {re.search(r'class="attnscope" id="([^"]+)"', view._repr_html_()).group(1) for _ in range(3)}
    assert len(ids) == 3
    assert view.html(id="fixed") == view.html(id="fixed")
    assert 'id="fixed"' in view.html(id="fixed") and 'boot("fixed")' in view.html(id="fixed")


def test_options_reach_the_script_camel_cased_with_none_dropped(make_trace):
    trace = make_trace(3, 4, 6, sentence_b_start=3)
    data = attnscope.model_view(trace, thumb_size=16, filter="A\u2192B", theme="dark", prettify=False).data()
    assert data["options"] == {"filter": "A->B", "theme": "dark", "prettify": False}
    assert js_options({"layer": 1, "heads": None, "some_thing": 2, "include_heads": [0]}) == {"layer": 1, "someThing": 2}


def test_include_layers_and_heads_shrink_the_payload(make_trace):
    trace = make_trace(4, 4, 10)
    full = json.dumps(attnscope.head_view(trace).payload)
    some = attnscope.head_view(trace, include_layers=[1], include_heads=[0, 3], layer=1, heads=[3]).payload
    assert some["kinds"]["self"]["layers"] == [1] and some["kinds"]["self"]["heads"] == [0, 3]
    assert len(json.dumps(some)) < len(full) / 3


def test_each_view_ships_only_what_it_draws(minilm_trace):
    head = attnscope.head_view(minilm_trace).payload["kinds"]["self"]
    neuron = attnscope.neuron_view(minilm_trace).payload["kinds"]["self"]
    matrix = attnscope.matrix_view(minilm_trace).payload["kinds"]["self"]
    assert "qkv" not in head and head["dtype"] == "sqrt8"
    assert "data" not in neuron and neuron["qkv"]["d"] == 32
    assert matrix["dtype"] == "f16"


def test_render_and_the_deprecated_trace_show_give_the_same_view(make_trace):
    trace = make_trace()
    a = render("matrix", trace, layer=1, head=2)
    with pytest.warns(DeprecationWarning, match=r"attnscope\.render\(view, trace"):
        b = trace.show("matrix", layer=1, head=2)
    assert attnscope.render is render
    assert isinstance(a, View) and a.data() == b.data()
    assert "matrix view" in repr(a) and "2 layers x 3 heads" in repr(a)


def test_tokens_cannot_break_out_of_the_json_block(make_trace):
    evil = ["</script><script>window.__pwned=1</script>", "<!--", "<img src=x onerror=alert(1)>", "&amp;", "\u2028"]
    view = attnscope.head_view(make_trace(tokens=evil + ["ok"]))
    html = view.html()
    assert "<script>window.__pwned" not in html and "<img src=x" not in html
    assert html.count("<!--") == 1 and html.count("-->") == 1  # the one comment that carries the view's code
    assert json_block(html)["payload"]["tokens"]["input"][:5] == evil


def test_the_page_title_escapes_the_model_name(make_trace):
    trace = make_trace().with_meta(model="<b>m</b>")
    assert "<title>&lt;b&gt;m&lt;/b&gt; · head view · attnscope</title>" in attnscope.head_view(trace).html()


def test_save_writes_html_and_refuses_other_suffixes(make_trace, tmp_path):
    view = attnscope.matrix_view(make_trace())
    path = view.save(tmp_path / "m.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(InputError, match=r"use \.html \(interactive\) or \.png, \.svg, \.pdf"):
        view.save(tmp_path / "m.txt")
    with pytest.raises(InputError, match=r"only apply to figures"):
        view.save(tmp_path / "m.html", dpi=100)


def test_save_as_png_draws_a_figure_through_attnscope_figures(make_trace, tmp_path):
    path = attnscope.head_view(make_trace(), layer=1, heads=[0, 2]).save(tmp_path / "h.png", dpi=60)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_options_name_what_is_allowed(make_trace, minilm_trace):
    trace = make_trace(2, 3, 5, sentence_b_start=2)
    with pytest.raises(InputError, match=r"unknown view 'graph'; expected one of head, model, neuron, matrix, diff, atlas"):
        render("graph", trace)
    with pytest.raises(InputError, match=r"the head view has no option\(s\) \['colour'\]"):
        render("head", trace, colour="red")
    with pytest.raises(InputError, match=r"layer=5 is out of range: there are 2 layers \(0 to 1"):
        attnscope.head_view(trace, layer=5)
    with pytest.raises(InputError, match=r"layer 0 is not shown; choose one of \[1\]"):
        attnscope.head_view(trace, layer=0, include_layers=[1])
    with pytest.raises(InputError, match=r"heads=7 is out of range: there are 3 heads"):
        attnscope.head_view(trace, heads=[7])
    with pytest.raises(InputError, match=r"heads \[2\] are not shown; choose among the shown heads \[0, 1\]"):
        attnscope.head_view(trace, heads=[2], include_heads=[0, 1])
    with pytest.raises(InputError, match=r"theme must be one of \['auto', 'light', 'dark'\]"):
        attnscope.model_view(trace, theme="blue")
    with pytest.raises(InputError, match=r"choose one of \['All', 'A->A', 'A->B', 'B->A', 'B->B'\]"):
        attnscope.matrix_view(trace, filter="A->C")
    with pytest.raises(InputError, match=r"query=5 is out of range: there are 5 query tokens \(0 to 4"):
        attnscope.matrix_view(trace, query=5)
    with pytest.raises(MissingDataError, match=r"no 'cross' attention; pass kind= one of \['self'\]"):
        attnscope.head_view(trace, kind="cross")
    with pytest.raises(InputError, match=r"thumb_size must be a whole number of pixels from 8 to 1024"):
        attnscope.model_view(trace, thumb_size=2)


def test_the_neuron_view_needs_query_and_key_vectors_and_says_how_to_get_them(make_trace):
    with pytest.raises(MissingDataError, match=r"needs query/key vectors.*capture with attnscope\.capture\(\.\.\., qkv=True\)"):
        attnscope.neuron_view(make_trace())


def seq2seq_trace(layers: int) -> attnscope.Trace:
    """Random encoder/decoder/cross attention: 5 encoder tokens, 3 decoder tokens, 2 heads."""
    rng = np.random.default_rng(0)

    def att(q, k):
        w = rng.random((layers, 2, q, k)).astype(np.float32)
        return w / w.sum(-1, keepdims=True)

    return attnscope.Trace.from_arrays({"encoder": att(5, 5), "decoder": att(3, 3), "cross": att(3, 5)},
                                       {"encoder": list("abcde"), "decoder": list("xyz")})


def test_encoder_decoder_views_carry_every_kind_with_its_own_token_streams():
    trace = seq2seq_trace(2)
    payload = attnscope.head_view(trace, kind="cross").payload
    assert list(payload["kinds"]) == ["encoder", "decoder", "cross"]
    assert (payload["kinds"]["cross"]["query"], payload["kinds"]["cross"]["key"]) == ("decoder", "encoder")
    assert payload["kinds"]["cross"]["shape"] == [3, 5]


def test_budget_mb_caps_the_file_and_is_checked(caplog):
    from attnscope.encode import script_json
    from attnscope.synthetic import synthetic_trace

    trace = synthetic_trace(400, 2, 4)
    roomy = attnscope.model_view(trace)
    budget = len(script_json(roomy.payload)) / 3e6
    with caplog.at_level("WARNING", logger="attnscope"):
        tight = attnscope.model_view(trace, budget_mb=budget)
        assert len(script_json(tight.payload)) <= budget * 1e6
    assert tight.payload["kinds"]["self"]["pruning"]["lowered"] is True and "budget" not in str(tight.data()["options"])
    assert "Raise budget_mb=" in caplog.text
    with pytest.raises(InputError, match=r"budget_mb must be a positive number of megabytes; got -1"):
        attnscope.head_view(trace, budget_mb=-1)
    with pytest.raises(InputError, match=r"the neuron view has no option\(s\) \['budget_mb'\]"):
        render("neuron", trace, budget_mb=5)


def test_model_view_metric_and_sort_are_checked_and_reach_the_script(make_trace):
    trace = make_trace(2, 3, 6)
    with pytest.raises(InputError, match=r"unknown metric 'entropie'; choose one of \['entropy', 'distance', .*'max'\]"):
        attnscope.model_view(trace, metric="entropie")
    with pytest.raises(InputError, match=r"sort=True orders each layer's heads by a metric; pass metric= one of"):
        attnscope.model_view(trace, sort=True)
    with pytest.raises(InputError, match=r"sort must be True or False; got 'yes'"):
        attnscope.model_view(trace, metric="self", sort="yes")
    with pytest.raises(InputError, match=r"the head view has no option\(s\) \['metric'\]"):
        render("head", trace, metric="entropy")
    assert attnscope.model_view(trace, metric="self", sort=True).data()["options"] == {"metric": "self", "sort": True}


def test_model_payload_carries_each_heads_metrics_and_label_as_a_few_numbers(make_trace):
    trace = make_trace(2, 3, 8, causal=True)
    metrics = attnscope.model_view(trace).payload["kinds"]["self"]["metrics"]
    assert metrics["names"] == list(HEAD_METRICS)
    for rec in head_metrics(trace):
        layer, head = rec["layer"], rec["head"]
        for name in HEAD_METRICS:
            assert metrics["values"][name][layer][head] == pytest.approx(rec[name], rel=1e-3, abs=1e-6)
        assert metrics["labels"][metrics["label"][layer][head]] == rec["label"]
    assert len(script_json(metrics)) < 2 * 3 * (len(HEAD_METRICS) * 10 + 4) + 200  # per head, never per token
    some = attnscope.model_view(trace, include_layers=[1], include_heads=[2, 0]).payload["kinds"]["self"]["metrics"]
    assert some["values"]["entropy"] == [[metrics["values"]["entropy"][1][2], metrics["values"]["entropy"][1][0]]]
    assert "metrics" not in attnscope.head_view(trace).payload["kinds"]["self"]


def test_long_inputs_compute_head_metrics_only_when_a_metric_is_asked_for(make_trace, monkeypatch):
    import attnscope.encode

    trace = make_trace(2, 3, 8)
    monkeypatch.setattr(attnscope.encode, "METRICS_AUTO_MAX", 2 * 3 * 8 * 8 - 1)  # this trace now counts as long
    assert "metrics" not in attnscope.model_view(trace).payload["kinds"]["self"]
    assert "metrics" in attnscope.model_view(trace, metric="max").payload["kinds"]["self"]


def test_metrics_that_do_not_apply_to_cross_attention_travel_as_null():
    trace = seq2seq_trace(1)
    cross = attnscope.model_view(trace, kind="cross").payload["kinds"]["cross"]["metrics"]["values"]
    assert cross["distance"] == cross["previous"] == [[None, None]] and all(v > 0 for v in cross["max"][0])
    assert json_block(attnscope.model_view(trace).html())["payload"]["kinds"]["cross"]["metrics"]  # strict JSON, no NaN


def test_causal_traces_do_not_offer_pair_filters_the_mask_leaves_empty(make_trace):
    trace = make_trace(1, 2, 6, causal=True, sentence_b_start=3)  # from_arrays reads the mask off the weights
    assert trace.meta["kinds"] == {"self": {"causal": True}}
    assert make_trace(1, 2, 6).meta["kinds"] == {"self": {"causal": False}}
    assert attnscope.head_view(trace, filter="B->A").options["filter"] == "B->A"
    with pytest.raises(InputError, match=r"filter 'A->B' does not fit this trace; choose one of \['All', 'A->A', 'B->A', 'B->B'\]"):
        attnscope.head_view(trace, filter="A->B")
