"""Load: 500 requests, 32 at a time, against ``attnscope serve`` running in a subprocess on loopback.

The mix is what a few busy users send: captures (queued one forward pass at a time, 429 past the wait list),
view payloads and lazily fetched heads, compares, PNG figures, pages, and bad requests. Nothing may answer 5xx,
every 429 must carry Retry-After, the server must still answer afterwards, and its memory must level off (the
trace store is bounded). Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
from collections import Counter, defaultdict

import httpx
import psutil
import pytest

import fresh_loop
from served import free_port, serving

pytestmark = pytest.mark.slow

REQUESTS = 500
CONCURRENCY = 32
SENTENCES = ["The cat sat on the mat because it was tired.", "A storm rolled over the hills before dawn.",
             "She read the letter twice and then burned it.", "Prices rose sharply after the harvest failed."]


@contextlib.contextmanager
def server(**options):
    """``attnscope.server.serve(**options)`` in a subprocess; yields (base URL, psutil.Process)."""
    port = free_port()
    options = {"port": port, "log_level": "error", **options}
    code = "import json, sys; from attnscope.server import serve; serve(**json.loads(sys.argv[1]))"
    with serving([sys.executable, "-c", code, json.dumps(options)], port) as (url, proc):
        yield url, psutil.Process(proc.pid)


def plan(rng: random.Random, trace_id: str, n: int) -> list[tuple[str, str, str, dict]]:
    """``n`` requests as (class, method, path, keyword arguments for httpx)."""
    out = []
    for i in range(n):
        r = rng.random()
        words = " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 12)))
        if r < 0.30:
            out.append(("capture", "POST", "/api/capture", {"json": {"text": f"{words} ({i})"}}))
        elif r < 0.35:
            out.append(("compare", "POST", "/api/compare", {"json": {"text_a": words, "text_b": words + " Indeed."}}))
        elif r < 0.55:
            view = rng.choice(["head", "model", "matrix", "neuron"])
            out.append(("view", "GET", f"/api/traces/{trace_id}/view", {"params": {"view": view,
                                                                                     "lazy": rng.choice(["0", "1"])}}))
        elif r < 0.75:
            out.append(("head", "GET", f"/api/traces/{trace_id}/head",
                        {"params": {"layer": rng.randrange(6), "head": rng.randrange(12)}}))
        elif r < 0.78:
            out.append(("png", "GET", f"/api/traces/{trace_id}/download/png", {"params": {"view": "matrix", "dpi": 40}}))
        elif r < 0.88:
            out.append(("page", "GET", rng.choice(["/", "/compare", "/assets/views.js", "/api/config"]), {}))
        else:
            bad = rng.choice([("POST", "/api/capture", {"json": {"text": ""}}),
                              ("POST", "/api/capture", {"json": {"model": "gpt2", "text": "hi"}}),
                              ("POST", "/api/files/trace", {"json": {"path": "../../etc/passwd"}}),
                              ("GET", "/api/traces/missing/view", {}),
                              ("POST", "/api/capture", {"content": b"x" * 70_000,
                                                        "headers": {"content-type": "application/json"}})])
            out.append(("bad", *bad))
    return out


async def fire(url: str, requests) -> list[tuple[str, int, float, bool]]:
    """Send ``requests`` with at most CONCURRENCY in flight: (class, status, seconds, has Retry-After)."""
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def one(cls, method, path, kwargs):
            async with gate:
                start = time.perf_counter()
                r = await client.request(method, path, **kwargs)
                return cls, r.status_code, time.perf_counter() - start, "retry-after" in r.headers

        return await asyncio.gather(*(one(*req) for req in requests))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def test_500_requests_give_no_5xx_bounded_queues_and_flat_memory(tmp_path):
    with server(queue_size=4, cache_traces=16, cache_bytes=64 * 2**20, mlflow_uri=f"sqlite:///{tmp_path}/n.db") as (
            url, proc):
        warm = httpx.post(f"{url}/api/capture", json={"text": SENTENCES[0]}, timeout=120)  # loads the model
        assert warm.status_code == 200, warm.text
        trace_id = warm.json()["id"]
        rng = random.Random(0)
        rss = [proc.memory_info().rss]
        results = []
        start = time.perf_counter()
        for _ in range(2):  # two halves: memory after the second must not keep climbing
            results += fresh_loop.run(fire(url, plan(rng, trace_id, REQUESTS // 2)))
            rss.append(proc.memory_info().rss)
        took = time.perf_counter() - start
        assert httpx.get(f"{url}/api/health").status_code == 200
        held = httpx.get(f"{url}/api/traces").json()

    codes = Counter(status for _, status, _, _ in results)
    by_class: dict[str, list[float]] = defaultdict(list)
    class_codes: dict[str, Counter] = defaultdict(Counter)
    for cls, status, seconds, _ in results:
        by_class[cls].append(seconds)
        class_codes[cls][status] += 1
    latencies = [s for _, _, s, _ in results]
    mb = [r / 2**20 for r in rss]
    print(f"\n{len(results)} requests in {took:.1f} s, {CONCURRENCY} at a time: statuses {dict(sorted(codes.items()))}")
    print(f"latency p50 {pct(latencies, 0.5) * 1000:.0f} ms, p95 {pct(latencies, 0.95) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")
    for cls, values in sorted(by_class.items()):
        print(f"  {cls:8s} n={len(values):3d} p50 {statistics.median(values) * 1000:6.0f} ms "
              f"p95 {pct(values, 0.95) * 1000:6.0f} ms  {dict(sorted(class_codes[cls].items()))}")
    print(f"server RSS: after warm-up {mb[0]:.0f} MB, after 250 requests {mb[1]:.0f} MB, after 500 {mb[2]:.0f} MB; "
          f"traces held {len(held['traces'])} ({held['bytes'] / 2**20:.1f} MB)")

    assert len(results) == REQUESTS
    assert not [c for c in codes if c >= 500], codes
    assert codes[429] > 0 and codes[200] > REQUESTS // 2, codes  # the wait lists filled, and most work got done
    assert all(retry for _, status, _, retry in results if status == 429)
    assert set(codes) <= {200, 400, 404, 413, 422, 429}, codes
    assert len(held["traces"]) <= 16 and held["bytes"] <= 64 * 2**20
    assert mb[2] - mb[1] < 150, mb  # levels off: the second half adds (next to) nothing
    assert mb[2] - mb[0] < 300, mb
