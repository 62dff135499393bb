"""Crafted trace files, malformed and merely hostile, written byte by byte as safetensors containers.

A file is a ``(tensors, header)`` pair: ``tensors`` maps names to numpy arrays (any dtype and shape, consistent or
not with what the header declares) and ``header`` maps the attnscope header fields to JSON *values* (serialised
here, so a test can put ``null``, a number or a list where a string list belongs). :func:`write_raw` writes the
container itself (8-byte header length, JSON header, data), so it can also write what safetensors' own writer
refuses to. ``python tests/hostile_traces.py DIR`` writes the whole corpus to DIR.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

_DTYPES = {"float16": "F16", "float32": "F32", "float64": "F64", "int8": "I8", "int16": "I16", "int32": "I32",
           "int64": "I64", "uint8": "U8", "bool": "BOOL"}


def write_raw(path: Path, tensors: dict[str, np.ndarray], header: dict) -> Path:
    """Write a safetensors container: header fields are JSON-encoded strings, as attnscope writes them."""
    meta = {k: v if isinstance(v, str) and k in ("format", "format_version") else json.dumps(v)
            for k, v in header.items()}
    entries: dict[str, object] = {"__metadata__": meta}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr).tobytes()
        entries[name] = {"dtype": _DTYPES[arr.dtype.name], "shape": list(arr.shape),
                         "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(entries).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    return path


def valid_dense(layers: int = 2, heads: int = 2, n: int = 4) -> tuple[dict, dict]:
    """A small valid dense trace with q/k vectors, as (tensors, header)."""
    rng = np.random.default_rng(0)
    w = np.tril(rng.random((layers, heads, n, n))).astype(np.float32)
    w /= w.sum(-1, keepdims=True)
    tensors = {
        "attention/self": w,
        "ids/input": np.arange(n, dtype=np.int64),
        "qkv/self/query": rng.normal(size=(layers, heads, n, 8)).astype(np.float32),
        "qkv/self/key": rng.normal(size=(layers, heads, n, 8)).astype(np.float32),
    }
    header = {
        "format": "attnscope-trace", "format_version": "1",
        "attention": {"self": {"form": "dense", "shape": [layers, heads, n, n]}},
        "tokens": {"input": [f"t{i}" for i in range(n)]},
        "segments": {"A": ["input", 0, n // 2], "B": ["input", n // 2, n]},
        "meta": {"model": "crafted", "kinds": {"self": {"causal": True, "scaling": 8 ** -0.5}}},
    }
    return tensors, header


def valid_pruned(n: int, layers: int = 1, heads: int = 1, per_row: int = 1) -> tuple[dict, dict]:
    """A valid pruned causal trace of ``n`` tokens keeping ``per_row`` weights per row (a tiny file, a long input)."""
    rows = layers * heads * n
    counts = np.minimum(np.tile(np.arange(1, n + 1), layers * heads), per_row)
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    q = np.repeat(np.tile(np.arange(n), layers * heads), counts)
    rank = np.arange(indptr[-1]) - np.repeat(indptr[:-1], counts)
    indices = (q - rank).astype(np.int32)  # the diagonal and the keys just before it
    values = np.full(indptr[-1], 1.0 / per_row, dtype=np.float16)
    mass = (counts / np.minimum(np.tile(np.arange(1, n + 1), layers * heads), per_row)).astype(np.float32)
    tensors = {"attention/self/indptr": indptr, "attention/self/indices": indices,
               "attention/self/values": values, "attention/self/mass": mass.reshape(layers, heads, n)}
    header = {
        "format": "attnscope-trace", "format_version": "1",
        "attention": {"self": {"form": "pruned", "shape": [layers, heads, n, n]}},
        "tokens": {"input": [f"w{i}" for i in range(n)]},
        "segments": {},
        "meta": {"model": "crafted", "kinds": {"self": {"causal": True}}},
    }
    return tensors, header


def _dense(edit: Callable[[dict, dict], None]) -> tuple[dict, dict]:
    tensors, header = valid_dense()
    edit(tensors, header)
    return tensors, header


def _pruned(edit: Callable[[dict, dict], None], n: int = 4, per_row: int = 2) -> tuple[dict, dict]:
    tensors, header = valid_pruned(n, per_row=per_row)
    edit(tensors, header)
    return tensors, header


def _set(d: dict, key: str, value) -> None:
    d[key] = value


def _indices(values: list[int]) -> Callable[[dict, dict], None]:
    def edit(t: dict, h: dict) -> None:
        t["attention/self/indices"] = np.array(values, dtype=np.int32)
    return edit


#: name -> (tensors, header) of files attnscope.load must refuse with TraceFormatError, and a word the message
#: must hold (the field it names).
MALFORMED: dict[str, tuple[Callable[[], tuple[dict, dict]], str]] = {
    "csr-indptr-not-monotone": (lambda: _pruned(lambda t, h: _set(t, "attention/self/indptr",
                                                                  np.array([0, 2, 1, 3, 7], dtype=np.int64))), "indptr"),
    "csr-negative-indices": (lambda: _pruned(_indices([0, -1, -2, -3, 0, 1, 2]), per_row=2), "indices"),
    "csr-indices-out-of-range": (lambda: _pruned(_indices([0, 0, 1, 1, 9, 2, 3])), "indices"),
    "csr-indptr-not-from-zero": (lambda: _pruned(lambda t, h: t["attention/self/indptr"].__iadd__(1)), "indptr"),
    "csr-indptr-short": (lambda: _pruned(lambda t, h: _set(t, "attention/self/indptr",
                                                           t["attention/self/indptr"][:-1])), "indptr"),
    "csr-values-int": (lambda: _pruned(lambda t, h: _set(t, "attention/self/values",
                                                         t["attention/self/values"].astype(np.int32))), "values"),
    "csr-values-nan": (lambda: _pruned(lambda t, h: t["attention/self/values"].__setitem__(0, np.nan)), "values"),
    "csr-mass-above-one": (lambda: _pruned(lambda t, h: t["attention/self/mass"].__setitem__(0, 7.0)), "mass"),
    "csr-mass-wrong-shape": (lambda: _pruned(lambda t, h: _set(t, "attention/self/mass",
                                                               np.ones(3, dtype=np.float32))), "mass"),
    "csr-missing-indices": (lambda: _pruned(lambda t, h: t.pop("attention/self/indices")), "indices"),
    "dense-nan": (lambda: _dense(lambda t, h: t["attention/self"].__setitem__((0, 0, 0, 0), np.nan)), "NaN"),
    "dense-inf": (lambda: _dense(lambda t, h: t["attention/self"].__setitem__((1, 1, 2, 0), np.inf)), "NaN"),
    "dense-above-one": (lambda: _dense(lambda t, h: t["attention/self"].__setitem__((0, 1, 1, 1), 3.5)), "outside"),
    "dense-negative": (lambda: _dense(lambda t, h: t["attention/self"].__setitem__((0, 1, 1, 1), -0.5)), "outside"),
    "dense-int-dtype": (lambda: _dense(lambda t, h: _set(t, "attention/self",
                                                         (t["attention/self"] * 100).astype(np.int8))), "floating"),
    "dense-wrong-shape": (lambda: _dense(lambda t, h: _set(t, "attention/self", t["attention/self"][:, :1])), "shape"),
    "dense-missing": (lambda: _dense(lambda t, h: t.pop("attention/self")), "missing"),
    "meta-null": (lambda: _dense(lambda t, h: _set(h, "meta", None)), "meta"),
    "meta-list": (lambda: _dense(lambda t, h: _set(h, "meta", [1, 2])), "meta"),
    "meta-string": (lambda: _dense(lambda t, h: _set(h, "meta", "hello")), "meta"),
    "meta-kinds-not-dict": (lambda: _dense(lambda t, h: _set(h["meta"], "kinds", [])), "kinds"),
    "meta-kinds-null": (lambda: _dense(lambda t, h: _set(h["meta"], "kinds", None)), "kinds"),
    "meta-kind-not-dict": (lambda: _dense(lambda t, h: _set(h["meta"], "kinds", {"self": 3})), "kinds"),
    "meta-causal-string": (lambda: _dense(lambda t, h: _set(h["meta"], "kinds", {"self": {"causal": "yes"}})), "causal"),
    "meta-scaling-negative": (lambda: _dense(lambda t, h: _set(h["meta"], "kinds", {"self": {"scaling": -1}})),
                              "scaling"),
    "tokens-integers": (lambda: _dense(lambda t, h: _set(h, "tokens", {"input": [1, 2, 3, 4]})), "tokens"),
    "tokens-null-item": (lambda: _dense(lambda t, h: h["tokens"]["input"].__setitem__(2, None)), "tokens"),
    "tokens-null": (lambda: _dense(lambda t, h: _set(h, "tokens", None)), "tokens"),
    "tokens-nested": (lambda: _dense(lambda t, h: _set(h, "tokens", {"input": [["a"], "b", "c", "d"]})), "tokens"),
    "tokens-empty": (lambda: _dense(lambda t, h: _set(h, "tokens", {"input": []})), "tokens"),
    "tokens-too-few": (lambda: _dense(lambda t, h: _set(h, "tokens", {"input": ["a", "b"]})), "shape"),
    "tokens-missing-stream": (lambda: _dense(lambda t, h: _set(h, "tokens", {"decoder": ["a", "b", "c", "d"]})),
                              "stream"),
    "shape-absurd": (lambda: _dense(lambda t, h: _set(h, "attention", {"self": {"form": "dense",
                                                                                "shape": [1, 2**40, 0, 0]}})), "shape"),
    "shape-negative": (lambda: _dense(lambda t, h: _set(h, "attention", {"self": {"form": "dense",
                                                                                  "shape": [2, -2, 4, 4]}})), "shape"),
    "shape-three-dims": (lambda: _dense(lambda t, h: _set(h, "attention", {"self": {"form": "dense",
                                                                                    "shape": [2, 2, 4]}})), "shape"),
    "pruned-shape-huge": (lambda: _pruned(lambda t, h: _set(h, "attention", {"self": {"form": "pruned",
                                                                                      "shape": [2**40, 1, 4, 4]}})),
                          "mass"),
    "form-unknown": (lambda: _dense(lambda t, h: _set(h, "attention", {"self": {"form": "sparse", "shape": [2, 2, 4, 4]}})),
                     "form"),
    "kind-unknown": (lambda: _dense(lambda t, h: _set(h, "attention", {"weird": {"form": "dense",
                                                                                 "shape": [2, 2, 4, 4]}})), "kind"),
    "attention-not-dict": (lambda: _dense(lambda t, h: _set(h, "attention", "dense")), "attention"),
    "qkv-head-size-mismatch": (lambda: _dense(lambda t, h: _set(t, "qkv/self/key", np.zeros((2, 2, 4, 5), np.float32))),
                               "head size"),
    "qkv-wrong-layers": (lambda: _dense(lambda t, h: _set(t, "qkv/self/query", np.zeros((3, 2, 4, 8), np.float32))),
                         "query"),
    "qkv-nan": (lambda: _dense(lambda t, h: t["qkv/self/key"].__setitem__((0, 0, 0, 0), np.nan)), "NaN"),
    "qkv-query-only": (lambda: _dense(lambda t, h: t.pop("qkv/self/key")), "query and key"),
    "qkv-of-missing-kind": (lambda: _dense(lambda t, h: _set(t, "qkv/cross/query", np.zeros((2, 2, 4, 8), np.float32))),
                            "cross"),
    "bias-wrong-shape": (lambda: _dense(lambda t, h: _set(t, "bias/self", np.zeros((2, 2, 4), np.float32))), "bias"),
    "ids-wrong-length": (lambda: _dense(lambda t, h: _set(t, "ids/input", np.arange(7, dtype=np.int64))), "ids"),
    "ids-float": (lambda: _dense(lambda t, h: _set(t, "ids/input", np.arange(4, dtype=np.float32))), "ids"),
    "unknown-array": (lambda: _dense(lambda t, h: _set(t, "payload/evil", np.zeros(3, np.float32))), "payload/evil"),
    "segment-out-of-range": (lambda: _dense(lambda t, h: _set(h, "segments", {"A": ["input", 0, 99]})), "segments"),
    "segment-malformed": (lambda: _dense(lambda t, h: _set(h, "segments", {"A": ["input", "0", 2]})), "segments"),
    "segments-null": (lambda: _dense(lambda t, h: _set(h, "segments", None)), "segments"),
    "header-lacks-tokens": (lambda: _dense(lambda t, h: h.pop("tokens")), "tokens"),
    "format-version-huge": (lambda: _dense(lambda t, h: _set(h, "format_version", "9" * 5000)), "format"),
    "format-version-text": (lambda: _dense(lambda t, h: _set(h, "format_version", "one")), "format"),
}

#: name -> (tensors, header) of files that are odd but well formed: they load, and every reader must handle them.
HOSTILE: dict[str, Callable[[], tuple[dict, dict]]] = {
    "pruned-15000-tokens-one-weight-per-row": lambda: valid_pruned(15_000),
    "pruned-60000-tokens-one-weight-per-row": lambda: valid_pruned(60_000),
    "pruned-3000-tokens-4-layers": lambda: valid_pruned(3_000, layers=4, heads=3, per_row=3),
    "lone-surrogates": lambda: _dense(lambda t, h: (h["tokens"]["input"].__setitem__(1, "a\ud800b"),
                                                    h["meta"].__setitem__("text", "x\udfffy"))),
    "markup-and-escapes": lambda: _dense(lambda t, h: (
        h["tokens"].__setitem__("input", ["</script><script>alert(1)</script>", "[bold red]x[/]", "\x1b[2J\x1b]8;;http://evil.example\x07",
                                          "\u202eevil"]),
        h["meta"].__setitem__("model", "\x1b[31mred\x1b[0m [link=http://evil.example]x[/link]"))),
    "single-token": lambda: valid_pruned(1),
    "no-meta-kinds": lambda: _dense(lambda t, h: h["meta"].pop("kinds")),
    "zero-weights": lambda: _dense(lambda t, h: t["attention/self"].__imul__(0.0)),
    "float16-weights": lambda: _dense(lambda t, h: _set(t, "attention/self", t["attention/self"].astype(np.float16))),
}


def write_corpus(folder: Path) -> dict[str, Path]:
    """Write every crafted file (malformed and hostile) to ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (make, _) in MALFORMED.items():
        out[name] = write_raw(folder / f"malformed-{name}.safetensors", *make())
    for name, make in HOSTILE.items():
        out[name] = write_raw(folder / f"hostile-{name}.safetensors", *make())
    return out


if __name__ == "__main__":
    for path in write_corpus(Path(sys.argv[1])).values():
        print(path)
