"""Shared by the translation and summarization benchmarks: a budgeted toolkit run and Seq2SeqTrainer's speed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
os.chdir(ROOT)  # the shipped configs name their data relative to the repository root


def run_toolkit(config: Path, out: Path, *overrides: str, score_test: bool = False) -> dict:
    """Train a shipped config (its own time budget unless overridden) and return results.json.

    ``score_test``: re-score best/ on the test split through `toolkit eval`'s path, against the raw reference
    strings (training-time metrics compare with references decoded from the truncated tokenized targets).
    """
    import toolkit

    run = toolkit.train(config, [f"output_dir={out}", "overwrite=true", "trackers=[]", *overrides])
    if score_test:
        run.metrics["test"] = toolkit.evaluate(run.dir, split="test")
    return run.metrics


def trainer_samples_per_second(config: Path, steps: int, *overrides: str) -> float:
    """Seq2SeqTrainer's training speed at its best settings here (bf16, dynamic padding) on the same model and data."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    import toolkit.api as api
    from toolkit.tasks import get_task

    cfg = api.resolve_config(config, [*overrides, "output_dir=/tmp/unused"])
    task = get_task(cfg.task).build(cfg)
    model = task.model
    with tempfile.TemporaryDirectory() as tmp:
        args = Seq2SeqTrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=cfg.batch_size,
            max_steps=steps,
            learning_rate=cfg.lr,
            bf16=True,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            logging_steps=max(steps // 4, 1),
            disable_tqdm=True,
            seed=cfg.seed,
        )
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=task.train_set, data_collator=task.collate)
        result = trainer.train()
    return steps * cfg.batch_size / result.metrics["train_runtime"]


def toolkit_samples_per_second(config: Path, steps: int, *overrides: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        metrics = run_toolkit(
            config,
            Path(tmp) / "speed",
            f"max_steps={steps}",
            "max_train_minutes=null",
            f"eval_every={steps}",
            "data.max_eval_rows=16",
            "data.max_test_rows=16",
            *overrides,
        )
    return metrics["train_samples_per_second"]


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
