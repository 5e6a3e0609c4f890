"""The two kinds of failure a user sees: bad input (exit 2) and a numerical failure (exit 1)."""


class ConfigError(ValueError):
    """Bad config or argument.  The message is one line naming the key, the value and what is allowed."""


class NumericalError(RuntimeError):
    """The solve failed (blow-up, loss of positivity).  The message names the time, the quantity and a remedy."""
