"""attnscope.corpus with the local engine: the atlas's numbers, token classes, reading data, bad rows and files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import attnscope
from attnscope.analysis import head_metrics
from attnscope.corpus import METRICS, build, load, token_class_metrics, word_ids, write_fortunes
from attnscope.corpus.classes import is_punctuation
from attnscope.corpus.sources import Selection, plan, read_shard
from attnscope.corpus.worker import HEAD_METRICS
from attnscope.errors import InputError

TEXTS = 24  # fortunes measured by the module's atlas: 3 shards of 8


@pytest.fixture(scope="module")
def fortunes(tmp_path_factory):
    """The first fortunes (Debian's fortunes package, a real English corpus), one a line."""
    return write_fortunes(tmp_path_factory.mktemp("corpus") / "fortunes.txt", limit=TEXTS)


@pytest.fixture(scope="module")
def atlas(fortunes, tmp_path_factory):
    return build("minilm", fortunes, tmp_path_factory.mktemp("atlas") / "local", engine="local", shard_size=8,
                 batch_size=4, max_tokens=256, top_k=3)


def test_atlas_metrics_equal_head_metrics_of_each_text_captured_alone(atlas, minilm):
    model, tok = minilm
    texts = atlas.texts().to_pylist()
    heads = atlas.heads().to_pandas()
    for t in texts[:: len(texts) // 4]:  # four texts from different shards and batches
        trace = attnscope.capture(model, tok, t["text"])
        assert t["tokens"] == trace.tokens["input"]
        rows = heads[heads.text_id == t["text_id"]].sort_values(["layer", "head"])
        records = head_metrics(trace)
        expected = np.array([[r[m] for m in HEAD_METRICS] for r in records])
        got = rows[list(HEAD_METRICS)].to_numpy(dtype=np.float64)
        assert np.allclose(got, expected, atol=1e-5, rtol=0, equal_nan=True)
        classes = token_class_metrics(trace).reshape(-1, 3)
        assert np.allclose(rows[["punctuation", "same_word", "repeated"]].to_numpy(), classes, atol=1e-5, rtol=0)
        assert list(rows.label.astype(str)) == [r["label"] for r in records]
        flat = trace.dense().reshape(len(records), -1)
        peak = rows[["peak_query", "peak_key"]].to_numpy()
        assert np.allclose(rows.peak_weight.to_numpy(), flat.max(1), atol=1e-6)
        k = trace.shape()[3]
        assert np.allclose(flat[np.arange(len(records)), peak[:, 0] * k + peak[:, 1]], flat.max(1), atol=1e-6)


def test_atlas_summary_and_exemplars_follow_the_per_text_table(atlas):
    heads = atlas.heads().to_pandas()
    L, H = atlas.shape
    assert (L, H) == (6, 12) and len(heads) == TEXTS * L * H
    s = atlas.summary.set_index(["layer", "head"])
    means = heads.groupby(["layer", "head"])[list(METRICS)].mean()
    for m in METRICS:
        assert np.allclose(s[f"mean_{m}"], means[m], atol=1e-6)
        assert (s[f"p10_{m}"] <= s[f"p50_{m}"] + 1e-9).all() and (s[f"p50_{m}"] <= s[f"p90_{m}"] + 1e-9).all()
        assert all(int(np.sum(h)) == TEXTS for h in s[f"hist_{m}"])
    median = heads.groupby(["layer", "head"])["previous"].median()
    assert np.abs(s["p50_previous"] - median).max() <= 1.5 / 960 + 0.5 / TEXTS  # one histogram bin, one rank
    shares = s[[c for c in s.columns if c.startswith("share_")]]
    assert np.allclose(shares.sum(1), 1.0)
    top = atlas.top(3, 4, "previous")
    best = heads[(heads.layer == 3) & (heads["head"] == 4)].sort_values(["previous", "text_id"],
                                                                         ascending=[False, True]).head(3)
    assert list(top.text_id) == list(best.text_id)
    assert np.allclose(top.value, best.previous)
    assert all(isinstance(t, str) and t for t in top.text)
    assert np.allclose(atlas.grid("previous")[3, 4], s.loc[(3, 4), "mean_previous"])
    assert atlas.manifest["counts"] == {"texts": TEXTS, "measured": TEXTS, "bad": {}}


def test_word_ids_follow_each_tokenizer_familys_markers():
    assert list(word_ids(["[CLS]", "play", "##ing", "is", "fun", ".", "[SEP]"])) == [0, 1, 1, 2, 3, 4, 5]
    assert list(word_ids(["<|endoftext|>", "Play", "ing", "\u0120is", ",", "\u0120fun"])) == [0, 1, 1, 2, 3, 4]
    assert list(word_ids(["<s>", "\u2581Play", "ing", "\u2581is", "\u2581fun", "</s>"])) == [0, 1, 1, 2, 3, 4]
    assert is_punctuation(",") and is_punctuation("--") and is_punctuation('"') and not is_punctuation("a.")


def test_token_class_metrics_measure_the_mass_on_each_class():
    tokens = ["[CLS]", "the", "cat", "##s", ",", "the", "[SEP]"]
    n = len(tokens)
    w = np.zeros((1, 2, n, n), dtype=np.float32)
    w[0, 0, :, 4] = 1.0  # head 0: everything on the comma
    w[0, 1, :, 0] = 0.5  # head 1: half on [CLS], half on a class that depends on the query
    w[0, 1, 1, 5] = w[0, 1, 5, 1] = 0.5  # "the" <-> "the": repeated
    w[0, 1, 2, 3] = w[0, 1, 3, 2] = 0.5  # "cat" <-> "##s": same word
    for i in (0, 4, 6):
        w[0, 1, i, i] = 0.5
    trace = attnscope.Trace.from_arrays(w, tokens)
    m = token_class_metrics(trace)
    assert np.allclose(m[0, 0], [1.0, 0.0, 0.0])
    assert np.allclose(m[0, 1], [0.5 / n, 1.0 / n, 1.0 / n])


def test_sample_and_limit_choose_the_same_texts_every_time(fortunes):
    a = plan(fortunes, Selection(sample=0.5, seed=3, limit=7), 3)
    b = plan(fortunes, Selection(sample=0.5, seed=3, limit=7), 5)
    rows = lambda p: [(r.row, r.text_id) for s in p.shards for r in read_shard(p.files[s.file], p.selection, s)]  # noqa: E731
    assert rows(a) == rows(b) and len(rows(a)) == 7 == a.texts
    assert [i for _, i in rows(a)] == list(range(7))
    assert rows(plan(fortunes, Selection(sample=0.5, seed=4, limit=7), 3)) != rows(a)
    every = plan(fortunes, Selection(), 5)
    assert every.texts == TEXTS and [s.count for s in every.shards] == [5, 5, 5, 5, 4]


def test_jsonl_csv_parquet_and_folders_read_the_same_texts(tmp_path, fortunes):
    lines = fortunes.read_text().splitlines()[:6]
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(lines[:2])))
    import csv

    with open(folder / "sub" / "b.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["body", "n"])
        w.writerows([[t.replace(". ", ".\n"), i] for i, t in enumerate(lines[2:4])])  # quoted newlines
    pq.write_table(pa.table({"body": lines[4:6]}), folder / "sub" / "c.parquet", row_group_size=1)
    (folder / "notes.md").write_text("not a corpus file: skipped")
    p = plan(folder, Selection(column="body"), 1)
    got = [r for s in p.shards for r in read_shard(p.files[s.file], p.selection, s)]
    assert [r.source for r in got] == ["a.jsonl"] * 2 + ["sub/b.csv"] * 2 + ["sub/c.parquet"] * 2
    assert [r.text.replace(".\n", ". ") for r in got] == lines
    assert [r.text_id for r in got] == list(range(6))


def test_bad_rows_are_counted_and_reported_never_fatal(tmp_path, fortunes):
    good = sorted(fortunes.read_text().splitlines(), key=len)[:3]  # short enough for max_tokens=40
    data = tmp_path / "mixed.jsonl"
    rows = [{"text": good[0]}, {"text": ""}, {"text": 42}, {"text": " ".join(["word"] * 80)}, {"other": "x"},
            {"text": good[1]}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n" + json.dumps({"text": good[2]}) + "\n")
    atlas = build("minilm", data, tmp_path / "atlas", engine="local", shard_size=3, max_tokens=40)
    assert atlas.manifest["counts"] == {"texts": 8, "measured": 3, "bad": {"empty": 1, "not text": 3, "too long": 1}}
    texts = atlas.texts().to_pandas()
    assert list(texts.status) == ["ok", "empty", "not text", "too long", "not text", "ok", "not text", "ok"]
    assert "limit is 40" in texts.error[3]
    assert sorted(atlas.heads(layer=0, head=0).column("text_id").to_pylist()) == [0, 5, 7]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.txt", "no file or folder"),
    (lambda d: _write(d / "x.docx", "hello"), "not a format"),
    (lambda d: _write(d / "x.csv", "title,body\na,b\n"), "has no column 'text'.*--column"),
    (lambda d: _write(d / "x.jsonl", "hello world\n"), "is not JSON"),
    (lambda d: _write(d / "x.jsonl", '{"body": "a"}\n'), "has no field 'text'"),
    (lambda d: _write(d / "x.txt", b"\x00\x01binary"), "looks binary"),
    (lambda d: _write(d / "x.txt", "caf\xe9 ok\n".encode("latin-1") + b"more text " * 10), "not UTF-8"),
    (lambda d: _write(d / "x.parquet", "not parquet"), "not a readable Parquet"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no"),
])
def test_bad_input_files_get_one_line_errors(tmp_path, make, message):
    with pytest.raises(InputError, match=message) as err:
        build("minilm", make(tmp_path), tmp_path / "atlas", engine="local")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "atlas").exists()  # refused before anything was written


