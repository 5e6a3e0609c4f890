"""Parameters that are constant on the intervals of a schedule: piecewise-constant "layers"."""

from __future__ import annotations

import numpy as np


class ParameterSchedule:
    """Parameter values on the intervals [times[k], times[k+1]) of a solve.

    ``values`` maps each name to an array; a name in ``scheduled`` carries the interval as its first axis
    (one value per layer), any other is one value for the whole solve.  The gradient of a solve has the same
    names and shapes (``zeros``).
    """

    def __init__(self, times, values: dict, scheduled=()):
        self.times = np.asarray(times, dtype=float)
        if self.times.ndim != 1 or self.times.size < 2 or np.any(np.diff(self.times) <= 0):
            raise ValueError(f"schedule times: got {self.times.tolist()}, allowed: at least two increasing times")
        self.scheduled = set(scheduled)
        self.values = {name: np.asarray(v, dtype=float) for name, v in values.items()}
        for name in self.scheduled:
            if name not in self.values or self.values[name].shape[:1] != (self.intervals,):
                shape = self.values[name].shape if name in self.values else None
                raise ValueError(f"schedule value {name!r}: got shape {shape}, allowed: a first axis of "
                                 f"{self.intervals} (one value per interval)")

    @property
    def intervals(self) -> int:
        """Number of intervals (layers)."""
        return self.times.size - 1

    def at(self, k: int) -> dict:
        """The parameters on interval k."""
        return {n: (v[k] if n in self.scheduled else v) for n, v in self.values.items()}

    def zeros(self) -> dict:
        """Zero cotangents, one per parameter, in the parameters' shapes."""
        return {n: np.zeros_like(v) for n, v in self.values.items()}

    def accumulate(self, total: dict, k: int, local: dict) -> None:
        """Add the cotangents ``local`` of interval k's parameters into ``total``."""
        for n, g in local.items():
            if n in self.scheduled:
                total[n][k] += g
            else:
                total[n] += g

    def replace(self, **values) -> "ParameterSchedule":
        """A copy with some values replaced."""
        return ParameterSchedule(self.times, {**self.values, **values}, self.scheduled)
