"""Hugging Face hub access that fails in seconds, with a fix, when the hub cannot be reached."""

from __future__ import annotations

import contextlib
import os
import socket
from urllib.parse import urlparse

from .errors import ToolkitError


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub endpoint instead of huggingface_hub's ~46 s retry loop."""
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True  # the proxy decides; let the real request answer
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_guard(repo_id: str, repo_type: str = "model"):
    """Run a hub load; turn "cannot reach the hub" into one clear ToolkitError, fast.

    A local folder skips the hub check; if it cannot be loaded, the error says what it lacks.
    """
    kind = "dataset" if repo_type == "dataset" else "model"
    if os.path.isdir(repo_id):
        try:
            yield
        except (OSError, ValueError) as err:
            raise ToolkitError(f"folder '{repo_id}' could not be loaded as a {kind}: {err}") from err
        return
    fix = (
        f"Give a local folder or file instead, or download it on a machine with internet "
        f"(`hf download {repo_id}{' --repo-type dataset' if kind == 'dataset' else ''}`) and set HF_HUB_OFFLINE=1."
    )
    if not hub_offline() and not hub_reachable():
        raise ToolkitError(
            f"cannot load {kind} '{repo_id}': it is not a local path and the Hugging Face hub is unreachable. "
            f"If it is in your hub cache, set HF_HUB_OFFLINE=1. {fix}"
        )
    try:
        yield
    except (OSError, ValueError) as err:
        if hub_offline():
            raise ToolkitError(
                f"cannot load {kind} '{repo_id}': it is not a local path or cached, and HF_HUB_OFFLINE=1 is set. {fix}"
            ) from err
        raise ToolkitError(
            f"cannot load {kind} '{repo_id}' from the hub: {err}. Check the id, or give a local folder or file."
        ) from err
