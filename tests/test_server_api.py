"""The web app's JSON API through FastAPI's TestClient: every endpoint, and the bad input each must refuse.

One app (and so one load of the embedded model) serves the module; apps with other settings are made where a
test needs them (token, small limits). Every error must come back as JSON ``{"error": message}``.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

import attnscope
import fresh_loop
from attnscope.encode import decode_head
from attnscope.errors import InputError
from attnscope.server import Settings, create_app
from attnscope.server.queue import Busy, Gate
from attnscope.server.store import TraceStore, trace_bytes

BASE = "http://127.0.0.1"
TEXT = "The cat sat on the mat because it was tired."


def client_for(**settings) -> TestClient:
    return TestClient(create_app(Settings(**settings)), base_url=BASE)


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]
    return body["error"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A trace folder: traces at the top and in a subfolder, plus things the browser must not show or open."""
    root = tmp_path_factory.mktemp("traces")
    outside = tmp_path_factory.mktemp("outside")
    tokens = ["[CLS]", "a", "b", "c", "[SEP]"]
    rng = np.random.default_rng(0)
    att = rng.random((2, 3, 5, 5)).astype(np.float32)
    trace = attnscope.Trace.from_arrays(att / att.sum(-1, keepdims=True), tokens)
    trace.save(root / "top.safetensors")
    (root / "sub").mkdir()
    trace.save(root / "sub" / "inner.safetensors")
    trace.save(outside / "secret.safetensors")
    (root / "notes.txt").write_text("not a trace")
    (root / ".hidden.safetensors").write_bytes((root / "top.safetensors").read_bytes())
    (root / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    (root / "escape.safetensors").symlink_to(outside / "secret.safetensors")
    (root / "outdir").symlink_to(outside, target_is_directory=True)
    (root / "inside-link.safetensors").symlink_to(root / "top.safetensors")
    return root


@pytest.fixture(scope="module")
def client(folder) -> TestClient:
    with client_for(traces_dir=folder, mlflow_uri=f"sqlite:///{folder.parent / 'none' / 'mlflow.db'}") as c:
        yield c


@pytest.fixture(scope="module")
def captured(client) -> dict:
    response = client.post("/api/capture", json={"text": TEXT, "pair": "It slept."})
    assert response.status_code == 200, response.text
    return response.json()


# ----------------------------------------------------------------------------- pages, config, headers


def test_pages_and_view_code_are_served_with_security_headers(client):
    for path in ("/", "/compare", "/traces"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "<script type=\"module\"" in r.text
        csp = r.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
    js = client.get("/assets/views.js")
    assert js.headers["content-type"].startswith("text/javascript")
    for name in ("views.head =", "views.model =", "views.neuron =", "views.matrix =", "window.attnscope"):
        assert name in js.text
    assert ".attnscope" in client.get("/assets/views.css").text
    assert client.get("/static/app.css").status_code == 200


def test_config_lists_the_allowed_models_and_limits(client):
    r = client.get("/api/config", headers={"Origin": "http://evil.example"})
    body = r.json()
    assert [m["id"] for m in body["models"]] == ["minilm"]
    assert body["models"][0]["kind"] == "encoder" and body["models"][0]["default"]
    assert body["views"] == ["head", "model", "neuron", "matrix"] and body["limits"]["queue_size"] == 4
    assert body["limits"]["max_tokens"] == 512 and body["traces_dir"] is True
    assert not any(h.startswith("access-control-") for h in r.headers)  # no CORS, even when asked cross-origin
    assert r.headers["cache-control"] == "no-store"
    assert client.get("/api/health").json()["ok"] is True
    assert client.get("/api/models").json()["models"][0]["id"] == "minilm"


def test_unknown_paths_and_methods_are_json_errors(client):
    assert "no such page" in error_of(client.get("/api/nothing"), 404)
    assert "not allowed" in error_of(client.delete("/api/config", headers={"content-type": "application/json"}), 405)
    error_of(client.get("/static/../../etc/passwd"), 404)
    error_of(client.get("/static/nothing.js"), 404)


# ----------------------------------------------------------------------------- capture


def test_capture_holds_a_trace_with_pair_segments_and_qkv(client, captured):
    assert captured["model"] == "minilm" and captured["text"] == TEXT and captured["pair"] == "It slept."
    assert captured["kinds"]["self"]["layers"] == 6 and captured["kinds"]["self"]["heads"] == 12
    n = captured["tokens"]["input"]
    assert captured["segments"]["A"]["start"] == 0 and captured["segments"]["B"]["end"] == n
    assert captured["qkv"] == {"self": 32} and captured["views"] == ["head", "model", "neuron", "matrix"]
    assert client.get(f"/api/traces/{captured['id']}").json()["id"] == captured["id"]
    listed = client.get("/api/traces").json()
    assert captured["id"] in [t["id"] for t in listed["traces"]] and listed["bytes"] > 0


@pytest.mark.parametrize("body, status, words", [
    ({"text": ""}, 422, "text is empty"),
    ({"text": "   \n"}, 422, "text is empty"),
    ({"text": "hi", "pair": "  "}, 422, "pair is empty"),
    ({"model": "gpt2", "text": "hi"}, 400, "unknown model 'gpt2'; this server serves minilm"),
    ({"model": "../../etc/passwd", "text": "hi"}, 400, "unknown model"),
    ({"text": "hi", "trust_remote_code": True}, 422, "extra inputs"),
    ({"pair": "hi"}, 422, "text: field required"),
    ({"text": 5}, 422, "text"),
    ({"text": "hi", "generate": -1}, 422, "generate"),
    ({"text": "hi", "generate": 33}, 422, "at most 32"),
    ({"text": "hi", "generate": 2}, 422, "minilm is an encoder"),
])
def test_capture_refuses_bad_input_before_running_the_model(client, body, status, words):
    assert words.lower() in error_of(client.post("/api/capture", json=body), status).lower()


def test_capture_refuses_bodies_that_are_not_json(client):
    assert "not valid JSON" in error_of(
        client.post("/api/capture", content=b"{nope", headers={"content-type": "application/json"}), 400)
    assert "Content-Type: application/json" in error_of(
        client.post("/api/capture", content=b"text=hi", headers={"content-type": "application/x-www-form-urlencoded"}),
        415)


def test_oversized_body_is_refused_by_length_and_while_streaming(client):
    big = b'{"text": "' + b"a" * 70_000 + b'"}'
    assert "larger than this server takes (65536 bytes)" in error_of(
        client.post("/api/capture", content=big, headers={"content-type": "application/json"}), 413)

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        yield b'{"text": "'
        for _ in range(40):
            yield b"a" * 4096
        yield b'"}'

    r = client.post("/api/capture", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert "larger than" in error_of(r, 413)


def test_too_many_tokens_and_characters_are_refused():
    with client_for(max_tokens=8, max_chars=200) as c:
        assert "this server takes at most 8" in error_of(c.post("/api/capture", json={"text": TEXT}), 422)
        assert "at most 200" in error_of(c.post("/api/capture", json={"text": "word " * 60}), 422)


def test_model_aliases_resolve_to_the_allowed_id(client):
    r = client.post("/api/capture", json={"model": "sentence-transformers/all-MiniLM-L6-v2", "text": "Hello there."})
    assert r.status_code == 200 and r.json()["source"]["model"] == "minilm"


# ----------------------------------------------------------------------------- views and lazily fetched heads


@pytest.mark.parametrize("view", ["head", "model", "neuron", "matrix"])
def test_view_data_is_the_views_own_payload(client, captured, view):
    r = client.get(f"/api/traces/{captured['id']}/view", params={"view": view, "lazy": "0", "theme": "dark"})
    data = r.json()
    assert data["view"] == view and data["lazy"] is False and data["options"]["theme"] == "dark"
    trace_len = captured["tokens"]["input"]
    assert data["payload"]["kinds"]["self"]["shape"] == [trace_len, trace_len]
    assert len(data["payload"]["tokens"]["input"]) == trace_len


def test_lazy_view_is_a_skeleton_filled_head_by_head(client, captured):
    tid = captured["id"]
    full = client.get(f"/api/traces/{tid}/view", params={"view": "matrix", "lazy": "0"}).json()["payload"]
    lazy = client.get(f"/api/traces/{tid}/view", params={"view": "matrix", "lazy": "1"}).json()
    spec = lazy["payload"]["kinds"]["self"]
    assert lazy["lazy"] is True and lazy["dtype"] == "float16" and spec["form"] == "dense" and spec["dtype"] == "f16"
    assert all(item is None for row in spec["data"] for item in row) and len(spec["data"]) == 6
    one = client.get(f"/api/traces/{tid}/head", params={"layer": 4, "head": 7, "dtype": "float16"}).json()
    assert one["kinds"]["self"]["layers"] == [4] and one["kinds"]["self"]["heads"] == [7]
    assert one["kinds"]["self"]["data"][0][0] == full["kinds"]["self"]["data"][4][7]
    np.testing.assert_array_equal(decode_head(one, "self", 4, 7), decode_head(full, "self", 4, 7))
    some = client.get(f"/api/traces/{tid}/head", params={"layer": 2, "heads": "0,5-6"}).json()["kinds"]["self"]
    assert some["heads"] == [0, 5, 6] and len(some["data"][0]) == 3 and some["dtype"] == "sqrt8"


def test_model_view_carries_head_metrics_whole_or_lazy_and_takes_metric_and_sort(client, captured):
    tid = captured["id"]
    for lazy in ("0", "1"):
        data = client.get(f"/api/traces/{tid}/view", params={"view": "model", "lazy": lazy}).json()
        metrics = data["payload"]["kinds"]["self"]["metrics"]
        assert data["lazy"] is (lazy == "1") and len(metrics["values"]["entropy"]) == 6
    chosen = client.get(f"/api/traces/{tid}/view", params={"view": "model", "metric": "sink", "sort": "true"}).json()
    assert chosen["options"] == {"metric": "sink", "sort": True}
    assert "unknown metric 'nope'" in error_of(
        client.get(f"/api/traces/{tid}/view", params={"view": "model", "metric": "nope"}), 422)


def test_lazy_choice_follows_the_size_budget_and_covers_every_view(captured):
    with client_for(lazy_bytes=1000) as c:
        tid = c.post("/api/capture", json={"text": TEXT}).json()["id"]
        model = c.get(f"/api/traces/{tid}/view", params={"view": "model"}).json()
        assert model["lazy"] is True
        thumb = model["payload"]["kinds"]["self"]["thumb"]
        assert thumb["block"] == 1 and len(thumb["data"]) == 6 and all(thumb["data"][0])  # thumbnails always sent
        neuron = c.get(f"/api/traces/{tid}/view", params={"view": "neuron"}).json()
        qkv = neuron["payload"]["kinds"]["self"]["qkv"]
        assert qkv["d"] == 32 and qkv["query"][0][0] is None and "data" not in neuron["payload"]["kinds"]["self"]
        vec = c.get(f"/api/traces/{tid}/head", params={"layer": 1, "head": 2, "qkv": 1}).json()["kinds"]["self"]
        assert vec["qkv"]["query"][0][0] and "data" not in vec
    with client_for(lazy_bytes=10**9) as c:
        tid = c.post("/api/capture", json={"text": TEXT}).json()["id"]
        assert c.get(f"/api/traces/{tid}/view", params={"view": "model"}).json()["lazy"] is False


@pytest.mark.parametrize("params, words", [
    ({"view": "pie"}, "unknown view 'pie'"),
    ({"view": "matrix", "layer": 99}, "layer=99 is out of range"),
    ({"view": "head", "head": 1}, "no option(s) ['head']"),
    ({"view": "head", "heads": "1;2"}, "heads takes whole numbers (up to 6 digits)"),
    ({"view": "head", "heads": "0-999999"}, "too long"),
    ({"view": "head", "kind": "cross"}, "no 'cross' attention"),
    ({"view": "head", "filter": "X->Y"}, "does not fit"),
    ({"view": "head", "theme": "neon"}, "theme must be"),
    ({"view": "head", "layer": "x"}, "layer"),
    ({"view": "head", "lazy": "maybe"}, "lazy must be"),
])
def test_bad_view_options_are_422(client, captured, params, words):
    assert words in error_of(client.get(f"/api/traces/{captured['id']}/view", params=params), 422)


@pytest.mark.parametrize("params, words", [
    ({"layer": 6, "head": 0}, "include_layers"),
    ({"layer": 0, "head": 12}, "include_heads"),
    ({"layer": 0, "head": 0, "heads": "1"}, "not both"),
    ({"layer": 0, "head": 0, "dtype": "int4"}, "dtype"),
    ({"layer": 0, "head": 0, "kind": "decoder"}, "no 'decoder' attention"),
])
def test_bad_head_requests_are_422(client, captured, params, words):
    assert words in error_of(client.get(f"/api/traces/{captured['id']}/head", params=params), 422)


def test_unknown_trace_id_is_404(client):
    for path in ("", "/view", "/head", "/download/trace", "/download/html", "/download/png"):
        assert "no trace 'nope'" in error_of(client.get(f"/api/traces/nope{path}"), 404)


# ----------------------------------------------------------------------------- downloads


def test_downloads_give_the_trace_html_and_png(client, captured, tmp_path):
    tid = captured["id"]
    r = client.get(f"/api/traces/{tid}/download/trace")
    assert r.headers["content-disposition"].startswith('attachment; filename="attnscope-minilm-')
    path = tmp_path / "t.safetensors"
    path.write_bytes(r.content)
    back = attnscope.load(path)
    assert back.tokens["input"][:2] == ["[CLS]", "the"] and back.shape() == (6, 12, captured["tokens"]["input"],
                                                                               captured["tokens"]["input"])
    html = client.get(f"/api/traces/{tid}/download/html", params={"view": "model", "theme": "dark"})
    assert html.headers["content-disposition"].endswith('-model.html"') and "<script>" in html.text
    csp = html.headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline'" in csp and "style-src 'self' 'unsafe-inline'" in csp  # inline view
    shown = client.get(f"/api/traces/{tid}/download/html", params={"view": "head", "inline": 1})
    assert "content-disposition" not in shown.headers and shown.text.startswith("<!DOCTYPE html>")
    png = client.get(f"/api/traces/{tid}/download/png", params={"view": "matrix", "layer": 2, "head": 3, "dpi": 50})
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    image = Image.open(io.BytesIO(png.content)).convert("L")
    assert min(image.getdata()) < 128  # something dark was drawn on the white figure
    assert "dpi must be between" in error_of(client.get(f"/api/traces/{tid}/download/png", params={"dpi": 5000}), 422)


# ----------------------------------------------------------------------------- compare


def test_compare_two_texts_ranks_heads_by_divergence(client):
    r = client.post("/api/compare", json={"text_a": "The doctor asked the nurse. She left.",
                                          "text_b": "The doctor asked the nurse. He left.", "top": 10})
    body = r.json()
    assert r.status_code == 200, body
    ranked = [x["divergence"] for x in body["ranked"]]
    assert len(ranked) == 10 and ranked == sorted(ranked, reverse=True) and ranked[0] > 0
    assert len(body["divergence"]) == 6 and len(body["divergence"][0]) == 12
    top = body["ranked"][0]
    assert body["divergence"][top["layer"]][top["head"]] == pytest.approx(top["divergence"], abs=1e-6)
    assert body["next"] is None and body["identical"] is False and body["rows"] > 0  # an encoder: no next token
    again = client.post("/api/compare", json={"trace_a": body["a"]["id"], "trace_b": body["b"]["id"], "top": 10})
    assert [x["divergence"] for x in again.json()["ranked"]] == ranked


def test_compare_sends_the_diff_view_whole_or_one_head_at_a_time(client):
    body = client.post("/api/compare", json={"text_a": "The doctor asked the nurse. She left.",
                                             "text_b": "The doctor asked the nurse. He left.", "top": 5}).json()
    diff, top = body["diff"], body["ranked"][0]
    assert diff["view"] == "diff" and diff["one_head"] is False and diff["payload"]["format"] == "attnscope-diff"
    assert diff["payload"]["layers"] == list(range(6)) and len(diff["payload"]["ranked"]) == 5
    assert (diff["options"]["layer"], diff["options"]["head"]) == (top["layer"], top["head"])  # most changed first
    ids = {"a": body["a"]["id"], "b": body["b"]["id"]}
    one = client.get("/api/compare/diff", params={**ids, "layer": 2, "head": 7, "lazy": "1"}).json()
    assert one["one_head"] is True and one["payload"]["layers"] == [2] and one["payload"]["heads"] == [7]
    assert one["options"]["layer"] == 2 and one["payload"]["a"][0][0]
    best = client.get("/api/compare/diff", params={**ids, "lazy": "1"}).json()["payload"]
    assert (best["layers"], best["heads"]) == ([top["layer"]], [top["head"]])
    whole = client.get("/api/compare/diff", params={**ids, "lazy": "0", "theme": "dark"}).json()
    assert whole["payload"]["heads"] == list(range(12)) and whole["options"]["theme"] == "dark"
    assert "no trace 'nope'" in error_of(client.get("/api/compare/diff", params={"a": "nope", "b": ids["b"]}), 404)
    assert "lazy must be" in error_of(client.get("/api/compare/diff", params={**ids, "lazy": "x"}), 422)
    assert "layer=9 is out of range" in error_of(client.get("/api/compare/diff", params={**ids, "layer": 9}), 422)


def test_long_compare_sends_a_diff_view_of_the_most_changed_head():
    with client_for(lazy_bytes=2000) as c:
        body = c.post("/api/compare", json={"text_a": "The doctor asked the nurse. She left.",
                                            "text_b": "The doctor asked the nurse. He left."}).json()
        top = body["ranked"][0]
        assert body["diff"]["one_head"] is True
        assert (body["diff"]["payload"]["layers"], body["diff"]["payload"]["heads"]) == ([top["layer"]], [top["head"]])


@pytest.mark.parametrize("body, status, words", [
    ({"text_a": "a b", "text_b": ""}, 422, "text_b is empty"),
    ({"text_a": "a b"}, 422, "text_b is missing"),
    ({"trace_a": "x", "trace_b": "y"}, 404, "trace_a: no trace 'x'"),
    ({"trace_a": "x", "text_a": "a"}, 422, "either two texts"),
    ({"text_a": "a", "text_b": "b", "model": "llama"}, 400, "unknown model"),
    ({"text_a": "a", "text_b": "b", "top": 0}, 422, "top"),
])
def test_compare_refuses_bad_input(client, body, status, words):
    assert words in error_of(client.post("/api/compare", json=body), status)


# ----------------------------------------------------------------------------- trace folder


def test_folder_listing_shows_folders_then_traces_and_hides_the_rest(client):
    body = client.get("/api/files").json()
    names = [e["name"] for e in body["entries"]]
    assert names == ["sub", "broken.safetensors", "inside-link.safetensors", "top.safetensors"]
    assert body["entries"][0]["type"] == "dir" and body["entries"][-1]["size"] > 0 and body["dir"] == ""
    inner = client.get("/api/files", params={"dir": "sub"}).json()
    assert inner["dir"] == "sub" and [e["path"] for e in inner["entries"]] == ["sub/inner.safetensors"]


def test_opening_a_file_holds_it_once(client):
    first = client.post("/api/files/trace", json={"path": "sub/inner.safetensors"}).json()
    assert first["source"] == {"type": "file", "path": "sub/inner.safetensors"}
    assert first["tokens"] == {"input": 5} and first["views"] == ["head", "model", "matrix"]  # no q/k: no neuron
    assert client.post("/api/files/trace", json={"path": "sub/inner.safetensors"}).json()["id"] == first["id"]
    view = client.get(f"/api/traces/{first['id']}/view", params={"view": "head"}).json()
    assert view["payload"]["tokens"]["input"] == ["[CLS]", "a", "b", "c", "[SEP]"]
    assert client.post("/api/files/trace", json={"path": "inside-link.safetensors"}).status_code == 200


@pytest.mark.parametrize("path, status, words", [
    ("../../etc/passwd", 400, "may not contain '..'"),
    ("sub/../../outside", 400, "may not contain '..'"),
    ("..\\..\\etc\\passwd", 400, "may not contain '..'"),
    ("/etc/passwd", 400, "absolute path"),
    ("C:\\Windows\\win.ini", 400, "absolute path"),
    ("//server/share/x.safetensors", 400, "absolute path"),
    ("top\x00.safetensors", 400, "NUL"),
    ("escape.safetensors", 403, "leads outside the traces folder"),
    ("outdir/secret.safetensors", 403, "leads outside the traces folder"),
    ("notes.txt", 400, "not a trace file"),
    ("sub", 400, "not a trace file"),
    ("missing.safetensors", 404, "no such file"),
    ("broken.safetensors", 422, ""),
])
def test_trace_browser_never_leaves_its_folder(client, path, status, words):
    assert words in error_of(client.post("/api/files/trace", json={"path": path}), status)


@pytest.mark.parametrize("dir, status", [("..", 400), ("/", 400), ("outdir", 403), ("top.safetensors", 400),
                                         ("nope", 404), ("sub/%2e%2e", 404)])
def test_folder_listing_never_leaves_its_folder(client, dir, status):
    error_of(client.get("/api/files", params={"dir": dir}), status)


def test_escaped_traversal_in_the_json_body_is_refused(client):
    body = b'{"path": "\\u002e\\u002e/\\u002e\\u002e/etc/passwd"}'
    headers = {"content-type": "application/json"}
    assert "may not contain '..'" in error_of(client.post("/api/files/trace", content=body, headers=headers), 400)
    body = b'{"path": "top\\u0000.safetensors"}'
    assert "NUL" in error_of(client.post("/api/files/trace", content=body, headers=headers), 400)


def test_no_folder_means_no_file_browser():
    with client_for() as c:
        assert "--traces DIR" in error_of(c.get("/api/files"), 404)
        assert "--traces DIR" in error_of(c.post("/api/files/trace", json={"path": "x.safetensors"}), 404)


# ----------------------------------------------------------------------------- MLflow


def test_mlflow_runs_are_listed_and_opened(tmp_path, make_trace):
    from mlflow.tracking import MlflowClient

    from attnscope.track import mlflow as track

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = MlflowClient(uri)
    experiment = store.create_experiment("web", artifact_location=(tmp_path / "art").as_uri())
    run_id = store.create_run(experiment, run_name="probe-run").info.run_id
    trace = make_trace(layers=2, heads=2, n=4)
    for step in (1, 3):
        track.log(trace, run_id, name="probe", step=step, views=(), figures=False, tracking_uri=uri)
    with client_for(mlflow_uri=uri) as c:
        runs = c.get("/api/mlflow/runs").json()
        assert runs["uri"] == uri and len(runs["runs"]) == 1
        run = runs["runs"][0]
        assert run["run_id"] == run_id and run["run_name"] == "probe-run" and run["experiment"] == "web"
        assert run["traces"] == [{"name": "probe", "steps": [1, 3], "unstepped": False}]
        opened = c.post("/api/mlflow/trace", json={"run": run_id, "name": "probe", "step": 1}).json()
        assert opened["source"] == {"type": "mlflow", "run": run_id, "name": "probe", "step": 1}
        assert opened["tokens"] == {"input": 4}
        assert c.post("/api/mlflow/trace", json={"run": run_id, "name": "probe", "step": 1}).json()["id"] == opened["id"]
        assert "no MLflow run" in error_of(c.post("/api/mlflow/trace", json={"run": "0" * 32}), 404)
        assert "step 2" in error_of(c.post("/api/mlflow/trace", json={"run": run_id, "step": 2}), 404)
        error_of(c.post("/api/mlflow/trace", json={"run": "../x"}), 422)


def test_a_missing_mlflow_store_is_empty_and_not_created(client, folder):
    body = client.get("/api/mlflow/runs").json()
    assert body["runs"] == [] and "no MLflow store" in body["note"]
    assert not (folder.parent / "none").exists()
    assert "no MLflow store" in error_of(client.post("/api/mlflow/trace", json={"run": "abc"}), 404)


# ----------------------------------------------------------------------------- who may ask


def test_settings_refuse_exposed_servers():
    with pytest.raises(InputError, match="not a loopback address"):
        Settings(host="0.0.0.0").check()
    with pytest.raises(InputError, match="--allow-remote needs a token"):
        Settings(host="0.0.0.0", allow_remote=True).check()
    with pytest.raises(InputError, match="use at least 16"):
        Settings(host="0.0.0.0", allow_remote=True, token="short").check()
    with pytest.raises(InputError, match="only letters, digits"):
        Settings(allow_remote=True, token="has;semicolons and spaces").check()
    with pytest.raises(InputError, match="--allow-remote needs a token"):
        create_app(Settings(allow_remote=True))
    with pytest.raises(InputError, match="is not a folder"):
        Settings(traces_dir=Path("/nonexistent/folder")).check()
    assert Settings(host="::1").check().models == ("minilm",)
    assert Settings(models=("smollm2", "minilm")).check().models == ("minilm", "smollm2")


def test_loopback_server_refuses_foreign_host_headers(client):
    assert "answers to 127.0.0.1, ::1, localhost only" in error_of(
        client.get("/api/config", headers={"host": "evil.example:8000"}), 400)
    assert client.get("/api/config", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/api/config", headers={"host": "[::1]:8000"}).status_code == 200


def test_cross_site_posts_are_refused(client):
    for origin in ("http://evil.example", "http://127.0.0.1:9999"):  # another site, or another local port
        r = client.post("/api/capture", json={"text": "hi"}, headers={"origin": origin})
        assert "cross-site" in error_of(r, 403)
    same = client.post("/api/capture", json={"text": "Hello."}, headers={"origin": BASE})
    assert same.status_code == 200


def test_remote_server_checks_the_token_on_every_api_request():
    token = "s3cret-token-of-enough-length"
    with TestClient(create_app(Settings(host="0.0.0.0", allow_remote=True, token=token)),
                    base_url="http://10.1.2.3:8000") as c:
        for path in ("/api/config", "/api/traces", "/api/traces/x/view", "/api/files"):
            assert "valid token is needed" in error_of(c.get(path), 401)
        r = c.get("/api/config", headers={"authorization": "Bearer wrong-token-of-enough-length"})
        assert error_of(r, 401) and r.headers["www-authenticate"] == "Bearer"
        error_of(c.get("/api/config", params={"token": token[:-1]}), 401)
        error_of(c.post("/api/capture", json={"text": "hi"}), 401)
        assert c.get("/api/config", headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/api/config", headers={"x-attnscope-token": token}).status_code == 200
        assert c.get("/api/config", params={"token": token}).status_code == 200
        for path in ("/", "/traces", "/assets/views.js", "/static/app.css"):  # the package's own files, no data
            page = c.get(path)
            assert page.status_code == 200 and "set-cookie" not in page.headers
        assert "valid token" in error_of(c.post("/", json={}), 401)  # public means GET only
        assert "set-cookie" not in c.get("/", params={"token": token}).headers  # no cookie: it would reach every port
        assert error_of(c.get("/api/config"), 401)


# ----------------------------------------------------------------------------- queue, memory, crashes


def test_gate_runs_one_job_and_refuses_past_its_wait_list():
    async def scenario():
        gate = Gate("model:x", limit=2)
        started, release = asyncio.Event(), asyncio.Event()
        order = []

        async def job(i):
            async with gate.slot():
                order.append(i)
                started.set()
                await release.wait()

        tasks = [asyncio.create_task(job(0))]
        await started.wait()
        tasks += [asyncio.create_task(job(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        assert gate.running and gate.waiting == 2
        with pytest.raises(Busy) as busy:
            async with gate.slot():
                pass
        assert busy.value.retry_after >= 1 and "2 requests already waiting" in str(busy.value)
        release.set()
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2] and not gate.running and gate.waiting == 0

    fresh_loop.run(scenario())


def test_full_queue_answers_429_with_retry_after(captured):
    app = create_app(Settings(queue_size=1))  # the model is already loaded (models are shared in a process)

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=120) as c:
            return await asyncio.gather(*(c.post("/api/capture", json={"text": f"{TEXT * 12} {i}"}) for i in range(5)))

    responses = fresh_loop.run(burst())
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 2 and codes.count(429) >= 1 and set(codes) <= {200, 429}, codes
    busy = next(r for r in responses if r.status_code == 429)
    assert int(busy.headers["retry-after"]) >= 1 and "busy" in busy.json()["error"]


def test_trace_store_is_bounded_by_count_and_bytes(make_trace):
    traces = [make_trace(layers=2, heads=2, n=8, seed=i) for i in range(6)]
    size = trace_bytes(traces[0])
    store = TraceStore(max_items=3, max_bytes=10**9)
    ids = [store.add(t, {"type": "test"}, info={}).id for t in traces]
    assert [e.id for e in store.entries()] == ids[:2:-1] and store.get(ids[0]) is None
    store = TraceStore(max_items=100, max_bytes=2 * size)
    for t in traces:
        store.add(t, {"type": "test"}, info={})
    assert len(store.entries()) == 2 and store.nbytes == 2 * size
    one = store.add(traces[0], {"type": "file"}, key=("file", "a"), info={})
    assert store.add(traces[1], {"type": "file"}, key=("file", "a"), info={}).id == one.id == store.find(("file", "a")).id


def test_a_crash_inside_a_route_is_a_json_500(client, monkeypatch):
    app = create_app(Settings())
    monkeypatch.setattr(app.state.attnscope.store, "entries", lambda: 1 / 0)
    with TestClient(app, base_url=BASE) as c:
        r = c.get("/api/traces")
        assert "internal error (ZeroDivisionError)" in error_of(r, 500)
        assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("args, message", [
    (["--host", "0.0.0.0"], "not a loopback address"),
    (["--host", "0.0.0.0", "--allow-remote"], "--allow-remote needs a token"),
    (["--allow-remote", "--token", "abc"], "use at least 16"),
])
def test_serve_command_refuses_an_exposed_server_before_starting(args, message):
    from typer.testing import CliRunner

    from attnscope.cli import app

    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2 and message in result.stderr and "hint: " in result.stderr
