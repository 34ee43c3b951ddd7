"""The studio's Runs tab: every run with its status, a comparison of chosen runs' curves and metrics, the model
card, best/ as a zip, and delete (typing the run's name). A sweep's trials are listed as runs ('<sweep>/trial-NNN')
under their sweep; a sweep gets Optuna's parallel-coordinates plot of its trials and a Promote button that copies its
best trial to a run of its own."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pandas as pd

from toolkit.errors import ToolkitError
from toolkit.run import read_results, read_run_config
from toolkit.studio import Studio

from .context import StudioContext
from .live import curves, figure, figures, trials_table


def compare_runs(studio: Studio, chosen_runs) -> tuple:
    """The chosen runs' curves, one series per run and quantity, and their final metrics."""
    losses, metrics, rows = [], [], []
    for run_name in chosen_runs or []:
        loss, metric = curves(studio.catalog.metrics(run_name), run_name)
        losses.append(loss)
        metrics.append(metric)
        scores = read_results(studio.run_dir(run_name))
        row = {"run": run_name, "task": read_run_config(studio.run_dir(run_name)).task, "steps": scores.get("steps")}
        for split in ("validation", "test"):
            for key, value in (scores.get(split) or {}).items():
                if isinstance(value, (int, float)) and key != "count":
                    row[f"{split} {key}"] = round(value, 4)
        rows.append(row)
    losses, metrics = [f for f in losses if f is not None], [f for f in metrics if f is not None]
    return (
        pd.concat(losses, ignore_index=True) if losses else None,
        pd.concat(metrics, ignore_index=True) if metrics else None,
        pd.DataFrame(rows),
    )


def sweep_figure(studio: Studio, name: str, progress: dict):
    """Optuna's parallel-coordinates plot of the sweep's completed trials (settings against the metric);
    ``progress``: the catalog's sweep_progress."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import optuna

    from toolkit.sweeps import finished_study, read_state

    study = finished_study(read_state(studio.run_dir(name)) or {}, progress["trials"])
    if len(study.trials) < 2:
        return figure(None, "Trials: a plot once two have finished")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = optuna.visualization.matplotlib.plot_parallel_coordinate(study, target_name=progress["metric"])
    fig = axes.get_figure()
    fig.set_size_inches(10, 4.5)
    fig.tight_layout()  # the rotated setting names under the axes stay inside the picture
    return fig


def layout(runs_table: pd.DataFrame) -> SimpleNamespace:
    """The tab's widgets, in page order."""
    w = SimpleNamespace()
    w.table = gr.Dataframe(runs_table, label="Runs", interactive=False, elem_id="runs-table")
    w.refresh = gr.Button("Refresh", size="sm", elem_id="runs-refresh")
    w.compare = gr.Dropdown(label="Compare runs", multiselect=True, elem_id="compare")
    with gr.Row():
        w.compare_loss = gr.Plot(show_label=False, elem_id="compare-loss")
        w.compare_metric = gr.Plot(show_label=False, elem_id="compare-metric")

    w.compare_table = gr.Dataframe(label="Final metrics", interactive=False, elem_id="compare-table")
    with gr.Row():
        w.chosen = gr.Dropdown(label="Run", elem_id="chosen-run")
        w.download = gr.Button("Download best/ as zip", size="sm")
        w.confirm = gr.Textbox(label="Type the run's name to delete it", elem_id="delete-confirm")
        w.delete = gr.Button("Delete run", variant="stop", size="sm", elem_id="delete")
    w.zip_file = gr.File(label="best/ zip", visible=False)
    w.delete_message = gr.Markdown()
    with gr.Row():
        w.repo_id = gr.Textbox(label="Push best/ to the Hugging Face Hub as OWNER/NAME", elem_id="push-repo")
        w.private = gr.Checkbox(label="private", value=True, elem_id="push-private")
        w.push = gr.Button("Push to the Hub", size="sm", elem_id="push")
    w.push_message = gr.Markdown(elem_id="push-message")
    w.card = gr.Markdown(elem_id="model-card")
    gr.Markdown("### Sweeps")
    with gr.Row():
        w.sweep = gr.Dropdown(label="Sweep", elem_id="sweep-pick")
        w.promote_name = gr.Textbox(label="Promote its best trial to a run named", elem_id="promote-name")
        w.promote = gr.Button("Promote best trial", size="sm", elem_id="promote")
    w.promote_message = gr.Markdown(elem_id="promote-message")
    w.sweep_plot = gr.Plot(show_label=False, elem_id="sweep-plot")
    w.sweep_table = gr.Dataframe(label="Trials", interactive=False, elem_id="sweep-trials")
    return w


