"""Summaries of a finished atlas, read shard by shard (memory does not grow with the corpus).

- ``summary.parquet``: one row per layer x head: ``texts`` measured; for every metric ``m`` its ``mean_m`` (exact),
  quantiles ``p10_m p25_m p50_m p75_m p90_m`` (read from a :data:`FINE_BINS`-bin histogram of the metric's range, so
  within one bin width: about 0.001 for masses and entropy), and ``hist_m``, a :data:`BINS`-bin histogram (counts) over
  the metric's range given in the manifest (the views' distribution); ``share_<label>`` the fraction of texts in
  which the head gets each pattern label, and ``label`` the most frequent one.
- ``exemplars.parquet``: for each head and metric the ``top_k`` texts where the head scores highest (ties: the
  lower text id first), with the peak query/key of the head in that text (exBERT-style: the tokens to look at);
  ``exemplar_texts.parquet``: those texts (id, source, row, text, tokens).

Ranges: every metric is a fraction in [0, 1] except ``distance``, in tokens, in [0, max_tokens].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.metrics import LABELS
from .worker import METRICS

BINS = 24
FINE_BINS = 960  # a multiple of BINS
QUANTILES = (10, 25, 50, 75, 90)


def ranges(max_tokens: int) -> dict[str, list[float]]:
    """Each metric's histogram range ``[lo, hi]``."""
    return {m: [0.0, float(max_tokens) if m == "distance" else 1.0] for m in METRICS}


