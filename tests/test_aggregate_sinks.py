"""Hiding attention sinks: what is left out, the share it held, renormalising, learned sinks, with units."""

from __future__ import annotations

import numpy as np
import pytest

import attnscope
from attnscope import sinks
from attnscope.analysis import head_metrics
from attnscope.errors import InputError
from attnscope.sinks import SINK_TOKEN, hide_sinks, shown_trace, trace_note
from tiny_models import build

DECODER_TEXT = "the cat sat on the mat . the dog was very happy . he runs"


@pytest.fixture(scope="module")
def bert_pair(minilm):
    return attnscope.capture(*minilm, "The unbelievably tall giraffe ate leaves.", pair="It was happy.")


def specials(trace) -> list[int]:
    return [i for i, t in enumerate(trace.tokens["input"]) if t in ("[CLS]", "[SEP]")]


@pytest.fixture(scope="module")
def llama():
    return attnscope.capture(*build("llama"), DECODER_TEXT, form="qk")


def test_the_stated_share_is_the_hidden_columns_mean_mass(bert_pair, llama):
    hidden = hide_sinks(bert_pair)  # [CLS] and both [SEP]: head_metrics calls that mass "sink"
    metrics = head_metrics(bert_pair)
    held = np.array(hidden.meta["hidden_sinks"]["held"]["self"])
    np.testing.assert_allclose(held.reshape(-1), [m["sink"] for m in metrics], atol=1e-6)
    assert hidden.meta["hidden_sinks"]["labels"] == {"input": ["[CLS]", "[SEP]"]}
    layer, head = 2, 5
    want = bert_pair.head(layer, head)[:, specials(bert_pair)].sum(1).mean()
    assert trace_note(hidden, layer, head) == f"[CLS] and [SEP] hidden: they held {100 * want:.0f} % of this head's attention"
    first = hide_sinks(llama, "first")
    for m, share in zip(head_metrics(llama), np.array(first.meta["hidden_sinks"]["held"]["self"]).reshape(-1)):
        assert abs(m["first"] - share) < 1e-6
    assert trace_note(first, 1, 2).startswith("first token hidden: it held ")
    all_heads = trace_note(first)
    assert "of these 8 heads' attention on average (" in all_heads


def test_nothing_else_changes(bert_pair):
    hidden = hide_sinks(bert_pair)
    gone = specials(bert_pair)
    keep = [i for i in range(len(bert_pair.tokens["input"])) if i not in gone]
    assert hidden.tokens["input"] == [bert_pair.tokens["input"][i] for i in keep]
    np.testing.assert_array_equal(hidden.dense(), bert_pair.dense()[:, :, keep][:, :, :, keep])
    b = bert_pair.segments["B"].start
    assert hidden.segments == {"A": attnscope.Segment("input", 0, b - 2), "B": attnscope.Segment("input", b - 2, len(keep))}
    assert hidden.token_ids["input"] == [bert_pair.token_ids["input"][i] for i in keep]
    assert hidden.meta["offsets"]["input"] == [bert_pair.meta["offsets"]["input"][i] for i in keep]
    assert not hidden.meta["hidden_sinks"]["renormalized"] and "renormalised" not in trace_note(hidden, 0, 0)
    rows = hidden.dense().sum(-1)  # what is left: 1 minus what the hidden tokens held, nothing spread
    np.testing.assert_allclose(rows, 1 - bert_pair.dense()[:, :, keep][..., gone].sum(-1), atol=1e-5)


def test_renormalised_rows_sum_to_one_and_say_so(bert_pair):
    hidden = hide_sinks(bert_pair, renormalize=True)
    np.testing.assert_allclose(hidden.dense().sum(-1), 1.0, atol=1e-5)
    plain = hide_sinks(bert_pair).dense()
    np.testing.assert_allclose(hidden.dense(), plain / plain.sum(-1, keepdims=True), atol=1e-6)
    assert trace_note(hidden, 0, 0).endswith("; rows renormalised over what is shown")


