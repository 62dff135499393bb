"""Reading an atlas: the atlas view's payload, its figure, comparing two atlases, and the web app's atlas routes."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from attnscope.corpus import build, compare, fortune_texts
from attnscope.errors import InputError
from attnscope.figures import figure
from attnscope.server import Settings, create_app
from attnscope.views import atlas_view, render


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two MiniLM atlases of different short fortunes (8 texts each), in one folder."""
    root = tmp_path_factory.mktemp("atlases")
    texts = [t for t in fortune_texts() if len(t.split()) <= 25][:16]
    for name, part in (("a", texts[:8]), ("b", texts[8:])):
        (root / f"{name}.txt").write_text("\n".join(part) + "\n")
        build("minilm", root / f"{name}.txt", root / name, engine="local", shard_size=4, top_k=2)
    return root


@pytest.fixture(scope="module")
def pair(folder):
    from attnscope.corpus import load

    return load(folder / "a"), load(folder / "b")


def test_the_view_payload_carries_summaries_histograms_exemplars_and_embedded_head_views(pair, tmp_path):
    a, _ = pair
    view = atlas_view(a, metric="sink", embed=2)
    p = view.payload
    L, H = a.shape
    assert p["format"] == "attnscope-atlas" and (p["meta"]["layers"], p["meta"]["heads"]) == (L, H)
    assert np.allclose(np.array(p["stats"]["mean"]["sink"], dtype=float), a.grid("sink"), atol=1e-6)
    hist = np.frombuffer(base64.b64decode(p["hist"]["sink"]), dtype="<u4").reshape(L, H, -1)
    assert (hist.sum(-1) == 8).all()
    top = a.top(1, 3, "sink")
    got = p["exemplars"]["sink"][1][3]
    assert [p["texts"][i]["id"] for i, *_ in got] == list(top.text_id)
    assert [row[2:] for row in got] == top[["peak_query", "peak_key"]].to_numpy().tolist()
    assert len(p["embedded"]) == 2  # the top exemplar of the two heads highest on sink, one layer each
    for key, payload in p["embedded"].items():
        text, layer = map(int, key.split(":"))
        assert payload["kinds"]["self"]["layers"] == [layer]
        assert payload["tokens"]["input"] == p["texts"][text]["tokens"]
    assert view.data()["options"] == {"metric": "sink", "stat": "mean"}
    html = view.html()
    assert "views.atlas = function" in html and "<script src" not in html and "http" not in html.split("<body")[0]
    assert render("atlas", a, metric="sink", embed=0).payload["embedded"] == {}
    assert repr(view) == "<attnscope atlas view: minilm, 6 layers x 12 heads>"


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": "nope"}, "unknown metric 'nope'"),
    ({"stat": "max"}, "stat must be one of mean, p10, p50, p90"),
    ({"show": "delta"}, "pass other= the second atlas"),
    ({"embed": -1}, "embed must be a whole number"),
])
def test_bad_view_options_are_refused(pair, kwargs, message):
    with pytest.raises(InputError, match=message):
        atlas_view(pair[0], **kwargs)


def test_the_figure_draws_the_grid_and_the_change_between_two_atlases(pair, tmp_path):
    a, b = pair
    fig = figure("atlas", a, metric="previous")
    image = fig.axes[0].images[0].get_array()
    assert np.allclose(image.filled(np.nan), a.grid("previous"), equal_nan=True)
    fig = figure("atlas", a, other=b, metric="previous")
    assert np.allclose(fig.axes[0].images[0].get_array(), b.grid("previous") - a.grid("previous"))
    ranks = [t.get_text() for t in fig.axes[0].texts]
    assert ranks[:3] == ["1", "2", "3"]
    svg1 = atlas_view(a, embed=0).save(tmp_path / "a1.svg").read_bytes()
    svg2 = atlas_view(a, embed=0).save(tmp_path / "a2.svg").read_bytes()
    assert svg1 == svg2 and b"previous" in svg1
    assert atlas_view(a, b, embed=0, show="b").save(tmp_path / "b.png").stat().st_size > 10_000


def test_compare_ranks_the_heads_that_moved_most(pair):
    a, b = pair
    moved = compare(a, b, metric="previous", top=5)
    delta = (b.grid("previous") - a.grid("previous")).ravel()
    assert np.allclose(moved.delta_previous.abs().to_numpy(), np.sort(np.abs(delta))[::-1][:5])
    whole = a.compare(b)
    assert len(whole) == 72 and whole.label_shift.is_monotonic_decreasing
    assert compare(a, a).label_shift.max() == 0.0


def test_the_web_app_lists_atlases_and_sends_the_views_data(folder, pair):
    client = TestClient(create_app(Settings(traces_dir=folder)), base_url="http://127.0.0.1")
    listed = client.get("/api/atlases").json()["atlases"]
    assert [(x["path"], x["model"], x["measured"], x["complete"]) for x in listed] == [
        ("a", "minilm", 8, True), ("b", "minilm", 8, True)]
    data = client.get("/api/atlas", params={"path": "a", "other": "b", "metric": "sink"}).json()
    assert data["view"] == "atlas" and data["model"] == "minilm" and data["options"]["show"] == "delta"
    assert data["payload"]["embedded"] == {} and data["payload"]["meta"]["data"] is None  # no server paths
    assert np.allclose(np.array(data["payload"]["other"]["stats"]["mean"]["sink"], dtype=float), pair[1].grid("sink"))
    for bad, status in (({"path": "../a"}, 400), ({"path": "a.txt"}, 400), ({"path": "nope"}, 404),
                        ({"path": "a", "metric": "x"}, 422)):
        r = client.get("/api/atlas", params=bad)
        assert r.status_code == status and r.json()["error"], (bad, r.text)
    assert client.get("/atlas").status_code == 200
    no_folder = TestClient(create_app(Settings()), base_url="http://127.0.0.1")
    assert "--traces" in no_folder.get("/api/atlases").json()["error"]
