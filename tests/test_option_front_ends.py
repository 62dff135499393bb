"""One option rule for every front end: the HTML view, the figure, the CLI and the web app's API take and refuse
the same options, and resolve what they take to the same values (attnscope.views.options.resolve).

Each case is written once and sent through all four, each in its own syntax (keywords, ``--flags``, a query
string). A refusal must be a refusal everywhere; where the case can be written in a front end's syntax with the
same value (not ``layer=True`` on a command line), the message must be the same too.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import attnscope
from attnscope.cli import app as cli_app
from attnscope.errors import AttnscopeError
from attnscope.figures.options import resolve as figure_options
from attnscope.server import Settings, create_app
from attnscope.server.routes_traces import hold
from conftest import random_attention

#: (view, options as Python passes them, the same on the command line, in a query string (None: same as CLI),
#:  expected: {resolved option: value} or the error text every front end must give)
CASES: list[tuple[str, dict[str, Any], list[str], dict[str, str] | None, dict[str, Any] | str]] = [
    ("head", {"layer": -1}, ["--layer", "-1"], None, {"layer": 1}),
    ("head", {"include_layers": [0, 0]}, ["--layers", "0,0"], None, {"include_layers": [0]}),
    ("head", {"layer": True}, ["--layer", "True"], {"layer": "true"}, "layer must be a whole number"),
    ("head", {"layer": 5}, ["--layer", "5"], None, "layer=5 is out of range: there are 2 layers"),
    ("head", {"layer": 0, "include_layers": [1]}, ["--layer", "0", "--layers", "1"], None,
     "layer 0 is not shown; choose one of [1]"),
    ("head", {"heads": [2, 2, 0]}, ["--heads", "2,2,0"], None, {"heads": [2, 0]}),
    ("matrix", {"query": -1, "head": -2}, ["--query", "-1", "--head", "-2"], None, {"query": 4, "head": 1}),
    ("matrix", {"theme": "sepia"}, ["--theme", "sepia"], None, "theme must be one of ['auto', 'light', 'dark']"),
    ("matrix", {"filter": "A->C"}, ["--filter", "A->C"], None, "filter 'A->C' does not fit this trace"),
    ("model", {"include_heads": [1, 0]}, ["--heads", "1,0"], None, {"include_heads": [1, 0]}),
]
FLAG_OF = {"layer": "layer", "head": "head", "query": "query", "theme": "theme", "filter": "filter"}


@pytest.fixture(scope="module")
def trace() -> attnscope.Trace:
    return attnscope.Trace.from_arrays(random_attention(2, 3, 5), ["[CLS]", "a", "b", "c", "[SEP]"],
                                       sentence_b_start=3)


@pytest.fixture(scope="module")
def served(trace):
    app = create_app(Settings())
    entry = hold(app.state.attnscope, trace, {"kind": "test"})
    return TestClient(app, base_url="http://127.0.0.1"), entry.id


def through_view(view: str, trace, options: dict[str, Any]) -> dict[str, Any] | str:
    try:
        return dict(attnscope.render(view, trace, **options).options)
    except AttnscopeError as err:
        return str(err)


def through_figure(view: str, trace, options: dict[str, Any]) -> dict[str, Any] | str:
    try:
        opts = figure_options(view, trace, **options)
    except AttnscopeError as err:
        return str(err)
    return {"layer": opts.layer, "head": opts.head, "query": opts.query, "heads": opts.heads,
            "include_layers": opts.layers, "include_heads": opts.head_set, "theme": opts.theme.name}


def through_cli(view: str, trace, args: list[str], tmp_path) -> dict[str, Any] | str:
    path, out = tmp_path / "t.safetensors", tmp_path / "v.html"
    trace.save(path)
    done = CliRunner().invoke(cli_app, ["render", str(path), "--view", view, *args, "-o", str(out)])
    if done.exit_code != 0:
        return done.stderr
    data = json.loads(re.search(r'<script type="application/json" id="[^"]+-data">(.*?)</script>',
                                out.read_text(encoding="utf-8"), re.S).group(1))
    return {**data["options"], "include_layers": data["payload"]["kinds"]["self"]["layers"],
            "include_heads": data["payload"]["kinds"]["self"]["heads"]}


def through_server(view: str, served, params: dict[str, str]) -> dict[str, Any] | str:
    client, trace_id = served
    got = client.get(f"/api/traces/{trace_id}/view", params={"view": view, "lazy": "0", **params})
    if got.status_code != 200:
        assert got.status_code == 422, got.text
        return got.json()["error"]
    data = got.json()
    return {**data["options"], "include_layers": data["payload"]["kinds"]["self"]["layers"],
            "include_heads": data["payload"]["kinds"]["self"]["heads"]}


def query_string(args: list[str]) -> dict[str, str]:
    names = {"--layer": "layer", "--head": "head", "--query": "query", "--theme": "theme", "--filter": "filter",
             "--layers": "include_layers"}
    out = {}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        out[names.get(flag, flag)] = value
    return out


@pytest.mark.parametrize(("view", "options", "args", "params", "expected"), CASES,
                         ids=[f"{v}-{o}" for v, o, *_ in CASES])
def test_every_front_end_gives_the_same_answer(view, options, args, params, expected, trace, served, tmp_path):
    if params is None:
        params = query_string(args)
        if "--heads" in args:  # the CLI's --heads is the head view's heads and the model grid's include_heads
            params["include_heads" if view == "model" else "heads"] = params.pop("--heads")
    answers = {
        "view": through_view(view, trace, options),
        "figure": through_figure(view, trace, options),
        "cli": through_cli(view, trace, args, tmp_path),
        "server": through_server(view, served, params),
    }
    if isinstance(expected, str):
        refused = {name: a for name, a in answers.items() if isinstance(a, str)}
        assert refused.keys() == answers.keys(), f"accepted by {sorted(set(answers) - set(refused))}: {answers}"
        same_syntax = ("view", "figure") if isinstance(options.get("layer"), bool) else answers
        for name in same_syntax:
            assert expected in answers[name], (name, answers[name])
        return
    for name, answer in answers.items():
        assert isinstance(answer, dict), (name, answer)
        for key, value in expected.items():
            assert answer[key] == value, (name, key, answer[key], value)
