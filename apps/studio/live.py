"""The studio's Live tab: a run's status, step, speed, ETA and precision, its loss and validation curves, its log;
Stop and Resume. A sweep: its trials as they run (settings, metric, state, steps) and every trial's curves."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pandas as pd

from toolkit.errors import ToolkitError
from toolkit.studio.paths import format_seconds

from .context import POLL_SECONDS, StudioContext


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


def sweep_text(live: dict) -> str:
    """A sweep's line: status, trials done of how many, time spent of the budget, the best trial so far."""
    sweep = live["sweep"]
    parts = [f"**{live['name']}** (sweep): {live['status']}", f"{sweep['done']} of {sweep['of'] or '?'} trials done"]
    running = [r for r in sweep["trials"] if r.get("state") == "running"]
    if running:
        parts.append(f"trial {running[0]['trial']} at step {running[0].get('steps')}")
    if sweep.get("spent_seconds"):
        budget, spent = sweep.get("budget_seconds"), format_seconds(sweep["spent_seconds"])
        parts.append(f"{spent} of {format_seconds(budget)}" if budget else f"{spent} spent")
    best, metric = sweep["best"], sweep["metric"]
    if best is not None:
        parts.append(f"best so far: trial {best['trial']}, validation {metric} {best[metric]:.4f}")
    return " · ".join(parts)


def trials_table(rows: list[dict]) -> pd.DataFrame:
    """The trials as a table: numbers shown short, the folder column left out (the trial number says it)."""
    table = pd.DataFrame([{k: v for k, v in row.items() if k != "folder"} for row in rows])
    return table.map(lambda v: float(f"{v:.4g}") if isinstance(v, float) else v) if not table.empty else table


def sweep_curves(studio, name: str, rows: list[dict]) -> tuple:
    """Every trial's loss and validation curves, one series per trial."""
    losses, metrics = [], []
    for row in rows:
        if isinstance(row.get("folder"), str):
            loss, metric = curves(studio.catalog.metrics(f"{name}/{row['folder']}"), f"trial {row['trial']}")
            losses += [loss] if loss is not None else []
            metrics += [metric] if metric is not None else []
    return (
        pd.concat(losses, ignore_index=True) if losses else None,
        pd.concat(metrics, ignore_index=True) if metrics else None,
    )


def build(ctx: StudioContext, demo: gr.Blocks) -> SimpleNamespace:
    studio = ctx.studio
    run_names = ctx.run_names
    with gr.Tab("Live", id="live"):
        with gr.Row():
            live_run = gr.Dropdown(label="Run", elem_id="live-run")
            stop = gr.Button("Stop", elem_id="stop")
            resume = gr.Button("Resume", elem_id="resume")
        live_status = gr.Markdown(elem_id="live-status")
        live_trials = gr.Dataframe(label="Trials", interactive=False, visible=False, elem_id="live-trials")
        timer = gr.Timer(POLL_SECONDS)
        with gr.Row():
            loss_plot = gr.Plot(show_label=False, elem_id="loss-plot")
            metric_plot = gr.Plot(show_label=False, elem_id="metric-plot")

        log_tail = gr.Textbox(label="Log", lines=10, max_lines=10, autoscroll=True, elem_id="log")

    # ----- Live -----
    def show_live(run_name):
        studio.queue.poll()
        if not run_name:
            return "Pick a run.", gr.update(visible=False), "", *figures(None, None)
        records = studio.catalog.metrics(run_name)
        live = studio.catalog.live(run_name, records)
        if "sweep" in live:
            rows = live["sweep"]["trials"]
            table = gr.update(value=trials_table(rows), visible=True)
            return sweep_text(live), table, live["log"], *figures(*sweep_curves(studio, run_name, rows))
        return status_text(live), gr.update(visible=False), live["log"], *figures(*curves(records))

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

    live_outputs = [live_status, live_trials, log_tail, loss_plot, metric_plot]
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