class _Summary:
    """Running sums, counts, histograms and top-k of every layer x head x metric."""

    def __init__(self, layers: int, heads: int, bounds: dict[str, list[float]], top_k: int):
        self.L, self.H, self.k = layers, heads, top_k
        n, M = layers * heads, len(METRICS)
        self.lo = np.array([bounds[m][0] for m in METRICS])
        self.hi = np.array([bounds[m][1] for m in METRICS])
        self.sums = np.zeros((n, M))
        self.counts = np.zeros((n, M), dtype=np.int64)
        self.hist = np.zeros((n, M, FINE_BINS), dtype=np.int64)
        self.labels = np.zeros((n, len(LABELS)), dtype=np.int64)
        self.texts = np.zeros(n, dtype=np.int64)
        shape = (n, M, top_k)
        self.best = np.full(shape, -np.inf)
        self.best_id = np.full(shape, -1, dtype=np.int64)
        self.best_peak = np.zeros(shape + (3,))

    def add(self, table) -> None:
        """Fold in one ``heads`` shard."""
        n_heads = self.L * self.H
        idx = np.asarray(table.column("layer"), dtype=np.int64) * self.H + np.asarray(table.column("head"))
        self.texts += np.bincount(idx, minlength=n_heads)
        codes = np.asarray(table.column("label").combine_chunks().indices, dtype=np.int64)
        self.labels += np.bincount(idx * len(LABELS) + codes, minlength=n_heads * len(LABELS)).reshape(n_heads, -1)
        ids = np.asarray(table.column("text_id"), dtype=np.int64)
        peak = np.stack([np.asarray(table.column(c), dtype=np.float64) for c in ("peak_query", "peak_key",
                                                                                  "peak_weight")], -1)
        for j, m in enumerate(METRICS):
            v = np.asarray(table.column(m), dtype=np.float64)
            ok = ~np.isnan(v)
            vi, vv = idx[ok], v[ok]
            self.sums[:, j] += np.bincount(vi, weights=vv, minlength=n_heads)
            self.counts[:, j] += np.bincount(vi, minlength=n_heads)
            b = np.clip(((vv - self.lo[j]) / (self.hi[j] - self.lo[j]) * FINE_BINS).astype(np.int64), 0, FINE_BINS - 1)
            self.hist[:, j] += np.bincount(vi * FINE_BINS + b, minlength=n_heads * FINE_BINS).reshape(n_heads, -1)
            self._top(j, vi, vv, ids[ok], peak[ok])

    def _top(self, j: int, idx: np.ndarray, values: np.ndarray, ids: np.ndarray, peak: np.ndarray) -> None:
        """Merge this shard's rows into the running top-k of metric ``j`` (highest value, then lowest id)."""
        cand_val = np.concatenate([self.best[:, j].ravel(), values])
        cand_id = np.concatenate([self.best_id[:, j].ravel(), ids])
        cand_idx = np.concatenate([np.repeat(np.arange(self.L * self.H), self.k), idx])
        cand_peak = np.concatenate([self.best_peak[:, j].reshape(-1, 3), peak])
        real = cand_id >= 0
        cand_val, cand_id, cand_idx, cand_peak = cand_val[real], cand_id[real], cand_idx[real], cand_peak[real]
        order = np.lexsort((cand_id, -cand_val, cand_idx))
        cand_idx = cand_idx[order]
        starts = np.searchsorted(cand_idx, cand_idx, side="left")
        rank = np.arange(len(order)) - starts
        keep = rank < self.k
        heads, ranks, src = cand_idx[keep], rank[keep], order[keep]
        self.best[:, j], self.best_id[:, j] = -np.inf, -1
        self.best[heads, j, ranks] = cand_val[src]
        self.best_id[heads, j, ranks] = cand_id[src]
        self.best_peak[heads, j, ranks] = cand_peak[src]

    def summary_table(self):
        import pyarrow as pa

        n = self.L * self.H
        cols = {"layer": np.repeat(np.arange(self.L, dtype=np.int16), self.H),
                "head": np.tile(np.arange(self.H, dtype=np.int16), self.L), "texts": self.texts}
        width = (self.hi - self.lo) / FINE_BINS
        cum = np.cumsum(self.hist, -1)
        for j, m in enumerate(METRICS):
            with np.errstate(invalid="ignore", divide="ignore"):
                cols[f"mean_{m}"] = np.where(self.counts[:, j] > 0, self.sums[:, j] / self.counts[:, j], np.nan)
            for q in QUANTILES:
                # the bin holding the q-th percentile value; its centre
                target = np.ceil(self.counts[:, j] * q / 100).clip(min=1)[:, None]
                b = (cum[:, j] < target).sum(-1)
                cols[f"p{q}_{m}"] = np.where(self.counts[:, j] > 0, self.lo[j] + (b + 0.5) * width[j], np.nan)
        for j, m in enumerate(METRICS):
            coarse = self.hist[:, j].reshape(n, BINS, -1).sum(-1)
            cols[f"hist_{m}"] = pa.array(list(coarse.astype(np.int64)), pa.list_(pa.int64()))
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = self.labels / np.maximum(self.texts, 1)[:, None]
        for i, name in enumerate(LABELS):
            cols[f"share_{name}"] = shares[:, i]
        cols["label"] = pa.array([LABELS[i] if t else None for i, t in zip(shares.argmax(1), self.texts)], pa.string())
        return pa.table(cols)

    def exemplar_table(self):
        import pyarrow as pa

        heads, metric, rank = np.nonzero(self.best_id >= 0)
        order = np.lexsort((rank, heads, metric))
        heads, metric, rank = heads[order], metric[order], rank[order]
        peak = self.best_peak[heads, metric, rank]
        return pa.table({
            "metric": pa.array([METRICS[m] for m in metric], pa.string()),
            "layer": (heads // self.H).astype(np.int16), "head": (heads % self.H).astype(np.int16),
            "rank": rank.astype(np.int16), "text_id": self.best_id[heads, metric, rank],
            "value": self.best[heads, metric, rank].astype(np.float32),
            "peak_query": peak[:, 0].astype(np.int32), "peak_key": peak[:, 1].astype(np.int32),
            "peak_weight": peak[:, 2].astype(np.float32),
        })


def write(path: Path, layers: int, heads: int, bounds: dict[str, list[float]], top_k: int) -> dict:
    """Read every ``heads`` shard of the atlas at ``path`` and write the summary and exemplar tables.

    Returns ``{"measured": texts measured}``.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    acc = _Summary(layers, heads, bounds, top_k)
    for shard in sorted((path / "heads").glob("shard-*.parquet")):
        acc.add(pq.read_table(shard))
    pq.write_table(acc.summary_table(), path / "summary.parquet")
    exemplars = acc.exemplar_table()
    pq.write_table(exemplars, path / "exemplars.parquet")
    wanted = pc.unique(exemplars.column("text_id"))
    parts = []
    for shard in sorted((path / "texts").glob("shard-*.parquet")):
        t = pq.read_table(shard, columns=["text_id", "source", "row", "text", "tokens"])
        parts.append(t.filter(pc.is_in(t.column("text_id"), value_set=wanted)))
    import pyarrow as pa

    texts = pa.concat_tables(parts).sort_by("text_id") if parts else None
    if texts is not None:
        pq.write_table(texts, path / "exemplar_texts.parquet")
    return {"measured": int(acc.texts[0]) if len(acc.texts) else 0}
