"""The studio's API for gradio_client: the same actions as the buttons (start, live, stop/resume/delete, runs,
predict, upload)."""

from __future__ import annotations

import gradio as gr

from toolkit.errors import ToolkitError
from toolkit.run import CONFIG_FILE
from toolkit.studio import display_path, shipped_configs

from . import StudioContext, refusal, upload_cache_file


def build(ctx: StudioContext) -> None:
    studio, cache = ctx.studio, ctx.cache

    # ----- the API (gradio_client): the same actions as the buttons -----
    def api_start(
        config: str, overrides: list[str], name: str, trials: int | None = None, budget: str | None = None
    ) -> dict:
        """Queue `toolkit train CONFIG OVERRIDES output_dir=RUNS/NAME`; with ``trials``, `toolkit sweep` of that many
        trials (``budget``: the sweep's wall time, e.g. "30m")."""
        path = shipped_configs().get(config) or config
        try:
            return studio.queue.submit(path, list(overrides or []), name, trials, budget)
        except ToolkitError as err:
            raise refusal(str(err)) from None

    def api_live(name: str) -> dict:
        studio.queue.poll()
        try:
            return studio.catalog.live(name)
        except ToolkitError as err:
            raise refusal(str(err)) from None

    def api_action(action: str, name: str, confirm: str = "") -> str:
        """stop, resume, delete (``confirm``: the run's name) or promote (a sweep's best trial to the run named
        ``confirm``)."""
        try:
            if action == "promote":
                return str(studio.catalog.promote(name, confirm).name)
            if action == "stop":
                return studio.queue.stop(name)
            if action == "resume":
                return studio.catalog.status(studio.queue.resume(name)["name"])
            if action == "delete":
                studio.catalog.delete(name, confirm)
                return "deleted"
        except ToolkitError as err:
            raise refusal(str(err)) from None
        raise refusal(f"unknown action '{action}': use stop, resume, delete or promote.")

    def api_runs() -> list[dict]:
        studio.queue.poll()
        return studio.catalog.runs()

    def api_predict(name: str, text: str) -> list:
        try:
            run_dir = studio.run_dir(name)
            if not (run_dir / CONFIG_FILE).is_file():
                raise ToolkitError(f"there is no finished run named '{name}' in {display_path(studio.root)}.")
            return cache.get(run_dir)([text])
        except ToolkitError as err:  # refused: one line for the client, no traceback in the terminal
            raise refusal(f"run '{name}': {err}") from None

    def api_upload(file: gr.FileData) -> str:
        try:
            return display_path(studio.uploads.save(upload_cache_file(file["path"]), file.get("orig_name")))
        except ToolkitError as err:
            raise refusal(str(err)) from None

    gr.api(api_start, api_name="start")
    gr.api(api_live, api_name="live")
    gr.api(api_action, api_name="action")
    gr.api(api_runs, api_name="runs")
    gr.api(api_predict, api_name="predict")
    gr.api(api_upload, api_name="upload")
