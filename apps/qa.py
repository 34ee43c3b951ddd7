"""Question answering demo: a passage and a question give the answer, highlighted in the passage, with its score.

Run: ``python -m toolkit.apps.qa RUN_DIR`` or ``toolkit serve RUN_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr

from toolkit.apps import bind_batched, check_input, metrics_markdown, open_run, within_bounds

EXAMPLE_CONTEXT = (
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in "
    "France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under "
    "their leader Rollo, agreed to swear fealty to King Charles III of West Francia."
)


def build_demo(
    run_dir: str | Path, backend: str = "auto", max_batch_size: int = 16, workers: int = 1, predictor=None
) -> gr.Blocks:
    """The app for a question answering run. ``predictor``: an already loaded one (the studio's cache)."""
    run_dir, cfg, results, predictor = open_run(run_dir, backend, predictor)

    pair_check = require_both(predictor)

    def answer(contexts: list[str], questions: list[str]) -> tuple[list, list]:
        """Batched by the queue: one forward pass for all waiting requests."""
        pairs = [{"question": q or "", "context": c or ""} for c, q in zip(contexts, questions)]
        fits = within_bounds(predictor, pairs)
        wanted = [i for i, (c, q) in enumerate(zip(contexts, questions)) if c and c.strip() and q and q.strip()]
        wanted = [i for i in wanted if fits[i]]
        found = predictor([{"question": questions[i], "context": contexts[i]} for i in wanted]) if wanted else []
        by_row = dict(zip(wanted, found))
        marked, scores = [], []
        for i, context in enumerate(contexts):
            best = by_row.get(i)
            spans = (
                []
                if not best or not best["answer"]
                else [{"entity": "answer", "start": best["start"], "end": best["end"]}]
            )
            marked.append({"text": context or "", "entities": spans})
            scores.append(None if best is None else {"answer": best["answer"], "score": round(best["score"], 4)})
        return marked, scores

    with gr.Blocks(title=f"{run_dir.name}: question answering", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            f"# {run_dir.name}\nFine-tuned from `{cfg.model}`. Give a passage and a question: the answer is the "
            "span of the passage the model points at."
        )
        with gr.Row():
            with gr.Column():
                # Inputs said so: rendered inside the studio's Try tab, a prefilled box was otherwise shown read-only.
                context = gr.Textbox(
                    label="Passage", lines=8, value=EXAMPLE_CONTEXT, interactive=True, elem_id="context"
                )
                question = gr.Textbox(
                    label="Question", placeholder="Ask about the passage", interactive=True, elem_id="question"
                )
                button = gr.Button("Answer", variant="primary", elem_id="answer")
            with gr.Column():
                marked = gr.HighlightedText(label="Answer in the passage", combine_adjacent=True, elem_id="marked")
                found = gr.JSON(label="Answer and score", elem_id="found")
        gr.Examples(
            examples=[[EXAMPLE_CONTEXT, q] for q in ("Who was the Normans' leader?", "Where is Normandy?")],
            inputs=[context, question],
        )
        bind_batched(
            pair_check, answer, [context, question], [marked, found], button, question, "answer", max_batch_size
        )
        with gr.Accordion("Run metrics", open=False):
            gr.Markdown(metrics_markdown(results, ["f1", "exact_match"]))
    demo.queue(default_concurrency_limit=workers)
    return demo


def require_both(predictor):
    """The check before a question is queued: an empty passage or question stops with a notice rather than an
    error, a passage over the task's bound with the reason."""

    def check(context: str, question: str) -> None:
        if not (context and context.strip() and question and question.strip()):
            gr.Warning("Give a passage and a question.", title="Empty input")
            raise gr.Error(visible=False, print_exception=False)
        check_input(predictor, {"question": question, "context": context})

    return check


if __name__ == "__main__":
    from toolkit.web import launch

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs/qa_squad")
