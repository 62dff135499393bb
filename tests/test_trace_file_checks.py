"""attnscope.load checks what a trace file holds, not only its container: every malformed file is refused with a
TraceFormatError that names the field, and odd but well-formed files load."""

from __future__ import annotations

import re

import numpy as np
import pytest

import attnscope
from attnscope.errors import TraceFormatError
from hostile_traces import HOSTILE, MALFORMED, valid_dense, valid_pruned, write_raw


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_file_is_refused_naming_the_field(name, tmp_path):
    make, field = MALFORMED[name]
    path = write_raw(tmp_path / f"{name}.safetensors", *make())
    with pytest.raises(TraceFormatError, match=re.compile(re.escape(field), re.IGNORECASE)) as err:
        attnscope.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_odd_but_well_formed_file_loads(name, tmp_path):
    trace = attnscope.load(write_raw(tmp_path / f"{name}.safetensors", *HOSTILE[name]()))
    assert trace.shape()[2] == len(trace.tokens["input"])


def test_the_crafted_valid_files_load_as_written(tmp_path):
    tensors, header = valid_dense()
    trace = attnscope.load(write_raw(tmp_path / "d.safetensors", tensors, header))
    np.testing.assert_array_equal(trace.dense(), tensors["attention/self"])
    assert trace.has_qkv() and trace.meta["kinds"]["self"]["causal"] is True
    pruned = attnscope.load(write_raw(tmp_path / "p.safetensors", *valid_pruned(5, per_row=2)))
    np.testing.assert_allclose(pruned.row(0, 0, 3), [0, 0, 0.5, 0.5, 0])


def test_negative_csr_indices_never_wrap_into_other_columns(tmp_path):
    tensors, header = valid_pruned(4, per_row=1)
    tensors["attention/self/indices"] = np.array([0, -1, -2, -3], dtype=np.int32)
    with pytest.raises(TraceFormatError, match=r"indices.*\[0, 3\]"):
        attnscope.load(write_raw(tmp_path / "wrap.safetensors", tensors, header))


def test_lone_surrogates_become_replacement_characters(tmp_path):
    trace = attnscope.load(write_raw(tmp_path / "s.safetensors", *HOSTILE["lone-surrogates"]()))
    assert trace.tokens["input"][1] == "a\ufffdb" and trace.meta["text"] == "x\ufffdy"
    trace.tokens["input"][1].encode("utf-8")  # writable everywhere now


def test_from_arrays_traces_with_tiny_negative_weights_still_round_trip(tmp_path):
    w = np.full((1, 1, 2, 2), 0.5, dtype=np.float32)
    w[0, 0, 0, 1] = -5e-7
    trace = attnscope.Trace.from_arrays(w, ["a", "b"])
    assert attnscope.load(trace.save(tmp_path / "t.safetensors")).head(0, 0)[0, 1] == np.float32(-5e-7)


def test_unchecked_loading_maps_the_file_and_reads_no_values(tmp_path):
    tensors, header = valid_dense()
    tensors["attention/self"][0, 0, 0, 0] = np.nan
    path = write_raw(tmp_path / "nan.safetensors", tensors, header)
    with pytest.raises(TraceFormatError, match="NaN"):
        attnscope.load(path)
    trace = attnscope.load(path, check_values=False)  # header, dtypes and shapes only: for inspection
    assert isinstance(trace.attention["self"].weights, np.memmap) and trace.shape() == (2, 2, 4, 4)
    with pytest.raises(TraceFormatError, match="shape"):
        attnscope.load(write_raw(tmp_path / "bad.safetensors", *MALFORMED["dense-wrong-shape"][0]()),
                       check_values=False)
