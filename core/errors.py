"""UserError: a problem with the user's input, reported as one clear line naming the input and the fix."""


class UserError(Exception):
    """Bad input or an impossible request. The CLI prints the message (no traceback) and exits with status 2.

    Messages name the offending file or value and say what to do, e.g.
    ``images/tom_07.png: not an image (cannot identify image file); remove it or replace it``.
    """


class JobFailed(Exception):
    """A command failed for a reason that is not the user's input (a bug, a full disk, a crash inside a library).

    The message is one line (the reason, where the traceback was saved, how to continue); the CLI prints it and
    exits with status 1. `__cause__` holds the original exception (its traceback is printed with `--debug`).
    """
