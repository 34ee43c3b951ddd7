"""Named-entity recognition demo: a text box gives its entities highlighted; a CSV gives a table to download.

Run: ``python -m toolkit.apps.ner RUN_DIR`` or ``toolkit serve RUN_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr
import pandas as pd

from toolkit.apps import (
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

COLUMNS = ["text", "entities", "types", "note"]
FOUND = ["entity", "type", "score", "start", "end"]  # the columns of the text tab's table of entities


def build_demo(
    run_dir: str | Path, backend: str = "auto", max_batch_size: int = 32, workers: int = 1, predictor=None
) -> gr.Blocks:
    """The app for an NER run. ``predictor``: an already loaded one (the studio's cache)."""
    run_dir, cfg, results, predictor = open_run(run_dir, backend, predictor)
    examples = results.get("examples") or ["George Washington went to Washington to meet the United Nations."]
    types = sorted({label.split("-", 1)[-1] for label in predictor.labels if label != "O"})
    downloads = app_temp_folder("toolkit-predictions-")

    text_check = require_text(predictor, "Type some text to tag.")

    def tag(texts: list[str]) -> tuple[list, list]:
        """Batched by the queue: one forward pass for all waiting requests."""
        answers = answer_texts(predictor, texts)
        entities = [answers[i]["entities"] if i in answers else [] for i in range(len(texts))]
        return [highlighted(t, e) for t, e in zip(texts, entities)], [listed(e) for e in entities]

    @user_errors
    def tag_csv(file) -> tuple[pd.DataFrame, str]:
        table, answers = answer_upload(predictor, file, "text")
        table["entities"] = [
            "; ".join(f"{e['text']} ({e['type']})" for e in answers[i]["entities"]) if i in answers else ""
            for i in range(len(table))
        ]
        table["types"] = [
            ", ".join(sorted({e["type"] for e in answers[i]["entities"]})) if i in answers else ""
            for i in range(len(table))
        ]
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
                        found = gr.Dataframe(headers=FOUND, label="Found", interactive=False)
                gr.Examples(examples=[[e] for e in examples], inputs=[text])
                bind_batched(text_check, tag, text, [marked, found], button, text, "tag", max_batch_size)
            with gr.Tab("CSV file", id="csv"):
                gr.Markdown(
                    "Upload a CSV with a `text` column, one text per row. Every row comes back in order, with its "
                    "entities; rows with empty text are marked as skipped."
                )
                csv_controls(tag_csv, "tag_csv", COLUMNS, "Tag file", "entities")
        with gr.Accordion("Run metrics", open=False):
            gr.Markdown(metrics_markdown(results, ["f1", "precision", "recall"]))
    demo.queue(default_concurrency_limit=workers)
    return demo


def highlighted(text: str, entities: list[dict]) -> dict:
    """A text with its entities, as gr.HighlightedText shows them."""
    return {"text": text, "entities": [{"entity": e["type"], "start": e["start"], "end": e["end"]} for e in entities]}


def listed(entities: list[dict]) -> pd.DataFrame:
    """A text's entities as the rows of the text tab's table."""
    return pd.DataFrame(
        [[e["text"], e["type"], round(e["score"], 4), e["start"], e["end"]] for e in entities], columns=FOUND
    )


if __name__ == "__main__":
    from toolkit.web import launch

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs/ner_conll2003")
