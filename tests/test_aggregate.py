"""trace.aggregate: attention between words, sentences and paragraphs (sum to a unit, mean from a unit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import attnscope
from attnscope.aggregate import Units, unit_head
from attnscope.errors import InputError, TraceFormatError
from attnscope.units import split_paragraphs, split_sentences, unit_spans
from tiny_models import build

TEXT = "The unbelievably tall giraffe ate leaves. It was 3.5 m tall (really)."
HELD = ('Dr. Smith paid $3.50 for tea, e.g. green tea at 5 p.m. on Main St. yesterday. "Is it good?" she asked. '
        'He said "Yes." Then he left... The U.S. team won! Pi is 3.14159, roughly.\n\n'
        "A new paragraph starts here. It has two sentences.")
HELD_SENTENCES = [
    "Dr. Smith paid $3.50 for tea, e.g. green tea at 5 p.m. on Main St. yesterday.",
    '"Is it good?" she asked.',
    'He said "Yes."',
    "Then he left...",
    "The U.S. team won!",
    "Pi is 3.14159, roughly.",
    "A new paragraph starts here.",
    "It has two sentences.",
]


def words(trace: attnscope.Trace, stream: str = "input") -> list[str]:
    return trace.aggregate("word").tokens[stream]


def without_positions(trace: attnscope.Trace) -> attnscope.Trace:
    """The same trace without what capture recorded of the text (word ids, offsets, the text itself)."""
    return attnscope.Trace(tokens=trace.tokens, attention=trace.attention, segments=trace.segments,
                           meta={k: v for k, v in trace.meta.items() if k not in ("words", "offsets", "text", "pair")})


@pytest.fixture(scope="module")
def minilm_words(minilm):
    return attnscope.capture(*minilm, TEXT, pair="Another sentence here.")


# ------------------------------------------------------------------------------------------------ the rule
def test_a_two_piece_word_sums_attention_to_it_and_averages_attention_from_it():
    w = np.array([[[[4, 2, 2], [1, 6, 1], [3, 3, 2]]]], dtype=np.float32) / 8  # exact in binary
    trace = attnscope.Trace.from_arrays(w, ["the", "play", "##ing"])
    agg = trace.aggregate("word")
    assert agg.tokens["input"] == ["the", "playing"]
    want = np.array([[4 / 8, (2 + 2) / 8],
                     [(1 + 3) / 8 / 2, (6 + 1 + 3 + 2) / 8 / 2]], dtype=np.float32)
    np.testing.assert_array_equal(agg.head(0, 0), want)
    assert agg.meta["units"] == {"by": "word", "spans": {"input": [[0, 1], [1, 3]]}}


def test_single_piece_words_are_the_identity(make_trace):
    trace = attnscope.capture(*build("bert"), "the cat sat on the mat .", pair="it was very happy .")
    agg = trace.aggregate("word")
    assert agg.tokens == trace.tokens and agg.segments == trace.segments
    np.testing.assert_array_equal(agg.dense(), trace.dense())
    assert trace.aggregate("token") is trace


@pytest.mark.parametrize("by", ["word", "sentence", "paragraph"])
def test_rows_of_an_aggregated_trace_sum_to_one(minilm_words, by):
    agg = minilm_words.aggregate(by)
    np.testing.assert_allclose(agg.dense().sum(-1), 1.0, atol=1e-5)


def test_pruned_rows_sum_to_their_pieces_kept_mass(minilm_words):
    pruned = minilm_words.prune(mass=0.7, top_k=4)
    agg = pruned.aggregate("word")
    att, spans = agg.attention["self"], agg.meta["units"]["spans"]["input"]
    assert att.pruned
    source = pruned.attention["self"].mass  # [L, H, q]: each token row's kept fraction
    want = np.stack([source[..., s:e].mean(-1) for s, e in spans], -1)
    np.testing.assert_allclose(att.mass, want, atol=1e-6)
    np.testing.assert_allclose(agg.dense().sum(-1), want, atol=1e-5)  # softmax rows: kept fraction = kept sum
    dense_agg = attnscope.Trace(tokens=pruned.tokens, attention={"self": attnscope.attention.DenseAttention(
        pruned.dense())}, segments=pruned.segments, meta=pruned.meta).aggregate("word")
    np.testing.assert_allclose(agg.dense(), dense_agg.dense(), atol=1e-6)


@pytest.mark.parametrize("name", ["llama", "gpt_oss"])
def test_the_q_k_form_aggregates_as_its_dense_weights(name):
    model, tok = build(name)
    text = "the cat sat on the mat . the dog was very happy . he runs"
    qk = attnscope.capture(model, tok, text, form="qk")
    dense = attnscope.capture(model, tok, text, form="dense")
    for by in ("word", "sentence", [(0, 3), (5, 9)]):
        a, b = qk.aggregate(by), dense.aggregate(by)
        np.testing.assert_allclose(a.dense(), b.dense(), atol=1e-6)
        assert a.tokens == b.tokens
    sentences = qk.aggregate("sentence")
    assert sentences.tokens["input"] == ["the cat sat on the mat .", "the dog was very happy .", "he runs"]
    sums = sentences.dense().sum(-1)
    want = qk.dense().sum(-1)  # learned sinks: rows below 1, and unit rows keep their pieces' mean
    np.testing.assert_allclose(sums, np.stack([want[..., a:b].mean(-1) for a, b in [(0, 7), (7, 13), (13, 15)]], -1),
                               atol=1e-5)
    assert sentences.meta["kinds"]["self"]["causal"] and np.triu(sentences.head(0, 0), 1).max() == 0


def test_units_read_blocks_of_rows_that_cut_units_anywhere(monkeypatch):
    import attnscope.aggregate as agg_module

    model, tok = build("llama")
    trace = attnscope.capture(model, tok, "the cat sat on the mat . the dog was very happy .", form="qk")
    att = trace.attention["self"]
    units = Units([(0, 3), (3, 4), (4, 9), (9, 14)], 14)
    whole = unit_head(att, 1, 2, units, units)
    monkeypatch.setattr(agg_module, "BLOCK_WEIGHTS", 14 * 2)  # two rows per block: blocks end inside units
    np.testing.assert_allclose(unit_head(att, 1, 2, units, units), whole, atol=1e-6)


# ------------------------------------------------------------------------------------------------ segments and steps
def test_segments_and_generation_steps_become_unit_spans():
    model, tok = build("llama")
    trace = attnscope.capture(model, tok, "the cat sat on the mat . it was", generate=4)
    agg = trace.aggregate("sentence")
    assert agg.segments["prompt"].start == 0
    assert agg.segments["prompt"].end == agg.segments["generated"].start
    assert agg.segments["generated"].end == len(agg.tokens["input"])
    gen = agg.segments["generated"]
    assert " ".join(agg.tokens["input"][gen.start:gen.end]).split() == trace.tokens["input"][-4:]


def test_encoder_decoder_streams_aggregate_each_from_its_own_text():
    trace = attnscope.capture(*build("bart"), "the cat sat . the dog runs .", target="a dog . the cat")
    agg = trace.aggregate("sentence")
    assert agg.tokens["encoder"][-2:] == ["the dog runs .", "</s>"]
    assert agg.shape("cross")[2:] == (len(agg.tokens["decoder"]), len(agg.tokens["encoder"]))
    np.testing.assert_allclose(agg.dense("cross").sum(-1), 1.0, atol=1e-5)
    spans = agg.meta["units"]["spans"]
    assert set(spans) == {"encoder", "decoder"}
    only = trace.aggregate({"encoder": [(1, 4)]})
    assert only.tokens["decoder"] == trace.tokens["decoder"]
    assert len(only.tokens["encoder"]) == len(trace.tokens["encoder"]) - 2


# ------------------------------------------------------------------------------------------------ word boundaries
def test_wordpiece_words_from_the_tokenizer_and_from_the_markers_agree(minilm_words):
    got = words(minilm_words)
    assert got == ["[CLS]", "the", "unbelievably", "tall", "giraffe", "ate", "leaves", ".", "it", "was", "3", ".",
                   "5", "m", "tall", "(", "really", ")", ".", "[SEP]", "another", "sentence", "here", ".", "[SEP]"]
    assert minilm_words.meta["words"]["input"][2:7] == [1, 1, 1, 1, 1]  # un ##bel ##ie ##va ##bly: one word
    bare = without_positions(minilm_words)
    assert unit_spans(bare, "input", "word") == unit_spans(minilm_words, "input", "word")


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    """SmolLM2's byte-level BPE tokenizer, read from the offline model's GGUF file (without its weights)."""
    from attnscope.capture.models import OFFLINE_MODELS

    smollm2 = OFFLINE_MODELS["smollm2"]
    return tf.AutoTokenizer.from_pretrained(str(smollm2.path()), gguf_file=smollm2.gguf_file)


def test_byte_level_bpe_words_and_characters_split_over_pieces(smollm2_tokenizer):
    tok = smollm2_tokenizer
    torch.manual_seed(0)
    cfg = tf.GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=64)
    model = tf.GPT2LMHeadModel(cfg).eval()
    text = "Unbelievably, the café's naïve owner said: don't panic.\n\nNew paragraph here."
    trace = attnscope.capture(model, tok, text)
    assert any(t.startswith("Ġ") for t in trace.tokens["input"])  # byte-level pieces
    got = words(trace)
    assert got[:3] == ["Unbelievably", ",", "the"]
    assert "café" in got and "naïve" in got  # characters split over byte pieces come out whole
    bare = without_positions(trace)
    assert words(bare) == got
    paragraphs = trace.aggregate("paragraph").tokens["input"]
    assert paragraphs == ["Unbelievably, the café's naïve owner said: don't panic.", "New paragraph here."]
    assert trace.aggregate("paragraph").tokens == bare.aggregate("paragraph").tokens


def sentencepiece_tokenizer() -> tf.PreTrainedTokenizerFast:
    """A small BPE tokenizer with SentencePiece's ▁ markers (tokenizers' Metaspace), trained here."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    corpus = ["the believable cat sat on the mat .", "unbelievable tall giraffes eat leaves .", "it was happy ."] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def test_sentencepiece_words_join_their_pieces():
    tok = sentencepiece_tokenizer()
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    trace = attnscope.capture(tf.LlamaForCausalLM(cfg).eval(), tok, "the unbelievable giraffe sat. it was happy.")
    pieces = trace.tokens["input"]
    assert pieces[0] == "<s>" and any(p.startswith("▁") for p in pieces) and len(pieces) > 10
    got = words(trace)
    assert got == ["<s>", "the", "unbelievable", "giraffe", "sat", ".", "it", "was", "happy", "."]
    assert words(without_positions(trace)) == got
    assert trace.aggregate("sentence").tokens["input"] == ["<s>", "the unbelievable giraffe sat.", "it was happy."]


