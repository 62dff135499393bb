"""`--hide-sinks` on the command line: bare or a rule (auto, first, special), or named tokens and positions, taken
exactly as the Python API's ``hide_sinks=`` takes them, and refused with what to write when they name nothing."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

import attnscope
from attnscope.cli import _bare_hide_sinks, app
from attnscope.errors import InputError
from attnscope.sinks import parse_which, sink_positions

runner = CliRunner()


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory, minilm):
    trace = attnscope.capture(*minilm, "The unbelievably tall giraffe ate leaves.", pair="It was happy.")
    return trace, trace.save(tmp_path_factory.mktemp("sinks") / "t.safetensors")


def rendered(tmp_path, path, *flags: str) -> dict:
    """The view data (options and payload) of ``attnscope render PATH --view matrix FLAGS``."""
    out = tmp_path / "m.html"
    result = runner.invoke(app, ["render", str(path), "--view", "matrix", *flags, "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    found = re.search(r'<script type="application/json" id="[^"]+-data">(.*?)</script>', out.read_text("utf-8"), re.S)
    assert found, "no view data in the page"
    return json.loads(found.group(1))


@pytest.mark.parametrize("text, value", [
    ("auto", "auto"), ("first", "first"), ("special", "special"), (" special ", "special"),
    ("0,5", [0, 5]), ("[CLS],[SEP]", ["[CLS]", "[SEP]"]), ("[SEP], 0", ["[SEP]", 0]), (r"a\,b,7", ["a,b", 7]),
    ("first,[SEP]", ["first", "[SEP]"]),  # in a list "first" is a token text, as in hide_sinks=["first", ...]
])
def test_a_hide_sinks_value_is_what_the_python_api_takes(text, value):
    assert parse_which(text) == value


def test_a_bare_hide_sinks_means_auto_wherever_it_stands():
    assert _bare_hide_sinks(["render", "t", "--hide-sinks"]) == ["render", "t", "--hide-sinks", "auto"]
    assert _bare_hide_sinks(["render", "t", "--hide-sinks", "--renormalize"]) == [
        "render", "t", "--hide-sinks", "auto", "--renormalize"]
    assert _bare_hide_sinks(["render", "t", "--hide-sinks", "0,5"]) == ["render", "t", "--hide-sinks", "0,5"]
    assert _bare_hide_sinks(["show", "--", "--hide-sinks"]) == ["show", "--", "--hide-sinks"]
    assert _bare_hide_sinks(["render", "t", "--hide-sinks", "-1"]) == ["render", "t", "--hide-sinks", "-1"]


@pytest.mark.parametrize("flags, python", [
    (["--hide-sinks"], True),
    (["--hide-sinks", "first"], "first"),
    (["--hide-sinks", "0,5"], [0, 5]),
    (["--hide-sinks", "[CLS],[SEP]"], ["[CLS]", "[SEP]"]),
    (["--hide-sinks=tall,##bel", "--renormalize"], ["tall", "##bel"]),
])
def test_the_cli_hides_the_tokens_the_python_api_hides(trace_file, tmp_path, flags, python):
    trace, path = trace_file
    data = rendered(tmp_path, path, *flags)
    want = sink_positions(trace, "auto" if python is True else python)
    assert data["payload"]["units"]["sinks"]["positions"] == want
    assert data["options"]["hideSinks"] == ("auto" if python is True else python)
    assert data["options"].get("renormalize", False) == ("--renormalize" in flags)
    python_view = attnscope.matrix_view(trace, hide_sinks=python, picture=False)
    assert python_view.payload["units"]["sinks"] == data["payload"]["units"]["sinks"]
    if python == [0, 5]:
        assert want == {"input": [0, 5]}
    if python == ["[CLS]", "[SEP]"]:
        assert want["input"] == [i for i, t in enumerate(trace.tokens["input"]) if t in ("[CLS]", "[SEP]")]


def test_a_figure_from_the_cli_says_what_the_named_tokens_held(trace_file, tmp_path):
    trace, path = trace_file
    out = tmp_path / "m.svg"
    result = runner.invoke(app, ["render", str(path), "--view", "matrix", "--layer", "1", "--head", "4",
                                 "--hide-sinks", "[SEP]", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    svg = out.read_text("utf-8")
    assert "[SEP] hidden: it held" in svg and "[CLS]" in svg


@pytest.mark.parametrize("value, message", [
    ("giraf", "hide_sinks names 'giraf', which is no token of this trace"),
    ("0,,5", "has an empty item"),
    ("99", "hide_sinks position 99 is outside the"),
    ("-1", "token positions count from 0 (the first token); -1 is none"),
])
def test_bad_hide_sinks_values_are_refused_with_what_to_write(trace_file, tmp_path, value, message):
    _, path = trace_file
    result = runner.invoke(app, ["render", str(path), "--view", "matrix", "--hide-sinks", value, "-o",
                                 str(tmp_path / "m.html")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "hint: " in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.html").exists()


def test_the_python_api_refuses_a_name_that_is_no_token(trace_file):
    trace, _ = trace_file
    with pytest.raises(InputError, match="names 'giraf', which is no token of this trace; name tokens as shown"):
        attnscope.head_view(trace, hide_sinks=["[SEP]", "giraf"]).html()
