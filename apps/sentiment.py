"""Sentiment / text classification demo: a text box gives label confidences; a CSV gives a table to download.

Run: ``python -m toolkit.apps.sentiment RUN_DIR`` or ``toolkit serve RUN_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr
import pandas as pd

from toolkit.apps import (
    MAX_CSV_ROWS,
    answer_texts,
    answer_upload,
    bind_batched,
    csv_controls,
    metrics_markdown,
    open_run,
    require_text,
    user_errors,
    write_download,
)
from toolkit.web import app_temp_folder


def build_demo(
    run_dir: str | Path, backend: str = "auto", max_batch_size: int = 32, workers: int = 1, predictor=None
) -> gr.Blocks:
    """The app for a sentiment run. The queue hands up to ``max_batch_size`` waiting requests to one forward pass,
    ``workers`` passes at a time (the defaults were chosen with benchmarks/serve_load.py --sweep). ``predictor``: an
    already loaded one (the studio's cache), instead of loading the run's."""
    run_dir, cfg, results, predictor = open_run(run_dir, backend, predictor)
    examples = results.get("examples") or ["A gripping, beautifully acted film.", "Dull, predictable and far too long."]

    downloads = app_temp_folder("toolkit-predictions-")
    columns = ["text", "label", *(f"score_{label}" for label in predictor.labels), "note"]

    text_check = require_text(predictor, "Type some text to classify.")

    def classify(texts: list[str]) -> tuple[list]:
        """Batched by the queue: one forward pass for all waiting requests."""
        answers = answer_texts(predictor, texts)  # none for an empty text or one over the bound
        return ([answers[i]["scores"] if i in answers else None for i in range(len(texts))],)

    @user_errors
    def classify_csv(file) -> tuple[pd.DataFrame, str]:
        table, answers = answer_upload(predictor, file, cfg.data.text_column)
        table["label"] = [answers[i]["label"] if i in answers else "" for i in range(len(table))]
        for label in predictor.labels:
            table[f"score_{label}"] = [
                round(answers[i]["scores"][label], 4) if i in answers else None for i in range(len(table))
            ]
        return table[columns], write_download(table[columns], downloads, "predictions")

    with gr.Blocks(title=f"{run_dir.name}: text classification", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# {run_dir.name}\nFine-tuned from `{cfg.model}`. Labels: {', '.join(predictor.labels)}.")
        # Tab ids: a selected tab that survives being rendered again (the studio re-renders apps in its Try tab).
        with gr.Tabs(selected="text"):
            with gr.Tab("Text", id="text"):
                with gr.Row():
                    with gr.Column():
                        text = gr.Textbox(label="Text", lines=3, placeholder="Type a sentence", elem_id="text-input")
                        button = gr.Button("Classify", variant="primary", elem_id="classify")
                    label = gr.Label(
                        label="Prediction", num_top_classes=min(5, len(predictor.labels)), elem_id="prediction"
                    )
                gr.Examples(examples=[[e] for e in examples], inputs=[text])
                # An empty text gets a notice (a toast, not a prediction in the label's heading) before it is queued.
                bind_batched(text_check, classify, text, label, button, text, "classify", max_batch_size)
            with gr.Tab("CSV file", id="csv"):
                named = f"`{cfg.data.text_column}`" + (" (or `text`)" if cfg.data.text_column != "text" else "")
                gr.Markdown(
                    f"Upload a CSV with a {named} column, up to {MAX_CSV_ROWS:,} rows. Every row comes back in "
                    f"order; rows with empty text are marked as skipped."
                )
                csv_controls(classify_csv, "classify_csv", columns, "Classify file", "predictions")
        with gr.Accordion("Run metrics", open=False):
            gr.Markdown(metrics_markdown(results, ["accuracy", "macro_f1"]))
    demo.queue(default_concurrency_limit=workers)  # batching, not threads, serves concurrent users
    return demo


if __name__ == "__main__":
    from toolkit.web import launch

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs/sentiment_minilm")
