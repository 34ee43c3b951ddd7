"""The studio's API for gradio_client: the same actions as the buttons (start, live, stop/resume/delete, runs,
predict, upload)."""

from __future__ import annotations

import gradio as gr

from toolkit.errors import ToolkitError
from toolkit.run import CONFIG_FILE
from toolkit.studio.paths import display_path, shipped_configs
from toolkit.studio.uploads import upload_cache_file

from .context import StudioContext, refusal


class ApiBlocks(gr.Blocks):
    """gr.Blocks whose API endpoints take raw calls (POST /gradio_api/call/NAME) as gradio_client's: values left off
    the end take their parameters' defaults, as the API page documents them. Too few values, or a value of the
    wrong type, is a refusal the client reads, instead of Gradio's {"error": null} and a traceback in the log."""

    def validate_inputs(self, block_fn, inputs: list) -> None:
        from gradio.components.api_component import Api

        if block_fn.fn is not None and block_fn.inputs and all(isinstance(c, Api) for c in block_fn.inputs):
            complete_call(block_fn.fn, block_fn.api_name, inputs)
        super().validate_inputs(block_fn, inputs)


def complete_call(fn, api_name: str, values: list) -> None:
    """Add the defaults of ``fn``'s parameters that ``values`` (a call's, in order) leaves off; refuse too few
    values, or one that does not fit its parameter's type."""
    import inspect
    import typing

    params = list(inspect.signature(fn).parameters.values())
    required = [p for p in params if p.default is inspect.Parameter.empty]
    if len(values) < len(required):
        names = ", ".join(p.name if p in required else f"[{p.name}]" for p in params)
        raise refusal(f"/{api_name} takes {names}: {len(values)} value(s) given, {len(required)} needed.")
    values.extend(p.default for p in params[len(values) :])
    hints = typing.get_type_hints(fn)
    for param, value in zip(params, values):
        hint = hints.get(param.name)
        if not fits(value, hint):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."  # one short log line
            raise refusal(f"/{api_name}: {param.name} must be {type_name(hint)}, not {shown}.")


def fits(value, hint) -> bool:
    """Whether a JSON value fits a type hint: str, int, float, bool, dict, list[...] and unions are checked; other
    hints (gr.FileData) are left to the endpoint."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is list or hint is list:
        return isinstance(value, list) and all(fits(item, args[0]) for item in value if args)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, bool, dict):
        return isinstance(value, hint)
    return True


def type_name(hint) -> str:
    """``list[str]``, ``int | None``, ``str``: as the hint is written."""
    return hint.__name__ if isinstance(hint, type) else str(hint)


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
