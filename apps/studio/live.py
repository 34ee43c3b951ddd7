"""The studio's Live tab: a run's status, step, speed, ETA and precision, its loss and validation curves, its log;
Stop and Resume."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pandas as pd

from toolkit.errors import ToolkitError

from . import POLL_SECONDS, StudioContext


def curves(records: list[dict], run: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Losses and validation metrics from metrics.jsonl records, long format (step, value, series), or None."""
    train, valid = [], []
    for r in records:
        if r.get("split") == "train":
            train += [
                {"step": r["step"], "value": v, "series": f"{run} {k}".strip()}
                for k, v in r.items()
                if k.endswith("loss") and isinstance(v, (int, float))
            ]
        elif r.get("split") == "validation":
            for k, v in r.items():
                if k not in ("step", "epoch", "time", "count") and isinstance(v, (int, float)):
                    point = {"step": r["step"], "value": v, "series": f"{run} validation {k}".strip()}
                    (train if k.endswith("loss") else valid).append(point)
    # No points: None, not an empty table (a plot first drawn from an empty table stays blank after later updates).
    return (pd.DataFrame(train) if train else None), (pd.DataFrame(valid) if valid else None)


def figure(points: pd.DataFrame | None, title: str):
    """A line per series, drawn here (matplotlib): every update is a whole new picture, so series that appear
    later (the first validation, a second run) are drawn like the others."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if points is None:
        ax.text(0.5, 0.5, "no points yet", ha="center", va="center", transform=ax.transAxes, color="grey")
    else:
        for name, group in points.groupby("series", sort=False):
            ax.plot(group["step"], group["value"], marker="o" if len(group) < 30 else None, markersize=3, label=name)
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    return fig


def figures(loss, metric) -> tuple:
    return figure(loss, "Loss"), figure(metric, "Validation metrics")


def status_text(live: dict) -> str:
    status = live["status"]
    parts = [f"**{live['name']}**: {status}"]
    if status == "queued":
        parts.append(
            f"position {live['queue_position']} in the queue: it starts when the run before it ends "
            f"(one run trains at a time)"
        )
    if live.get("total_steps"):
        parts.append(f"step {live['step']}/{live['total_steps']}")
    if live.get("samples_per_second"):
        parts.append(f"{live['samples_per_second']:.1f} samples/s")
    if live.get("eta_seconds") is not None and status == "training":
        parts.append(f"ETA {live['eta_seconds'] // 60}m{live['eta_seconds'] % 60:02d}s")
    if status in ("stopped", "interrupted"):
        parts.append("resume continues it exactly from last/")
    text = " · ".join(parts)
    precision = live.get("precision")
    if isinstance(precision, dict):
        why = f"auto: {precision['reason']}" if precision.get("requested") == "auto" else "set in the config"
        text += f"\n\nPrecision **{precision['chosen']}** ({why}) · {live.get('threads')} threads"
    return text


def build(ctx: StudioContext, demo: gr.Blocks) -> SimpleNamespace:
    studio = ctx.studio
    run_names = ctx.run_names
    with gr.Tab("Live", id="live"):
        with gr.Row():
            live_run = gr.Dropdown(label="Run", elem_id="live-run")
            stop = gr.Button("Stop", elem_id="stop")
            resume = gr.Button("Resume", elem_id="resume")
        live_status = gr.Markdown(elem_id="live-status")
        timer = gr.Timer(POLL_SECONDS)
        with gr.Row():
            loss_plot = gr.Plot(show_label=False, elem_id="loss-plot")
            metric_plot = gr.Plot(show_label=False, elem_id="metric-plot")

        log_tail = gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True, elem_id="log")

    # ----- Live -----
    def show_live(run_name):
        studio.queue.poll()
        if not run_name:
            return "Pick a run.", "", *figures(None, None)
        records = studio.catalog.metrics(run_name)
        live = studio.catalog.live(run_name, records)
        return status_text(live), live["log"], *figures(*curves(records))

    def live_choices(current):
        names = run_names()
        if current not in names:  # the newest training or queued run, else the newest one
            active = [n for n in names if studio.catalog.status(n) in ("training", "starting", "queued")]
            current = (active or names or [None])[-1]
        return gr.Dropdown(choices=names, value=current)

    def stop_run(run_name):
        try:
            gr.Info(f"{run_name}: {studio.queue.stop(run_name)}")
        except ToolkitError as err:
            gr.Warning(str(err))

    def resume_run(run_name):
        try:
            job = studio.queue.resume(run_name)
            gr.Info(f"{run_name}: {studio.catalog.status(job['name'])}")
        except ToolkitError as err:
            gr.Warning(str(err))

    live_outputs = [live_status, log_tail, loss_plot, metric_plot]
    demo.load(live_choices, live_run, live_run, api_visibility="private").then(
        show_live, live_run, live_outputs, api_visibility="private"
    )
    live_run.change(show_live, live_run, live_outputs, api_visibility="private")
    timer.tick(show_live, live_run, live_outputs, api_visibility="private", show_progress="hidden")
    stop.click(stop_run, live_run, None, api_visibility="private").then(
        show_live, live_run, live_outputs, api_visibility="private"
    )
    resume.click(resume_run, live_run, None, api_visibility="private").then(
        show_live, live_run, live_outputs, api_visibility="private"
    )
    return SimpleNamespace(run=live_run)
