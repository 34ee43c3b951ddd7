"""A finished run as an MLflow model: ``toolkit export RUN --mlflow`` logs best/ (with its config, results and card)
as an ``mlflow.pyfunc`` model, so that ``mlflow.pyfunc.load_model(uri).predict(inputs)`` answers what
``toolkit predict`` answers: the same predictor (toolkit/predictor.py) loads inside MLflow.

The model goes into the run's own MLflow run when it logged to MLflow (trackers.json), else into a new run of the
task's experiment. Where it loads, toolkit must be installed (as for `toolkit serve`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

from .errors import ToolkitError

MODEL_NAME = "model"
# What the model carries of the run folder: enough for load_predictor, not the optimizer state of last/.
CARRIED = ("best", "config.yaml", "results.json", "README.md")


def _python_model_class():
    import mlflow.pyfunc

    class ToolkitModel(mlflow.pyfunc.PythonModel):
        """The run's predictor inside MLflow: a list of inputs (or a DataFrame: one column of inputs, or one
        column per field, such as question and context) in, one answer per input out."""

        def load_context(self, context):
            from toolkit.predictor import load_predictor

            self.predictor = load_predictor(context.artifacts["run"])

        def predict(self, context, model_input, params=None):
            return self.predictor(as_inputs(model_input), **(params or {}))

    return ToolkitModel


def as_inputs(model_input) -> list:
    """What MLflow hands a pyfunc model, as the predictor's list of inputs."""
    if hasattr(model_input, "to_dict") and hasattr(model_input, "columns"):  # a pandas DataFrame
        if len(model_input.columns) == 1:
            return list(model_input.iloc[:, 0])
        return model_input.to_dict("records")
    if isinstance(model_input, (str, bytes, dict)):
        return [model_input]
    return list(model_input)


def log_run_model(run_dir: Union[str, Path], register: Optional[str] = None) -> str:
    """Log the run's best/ as an MLflow model; return its ``runs:/<id>/model`` URI."""
    from . import tracking
    from .run import read_run_config

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if not (run_dir / "best").is_dir():
        raise ToolkitError(f"run '{run_dir}' has no best/ checkpoint: train it to the end first.")
    if tracking.missing(["mlflow"]):
        raise ToolkitError("--mlflow needs MLflow: pip install mlflow (or pip install 'toolkit[tracking]').")
    import mlflow

    try:
        tracking.probe(mlflow.get_tracking_uri())
    except tracking.TrackerUnavailable as err:
        raise ToolkitError(f"{err}. Start it, or point MLFLOW_TRACKING_URI at one that answers.") from None
    state = tracking.read_state(run_dir)
    logged = state.get("mlflow", {})
    # The run's own MLflow run, where it logged to this same server; else a new run.
    run_id = logged.get("run_id") if logged.get("tracking_uri") == mlflow.get_tracking_uri() else None
    with tempfile.TemporaryDirectory() as tmp:
        carried = Path(tmp) / run_dir.name
        carried.mkdir()
        for name in CARRIED:
            source = run_dir / name
            if source.is_dir():
                shutil.copytree(source, carried / name)
            elif source.is_file():
                shutil.copy2(source, carried / name)
        if run_id is None:
            mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or tracking.project_name(cfg.task))
        with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_dir.name) as active:
            mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=_python_model_class()(),
                artifacts={"run": str(carried)},
                pip_requirements=requirements(),
                registered_model_name=register,
            )
            run_id = active.info.run_id
    uri = f"runs:/{run_id}/{MODEL_NAME}"
    state["mlflow"] = {**logged, "run_id": run_id, "model_uri": uri, "tracking_uri": mlflow.get_tracking_uri()}
    tracking.write_state(run_dir, state)
    return uri


def requirements() -> list[str]:
    """The model's environment: toolkit at this version (which brings torch, transformers and the rest)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return [f"toolkit=={version('toolkit')}"]
    except PackageNotFoundError:
        return ["toolkit"]
