"""``python -m toolkit`` (and ``accelerate launch -m toolkit``) runs the CLI."""

import sys

from .cli import main

sys.exit(main())
