"""The web app's edges, as a hostile client tries them: one regression test per defect found in an attack pass.

Through FastAPI's TestClient where the app alone decides (index lists, the trace browser, Origin, websockets, view
building behind its gate), and through raw sockets against ``attnscope.server.serve`` in a subprocess where the
HTTP server is part of the answer (Host headers as sent on the wire, slow or idle connections, access logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save_file
from starlette.websockets import WebSocket, WebSocketDisconnect

import attnscope
import fresh_loop
from attnscope.server import Settings, create_app, routes_traces
from attnscope.server.guard import Guard, parse_host
from served import free_port, serving

BASE = "http://127.0.0.1"
TOKEN = "hardening-token-0123456789"


def client_for(**settings) -> TestClient:
    return TestClient(create_app(Settings(**settings)), base_url=BASE)


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]
    return body["error"]


def small_trace(tokens=("[CLS]", "a", "b", "[SEP]"), seed: int = 0) -> attnscope.Trace:
    att = np.random.default_rng(seed).random((2, 2, len(tokens), len(tokens))).astype(np.float32)
    return attnscope.Trace.from_arrays(att / att.sum(-1, keepdims=True), list(tokens))


def write_trace_file(path: Path, *, header: dict | None = None, tensors: dict | None = None) -> Path:
    """A trace file written with safetensors directly: a valid small trace whose header fields (JSON values,
    serialised here) and arrays are replaced by ``header`` and ``tensors``."""
    good = path.with_name("_valid_" + path.name)
    small_trace().save(good)
    from safetensors import safe_open

    with safe_open(str(good), "np") as f:
        fields = dict(f.metadata())
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    good.unlink()
    fields.update({k: json.dumps(v) for k, v in (header or {}).items()})
    arrays.update(tensors or {})
    save_file(arrays, str(path), metadata=fields)
    return path


# ----------------------------------------------------------------------------- index lists (item 6)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("traces")
    with client_for(traces_dir=folder) as c:
        c.folder = folder
        yield c


@pytest.fixture(scope="module")
def held(client) -> str:
    small_trace().save(client.folder / "small.safetensors")
    r = client.post("/api/files/trace", json={"path": "small.safetensors"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


@pytest.mark.parametrize("route, params", [
    ("view", {"heads": "9" * 5000}),
    ("view", {"include_layers": "1-" + "9" * 5000}),
    ("view", {"include_heads": "0," + "9" * 4301}),
    ("head", {"heads": "9" * 5000}),
    ("view", {"layer": "9" * 5000}),
    ("head", {"layer": "9" * 5000, "head": 0}),
    ("head", {"layer": 0, "head": "-" + "9" * 5000}),
])
def test_numbers_of_thousands_of_digits_are_422_not_500(client, held, route, params):
    message = error_of(client.get(f"/api/traces/{held}/{route}", params=params), 422)
    assert len(message) < 300  # the 5000 digits are not echoed back


def test_index_lists_take_up_to_six_digits(client, held):
    assert "up to 6 digits" in error_of(client.get(f"/api/traces/{held}/view", params={"heads": "1234567"}), 422)
    assert "include_heads" in error_of(client.get(f"/api/traces/{held}/head", params={"heads": "999999"}), 422)


# ----------------------------------------------------------------------------- view building is gated (item 1)


def _count_concurrency(monkeypatch, seconds: float) -> dict:
    """Wrap the real view builder: count how many run at once (and make each take ``seconds``)."""
    real = routes_traces.view_data
    seen = {"now": 0, "peak": 0, "calls": 0}
    lock = threading.Lock()

    def counting(*args, **kwargs):
        with lock:
            seen["now"] += 1
            seen["calls"] += 1
            seen["peak"] = max(seen["peak"], seen["now"])
        try:
            time.sleep(seconds)
            return real(*args, **kwargs)
        finally:
            with lock:
                seen["now"] -= 1

    monkeypatch.setattr(routes_traces, "view_data", counting)
    return seen


def _burst(app, trace_id: str, n: int) -> list[httpx.Response]:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=60) as c:
            return await asyncio.gather(*(c.get(f"/api/traces/{trace_id}/view", params={"view": v, "lazy": "0"})
                                          for v in ("head", "model", "matrix")[:n]))

    return fresh_loop.run(go())


def _hold(app, trace: attnscope.Trace) -> str:
    state = app.state.attnscope
    return routes_traces.hold(state, trace, {"type": "test"}).id


def test_concurrent_view_requests_build_one_at_a_time(monkeypatch):
    seen = _count_concurrency(monkeypatch, 0.3)
    app = create_app(Settings())
    responses = _burst(app, _hold(app, small_trace()), 3)
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert seen == {"now": 0, "peak": 1, "calls": 3}


def test_view_requests_past_the_wait_list_get_429_with_retry_after(monkeypatch):
    seen = _count_concurrency(monkeypatch, 0.5)
    app = create_app(Settings(view_queue=1))
    responses = _burst(app, _hold(app, small_trace()), 3)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 429] and seen["peak"] == 1 and seen["calls"] == 2
    busy = next(r for r in responses if r.status_code == 429)
    assert int(busy.headers["retry-after"]) >= 1 and "render is busy" in busy.json()["error"]


def test_heads_and_downloads_go_through_gates_too(client, held, monkeypatch):
    threads = []
    real = routes_traces.head_payload
    monkeypatch.setattr(routes_traces, "head_payload",
                        lambda *a, **k: threads.append(threading.current_thread().name) or real(*a, **k))
    assert client.get(f"/api/traces/{held}/head", params={"layer": 0, "head": 1}).status_code == 200
    assert threads[0].startswith("attnscope-render")
    assert client.get(f"/api/traces/{held}/download/html", params={"view": "head"}).status_code == 200
    assert client.get(f"/api/traces/{held}/download/png", params={"view": "matrix", "dpi": 30}).status_code == 200
    queues = client.get("/api/models").json()["queues"]
    assert queues["render"] == queues["figures"] == {"running": False, "waiting": 0}


# ----------------------------------------------------------------------------- trace browser (item 3)


MALFORMED = {
    "meta-null": {"header": {"meta": None}},
    "meta-list": {"header": {"meta": [1, 2]}},
    "meta-kinds-not-a-dict": {"header": {"meta": {"kinds": "self"}}},
    "tokens-not-a-dict": {"header": {"tokens": ["a", "b"]}},
    "attention-not-a-dict": {"header": {"attention": None}},
    "tokens-integers": {"header": {"tokens": {"input": [1, 2, 3, 4]}}},
    "tokens-null": {"header": {"tokens": {"input": None}}},
    "shape-not-the-tokens": {"header": {"attention": {"self": {"form": "dense", "shape": [2, 2, 9, 9]}}}},
    "nan-weights": {"tensors": {"attention/self": np.full((2, 2, 4, 4), np.nan, dtype=np.float32)}},
    "weights-above-one": {"tensors": {"attention/self": np.full((2, 2, 4, 4), 3.0, dtype=np.float32)}},
    "integer-weights": {"tensors": {"attention/self": np.ones((2, 2, 4, 4), dtype=np.int64)}},
    "not-json": {"raw": b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage"},
    "empty": {"raw": b""},
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_trace_file_is_422_and_kept_nowhere(client, held, name):
    case = MALFORMED[name]
    path = client.folder / f"bad-{name}.safetensors"
    if "raw" in case:
        path.write_bytes(case["raw"])
    else:
        write_trace_file(path, header=case.get("header"), tensors=case.get("tensors"))
    before = client.get("/api/traces").json()
    message = error_of(client.post("/api/files/trace", json={"path": path.name}), 422)
    assert path.name in message and str(client.folder) not in message  # the server's own folder is not shown
    after = client.get("/api/traces")
    assert after.status_code == 200 and after.json() == before
    assert [t["id"] for t in after.json()["traces"]] == [t["id"] for t in before["traces"]]
    assert client.get(f"/api/traces/{held}").status_code == 200


def test_a_trace_that_loads_but_cannot_be_described_is_422_and_kept_nowhere(client, monkeypatch):
    small_trace(seed=3).save(client.folder / "odd.safetensors")

    def broken(trace):
        raise KeyError("kinds")

    from attnscope.server import routes_browse

    monkeypatch.setattr(routes_browse, "describe", broken)
    before = client.get("/api/traces").json()
    message = error_of(client.post("/api/files/trace", json={"path": "odd.safetensors"}), 422)
    assert "'odd.safetensors' is not a usable attnscope trace (KeyError)" in message
    assert client.get("/api/traces").json() == before


def test_opening_a_file_is_a_same_origin_post(client):
    small_trace(seed=4).save(client.folder / "open-me.safetensors")
    # an <img src> or a link: a GET, no JSON, no Origin check
    assert "GET is not allowed" in error_of(client.get("/api/files/trace", params={"path": "open-me.safetensors"}),
                                            405)
    assert "GET is not allowed" in error_of(client.get("/api/mlflow/trace", params={"run": "abc"}), 405)
    # a form posted from another site: not JSON, or JSON from another origin
    error_of(client.post("/api/files/trace", data={"path": "open-me.safetensors"}), 415)
    error_of(client.post("/api/files/trace", json={"path": "open-me.safetensors"},
                         headers={"origin": "http://evil.example"}), 403)
    assert all(t["source"].get("path") != "open-me.safetensors" for t in client.get("/api/traces").json()["traces"])
    opened = client.post("/api/files/trace", json={"path": "open-me.safetensors"}, headers={"origin": BASE})
    assert opened.status_code == 200 and opened.json()["source"]["path"] == "open-me.safetensors"
    assert "extra inputs" in error_of(client.post("/api/files/trace", json={"path": "x", "dir": "y"}), 422).lower()


# ----------------------------------------------------------------------------- hidden files (item 6)


@pytest.fixture(scope="module")
def hidden_client(tmp_path_factory):
    root = tmp_path_factory.mktemp("hidden")
    small_trace().save(root / ".secret.safetensors")
    (root / ".git").mkdir()
    small_trace().save(root / ".git" / "inner.safetensors")
    (root / "visible").mkdir()
    (root / "visible" / "to-hidden.safetensors").symlink_to(root / ".secret.safetensors")
    (root / "dotdir-link").symlink_to(root / ".git", target_is_directory=True)
    small_trace().save(root / "shown.safetensors")
    with client_for(traces_dir=root) as c:
        yield c


@pytest.mark.parametrize("path, status", [
    (".secret.safetensors", 404),
    ("./.secret.safetensors", 404),
    (".git/inner.safetensors", 404),
    ("visible/../.secret.safetensors", 400),
    ("visible/to-hidden.safetensors", 403),
    ("dotdir-link/inner.safetensors", 403),
])
def test_hidden_files_cannot_be_opened_by_path(hidden_client, path, status):
    error_of(hidden_client.post("/api/files/trace", json={"path": path}), status)


def test_hidden_entries_are_neither_listed_nor_browsable(hidden_client):
    assert [e["name"] for e in hidden_client.get("/api/files").json()["entries"]] == ["visible", "shown.safetensors"]
    assert hidden_client.get("/api/files", params={"dir": "visible"}).json()["entries"] == []
    assert "hidden" in error_of(hidden_client.get("/api/files", params={"dir": ".git"}), 404)
    error_of(hidden_client.get("/api/files", params={"dir": "dotdir-link"}), 403)
    assert hidden_client.post("/api/files/trace", json={"path": "shown.safetensors"}).status_code == 200


# ----------------------------------------------------------------------------- Host and Origin (item 6)


@pytest.mark.parametrize("value, parsed", [
    ("127.0.0.1", ("127.0.0.1", None)),
    ("127.0.0.1:8765", ("127.0.0.1", 8765)),
    ("LOCALHOST:80", ("localhost", 80)),
    ("[::1]", ("::1", None)),
    ("[::1]:8000", ("::1", 8000)),
    ("[0:0:0:0:0:0:0:1]:8000", ("::1", 8000)),
    ("[::1]evil.example", None),
    ("[::1]:80evil.example", None),
    ("127.0.0.1:8765, evil.example", None),
    ("127.0.0.1,evil.example", None),
    ("localhost\t", None),
    (" localhost", None),
    ("localhost:", None),
    ("localhost:99999", None),
    ("user@localhost", None),
    ("localhost/x", None),
    ("[evil.example]", None),
    ("", None),
])
def test_host_headers_are_parsed_strictly(value, parsed):
    host = parse_host(value)
    assert (host.name, host.port) == parsed if parsed else host is None


@pytest.mark.parametrize("origin, allowed", [
    (BASE, True),
    (BASE + ":80", True),
    ("HTTP://127.0.0.1", True),
    ("https://127.0.0.1", False),  # same host and port, another scheme
    ("https://127.0.0.1:80", False),
    ("ws://127.0.0.1", False),
    ("http://127.0.0.1:8000", False),
    ("http://127.0.0.1.evil.example", False),
    ("http://evil.example", False),
    ("null", False),
    ("http://127.0.0.1/path", False),
    ("http://user@127.0.0.1", False),
])
def test_cross_site_posts_compare_scheme_host_and_port(client, origin, allowed):
    r = client.post("/api/files/trace", json={"path": "missing.safetensors"}, headers={"origin": origin})
    if allowed:
        error_of(r, 404)
    else:
        assert "cross-site request" in error_of(r, 403)


def test_repeated_host_headers_are_refused():
    async def go():
        seen = []

        async def app(scope, receive, send):
            seen.append(scope["path"])

        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        guard = Guard(app, Settings().check())
        scope = {"type": "http", "method": "GET", "path": "/api/health", "query_string": b"", "scheme": "http",
                 "headers": [(b"host", b"127.0.0.1"), (b"host", b"evil.example")]}
        await guard(scope, receive, send)
        return seen, sent

    seen, sent = fresh_loop.run(go())
    assert seen == [] and sent[0]["status"] == 400 and b"one host name" in sent[1]["body"]


# ----------------------------------------------------------------------------- every ASGI scope (item 6)


@pytest.fixture
def ws_app():
    """An app with a websocket route (the app has none yet: a future one must be guarded too)."""

    def make(**settings):
        app = create_app(Settings(**settings))

        async def echo(websocket: WebSocket):
            await websocket.accept()
            await websocket.send_text("hello " + await websocket.receive_text())
            await websocket.close()

        app.add_api_websocket_route("/ws-echo", echo)
        return app

    return make


def test_websockets_pass_the_guard_only_from_this_origin(ws_app):
    with TestClient(ws_app(), base_url=BASE) as c:
        with c.websocket_connect("ws://127.0.0.1/ws-echo", headers={"origin": BASE}) as ws:
            ws.send_text("there")
            assert ws.receive_text() == "hello there"
        for headers in ({}, {"origin": "http://evil.example"}, {"origin": "https://127.0.0.1"},
                        {"origin": BASE, "host": "evil.example"}, {"origin": BASE, "host": "[::1]evil.example"}):
            with pytest.raises(WebSocketDisconnect) as refused, c.websocket_connect("ws://127.0.0.1/ws-echo", headers=headers):
                pass
            assert refused.value.code == 1008


def test_websockets_need_the_token_in_remote_mode(ws_app):
    app = ws_app(host="0.0.0.0", allow_remote=True, token=TOKEN)
    with TestClient(app, base_url="http://10.0.0.5:8000") as c:
        origin = {"origin": "http://10.0.0.5:8000"}
        with pytest.raises(WebSocketDisconnect) as refused, c.websocket_connect("ws://10.0.0.5:8000/ws-echo", headers=origin):
            pass
        assert refused.value.code == 1008
        with c.websocket_connect(f"ws://10.0.0.5:8000/ws-echo?token={TOKEN}", headers=origin) as ws:
            ws.send_text("you")
            assert ws.receive_text() == "hello you"


def test_unknown_scope_types_never_reach_the_app():
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["type"])

    async def nothing():
        return {}

    async def sink(message):
        pass

    guard = Guard(app, Settings().check())
    with pytest.raises(RuntimeError, match="refuses ASGI scope type 'webtransport'"):
        fresh_loop.run(guard({"type": "webtransport", "path": "/"}, nothing, sink))
    fresh_loop.run(guard({"type": "lifespan"}, nothing, sink))
    assert reached == ["lifespan"]


# ----------------------------------------------------------------------------- on the wire: a real server


@contextlib.contextmanager
def real_server(log_file: Path | None = None, **options):
    """``attnscope.server.serve(**options)`` in a subprocess (its log, stdout included, in ``log_file``)."""
    port = free_port()
    options = {"port": port, "log_level": "info", **options}
    redirect = (f"f = open({str(log_file)!r}, 'w', buffering=1); sys.stdout = sys.stderr = f; "
                if log_file else "")
    code = f"import json, sys; {redirect}from attnscope.server import serve; serve(**json.loads(sys.argv[1]))"
    headers = {"authorization": f"Bearer {options['token']}"} if options.get("token") else None
    with serving([sys.executable, "-c", code, json.dumps(options)], port, headers) as (url, _):
        yield port, url


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := s.recv(65536):
                out += chunk
        return out


def closed_after(port: int, data: bytes, limit: float = 15) -> tuple[float, bytes]:
    """Seconds until the server closes a connection on which ``data`` was sent (and what it answered)."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as s:
        start = time.monotonic()
        if data:
            s.sendall(data)
        out = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                out += chunk
        return time.monotonic() - start, out


