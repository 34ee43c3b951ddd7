"""toolkit: transfer learning on one Accelerate engine.

Notebook use::

    import toolkit
    run = toolkit.train("recipes/configs/sentiment_minilm.yaml", epochs=1)
    predict = toolkit.load(run.dir)
    predict("a gripping, beautifully shot film")
"""

from .errors import ToolkitError
from .tasks import TaskSpec, all_tasks, get_task
from .tasks import register as register_task

__all__ = [
    "ToolkitError",
    "TaskSpec",
    "register_task",
    "get_task",
    "all_tasks",
    "train",
    "check",
    "resume",
    "load",
    "evaluate",
    "results",
    "sweep",
    "push",
]


def __getattr__(name: str):
    # Heavy imports (torch, transformers) wait until a function is used: importing toolkit stays instant.
    if name in ("train", "check", "resume", "load", "evaluate", "results", "sweep"):
        from . import api

        return getattr(api, name)
    if name == "push":  # toolkit.push(run_dir, "OWNER/NAME", private=False, onnx=False, token=None)
        from .push import push

        return push
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
