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


#: Standard-library modules whose documentation is the real English text of :func:`real_text_of_tokens`.
STDLIB = ("argparse", "collections", "json", "logging", "pathlib", "subprocess", "threading", "asyncio", "email",
          "http.client", "unittest", "typing", "dataclasses", "functools", "itertools", "decimal", "datetime",
          "random", "statistics", "textwrap", "csv", "sqlite3", "zipfile", "tarfile", "socket", "shutil", "os",
          "inspect", "pickle", "enum", "heapq", "bisect", "string", "re", "difflib", "calendar", "urllib.request")


def real_text_of_tokens(tokenizer, n: int) -> str:
    """Real English prose (the docstrings of Python's standard library, in a fixed order) that ``tokenizer`` turns
    into exactly ``n`` tokens, special tokens included."""
    import importlib
    import inspect

    parts, total = [], 0
    for name in STDLIB:
        module = importlib.import_module(name)
        for _, obj in [("", module), *sorted(vars(module).items())]:
            doc = inspect.getdoc(obj) if (obj is module or getattr(obj, "__module__", None) == name) else None
            if doc:
                parts.append(doc)
                total += len(doc)
        if total > n * 8:
            break
    text = "\n\n".join(parts)
    ids = tokenizer(text, return_offsets_mapping=True)
    if len(ids["input_ids"]) < n:
        raise RuntimeError(f"the standard library's docstrings give only {len(ids['input_ids'])} tokens; asked {n}")
    cut = text[: ids["offset_mapping"][n - 1][1]]
    for _ in range(20):  # a cut inside a word can tokenize differently: shorten until exact
        got = len(tokenizer(cut)["input_ids"])
        if got == n:
            return cut
        cut = cut[: len(cut) - max(1, (got - n) * 2)] if got > n else text[: len(cut) + (n - got)]
    raise RuntimeError(f"could not make a real text of exactly {n} tokens")
