"""The "qk" payload form: overview thumbnails plus float16 queries and keys of the layers that fit the budget, from
which the page recomputes rows exactly; and the web app's rows route that streams blocks of them."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

import attnscope
from attnscope import codec
from attnscope.encode import encode, script_json
from attnscope.encode_qk import decode_rows
from attnscope.errors import InputError
from attnscope.server import create_app
from attnscope.server.routes_traces import hold
from attnscope.server.settings import Settings
from long_qk import f16_bound, long_qk_trace
from tiny_models import build

N = 2500


@pytest.fixture(scope="module")
def trace():
    return long_qk_trace(N)


def test_a_long_q_k_trace_travels_as_thumbnails_and_vectors_and_its_rows_decode_within_float16_error(trace):
    payload = encode(trace)
    spec = payload["kinds"]["self"]
    assert spec["form"] == "qk" and spec["keptMass"] == 1.0 and "data" not in spec
    qk = spec["qk"]
    assert qk["layers"] == [0, 1] and qk["kvHeads"] == [0, 1] and qk["kv"] == [0, 0, 1, 1]
    att = trace.attention["self"]
    for layer, head, rows in [(0, 0, np.arange(0, 40)), (1, 3, np.arange(N - 30, N)), (1, 2, np.array([1700]))]:
        got = np.concatenate([decode_rows(spec, layer, head, int(i), int(i) + 1) for i in rows])
        want = att.rows(layer, head, int(rows[0]), int(rows[-1]) + 1)
        assert (np.abs(got - want) <= f16_bound(att, layer, head, rows)).all()
    assert 1e-4 < qk["error"] < 0.01  # the difference the view states, measured on sampled rows
    assert float_free(payload)


def float_free(payload) -> bool:
    """No JSON list in the payload holds floats (arrays travel as text)."""
    def walk(obj):
        if isinstance(obj, dict):
            return all(walk(v) for v in obj.values())
        if isinstance(obj, list):
            return not any(isinstance(v, float) for v in obj) and all(walk(v) for v in obj)
        return True
    return walk(json.loads(script_json(payload)))


def test_thumbnails_are_the_overview_pooled_exactly_at_any_size(trace):
    att = trace.attention["self"]
    for size in (64, 128, 100):
        thumb = encode(trace, thumb_size=size)["kinds"]["self"]["thumb"]
        rows, cols = thumb["shape"]
        pooled = att.pooled(1, 2, size)
        assert pooled.shape == (rows, cols) == (-(-N // thumb["block"]),) * 2
        assert thumb["block"] % att.block == 0  # whole overview cells
        got = np.frombuffer(codec.inflate85(thumb["data"][1][2]), dtype=np.uint8)[: rows * cols].reshape(rows, cols)
        np.testing.assert_array_equal(got, codec.sqrt8(pooled))


@pytest.mark.parametrize("budget_mb", [0.3, 0.9, 100])
def test_the_budget_decides_how_many_layers_carry_their_vectors_and_is_respected(trace, budget_mb):
    payload = encode(trace, budget_mb=budget_mb)
    size = len(script_json(payload))
    qk = payload["kinds"]["self"]["qk"]
    assert size <= budget_mb * 1e6
    carried = qk["layers"]
    assert carried == {0.3: [], 0.9: [0], 100: [0, 1]}[budget_mb]  # a layer's vectors take 0.6 MB
    for li in range(2):
        assert (qk["query"][li] is not None) == (li in carried) and (qk["lse"][li] is not None) == (li in carried)


def test_exact_layers_carry_the_layers_asked_for_or_say_the_budget_is_too_small(trace, make_trace):
    qk = encode(trace, exact_layers=[1])["kinds"]["self"]["qk"]
    assert qk["layers"] == [1] and qk["query"][0] is None and qk["query"][1] is not None
    assert encode(trace, exact_layers=[])["kinds"]["self"]["qk"]["layers"] == []
    with pytest.raises(InputError, match="do not fit budget_mb.*raise budget_mb or pick fewer layers"):
        encode(trace, exact_layers=[0, 1], budget_mb=1.0)
    with pytest.raises(InputError, match="exact_layers must list some of the included layers"):
        encode(trace, include_layers=[0], exact_layers=[1])
    with pytest.raises(InputError, match="applies to traces in the q/k form"):
        encode(make_trace(1, 2, 5), exact_layers=[0])
    with pytest.raises(InputError, match="applies to traces in the q/k form"):
        attnscope.head_view(make_trace(1, 2, 5), exact_layers=[0])
    view = attnscope.head_view(trace, exact_layers=[0])
    assert view.payload["kinds"]["self"]["qk"]["layers"] == [0]


def test_a_page_carries_the_vectors_after_the_views_script_so_it_draws_before_reading_them(trace):
    view = attnscope.head_view(trace)
    page = view.html(id="long")
    loader = page.index('("long");</script><!--attnscope-blob')  # the loader's call, then the vectors
    blobs = re.findall(r"<!--attnscope-blob:long:(\d+)\n([A-Za-z0-9+/=]+)-->", page)
    qk = view.payload["kinds"]["self"]["qk"]
    in_order = [s for li in range(2) for part in ("query", "key", "lse") for s in qk[part][li]]
    assert [int(n) for n, _ in blobs] == list(range(len(in_order))) and [b for _, b in blobs] == in_order
    assert page.index("<!--attnscope-blob:long:0") > loader
    data = page[page.index("attnscope:long"):loader]
    assert qk["query"][0][0] not in data and '"query":[[{"blob":0},{"blob":1}' in data
    assert view.payload["kinds"]["self"]["qk"]["query"][0][0] == in_order[0]  # the view's own payload is unchanged


@pytest.mark.parametrize("name", ["gemma2", "gpt_oss"])
def test_sliding_windows_soft_capping_and_sinks_recompute_from_the_payload(name):
    """Short q/k traces travel dense, except for the neuron view, which recomputes from the vectors (recompute=True):
    the rows it decodes follow the model's window, soft-capping and sinks (rows summing to less than 1)."""
    trace = attnscope.capture(*build(name), "the cat sat on the mat and it was very happy", form="qk")
    assert encode(trace)["kinds"]["self"]["form"] == "dense"
    spec = encode(trace, recompute=True)["kinds"]["self"]
    att = trace.attention["self"]
    assert spec["form"] == "qk" and spec["qk"]["windows"] == list(att.rule.windows)
    L, H, q, _ = att.shape
    for layer in range(L):
        for head in range(H):
            got = decode_rows(spec, layer, head, 0, q)
            want = att.rows(layer, head, 0, q)
            assert (np.abs(got - want) <= f16_bound(att, layer, head, np.arange(q))).all()
    assert np.triu(got, 1).max() == 0.0
    if name == "gpt_oss":
        assert got.sum(-1).max() < 0.999  # the sinks' share is not drawn


