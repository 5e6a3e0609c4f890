"""Checks only a solver can make, registered here by the solvers themselves.

A solver module exports the check of its own keys (a grid fine enough for the kernel, a scheme's name,
torch on this machine, the heads' matrices) and calls ``register`` when it is imported; ``check(cfg)``
runs every registered check, in the order of registration.  The config package imports no solver: the
simulation layer imports the solvers (and so their checks) before it checks a config
(``meanfield.load_config``).  What depends on the machine's state, memory and disk, is checked where the
run allocates, never here.
"""

from __future__ import annotations

from typing import Callable

from .schema import Config

_CHECKS: list[Callable[[Config], None]] = []


def register(check: Callable[[Config], None]) -> Callable[[Config], None]:
    """Add ``check(cfg)`` (raises ConfigError naming the key) to the checks ``check`` runs; usable as a
    decorator.  Registering the same function twice keeps one."""
    if check not in _CHECKS:
        _CHECKS.append(check)
    return check


def check(cfg: Config) -> Config:
    """Run every registered check on ``cfg`` (RuntimeError if no solver registered any: the caller forgot to
    import them); returns ``cfg``."""
    if not _CHECKS:
        raise RuntimeError("no solver has registered its config checks: import meanfield.simulation first")
    for fn in _CHECKS:
        fn(cfg)
    return cfg


def registered() -> list[str]:
    """The registered checks, as module.name (for docs and tests)."""
    return [f"{fn.__module__}.{fn.__qualname__}" for fn in _CHECKS]
