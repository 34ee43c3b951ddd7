"""The studio's Try tab (a finished run's own app) and Evaluate tab (scores of a finished run on uploaded data)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from toolkit.errors import ToolkitError
from toolkit.run import read_run_config
from toolkit.studio.uploads import upload_cache_file
from toolkit.tasks import get_task

from .context import StudioContext, refusal


def build(ctx: StudioContext, demo: gr.Blocks) -> SimpleNamespace:
    studio, cache, run_names = ctx.studio, ctx.cache, ctx.run_names
    with gr.Tab("Try", id="try"):
        try_run = gr.Dropdown(label="A finished run", elem_id="try-run")

        @gr.render(inputs=try_run)
        def try_panel(name):
            if not name:
                gr.Markdown("Pick a finished run: its app appears here (models load on first use).")
                return
            run_dir = studio.run_dir(name)
            get_task(read_run_config(run_dir).task).build_app(run_dir, predictor=cache.get(run_dir))

    with gr.Tab("Evaluate", id="evaluate"):
        with gr.Row():
            eval_run = gr.Dropdown(label="A finished run", elem_id="eval-run")
            eval_file = gr.File(
                label="Data to score (the run's format: CSV/JSONL/Parquet or a zip of class folders)",
                height=90,
                elem_id="eval-file",
            )
        evaluate = gr.Button("Evaluate", variant="primary", elem_id="evaluate")
        eval_metrics = gr.Dataframe(label="Metrics", interactive=False, elem_id="eval-metrics")
        confusion = gr.Dataframe(
            label="Confusion matrix (rows: true label, columns: predicted)",
            interactive=False,
            visible=False,
            elem_id="confusion",
        )
        worst = gr.Dataframe(
            label="Most confidently wrong (classifiers)",
            interactive=False,
            visible=False,
            wrap=True,
            elem_id="worst-errors",
        )

    # ----- Try and Evaluate -----
    def finished_choices(current, shown):
        """The finished runs, sent only when they changed: re-sending the same choices re-renders the open list
        under the user's pointer (its options detach as they are clicked)."""
        names = run_names(("finished",))
        if names == shown:
            return gr.update(), shown
        return gr.Dropdown(choices=names, value=current if current in names else None), names

    for dropdown in (try_run, eval_run):
        shown = gr.State(None)  # the choices this page's dropdown holds
        dropdown.focus(finished_choices, [dropdown, shown], [dropdown, shown], api_visibility="private")
        demo.load(finished_choices, [dropdown, shown], [dropdown, shown], api_visibility="private")

    def evaluate_run(run_name, uploaded):
        if not run_name or not uploaded:
            raise refusal("Pick a finished run and upload data to score.")
        try:
            metrics, labels = score(
                run_name, str(studio.uploads.save(upload_cache_file(uploaded), Path(uploaded).name))
            )
        except ToolkitError as err:
            raise refusal(str(err)) from None
        rows = [
            {"metric": k, "value": round(v, 4)}
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        errors = (metrics.get("errors") or {}).get("worst_errors")
        shown = (
            gr.Dataframe(pd.DataFrame(errors)[["input", "label", "predicted", "confidence"]], visible=True)
            if errors
            else gr.Dataframe(visible=False)
        )
        matrix = metrics.get("confusion_matrix")
        if matrix and labels:
            frame = pd.DataFrame(matrix, columns=labels)
            frame.insert(0, "true label", labels)
            return pd.DataFrame(rows), gr.Dataframe(frame, visible=True), shown
        return pd.DataFrame(rows), gr.Dataframe(visible=False), shown

    def score(run_name, data):
        from toolkit.api import evaluate

        run_dir = studio.run_dir(run_name)
        predictor = cache.get(run_dir)
        return evaluate(run_dir, data=data, predictor=predictor), list(getattr(predictor, "labels", []) or [])

    evaluate.click(evaluate_run, [eval_run, eval_file], [eval_metrics, confusion, worst], api_visibility="private")
    return SimpleNamespace(try_run=try_run, eval_run=eval_run)
