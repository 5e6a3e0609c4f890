"""The kinds of failure a user sees: bad input (exit 2), a numerical failure (exit 1), and an output
that could not be written (exit 1)."""


class ConfigError(ValueError):
    """Bad config or argument.  The message is one line naming the key, the value and what is allowed."""


class NumericalError(RuntimeError):
    """The solve failed (blow-up, loss of positivity).  The message names the time, the quantity and a remedy."""


class TrackerError(RuntimeError):
    """A user's tracker (``meanfield run --tracker``) raised.  The message names the tracker, the time and its
    error (exit 1); the history keeps what was written before, the checkpoint the last snapshot."""


class OutputError(RuntimeError):
    """Writing the history or checkpoint failed mid-run (disk full, file size limit, I/O error).  The
    message says what the history holds and how to continue."""


def first_line(exc) -> str:
    """The first line of an exception's (or a warning's) message: what a one-line report quotes of it."""
    return (str(exc).splitlines() or [""])[0]