def test_an_atlas_folder_resumes_only_the_same_inputs(tmp_path, fortunes):
    out = tmp_path / "atlas"
    build("minilm", fortunes, out, engine="local", limit=4, shard_size=2)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "texts").iterdir()}
    again = build("minilm", fortunes, out, engine="local", limit=4, shard_size=2)  # nothing left to do
    assert {p.name: p.stat().st_mtime_ns for p in (out / "texts").iterdir()} == before
    assert again.manifest["counts"]["measured"] == 4
    with pytest.raises(InputError, match="other inputs .*limit.*--overwrite"):
        build("minilm", fortunes, out, engine="local", limit=5, shard_size=2)
    assert build("minilm", fortunes, out, engine="local", limit=5, shard_size=2, overwrite=True).manifest[
        "counts"]["measured"] == 5
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an atlas"):
        build("minilm", fortunes, tmp_path / "notes", engine="local", overwrite=True)
    assert (tmp_path / "notes" / "mine.txt").exists()
    with pytest.raises(InputError, match="not an atlas"):
        load(tmp_path / "notes")


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_the_corpus_command_writes_an_atlas_and_refuses_bad_files_in_one_line(tmp_path, fortunes):
    cmd = [str(Path(sys.executable).parent / "attnscope"), "corpus", "minilm"]
    bad = subprocess.run([*cmd, str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "a")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    lines = bad.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: no file or folder") and lines[1].startswith("hint:")
    ok = subprocess.run([*cmd, str(fortunes), "-o", str(tmp_path / "a"), "--engine", "local", "--limit", "3",
                         "--top-k", "2"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(tmp_path / "a")
    assert "3 of 3 texts measured, 6 layers x 12 heads" in ok.stderr
    assert load(tmp_path / "a").manifest["top_k"] == 2
