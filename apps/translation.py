"""Translation demo: source text in, translation out, with beam size and length controls.

Run: ``python -m toolkit.apps.translation RUN_DIR`` or ``toolkit serve RUN_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr

from toolkit.apps import metrics_markdown, open_run, user_errors


def build_demo(run_dir: str | Path, backend: str = "auto", predictor=None) -> gr.Blocks:
    run_dir, cfg, results, generate = open_run(run_dir, backend, predictor)
    pair = f"{cfg.data.source_lang} → {cfg.data.target_lang}"

    @user_errors
    def translate(text: str, beams: int, max_tokens: int) -> tuple[str, str]:
        if not text or not text.strip():
            raise gr.Error("Type some text to translate.")
        answer = generate(text, num_beams=int(beams), max_new_tokens=int(max_tokens))
        note = (
            f"The input was longer than {generate.max_length} tokens and was cut to fit the model."
            if answer["truncated"]
            else ""
        )
        return answer["output"], note

    with gr.Blocks(title=f"{run_dir.name}: translation {pair}", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# {run_dir.name}\nTranslation **{pair}**.")
        with gr.Row():
            with gr.Column():
                source = gr.Textbox(label=f"Source ({cfg.data.source_lang})", lines=4, elem_id="source")
                beams = gr.Slider(1, 8, value=cfg.generation.num_beams, step=1, label="Beam size")
                max_tokens = gr.Slider(8, 256, value=cfg.generation.max_new_tokens, step=8, label="Max output tokens")
                button = gr.Button("Translate", variant="primary", elem_id="translate")
            with gr.Column():
                output = gr.Textbox(label=f"Translation ({cfg.data.target_lang})", lines=4, elem_id="output")
                note = gr.Markdown(elem_id="note")
        gr.Examples(examples=[[e] for e in results.get("examples", [])], inputs=[source])
        button.click(translate, inputs=[source, beams, max_tokens], outputs=[output, note], api_name="translate")
        with gr.Accordion("Run metrics", open=False):
            gr.Markdown(metrics_markdown(results, ["bleu", "chrf"]))
    demo.queue(default_concurrency_limit=1)
    return demo


if __name__ == "__main__":
    from toolkit.web import launch

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs/translation_multi30k_en_de")