@pytest.mark.parametrize("form", ["dense", "qk"])
def test_a_learned_sink_is_its_own_column_and_never_renormalised_away(form):
    trace = attnscope.capture(*build("gpt_oss"), DECODER_TEXT, form=form)
    before = trace.dense()  # rows sum below 1: the rest went to the learned sink
    for renormalize in (False, True):
        hidden = hide_sinks(trace, "first", renormalize=renormalize)
        w = hidden.dense()
        assert hidden.tokens["input"][0] == SINK_TOKEN and hidden.tokens["input"][1:] == trace.tokens["input"][1:]
        assert not w[:, :, 0].any()  # the sink's own row is empty
        learned = 1 - before[:, :, 1:].sum(-1)
        scale = 1 - before[:, :, 1:, 0] if renormalize else 1.0  # renormalising divides by what is shown
        np.testing.assert_allclose(w[:, :, 1:, 0], learned / scale, atol=1e-5)
        np.testing.assert_allclose(w[:, :, 1:, 1:], before[:, :, 1:, 1:] / np.asarray(scale)[..., None], atol=1e-5)
        assert learned.min() > 0.01
    assert "the learned sink (<sink>) took" in trace_note(hidden, 0, 0)
    np.testing.assert_allclose(np.array(hidden.meta["hidden_sinks"]["learned"]["self"]),
                               sinks.learned_share(trace), atol=1e-6)
    np.testing.assert_allclose(sinks.learned_share(trace), 1 - before.sum(-1).mean(-1), atol=1e-5)


def test_named_tokens_and_positions_are_hidden(bert_pair):
    assert sinks.sink_positions(bert_pair, ["[SEP]", 3])["input"] == [3, *specials(bert_pair)[1:]]
    assert sinks.sink_positions(bert_pair, ["tall", "##bel"])["input"] == [3, 7]  # raw or as shown
    assert sinks.sink_positions(bert_pair, "first")["input"] == [0]
    hidden = hide_sinks(bert_pair, ["[SEP]"])
    assert "[SEP]" not in hidden.tokens["input"] and hidden.tokens["input"][0] == "[CLS]"


def test_units_and_hidden_sinks_together(llama):
    both = shown_trace(llama, by="sentence", hide_sinks="first")
    assert both.tokens["input"] == ["cat sat on the mat .", "the dog was very happy .", "he runs"]
    held = np.array(both.meta["hidden_sinks"]["held"]["self"])
    np.testing.assert_allclose(held.reshape(-1), [m["first"] for m in head_metrics(llama)], atol=1e-6)
    units = llama.aggregate([(0, 1), (1, 7), (7, 13), (13, 15)])
    np.testing.assert_allclose(both.dense(), units.dense()[:, :, 1:, 1:], atol=1e-6)
    assert shown_trace(llama) is llama
    assert shown_trace(llama, by="word").tokens == llama.aggregate("word").tokens
    again = shown_trace(llama, by="word", hide_sinks=True, renormalize=True)
    np.testing.assert_allclose(again.dense().sum(-1), 1.0, atol=1e-5)


def test_a_long_q_k_trace_is_refused_at_the_token_level_with_what_to_do(llama, monkeypatch):
    monkeypatch.setattr(sinks, "DENSE_MAX_BYTES", 1000)
    with pytest.raises(InputError, match="aggregate first"):
        hide_sinks(llama)
    assert shown_trace(llama, by="paragraph", hide_sinks=True).tokens["input"] == [DECODER_TEXT[4:]]


@pytest.mark.parametrize("kw, match", [
    ({"hide_sinks": "middle"}, "hide_sinks must be one of"),
    ({"hide_sinks": [1.5]}, "give token positions"),
    ({"hide_sinks": [99]}, "outside the"),
    ({"renormalize": True}, "pass hide_sinks=True"),
])
def test_bad_sink_options_are_refused(llama, kw, match):
    with pytest.raises(InputError, match=match):
        shown_trace(llama, **kw)


def test_hiding_every_token_is_refused_unless_a_rule_chose_them(make_trace):
    trace = make_trace(n=3)
    with pytest.raises(InputError, match="would leave no 'input' token"):
        hide_sinks(trace, [0, 1, 2])
    specials = make_trace(n=3, tokens=["<s>", "</s>", "<pad>"])
    assert sinks.sink_positions(specials, "auto") == {"input": []}  # a stream of sinks only: nothing is hidden


