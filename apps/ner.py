"""Named-entity recognition demo: a text box gives its entities highlighted; a CSV gives a table to download.

Run: ``python -m toolkit.apps.ner RUN_DIR`` or ``toolkit serve RUN_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr
import pandas as pd

from toolkit.api import load
from toolkit.apps import (
    app_temp_folder,
    metrics_markdown,
    read_upload,
    require_text,
    user_errors,
    within_bounds,
    write_download,
)
from toolkit.run import read_results, read_run_config

COLUMNS = ["text", "entities", "types", "note"]


def build_demo(
    run_dir: str | Path, backend: str = "auto", max_batch_size: int = 32, workers: int = 1, predictor=None
) -> gr.Blocks:
    """The app for an NER run. ``predictor``: an already loaded one (the studio's cache)."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    results = read_results(run_dir)
    predictor = predictor if predictor is not None else load(run_dir, backend=backend)
    examples = results.get("examples") or ["George Washington went to Washington to meet the United Nations."]
    types = sorted({label.split("-", 1)[-1] for label in predictor.labels if label != "O"})
    downloads = app_temp_folder("toolkit-predictions-")

    text_check = require_text(predictor, "Type some text to tag.")

    def tag(texts: list[str]) -> tuple[list, list]:
        """Batched by the queue: one forward pass for all waiting requests."""
        fits = within_bounds(predictor, texts)
        wanted = [i for i, t in enumerate(texts) if t and t.strip() and fits[i]]
        answers = dict(zip(wanted, predictor([texts[i] for i in wanted]))) if wanted else {}
        highlighted, tables = [], []
        for i, text in enumerate(texts):
            entities = answers[i]["entities"] if i in answers else []
            highlighted.append(
                {
                    "text": text,
                    "entities": [{"entity": e["type"], "start": e["start"], "end": e["end"]} for e in entities],
                }
            )
            tables.append(
                pd.DataFrame(
                    [[e["text"], e["type"], round(e["score"], 4), e["start"], e["end"]] for e in entities],
                    columns=["entity", "type", "score", "start", "end"],
                )
            )
        return highlighted, tables

    @user_errors
    def tag_csv(file) -> tuple[pd.DataFrame, str]:
        if file is None:
            raise gr.Error("Upload a CSV file with a text column first.")
        table = read_upload(file, "text")
        filled = [i for i, t in enumerate(table["text"]) if t.strip()]
        answers = dict(zip(filled, predictor([table["text"][i] for i in filled])))
        # Every input row comes back, in order: an empty one is marked, not dropped, so the output lines up.
        table["entities"] = [
            "; ".join(f"{e['text']} ({e['type']})" for e in answers[i]["entities"]) if i in answers else ""
            for i in range(len(table))
        ]
        table["types"] = [
            ", ".join(sorted({e["type"] for e in answers[i]["entities"]})) if i in answers else ""
            for i in range(len(table))
        ]
        table["note"] = ["" if i in answers else "skipped: empty text" for i in range(len(table))]
        return table[COLUMNS], write_download(table[COLUMNS], downloads, "entities")

    with gr.Blocks(title=f"{run_dir.name}: named entities", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# {run_dir.name}\nFine-tuned from `{cfg.model}`. Entity types: {', '.join(types)}.")
        with gr.Tabs(selected="text"):
            with gr.Tab("Text", id="text"):
                with gr.Row():
                    with gr.Column():
                        text = gr.Textbox(label="Text", lines=3, placeholder="Type a sentence", elem_id="text-input")
                        button = gr.Button("Find entities", variant="primary", elem_id="tag")
                    with gr.Column():
                        marked = gr.HighlightedText(label="Entities", combine_adjacent=False, elem_id="entities")
                        listed = gr.Dataframe(
                            headers=["entity", "type", "score", "start", "end"], label="Found", interactive=False
                        )
                gr.Examples(examples=[[e] for e in examples], inputs=[text])
                for trigger, api in ((button.click, {"api_name": "tag"}), (text.submit, {"api_visibility": "private"})):
                    trigger(text_check, inputs=text, api_visibility="private", concurrency_limit=None).success(
                        tag, inputs=text, outputs=[marked, listed], batch=True, max_batch_size=max_batch_size, **api
                    )
            with gr.Tab("CSV file", id="csv"):
                gr.Markdown(
                    "Upload a CSV with a `text` column, one text per row. Every row comes back in order, with its "
                    "entities; rows with empty text are marked as skipped."
                )
                upload = gr.File(label="CSV file", file_types=[".csv"], elem_id="csv-upload")
                run_csv = gr.Button("Tag file", variant="primary", elem_id="tag-csv")
                table = gr.Dataframe(value=pd.DataFrame(columns=COLUMNS), label="Entities", interactive=False)
                download = gr.File(label="Download entities", visible=False)
                run_csv.click(tag_csv, inputs=upload, outputs=[table, download], api_name="tag_csv").success(
                    lambda: gr.File(visible=True), outputs=download, api_visibility="private", queue=False
                )
        with gr.Accordion("Run metrics", open=False):
            gr.Markdown(metrics_markdown(results, ["f1", "precision", "recall"]))
    demo.queue(default_concurrency_limit=workers)
    return demo


if __name__ == "__main__":
    from toolkit.apps import launch

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs/ner_conll2003")
