"""``python -m toolkit`` (and ``accelerate launch -m toolkit``) runs the CLI."""

from .cli import run

run()