# ------------------------------------------------------------------------------------------------ every front end
def test_views_figures_metrics_and_diff_take_the_same_options(bert_pair, tmp_path):
    from attnscope.figures import figure

    both = shown_trace(bert_pair, by="word", hide_sinks=True)
    view = attnscope.head_view(bert_pair, by="word", hide_sinks=True, picture=False)
    assert view.data()["options"] == {"by": "word", "hideSinks": True}
    units = view.payload["units"]
    assert units["levels"] == ["word", "sentence"]  # paragraphs would be the sentences here
    assert units["streams"]["input"]["word"]["labels"] == bert_pair.aggregate("word").tokens["input"]
    assert units["sinks"]["labels"] == ["[CLS]", "[SEP]"]
    np.testing.assert_allclose(view.payload["kinds"]["self"]["sinkHeld"],
                               both.meta["hidden_sinks"]["held"]["self"], atol=1e-6)
    fig = figure("matrix", bert_pair, by="word", hide_sinks=True, layer=1, head=4)
    words = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert trace_note(both, 1, 4) in words and "unbelievably" in words
    shown_first = attnscope.head_view(bert_pair, by="word", hide_sinks=True)
    assert shown_first.save(tmp_path / "h.png").stat().st_size > 1000  # the view's first state as a figure
    records = head_metrics(bert_pair, by="word", hide_sinks=True)
    assert records == head_metrics(both)
    other = attnscope.capture(bert_pair.meta["model"], "The unbelievably tall giraffe ate grass.", pair="It was happy.")
    diff = attnscope.diff_view(bert_pair, other, by="word", hide_sinks=True, picture=False)
    assert "unbelievably" in diff.payload["query"]["a"] and "[CLS]" not in diff.payload["query"]["a"]
    with pytest.raises(InputError, match="by must be one of"):
        attnscope.matrix_view(bert_pair, by="letter")
    with pytest.raises(InputError, match="no option"):
        attnscope.views.render("neuron", bert_pair, by="word")


def test_the_cli_renders_words_with_hidden_sinks(bert_pair, tmp_path):
    from typer.testing import CliRunner

    from attnscope.cli import app

    path = bert_pair.save(tmp_path / "t.safetensors")
    out = tmp_path / "m.html"
    result = CliRunner().invoke(app, ["render", str(path), "--view", "matrix", "--by", "word", "--hide-sinks",
                                      "--renormalize", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert '"by":"word"' in text and '"hideSinks":"auto"' in text and '"renormalize":true' in text
    result = CliRunner().invoke(app, ["render", str(path), "--view", "neuron", "--by", "word", "-o",
                                      str(tmp_path / "n.html")])
    assert result.exit_code != 0 and "--by does not apply to the neuron view" in result.output


def test_the_diff_figure_says_what_each_inputs_sinks_held(minilm):
    from attnscope.figures import figure
    from attnscope.sinks import held_share, sink_positions

    a = attnscope.capture(*minilm, "The doctor said she was tired.")
    b = attnscope.capture(*minilm, "The doctor said he was tired.")
    fig = figure("diff", a, other=b, hide_sinks=True, layer=2, head=5)
    share = [held_share(t, sink_positions(t, "auto"))[2, 5] for t in (a, b)]
    want = (f"[CLS] and [SEP] hidden: they held {100 * share[0]:.0f} % of this head's attention in A, "
            f"{100 * share[1]:.0f} % in B")
    assert want in [t.get_text() for t in fig.texts]
    fig = figure("diff", a, other=b, hide_sinks=["[SEP]"], renormalize=True, layer=2, head=5)
    assert any(t.get_text().startswith("[SEP] hidden: it held") and t.get_text().endswith("renormalised over what "
                                                                                          "is shown") for t in fig.texts)


def test_a_pruned_heads_row_totals_read_only_that_heads_entries():
    """Every row of a softmax model holds its whole attention, 1, the last row of every head included (it once also
    summed every later head's entries, and took seconds a head on a long trace)."""
    from attnscope.synthetic import synthetic_trace

    trace = synthetic_trace(64, layers=2, heads=3)
    att = trace.attention["self"]
    assert att.pruned
    for layer in range(2):
        for head in range(3):
            np.testing.assert_allclose(sinks.row_totals(att, layer, head), 1.0, atol=1e-5)
    np.testing.assert_allclose(sinks.learned_share(trace), 0.0, atol=1e-5)
