"""A server process on a free loopback port, for the end-to-end and load tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], port: int, headers: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``command`` (an attnscope server listening on ``port``) until ``/api/health`` answers 200; yield its base
    URL and process; stop it afterwards. Raises if it exits or does not answer within 60 s."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {proc.stderr.read()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/health", headers=headers or {}, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 60 s")
            time.sleep(0.2)
        yield url, proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a server process started by a test: SIGTERM, then SIGKILL if it has not exited after ``timeout`` s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def app_in_thread(trace, **settings) -> Iterator[tuple[str, str]]:
    """The web app in this process (uvicorn on a thread) with ``settings``, holding ``trace``: yields its base URL and
    the trace's id; stops the server afterwards."""
    import threading

    import uvicorn

    from attnscope.server import Settings, create_app
    from attnscope.server.routes_traces import hold

    port = free_port()
    app = create_app(Settings(port=port, **settings))
    tid = hold(app.state.attnscope, trace, {"type": "test"}).id
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", tid
    finally:
        server.should_exit = True
        thread.join(10)
