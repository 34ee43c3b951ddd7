"""Connecting to a running Ray cluster that wants Ray's authentication token."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def send_token_if_any() -> None:
    """Ray (2.60) turns token authentication on for a cluster it starts where a token exists (``~/.ray/auth_token``,
    ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``; any local ``ray.init()`` writes the first), but a client that
    connects to an address sends no token unless ``RAY_AUTH_MODE=token``: it then cannot connect at all. Set that
    mode when a token exists and the user chose none; a cluster without authentication accepts such a client too."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or path.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray" in sys.modules:  # Ray reads its settings when imported: have it read them again
            from ray._raylet import Config

            Config.initialize("")
