"""Sentiment / text classification demo: a text box gives label confidences; a CSV gives a table to download.

Run: ``python -m toolkit.apps.sentiment RUN_DIR`` or ``toolkit serve RUN_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr
import pandas as pd

from toolkit.api import load
from toolkit.apps import (
    MAX_CSV_ROWS,
    app_temp_folder,
    metrics_markdown,
    read_upload,
    require_text,
    user_errors,
    within_bounds,
    write_download,
)
from toolkit.run import read_results, read_run_config


def build_demo(
    run_dir: str | Path, backend: str = "auto", max_batch_size: int = 32, workers: int = 1, predictor=None
) -> gr.Blocks:
    """The app for a sentiment run. The queue hands up to ``max_batch_size`` waiting requests to one forward pass,
    ``workers`` passes at a time (the defaults were chosen with benchmarks/serve_load.py --sweep). ``predictor``: an
    already loaded one (the studio's cache), instead of loading the run's."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    results = read_results(run_dir)
    predictor = predictor if predictor is not None else load(run_dir, backend=backend)
    examples = results.get("examples") or ["A gripping, beautifully acted film.", "Dull, predictable and far too long."]

    downloads = app_temp_folder("toolkit-predictions-")
    columns = ["text", "label", *(f"score_{label}" for label in predictor.labels), "note"]

    text_check = require_text(predictor, "Type some text to classify.")

    def classify(texts: list[str]) -> tuple[list]:
        """Batched by the queue: one forward pass for all waiting requests."""
        fits = within_bounds(predictor, texts)
        wanted = [i for i, t in enumerate(texts) if t and t.strip() and fits[i]]
        answers = predictor([texts[i] for i in wanted]) if wanted else []
        # An empty text or one over the bound (an API call: the page checks first) gets no prediction.
        out: list = [None] * len(texts)
        for i, answer in zip(wanted, answers):
            out[i] = answer["scores"]
        return (out,)

    @user_errors
    def classify_csv(file) -> tuple[pd.DataFrame, str]:
        if file is None:
            raise gr.Error("Upload a CSV file with a text column first.")
        table = read_upload(file, cfg.data.text_column)
        filled = [i for i, t in enumerate(table["text"]) if t.strip()]
        answers = dict(zip(filled, predictor([table["text"][i] for i in filled])))
        # Every input row comes back, in order: an empty one is marked, not dropped, so the output lines up.
        table["label"] = [answers[i]["label"] if i in answers else "" for i in range(len(table))]
        for label in predictor.labels:
            table[f"score_{label}"] = [
                round(answers[i]["scores"][label], 4) if i in answers else None for i in range(len(table))
            ]
        table["note"] = ["" if i in answers else "skipped: empty text" for i in range(len(table))]
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
                button.click(text_check, inputs=text, api_visibility="private", concurrency_limit=None).success(
                    classify, inputs=text, outputs=label, batch=True, max_batch_size=max_batch_size, api_name="classify"
                )
                text.submit(text_check, inputs=text, api_visibility="private", concurrency_limit=None).success(
                    classify,
                    inputs=text,
                    outputs=label,
                    batch=True,
                    max_batch_size=max_batch_size,
                    api_visibility="private",
                )
            with gr.Tab("CSV file", id="csv"):
                named = f"`{cfg.data.text_column}`" + (" (or `text`)" if cfg.data.text_column != "text" else "")
                gr.Markdown(
                    f"Upload a CSV with a {named} column, up to {MAX_CSV_ROWS:,} rows. Every row comes back in "
                    f"order; rows with empty text are marked as skipped."
                )
                upload = gr.File(label="CSV file", file_types=[".csv"], elem_id="csv-upload")
                run_csv = gr.Button("Classify file", variant="primary", elem_id="classify-csv")
                table = gr.Dataframe(value=pd.DataFrame(columns=columns), label="Predictions", interactive=False)
                download = gr.File(label="Download predictions", visible=False)
                # The download box appears once it has a file; the API still returns a plain path.
                run_csv.click(classify_csv, inputs=upload, outputs=[table, download], api_name="classify_csv").success(
                    lambda: gr.File(visible=True), outputs=download, api_visibility="private", queue=False
                )
        with gr.Accordion("Run metrics", open=False):
            gr.Markdown(metrics_markdown(results, ["accuracy", "macro_f1"]))
    demo.queue(default_concurrency_limit=workers)  # batching, not threads, serves concurrent users
    return demo


if __name__ == "__main__":
    from toolkit.apps import launch

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs/sentiment_minilm")
