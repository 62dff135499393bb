"""The model actor: loads a model once, then turns batches of texts into per-text, per-head metrics.

The same class is Ray Data's ``map_batches`` actor (one instance per actor process, the model loaded in
``__init__``) and the local engine's worker, so both engines compute every number with the same code.

A batch is a pyarrow table of rows (``shard, text_id, source, row, text, status``, see
:mod:`attnscope.corpus.sources`); the answer has one row per input row, with these columns added:

- ``layers``, ``heads`` int16: the model's shape (0 for rows not measured);
- ``n_tokens`` int32 and ``tokens`` list<string>: the text's raw tokens (what the views show);
- ``values`` list<float32>: ``[layers, heads, metrics]`` flattened, metrics in :data:`METRICS` order;
- ``labels`` list<int8>: ``[layers, heads]`` pattern label codes (:data:`LABELS`);
- ``peaks`` list<int32>: ``[layers, heads, 2]`` the query and key of each head's largest weight (rows with a single
  allowed key left out), and ``peak_weight`` list<float32> ``[layers, heads]`` that weight: where an exemplar
  text shows the head at work;
- ``error``: why a row was not measured (its ``status`` is then one of ``BAD_ROWS``).

Texts are captured in batches of ``batch_size`` with :func:`attnscope.capture_batch` (padding cut away, texts of
similar length together), measured with :func:`attnscope.analysis.head_metrics` and
:func:`~attnscope.corpus.classes.token_class_metrics`. A batch whose capture fails is retried one text at a time, so
one bad text is counted, not fatal.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._memory import release_freed_memory
from ..analysis._util import is_causal
from ..analysis.metrics import LABELS, head_metrics
from ..errors import AttnscopeError
from .classes import CLASS_METRICS, token_class_metrics

log = logging.getLogger(__name__)

#: Metrics of :func:`attnscope.analysis.head_metrics`, measured per text.
HEAD_METRICS = ("entropy", "distance", "self", "previous", "next", "local", "first", "special", "sink", "max")
#: Every metric of the atlas, in the order of the ``values`` column.
METRICS = HEAD_METRICS + CLASS_METRICS
_LABEL_CODE = {name: i for i, name in enumerate(LABELS)}


class ShardWorker:
    """Loads ``model`` (an offline name, folder, ``.gguf`` file or hub id) once; call it on a batch of rows.

    ``max_tokens``: longer texts are counted as ``"too long"`` (the model's own limit applies too).
    ``threads``: torch CPU threads in this process (None: torch's default). ``device``: ``"cpu"``, ``"cuda"``...
    """

    def __init__(self, model: str, *, batch_size: int = 16, max_tokens: int = 256, threads: int | None = None,
                 device: str | None = None):
        import torch

        from ..capture.families import max_positions
        from ..capture.models import load_cached

        if threads:
            torch.set_num_threads(int(threads))
        self.model, self.tokenizer = load_cached(model)
        if device:
            self.model.to(device)
        self.batch_size = batch_size
        limit = max_positions(self.model.config)
        self.max_tokens = min(max_tokens, limit) if limit else max_tokens
        self.tokenize = getattr(self.tokenizer, "tokenizer", self.tokenizer)

    def __call__(self, batch):
        """Rows (a pyarrow Table) -> the same rows with their metrics (module docstring)."""
        import pyarrow as pa

        rows = batch.to_pylist()
        out: dict[str, list[Any]] = {name: [0] * len(rows) for name in ("layers", "heads", "n_tokens")}
        out.update({name: [[] for _ in rows] for name in ("tokens", "values", "labels", "peaks", "peak_weight")})
        out["error"] = [None] * len(rows)
        status = [r["status"] for r in rows]
        lengths = {}
        for i, r in enumerate(rows):
            if status[i] != "ok":
                out["error"][i] = {"empty": "empty text", "not text": "not a string"}.get(status[i], status[i])
                continue
            n = len(self.tokenize(r["text"])["input_ids"])
            out["n_tokens"][i] = n
            if n > self.max_tokens:
                status[i], out["error"][i] = "too long", f"{n} tokens; the limit is {self.max_tokens}"
            else:
                lengths[i] = n
        order = sorted(lengths, key=lambda i: (lengths[i], i))  # similar lengths together: little padding
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            for i, trace in zip(chunk, self._capture([rows[i]["text"] for i in chunk], chunk, status, out)):
                if trace is not None:
                    self._measure(trace, i, out)
        release_freed_memory()  # the batches' activations: the process stays as small at 2,000 texts as at 500
        table = batch.set_column(batch.schema.get_field_index("status"), "status", pa.array(status, pa.string()))
        types = {"layers": pa.int16(), "heads": pa.int16(), "n_tokens": pa.int32(), "tokens": pa.list_(pa.string()),
                 "values": pa.list_(pa.float32()), "labels": pa.list_(pa.int8()), "peaks": pa.list_(pa.int32()),
                 "peak_weight": pa.list_(pa.float32()), "error": pa.string()}
        for name, typ in types.items():
            table = table.append_column(name, pa.array(out[name], typ))
        return table

    def _capture(self, texts: list[str], index: list[int], status: list[str], out: dict) -> list:
        """Traces of ``texts`` (one batched pass; one text at a time if that fails); None where a text failed."""
        from ..capture import capture, capture_batch

        try:
            return capture_batch(self.model, self.tokenizer, texts)
        except (AttnscopeError, RuntimeError, ValueError) as exc:
            if len(texts) > 1:
                log.warning("a batch of %d texts failed (%s); capturing them one by one", len(texts), exc)
            else:
                status[index[0]], out["error"][index[0]] = "failed", f"{type(exc).__name__}: {exc}"
                return [None]
        traces: list = []
        for i, text in zip(index, texts):
            try:
                traces.append(capture(self.model, self.tokenizer, text))
            except (AttnscopeError, RuntimeError, ValueError) as exc:
                status[i], out["error"][i] = "failed", f"{type(exc).__name__}: {exc}"
                traces.append(None)
        return traces

    @staticmethod
    def _measure(trace, i: int, out: dict) -> None:
        records = head_metrics(trace)
        L, H, q, k = trace.shape()
        values = np.empty((L, H, len(METRICS)), dtype=np.float32)
        values[..., : len(HEAD_METRICS)] = np.array([[r[m] for m in HEAD_METRICS] for r in records]).reshape(L, H, -1)
        values[..., len(HEAD_METRICS):] = token_class_metrics(trace)
        weights = trace.dense()  # [L, H, q, k]
        if is_causal(trace, trace.default_kind) and q > 1:
            weights = weights[:, :, 1:]  # row 0 has one allowed key: its weight 1 says nothing
            first = 1
        else:
            first = 0
        flat = weights.reshape(L, H, -1)
        best = flat.argmax(-1)
        out["layers"][i], out["heads"][i], out["n_tokens"][i] = L, H, q
        out["tokens"][i] = list(trace.tokens[trace.streams()[0]])
        out["values"][i] = values.ravel().tolist()
        out["labels"][i] = [_LABEL_CODE[r["label"]] for r in records]
        out["peaks"][i] = np.stack([best // k + first, best % k], -1).ravel().tolist()
        out["peak_weight"][i] = np.take_along_axis(flat, best[..., None], -1).ravel().tolist()

