"""``toolkit push RUN REPO_ID``: a run's best/ to the Hugging Face Hub, with a model card carrying its results.

The repository holds best/ as stock transformers/timm load it (``from_pretrained("REPO_ID")``), the card (README.md:
model-index results for the run's validation and test sets), and the run's config as ``toolkit.yaml`` with its
``results.json``, so that ``toolkit.load("REPO_ID")`` and ``toolkit predict REPO_ID`` load it as a run. Uploads go
through huggingface_hub (``HfApi.upload_folder``) with its own token and endpoint settings (``HF_TOKEN``,
``hf auth login``, ``HF_ENDPOINT``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

from .errors import ToolkitError
from .run import PUSHED_CONFIG

LEFT_OUT = ("state.json",)  # best/'s training counters: nothing a user of the model needs


def push(
    run_dir: Union[str, Path],
    repo_id: str,
    private: bool = False,
    onnx: bool = False,
    token: Optional[str] = None,
) -> str:
    """Upload the run's best/ to ``repo_id`` (created if needed); return the commit's URL. ``onnx``: include the
    checkpoint's ONNX export, writing it first if the run has none."""
    run_dir = Path(run_dir)
    check_repo_id(repo_id)
    from .run import read_run_config

    read_run_config(run_dir)  # a run folder, or one clear error
    if not (run_dir / "best").is_dir():
        raise ToolkitError(f"run '{run_dir}' has no best/ checkpoint: train it to the end first.")
    token = check_hub_access(token)
    if onnx:
        ensure_export(run_dir)
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        staged = stage(run_dir, repo_id, Path(tmp) / "repo", onnx=onnx)
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=staged,
            commit_message=f"toolkit push: {run_dir.name}",
            delete_patterns=["*.safetensors", "*.bin", "onnx/*"],  # weights of an earlier push that this one replaces
        )
    return getattr(commit, "commit_url", None) or str(url)


def check_repo_id(repo_id: str) -> None:
    if not re.fullmatch(r"[\w.-]+/[\w.-]+|[\w.-]+", repo_id or ""):
        raise ToolkitError(f"'{repo_id}' is not a Hub repository id: use NAME or OWNER/NAME (letters, digits, - _ .).")


def check_hub_access(token: Optional[str]) -> str:
    """The token to push with, or one clear error in about a second: no token, offline, or the Hub unreachable."""
    from huggingface_hub import get_token

    from .hub import hub_offline, hub_reachable

    token = token or get_token()
    if not token:
        raise ToolkitError(
            "no Hugging Face token: log in with `hf auth login`, or set HF_TOKEN to a token with write access "
            "(https://huggingface.co/settings/tokens)."
        )
    if hub_offline():
        raise ToolkitError("cannot push: HF_HUB_OFFLINE=1 is set. Unset it on a machine that reaches the Hub.")
    if not hub_reachable():
        raise ToolkitError(
            "cannot push: the Hugging Face Hub is unreachable from this machine (no network, or HF_ENDPOINT is "
            "wrong). Push from a machine with internet access."
        )
    return token


def ensure_export(run_dir: Path) -> None:
    from .predictor import read_export

    if read_export(run_dir / "best") is None:
        from .export import export_run

        export_run(run_dir, "best")


def stage(run_dir: Path, repo_id: str, dest: Path, onnx: bool = False) -> Path:
    """What the repository will hold, in ``dest``: best/ (its ONNX export only with ``onnx``), the Hub's card, the
    run's config and results."""
    from .export import EXPORT_DIR

    left_out = list(LEFT_OUT) + ([] if onnx else [EXPORT_DIR])
    shutil.copytree(run_dir / "best", dest, ignore=shutil.ignore_patterns(*left_out))
    shutil.copy2(run_dir / "config.yaml", dest / PUSHED_CONFIG)
    if (run_dir / "results.json").is_file():
        shutil.copy2(run_dir / "results.json", dest / "results.json")
    (dest / "README.md").write_text(hub_card(run_dir, repo_id))
    return dest


def hub_card(run_dir: Path, repo_id: str) -> str:
    """The run's model card, its usage loading the pushed copy by ``repo_id``."""
    from .run import model_card, read_results, read_run_config
    from .tasks import get_task

    cfg = read_run_config(run_dir)
    results = read_results(run_dir)
    return model_card(run_dir, cfg, results, training_command(run_dir), get_task(cfg.task), repo_id=repo_id)


def training_command(run_dir: Path) -> str:
    """The command that trained the run, as its card recorded it."""
    card = run_dir / "README.md"
    found = re.search(r"## Reproduce\n```\n(.*?)\n```", card.read_text()) if card.is_file() else None
    return found.group(1) if found else f"toolkit train {run_dir / 'config.yaml'}"
