"""A GGUF model is converted once: its dequantized copy is kept in attnscope's cache and later loads read it."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import attnscope
from attnscope.capture import models


@pytest.mark.slow
def test_a_gguf_model_converted_once_loads_the_same_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNSCOPE_CACHE", str(tmp_path))
    source, kwargs = models._resolve("smollm2", None)
    folder = models.gguf_cache(source, kwargs)
    assert folder is not None and folder.parent == tmp_path / "gguf" and not folder.exists()

    start = time.perf_counter()
    converted, tok = attnscope.load_model("smollm2")  # converts the GGUF file, keeps the copy
    first = time.perf_counter() - start
    assert (folder / models._COMPLETE).exists() and not list(tmp_path.glob("gguf/*.tmp-*"))
    start = time.perf_counter()
    cached, tok2 = attnscope.load_model("smollm2")  # reads the copy
    second = time.perf_counter() - start
    assert second < first / 3, (first, second)

    assert type(cached) is type(converted) and cached.config.attnscope_gguf is True
    for (name, a), (_, b) in zip(converted.state_dict().items(), cached.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    text = "The cat sat on the mat because it was tired."
    assert tok(text)["input_ids"] == tok2(text)["input_ids"]
    a, b = attnscope.capture(converted, tok, text), attnscope.capture(cached, tok2, text)
    np.testing.assert_array_equal(a.attention["self"].layer(3), b.attention["self"].layer(3))
    assert models.load_config("smollm2").num_hidden_layers == 30  # read from the copy too

    models._keep_converted(cached, tok2, folder)  # a second writer finds the copy there and leaves it
    assert (folder / models._COMPLETE).exists() and not list(tmp_path.glob("gguf/*.tmp-*"))


def test_the_cache_can_be_turned_off_and_takes_only_gguf_models(monkeypatch):
    source, kwargs = models._resolve("smollm2", None)
    monkeypatch.setenv("ATTNSCOPE_CACHE", "off")
    assert models.gguf_cache(source, kwargs) is None
    monkeypatch.delenv("ATTNSCOPE_CACHE")
    assert models.gguf_cache(*models._resolve("minilm", None)) is None  # safetensors already: nothing to convert
