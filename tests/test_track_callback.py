"""AttentionCallback on a tiny BERT classifier trained a few steps on CPU with the transformers Trainer."""

from __future__ import annotations

import comet_ml
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from transformers import BertConfig, BertForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

import attnscope
from attnscope.errors import InputError
from attnscope.track import AttentionCallback, CometLogger, MlflowLogger, comet
from attnscope.track import mlflow as track

TEXTS = ["a good movie", "a bad film", "great acting here", "a terrible plot twist", "I loved it", "I hated it",
         "fine work", "awful"]


class Memory:
    """A logger of one's own: keeps every trace it is given."""

    def __init__(self):
        self.traces: dict[tuple[int, str], attnscope.Trace] = {}

    def log(self, trace, step, name):
        self.traces[(step, name)] = trace


@pytest.fixture(scope="module")
def tokenizer(minilm):
    return minilm[1]


def train(tokenizer, tmp_path, callbacks=(), steps: int = 6) -> BertForSequenceClassification:
    """Fine-tune a freshly initialised 2-layer, 4-head BERT (with dropout) for ``steps`` optimizer steps."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model = BertForSequenceClassification(config)
    data = [dict(tokenizer(t), labels=i % 2) for i, t in enumerate(TEXTS)]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=1e-2, use_cpu=True, report_to=[], save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=list(callbacks))
    trainer.train()
    return model


def test_probes_are_logged_to_mlflow_at_the_asked_steps_and_change(tokenizer, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("cb", artifact_location=(tmp_path / "art").as_uri())).info.run_id
    probes = {"cat": "The cat sat on the mat.", "pair": ("A man walks.", "He is tired.")}
    callback = AttentionCallback(probes, every_n_steps=2, logger=MlflowLogger(run_id, tracking_uri=uri, figures=False),
                                 views=("head",))
    train(tokenizer, tmp_path, [callback])

    assert callback.logged == [(s, n) for s in (0, 2, 4, 6) for n in ("cat", "pair")]
    traces = {s: track.load_trace(run_id, "cat", uri, step=s) for s in (0, 2, 4, 6)}
    assert all(t.tokens["input"][:3] == ["[CLS]", "the", "cat"] and t.meta["step"] == s for s, t in traces.items())
    for before, after in zip((0, 2, 4), (2, 4, 6)):
        assert np.abs(traces[after].dense() - traces[before].dense()).max() > 1e-3
    assert set(track.load_trace(run_id, "pair", uri, step=4).segments) == {"A", "B"}
    history = client.get_metric_history(run_id, "attn/cat/L1/entropy")
    assert [m.step for m in history] == [0, 2, 4, 6] and len({m.value for m in history}) == 4
    files = {f.path for f in client.list_artifacts(run_id, "attnscope/cat/step-00000004")}
    assert files == {f"attnscope/cat/step-00000004/{n}" for n in ("trace.safetensors", "head.html", "heads.csv")}


def test_capturing_does_not_change_training(tokenizer, tmp_path):
    memory = Memory()
    plain = train(tokenizer, tmp_path)
    watched = train(tokenizer, tmp_path, [AttentionCallback(["the movie was good"], 1, memory)])
    assert sorted(memory.traces) == [(s, "probe0") for s in range(7)]
    assert watched.training  # back in training mode, as the Trainer left it
    for (key, a), b in zip(plain.state_dict().items(), watched.state_dict().values()):
        assert torch.equal(a, b), key  # same dropout draws, same gradients: the callback left no trace


def test_comet_logger_writes_each_step_to_the_experiment(tokenizer, tmp_path):
    exp = comet_ml.OfflineExperiment(offline_directory=str(tmp_path / "comet"), display_summary_level=0,
                                     log_env_details=False, log_code=False, auto_output_logging=False,
                                     log_git_metadata=False, log_git_patch=False)
    logger = CometLogger(exp, views=("model",), figures=False, html_tab=False)
    train(tokenizer, tmp_path, [AttentionCallback(["the movie was good"], 3, logger, at_start=False)])
    exp.end()
    archive = tmp_path / "comet" / f"{exp.get_key()}.zip"
    first, last = comet.load_trace(archive, step=3), comet.load_trace(archive)
    assert first.meta["step"] == 3 and last.meta["step"] == 6
    with pytest.raises(attnscope.errors.MissingDataError, match=r"logged at steps \[3, 6\]"):
        comet.load_trace(archive, step=0)


def test_bad_arguments_say_what_to_pass():
    with pytest.raises(InputError, match="every_n_steps must be a whole number >= 1"):
        AttentionCallback(["text"], 0, Memory())
    with pytest.raises(InputError, match=r"logger must have a log\(trace, step, name\) method"):
        AttentionCallback(["text"], 1, object())
    with pytest.raises(InputError, match="views= needs a logger whose log"):
        AttentionCallback(["text"], 1, Memory(), views=("head",))
    with pytest.raises(InputError, match="probe_texts is empty"):
        AttentionCallback([], 1, Memory())
    with pytest.raises(InputError, match="probe 'probe1' must be a non-empty text"):
        AttentionCallback(["ok", ""], 1, Memory())
    with pytest.raises(InputError, match="name must be a short word"):
        AttentionCallback({"a b": "text"}, 1, Memory())