# ----------------------------------------------------------------------------- the web app's rows route


@pytest.fixture(scope="module")
def served(trace):
    app = create_app(Settings())
    entry = hold(app.state.attnscope, trace, {"type": "test"})
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, entry.id


def test_rows_route_returns_exact_blocks_of_some_heads(served, trace):
    client, tid = served
    got = client.get(f"/api/traces/{tid}/rows", params={"layer": 1, "heads": "0,3", "start": 1000, "stop": 1040,
                                                        "key_start": 990, "key_stop": 1050})
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["rows"], body["keys"], body["heads"], body["dtype"]) == ([1000, 1040], [990, 1050], [0, 3], "f16")
    att = trace.attention["self"]
    for n, head in enumerate((0, 3)):
        block = np.frombuffer(base64.b64decode(body["data"][n]), dtype="<f2").reshape(40, 60)
        np.testing.assert_allclose(block, att.rows(1, head, 1000, 1040)[:, 990:1050], rtol=1e-3, atol=1e-7)
    whole_row = client.get(f"/api/traces/{tid}/rows", params={"layer": 0, "heads": "0-3", "start": 7, "stop": 8})
    assert whole_row.status_code == 200 and whole_row.json()["keys"] == [0, N]


@pytest.mark.parametrize("params, match", [
    ({"layer": 0, "heads": "0", "start": 0, "stop": N}, "ask for at most"),  # a whole head: never
    ({"layer": 2, "start": 0, "stop": 1}, "layer must be in 0..1"),
    ({"layer": 0, "heads": "4", "start": 0, "stop": 1}, "heads must be in 0..3"),
    ({"layer": 0, "start": 5, "stop": 5}, "not a block"),
    ({"layer": 0, "start": 0, "stop": 1, "key_start": 10, "key_stop": N + 1}, "not a block"),
    ({"layer": 0, "heads": "0;1", "start": 0, "stop": 1}, "heads takes whole numbers (up to 6 digits)"),
    ({"kind": "cross", "start": 0, "stop": 1}, "no 'cross' attention"),
])
def test_rows_route_refuses_what_is_not_a_small_block(served, params, match):
    client, tid = served
    got = client.get(f"/api/traces/{tid}/rows", params=params)
    assert got.status_code == 422 and match in got.json()["error"]


