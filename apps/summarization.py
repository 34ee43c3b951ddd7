"""Summarization demo: a long text (typed or a .txt upload) in, its summary out, with a length control.

Run: ``python -m apps.summarization RUN_DIR`` or ``toolkit serve RUN_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr

from apps import metrics_markdown
from toolkit.api import load
from toolkit.run import read_results, read_run_config


def read_text_upload(file) -> str:
    path = getattr(file, "name", file)
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise gr.Error("The file is not UTF-8 text. Re-save it as UTF-8 .txt.")


def build_demo(run_dir: str | Path) -> gr.Blocks:
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    results = read_results(run_dir)
    generate = load(run_dir)

    def summarize(text: str, upload, max_tokens: int) -> tuple[str, str]:
        if upload is not None:
            text = read_text_upload(upload)
        if not text or not text.strip():
            raise gr.Error("Paste a text or upload a .txt file to summarize.")
        answer = generate(text, max_new_tokens=int(max_tokens))
        note = (f"The text was longer than the model's {generate.max_length} input tokens: only its beginning was summarized."
                if answer["truncated"] else "")
        return answer["output"], note

    with gr.Blocks(title=f"{run_dir.name}: summarization") as demo:
        gr.Markdown(f"# {run_dir.name}\nSummarization.")
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Text", lines=10, elem_id="text")
                upload = gr.File(label="…or a .txt file", file_types=[".txt"], elem_id="upload")
                max_tokens = gr.Slider(8, 128, value=cfg.generation.max_new_tokens, step=4, label="Max summary tokens")
                button = gr.Button("Summarize", variant="primary", elem_id="summarize")
            with gr.Column():
                summary = gr.Textbox(label="Summary", lines=4, elem_id="summary")
                note = gr.Markdown(elem_id="note")
        gr.Examples(examples=[[e] for e in results.get("examples", [])[:3]], inputs=[text])
        button.click(summarize, inputs=[text, upload, max_tokens], outputs=[summary, note], api_name="summarize")
        with gr.Accordion("Run metrics", open=False):
            gr.Markdown(metrics_markdown(results, ["rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"]))
    demo.queue(default_concurrency_limit=1)
    return demo


if __name__ == "__main__":
    from apps import launch

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs/summarization_scitldr")
