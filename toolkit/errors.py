"""The one exception type users see: a problem with their input, and how to fix it."""


class ToolkitError(Exception):
    """A user-facing error: the message names the problem and the fix.

    The CLI prints it without a traceback and exits non-zero.
    """


class TrainingStopped(Exception):
    """Training stopped on request (Ctrl+C, SIGTERM) after saving last/: not an error, and resumable exactly."""

    def __init__(self, run_dir, step: int):
        self.run_dir, self.step = run_dir, step
        super().__init__(
            f"stopped at step {step}; {run_dir}/last holds it. Continue exactly with: toolkit train --resume {run_dir}"
        )