# ------------------------------------------------------------------------------------------------ sentences
def test_the_sentence_splitter_keeps_abbreviations_decimals_and_quotes():
    assert [HELD[s:e] for s, e in split_sentences(HELD)] == HELD_SENTENCES
    assert [HELD[s:e] for s, e in split_paragraphs(HELD)] == [" ".join(HELD_SENTENCES[:6]),
                                                              " ".join(HELD_SENTENCES[6:])]
    assert split_sentences("") == [] and split_sentences("no stop at the end") == [(0, 18)]


ENDING = ("We met at 5 p.m. Then we left. The U.S. Army came at 6 a.m. on Monday. It moved to the U.S. The "
          "army followed, e.g. Paris and Rome. Dr. Jones saw J. A. Smith, Jr. She waved. The answer was no. No. 5 "
          "won, i.e. This Team did. Apples, pears etc. But nobody came. We met at 5 p.m. \"Then\" he spoke.")
ENDING_SENTENCES = [
    "We met at 5 p.m.",
    "Then we left.",
    "The U.S. Army came at 6 a.m. on Monday.",
    "It moved to the U.S.",
    "The army followed, e.g. Paris and Rome.",
    "Dr. Jones saw J. A. Smith, Jr.",
    "She waved.",
    "The answer was no.",
    "No. 5 won, i.e. This Team did.",
    "Apples, pears etc.",
    "But nobody came.",
    "We met at 5 p.m.",
    '"Then" he spoke.',
]


