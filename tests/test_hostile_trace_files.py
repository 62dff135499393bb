"""Hostile trace files: whatever bytes a file holds, attnscope.load refuses it with TraceFormatError or returns a
Trace that every reader handles without an internal error, in bounded memory."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attnscope
from attnscope import analysis
from attnscope.errors import AttnscopeError, TraceFormatError
from hostile_traces import HOSTILE, MALFORMED, valid_dense, valid_pruned, write_corpus, write_raw

HERE = Path(__file__).parent
#: Examples per fuzz test; raise it for a thorough local run (ATTNSCOPE_FUZZ_EXAMPLES=3000 pytest ...).
EXAMPLES = int(os.environ.get("ATTNSCOPE_FUZZ_EXAMPLES", "150"))

json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
dtypes = st.sampled_from(["float16", "float32", "float64", "int8", "int32", "int64", "uint8"])
shapes = st.lists(st.integers(0, 6), min_size=0, max_size=5).map(tuple)


@st.composite
def arrays(draw) -> np.ndarray:
    dtype, shape = draw(dtypes), draw(shapes)
    n = int(np.prod(shape))
    if np.dtype(dtype).kind == "f":
        values = draw(st.lists(st.floats(-2, 2, width=16) | st.sampled_from([np.nan, np.inf, 1.0, 0.0]),
                               min_size=n, max_size=n))
    else:
        low = 0 if np.dtype(dtype).kind == "u" else -3
        values = draw(st.lists(st.integers(low, 9), min_size=n, max_size=n))
    return np.array(values, dtype=dtype).reshape(shape)


@st.composite
def mutated_files(draw) -> tuple[dict, dict]:
    tensors, header = draw(st.sampled_from([lambda: valid_dense(), lambda: valid_pruned(5, per_row=2)]))()
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["field", "subfield", "array", "drop", "add"]))
        if what == "field":
            header[draw(st.sampled_from(["attention", "tokens", "segments", "meta"]))] = draw(json_value)
        elif what == "subfield" and isinstance(header.get("meta"), dict):
            header["meta"][draw(st.sampled_from(["kinds", "model", "text"]))] = draw(json_value)
        elif what == "array" and tensors:
            tensors[draw(st.sampled_from(sorted(tensors)))] = draw(arrays())
        elif what == "drop" and tensors:
            tensors.pop(draw(st.sampled_from(sorted(tensors))))
        elif what == "add":
            name = draw(st.sampled_from(["qkv/self/value", "bias/self", "ids/input", "qkv/self/query", "x"]))
            tensors[name] = draw(arrays())
    return tensors, header


def read_with_every_cheap_reader(trace: attnscope.Trace) -> None:
    """The in-process readers (views' HTML, metrics); the CLI, figures and the web app run in the slow sweep."""
    for step in (lambda: [analysis.head_metrics(trace, k) for k in trace.kinds],
                 lambda: attnscope.render("head", trace).html(), lambda: attnscope.render("model", trace).html(),
                 lambda: attnscope.render("matrix", trace).html(), lambda: attnscope.render("neuron", trace).html()):
        with contextlib.suppress(AttnscopeError):  # refused with a message: the user's input is at fault
            step()


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(mutated_files())
def test_mutated_files_are_refused_or_read_cleanly(tmp_path_factory, file):
    path = write_raw(tmp_path_factory.mktemp("fuzz") / "t.safetensors", *file)
    try:
        trace = attnscope.load(path)
    except TraceFormatError:
        return
    read_with_every_cheap_reader(trace)


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_flipped_bytes_are_refused_or_read_cleanly(tmp_path_factory, data):
    path = write_raw(tmp_path_factory.mktemp("flip") / "t.safetensors", *valid_dense())
    raw = bytearray(path.read_bytes())
    header_len = struct.unpack("<Q", raw[:8])[0]
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1) | st.integers(8, 8 + header_len - 1))
        raw[at] = data.draw(st.integers(0, 255))
    path.write_bytes(bytes(raw))
    try:
        trace = attnscope.load(path)
    except TraceFormatError:
        return
    read_with_every_cheap_reader(trace)


@pytest.mark.slow
def test_every_reader_handles_every_crafted_file_in_bounded_memory(tmp_path):
    """CLI, figures, views, analyses and the web app on each crafted file, each in a child under RLIMIT_AS."""
    write_corpus(tmp_path)
    run = subprocess.run([sys.executable, str(HERE / "read_everything.py"), str(tmp_path), "--cap-mb", "1536"],
                         capture_output=True, text=True, timeout=900, cwd=HERE.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    reports = {r["file"]: r for r in json.loads(run.stdout)}
    assert len(reports) == len(MALFORMED) + len(HOSTILE)
    internal = {name: r["internal"] for name, r in reports.items() if r["internal"]}
    assert not internal, json.dumps(internal, indent=1)[:6000]
    for name in MALFORMED:
        assert reports[f"malformed-{name}.safetensors"]["outcome"] == "refused: TraceFormatError"
    loaded = [r for r in reports.values() if r["outcome"] == "loaded"]
    assert len(loaded) == len(HOSTILE)
    baseline = min(r["peak_mb"] for r in loaded)
    for r in loaded:  # memory grows with what the file holds, never with the shape it declares
        assert r["peak_mb"] <= baseline + 64 + 50 * r["bytes"] / 1e6, r
