"""Inputs of an exact token count for benchmarks."""

from __future__ import annotations

WORDS = ("the cat sat on the mat and the dog ran over the hill while a bird sang in the old tree near "
         "our house every day").split()


def text_of_tokens(tokenizer, n: int) -> str:
    """A plain English text that ``tokenizer`` turns into exactly ``n`` tokens (special tokens included)."""
    k = n
    for _ in range(50):
        text = " ".join(WORDS[i % len(WORDS)] for i in range(k))
        got = len(tokenizer(text)["input_ids"])
        if got == n:
            return text
        k += n - got
    raise RuntimeError(f"could not make a text of exactly {n} tokens")