def test_an_abbreviation_ends_a_sentence_when_a_sentence_start_follows_it():
    assert [ENDING[s:e] for s, e in split_sentences(ENDING)] == ENDING_SENTENCES
    lower = "we met at 5 p.m. then we left. pears etc. and so on. e.g. the end."
    assert [lower[s:e] for s, e in split_sentences(lower)] == ["we met at 5 p.m.", "then we left.",
                                                              "pears etc. and so on.", "e.g. the end."]


def test_sentences_of_a_captured_text_follow_its_offsets(minilm):
    trace = attnscope.capture(*minilm, HELD)
    got = trace.aggregate("sentence").tokens["input"]
    assert got[0] == "[CLS]" and got[-1] == "[SEP]"
    assert [s.replace(" ", "") for s in got[1:-1]] == [s.lower().replace(" ", "") for s in HELD_SENTENCES]
    assert len(trace.aggregate("paragraph").tokens["input"]) == 4


# ------------------------------------------------------------------------------------------------ refusals and files
def test_bad_units_are_refused_with_what_to_do(make_trace):
    trace = make_trace(n=6, sentence_b_start=3)
    with pytest.raises(InputError, match="by must be 'token', one of"):
        trace.aggregate("letter")
    with pytest.raises(InputError, match=r"span \(2, 1\) must satisfy"):
        trace.aggregate([(0, 1), (2, 1)])
    with pytest.raises(InputError, match="crosses the boundary of segment 'A'"):
        trace.aggregate([(2, 4)])
    with pytest.raises(InputError, match="already aggregated by 'word'"):
        trace.aggregate("word").aggregate("sentence")
    with pytest.raises(InputError, match="list of \\(start, end\\) token spans"):
        trace.aggregate([1, 2])


