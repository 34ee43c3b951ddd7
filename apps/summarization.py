"""Summarization demo: a long text (typed or a .txt upload) in, its summary out, with a length control.
For an extractive run it also shows the text with the picked sentences highlighted and every sentence's score.

Run: ``python -m toolkit.apps.summarization RUN_DIR`` or ``toolkit serve RUN_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr

from toolkit.apps import metrics_markdown, open_run, user_errors


def read_text_upload(file) -> str:
    path = getattr(file, "name", file)
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise gr.Error("The file is not UTF-8 text. Re-save it as UTF-8 .txt.") from None


def text_or_upload(text: str, upload) -> str:
    if upload is not None:
        text = read_text_upload(upload)
    if not text or not text.strip():
        raise gr.Error("Paste a text or upload a .txt file to summarize.")
    return text


def truncation_note(answer: dict, max_length: int) -> str:
    return (
        f"The text was longer than the model's {max_length} input tokens: only its beginning was summarized."
        if answer["truncated"]
        else ""
    )


def build_demo(run_dir: str | Path, backend: str = "auto", predictor=None) -> gr.Blocks:
    run_dir, cfg, results, model = open_run(run_dir, backend, predictor)
    if hasattr(model, "explain"):
        return build_extractive_demo(run_dir, cfg, results, model)
    return build_abstractive_demo(run_dir, cfg, results, model)


def build_extractive_demo(run_dir: Path, cfg, results: dict, summarizer) -> gr.Blocks:
    @user_errors
    def summarize(text: str, upload, max_sentences: int, max_words: float):
        answer = summarizer.explain(
            text_or_upload(text, upload),
            max_sentences=int(max_sentences),
            max_words=int(max_words) if max_words else None,
        )
        spans = [(s["text"] + " ", "picked" if s["picked"] else None) for s in answer["sentences"]]
        scores = [
            [i + 1, s["text"], round(s["score"], 4) if s["score"] is not None else None, "yes" if s["picked"] else ""]
            for i, s in enumerate(answer["sentences"])
        ]
        return answer["output"], spans, scores, truncation_note(answer, summarizer.max_length)

    with gr.Blocks(title=f"{run_dir.name}: summarization", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            f"# {run_dir.name}\nExtractive summarization: the model scores each sentence and picks the best, "
            "shown in the text's own order."
        )
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Text", lines=10, elem_id="text")
                upload = gr.File(label="…or a .txt file", file_types=[".txt"], elem_id="upload")
                max_sentences = gr.Slider(
                    1,
                    max(5, cfg.extractive.max_sentences),
                    value=cfg.extractive.max_sentences,
                    step=1,
                    label="Sentences",
                )
                max_words = gr.Number(
                    value=cfg.extractive.max_words or 0, precision=0, minimum=0, label="Word limit (0: none)"
                )
                button = gr.Button("Summarize", variant="primary", elem_id="summarize")
            with gr.Column():
                summary = gr.Textbox(label="Summary", lines=4, elem_id="summary")
                note = gr.Markdown(elem_id="note")
        highlighted = gr.HighlightedText(
            label="Picked sentences in the text",
            color_map={"picked": "#facc15"},
            show_legend=True,
            elem_id="highlighted",
        )
        scores = gr.Dataframe(
            headers=["#", "sentence", "score", "picked"], label="Sentence scores", wrap=True, elem_id="scores"
        )
        gr.Examples(examples=[[e] for e in results.get("examples", [])[:3]], inputs=[text])
        button.click(
            summarize,
            inputs=[text, upload, max_sentences, max_words],
            outputs=[summary, highlighted, scores, note],
            api_name="summarize",
        )
        with gr.Accordion("Run metrics", open=False):
            gr.Markdown(metrics_markdown(results, ["rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"]))
    demo.queue(default_concurrency_limit=1)
    return demo


def build_abstractive_demo(run_dir: Path, cfg, results: dict, generate) -> gr.Blocks:

    @user_errors
    def summarize(text: str, upload, max_tokens: int) -> tuple[str, str]:
        answer = generate(text_or_upload(text, upload), max_new_tokens=int(max_tokens))
        return answer["output"], truncation_note(answer, generate.max_length)

    with gr.Blocks(title=f"{run_dir.name}: summarization", delete_cache=(3600, 3600)) as demo:
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
    from toolkit.web import launch

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs/summarization_scitldr")