def test_the_web_app_sends_a_long_q_k_trace_as_a_skeleton_without_vectors(served):
    client, tid = served
    info = client.get(f"/api/traces/{tid}").json()
    assert info["kinds"]["self"]["form"] == "qk" and "neuron" in info["views"]
    for view in ("head", "model", "matrix"):
        data = client.get(f"/api/traces/{tid}/view", params={"view": view}).json()
        spec = data["payload"]["kinds"]["self"]
        assert data["lazy"] and spec["form"] == "qk" and spec["qk"]["layers"] == [] and "thumb" in spec
        assert len(json.dumps(data)) < 200_000
    # the neuron view's vectors (1.4 MB) are under the server's lazy limit: they travel at once, or when asked for
    whole = client.get(f"/api/traces/{tid}/view", params={"view": "neuron"}).json()
    assert not whole["lazy"] and whole["payload"]["kinds"]["self"]["qk"]["layers"] == [0, 1]
    data = client.get(f"/api/traces/{tid}/view", params={"view": "neuron", "lazy": 1}).json()
    assert data["lazy"] and "thumb" not in data["payload"]["kinds"]["self"]
    vectors = client.get(f"/api/traces/{tid}/vectors", params={"layer": 1, "head": 2}).json()
    qk = data["payload"]["kinds"]["self"]["qk"]  # the neuron view's: no vectors until asked for
    qk["query"][1], qk["key"][1], qk["lse"][1] = [None, None, vectors["query"], None], [None, vectors["key"]], \
        [None, None, vectors["lse"], None]
    att = client.app.state.attnscope.store.get(tid).trace.attention["self"]
    got = decode_rows({"qk": qk}, 1, 2, 1700, 1701)
    assert (np.abs(got - att.rows(1, 2, 1700, 1701)) <= f16_bound(att, 1, 2, np.array([1700]))).all()


def test_auto_metrics_count_each_recomputed_q_k_weight_at_its_cost(monkeypatch):
    """``metrics=None`` adds head metrics only when cheap: a q/k weight is recomputed, so it counts ``read_cost``
    dense weights, and a budget that the same dense trace fits leaves a q/k trace without metrics."""
    from attnscope import encode as encode_module

    model, tok = build("llama")
    text = "the cat sat on the mat and it was very happy because the dog was away"
    qk, dense = (attnscope.capture(model, tok, text, form=form) for form in ("qk", "dense"))
    L, H, q, k = qk.shape()
    assert qk.attention["self"].read_cost > 2.0
    monkeypatch.setattr(encode_module, "METRICS_AUTO_MAX", 2 * L * H * q * k)
    assert "metrics" in encode(dense, metrics=None)["kinds"]["self"]
    assert "metrics" not in encode(qk, metrics=None)["kinds"]["self"]
    assert "metrics" in encode(qk, metrics=True)["kinds"]["self"]