def build(ctx: StudioContext, demo: gr.Blocks) -> SimpleNamespace:
    studio, downloads = ctx.studio, ctx.downloads
    run_names, runs_table = ctx.run_names, ctx.runs_table
    with gr.Tab("Runs", id="runs"):
        w = layout(runs_table())

    # ----- Runs -----
    def refresh_runs(current_compare, current_chosen, current_sweep):
        names = run_names()
        sweeps = [n for n in names if studio.catalog.is_sweep(n)]
        return (
            runs_table(),
            gr.Dropdown(choices=names, value=[n for n in current_compare or [] if n in names]),
            gr.Dropdown(choices=names, value=current_chosen if current_chosen in names else None),
            gr.Dropdown(choices=sweeps, value=current_sweep if current_sweep in sweeps else None),
        )

    def show_sweep(name):
        if not name:
            return figure(None, "Pick a sweep"), None
        progress = studio.catalog.sweep_progress(name)
        return sweep_figure(studio, name, progress), trials_table(progress["trials"])

    def promote_best(name, new_name):
        try:
            if not name:
                raise ToolkitError("pick a sweep first.")
            folder = studio.catalog.promote(name, (new_name or "").strip())
        except ToolkitError as err:
            return f"⚠️ {err}", gr.update()
        return f"Promoted the best trial of **{name}** to the run **{folder.name}**.", runs_table()

    def show_card(run_name):
        return studio.catalog.model_card(run_name) if run_name else ""

    def zip_best(run_name):
        try:
            return gr.File(str(studio.catalog.best_zip(run_name, downloads)), visible=True)
        except ToolkitError as err:
            gr.Warning(str(err))
            return gr.File(visible=False)

    def push_run(run_name, repo_id, private):
        try:
            if not run_name or not (repo_id or "").strip():
                raise ToolkitError("pick a run and name the repository (OWNER/NAME).")
            url = studio.catalog.push(run_name, repo_id, private)
        except ToolkitError as err:
            return f"⚠️ {err}"
        return f"Pushed **{run_name}** to [{repo_id}]({url})."

    def delete_run(run_name, typed):
        try:
            studio.catalog.delete(run_name, typed)
        except ToolkitError as err:
            return f"⚠️ {err}", gr.update(), gr.update()
        return f"Deleted **{run_name}**.", runs_table(), ""

    listing = [w.table, w.compare, w.chosen, w.sweep]
    w.refresh.click(refresh_runs, [w.compare, w.chosen, w.sweep], listing, api_visibility="private")
    demo.load(refresh_runs, [w.compare, w.chosen, w.sweep], listing, api_visibility="private")
    w.sweep.change(show_sweep, w.sweep, [w.sweep_plot, w.sweep_table], api_visibility="private")
    w.promote.click(
        promote_best, [w.sweep, w.promote_name], [w.promote_message, w.table], api_visibility="private"
    ).then(refresh_runs, [w.compare, w.chosen, w.sweep], listing, api_visibility="private")

    def show_comparison(names):
        loss, metric, table = compare_runs(studio, names)
        return (*figures(loss, metric), table)

    w.compare.change(
        show_comparison, w.compare, [w.compare_loss, w.compare_metric, w.compare_table], api_visibility="private"
    )
    w.chosen.change(show_card, w.chosen, w.card, api_visibility="private")
    w.download.click(zip_best, w.chosen, w.zip_file, api_visibility="private")
    w.push.click(push_run, [w.chosen, w.repo_id, w.private], w.push_message, api_visibility="private")
    w.delete.click(
        delete_run, [w.chosen, w.confirm], [w.delete_message, w.table, w.confirm], api_visibility="private"
    ).then(refresh_runs, [w.compare, w.chosen, w.sweep], listing, api_visibility="private")
    return SimpleNamespace(table=w.table)
