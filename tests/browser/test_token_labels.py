"""Views draw the token labels Python made (the figures' labels), never their own prettifying of raw tokens.

A tiny GPT-2 with a real byte-level BPE tokenizer (trained here, offline) reads "café": its tokens hold ``Ã©`` for
``é`` and ``Ġ`` for a space. The head, matrix and neuron views must show ``é`` and ``café`` exactly as
:func:`attnscope.tokens.prettify_tokens` (and so a figure) does, and the raw strings with ``prettify=False``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import transformers as tf
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

import attnscope
from attnscope.figures import save_figure
from attnscope.tokens import prettify_tokens

from .browser_helpers import head_labels, matrix_labels, show

pytestmark = pytest.mark.browser

TEXT = "the café is open\nthe café serves crème brûlée"


def byte_level_gpt2():
    """(tiny random GPT-2, its byte-level BPE tokenizer) built offline: the tokenizer is trained on TEXT."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=64)
    cfg = tf.GPT2Config(vocab_size=tok.get_vocab_size(), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                        bos_token_id=0, eos_token_id=0)
    return tf.GPT2LMHeadModel(cfg).eval(), fast


@pytest.fixture(scope="module")
def trace():
    model, tokenizer = byte_level_gpt2()
    return attnscope.capture(model, tokenizer, TEXT, qkv=True)


def neuron_labels(page, prop: str = "textContent") -> list[str]:
    return head_labels(page, ".attnscope[data-view=neuron]", ".as-left .as-tok", prop)


def svg_texts(path) -> set[str]:
    return {"".join(t.itertext()) for t in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text")}


def test_views_draw_pythons_labels_and_raw_tokens_when_asked(page, trace, tmp_path):
    raw = list(trace.tokens["input"])
    labels = prettify_tokens(raw)
    assert any("Ã" in t for t in raw) and "Ċ" in "".join(raw)  # real byte-level tokens: é is two byte characters
    assert "café" in labels and not any("Ã" in t or "Ġ" in t for t in labels)
    assert set(labels) <= svg_texts(save_figure("matrix", trace, tmp_path / "matrix.svg"))  # the figure's
    head, matrix = ".attnscope[data-view=head]", ".attnscope[data-view=matrix]"
    for prettify, want in ((None, labels), (False, raw)):
        views = [attnscope.head_view(trace, prettify=prettify), attnscope.matrix_view(trace, prettify=prettify),
                 attnscope.neuron_view(trace, prettify=prettify)]
        html = views[0].html().replace("</body>", "".join(v.fragment() for v in views[1:]) + "</body>")
        show(page, html, tmp_path / f"labels-{prettify}.html")
        assert head_labels(page, head, ".as-left .as-tok") == want
        assert head_labels(page, head, ".as-right .as-tok", "title") == raw  # hover titles stay raw
        rows, cols = matrix_labels(page, matrix)
        assert rows == cols == want
        assert neuron_labels(page) == want
