"""The corpus atlas: what every head of a model does across thousands of texts, on Ray Data.

One sentence shows what a head did once; an atlas shows what it *does*: for each text of a corpus and each layer
x head, the head metrics of :func:`attnscope.analysis.head_metrics` (entropy, distance, self/previous/next/local/
first/special/sink mass, max, pattern label) and the attention to token classes of
:func:`~attnscope.corpus.classes.token_class_metrics` (punctuation, same word, repeated token), then per head a
summary (means, quantiles, share of texts per pattern label) and exemplars (the texts where it scores highest).

>>> atlas = build("minilm", "texts.txt", "atlas/", engine="local")      # or engine="ray" (the default)
>>> atlas = load("atlas/")
>>> atlas.grid("previous")              # [layers, heads] mean mass on the previous token
>>> atlas.top(2, 5, "previous")         # head 2.5's exemplar texts
>>> atlas.compare(load("atlas-finetuned/"), metric="previous", top=10)

From a shell: ``attnscope corpus MODEL DATA -o ATLAS_DIR`` (``--engine local``, ``--ray-address ADDR``), and
``attnscope atlas ATLAS_DIR -o atlas.html`` for the view. Needs the ``corpus`` extra:
``pip install 'attnscope[corpus]'`` (Ray Data, pyarrow, pandas).
"""

from .atlas import Atlas, compare, load
from .build import Status, build
from .classes import CLASS_METRICS, token_class_metrics, word_ids
from .fortunes import fortune_texts, write_fortunes
from .worker import METRICS

__all__ = [
    "CLASS_METRICS",
    "METRICS",
    "Atlas",
    "Status",
    "build",
    "compare",
    "fortune_texts",
    "load",
    "token_class_metrics",
    "word_ids",
    "write_fortunes",
]
