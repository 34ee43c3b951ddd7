"""The one exception type users see: a problem with their input, and how to fix it."""


class ToolkitError(Exception):
    """A user-facing error: the message names the problem and the fix.

    The CLI prints it without a traceback and exits non-zero.
    """