@pytest.fixture(scope="module")
def wire():
    """A loopback server with one-second deadlines."""
    with real_server(header_timeout=1, body_timeout=1, keep_alive_timeout=1) as (port, _):
        yield port


@pytest.mark.parametrize("host", [b"[::1]evil.example", b"127.0.0.1:8765, evil.example", b"localhost.evil.example",
                                  b"127.0.0.1.nip.io", b"[::1]:8000@evil.example", b"evil.example:8000"])
def test_foreign_or_malformed_host_on_the_wire_is_refused(wire, host):
    answer = raw(wire, b"GET /api/health HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b'"ok":true' not in answer


@pytest.mark.parametrize("host", [b"127.0.0.1", b"localhost:1234", b"[::1]:80", b"LocalHost"])
def test_loopback_hosts_on_the_wire_are_served(wire, host):
    answer = raw(wire, b"GET /api/health HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"ok":true' in answer


def test_incomplete_headers_are_closed_within_the_timeout(wire):
    took, answer = closed_after(wire, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    assert 0.8 < took < 4 and answer == b""


def test_a_connection_that_sends_nothing_is_closed_within_the_timeout(wire):
    took, answer = closed_after(wire, b"")
    assert 0.8 < took < 4 and answer == b""


def test_an_idle_kept_alive_connection_is_closed(wire):
    with socket.create_connection(("127.0.0.1", wire), timeout=15) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b'"ok":true' not in first:
            first += s.recv(65536)
        start = time.monotonic()
        assert first.startswith(b"HTTP/1.1 200 ")
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
        assert 0.5 < time.monotonic() - start < 4 and rest == b""


def test_a_second_request_trickling_its_headers_is_closed(wire):
    with socket.create_connection(("127.0.0.1", wire), timeout=15) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b'"ok":true' not in first:
            first += s.recv(65536)
        start = time.monotonic()
        for part in (b"GET /api/health HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n"):
            with contextlib.suppress(OSError):
                s.sendall(part)
            time.sleep(0.4)
        rest = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                rest += chunk
        assert time.monotonic() - start < 4 and rest == b""


def test_a_body_that_trickles_past_its_deadline_is_408(wire):
    head = (b"POST /api/capture HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")
    took, answer = closed_after(wire, head + b'{"text": "a')
    assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 1 s" in answer
    assert 0.8 < took < 4


# ----------------------------------------------------------------------------- the token stays out of logs (item 6)


@pytest.mark.parametrize("level", ["info", "debug", "trace"])
def test_the_token_never_reaches_the_log(tmp_path, level):
    log = tmp_path / "server.log"
    with real_server(log, log_level=level, allow_remote=True, token=TOKEN, header_timeout=1) as (port, url):
        assert httpx.get(f"{url}/api/health", params={"token": TOKEN}).status_code == 200
        assert httpx.get(f"{url}/", params={"token": TOKEN, "x": "1"}).status_code == 200
        assert httpx.get(f"{url}/api/config?x=1&TOKEN={TOKEN}").status_code == 401  # the name is lower case
        assert httpx.get(f"{url}/api/config", params={"token": TOKEN[:-1]}).status_code == 401
        raw(port, f"GET /?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode(), timeout=1)  # never finished
    text = log.read_text()
    assert '"GET /api/health?token=<redacted> HTTP/1.1" 200' in text and "x=1&TOKEN=<redacted>" in text
    assert TOKEN not in text and TOKEN[:-1] not in text


# ----------------------------------------------------------------------------- text UTF-8 cannot encode (item 4)


def post_json(client: TestClient, path: str, body: dict) -> httpx.Response:
    """POST ``body`` as JSON with ``\\uXXXX`` escapes (the way a browser's JSON.stringify sends a lone surrogate)."""
    return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def test_a_lone_surrogate_in_input_text_becomes_a_replacement_character(client):
    r = post_json(client, "/api/capture", {"text": "The cat \ud800 sat.", "pair": "It \udfff slept."})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["text"] == "The cat \ufffd sat." and info["pair"] == "It \ufffd slept."
    view = client.get(f"/api/traces/{info['id']}/view", params={"view": "head"})
    assert view.status_code == 200 and view.json()["payload"]["tokens"]["input"][0] == "[CLS]"
    compared = post_json(client, "/api/compare", {"text_a": "A dog \ud83d ran.", "text_b": "A dog ran."})
    assert compared.status_code == 200 and compared.json()["a"]["text"] == "A dog \ufffd ran."
    assert "unknown model 'a\ufffd'" in error_of(post_json(client, "/api/capture", {"text": "hi",
                                                                                     "model": "a\udc80"}), 400)
    # a surrogate's bytes in a query string (CESU-8, not UTF-8) decode to replacement characters
    assert "unknown view" in error_of(client.get(f"/api/traces/{info['id']}/view?view=%ED%A0%80"), 422)


def test_lone_surrogates_in_a_trace_file_are_served_as_replacement_characters(client):
    path = write_trace_file(client.folder / "surrogates.safetensors", header={
        "tokens": {"input": ["[CLS]", "a\ud800", "\udfffb", "[SEP]"]},
        "meta": {"model": "m\udc00", "text": "x\ud800y", "kinds": {"self": {"causal": False}}},
        "segments": {"A\ud800": ["input", 0, 2]},
    })
    opened = client.post("/api/files/trace", json={"path": path.name})
    assert opened.status_code == 200, opened.text
    info = opened.json()
    assert info["model"] == "m\ufffd" and info["text"] == "x\ufffdy" and "A\ufffd" in info["segments"]
    assert client.get("/api/traces").status_code == 200
    tokens = client.get(f"/api/traces/{info['id']}/view", params={"view": "matrix"}).json()["payload"]["tokens"]
    assert tokens["input"] == ["[CLS]", "a\ufffd", "\ufffdb", "[SEP]"]
    html = client.get(f"/api/traces/{info['id']}/download/html", params={"view": "head"})
    assert html.status_code == 200 and '"a\\ufffd"' in html.content.decode("utf-8")  # JSON-escaped in the page
    png = client.get(f"/api/traces/{info['id']}/download/png", params={"view": "matrix", "dpi": 30})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_text_held_with_lone_surrogates_is_still_answered(client):
    """The last net: a trace made in Python (not cleaned on the way in) still gives valid JSON and HTML."""
    app = client.app
    trace = small_trace(tokens=("[CLS]", "\ud800", "b", "[SEP]"))
    trace.meta["text"] = "odd \udc00 text"
    entry = routes_traces.hold(app.state.attnscope, trace, {"type": "test"})
    listed = client.get("/api/traces")
    assert listed.status_code == 200
    assert {"odd \ufffd text"} <= {t["text"] for t in listed.json()["traces"]}
    view = client.get(f"/api/traces/{entry.id}/view", params={"view": "head"})
    assert view.status_code == 200 and view.json()["payload"]["tokens"]["input"][1] == "\ufffd"
    html = client.get(f"/api/traces/{entry.id}/download/html", params={"view": "head"})
    assert html.status_code == 200 and html.content.decode("utf-8").startswith("<!DOCTYPE html>")