def test_aggregated_traces_and_captured_positions_survive_files(minilm_words, tmp_path):
    back = attnscope.load(minilm_words.save(tmp_path / "t.safetensors"))
    assert back.meta["words"] == minilm_words.meta["words"] and back.meta["offsets"] == minilm_words.meta["offsets"]
    assert back.aggregate("sentence").tokens == minilm_words.aggregate("sentence").tokens
    agg = minilm_words.aggregate("word")
    again = attnscope.load(agg.save(tmp_path / "w.safetensors"))
    assert again.meta["units"] == agg.meta["units"]
    np.testing.assert_array_equal(again.dense(), agg.dense())


@pytest.mark.parametrize("field, value, match", [
    ("words", {"input": [0]}, "one entry per token"),
    ("words", {"input": None}, "one entry per token"),
    ("offsets", {"nope": []}, "one entry per token of a stream"),
    ("offsets", {"input": [[3, 1]] * 6}, r"expected \[start, end\]"),
    ("words", {"input": [-1] * 6}, "a word index >= 0 or null"),
])
def test_malformed_positions_in_a_file_are_refused(make_trace, tmp_path, field, value, match):
    path = make_trace(n=6).with_meta(**{field: value}).save(tmp_path / "bad.safetensors")
    with pytest.raises(TraceFormatError, match=match):
        attnscope.load(path)


# ------------------------------------------------------------------------------------------------ long inputs
def test_a_16k_token_q_k_trace_aggregates_to_sentences_without_a_tokens_x_tokens_matrix():
    """Dense, one head of 16,384 tokens is 1 GiB of float32; aggregating to sentences stays far below it."""
    from tiny_models import tokenizer

    n = 16_384
    cfg = tf.LlamaConfig(vocab_size=50, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=n)
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(cfg).eval()
    text = " ".join(" ".join(["the quick brown fox jumps over the lazy dog ."] * (n // 10 + 1)).split()[:n])
    trace = attnscope.capture(model, tokenizer("plain", model_max_length=n), text, form="qk")
    assert trace.attention["self"].form == "qk" and trace.shape() == (1, 1, n, n)
    with open("/proc/self/clear_refs", "w") as f:  # reset this process's peak resident size (Linux)
        f.write("5")
    before = _status_mb("VmRSS")
    agg = trace.aggregate("sentence")
    grown = _status_mb("VmHWM") - before
    assert grown < 300, f"aggregating grew the peak resident size by {grown:.0f} MB (dense would be 1024 MB)"
    assert agg.shape() == (1, 1, 1639, 1639)
    np.testing.assert_allclose(agg.dense().sum(-1), 1.0, atol=1e-4)
    att = trace.attention["self"]
    for unit in (0, 817, 1638):  # a unit row, recomputed from its token rows alone
        start = unit * 10
        rows = att.rows(0, 0, start, min(n, start + 10)).mean(0)
        want = np.add.reduceat(rows, np.arange(0, n, 10))
        np.testing.assert_allclose(agg.head(0, 0)[unit], want, atol=1e-6)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024
