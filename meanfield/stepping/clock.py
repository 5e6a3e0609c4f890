"""The run's clock: time in double-double, the step in use, the steps taken, and landing on output times.

Nothing but the clock writes these numbers.  The run loop asks it for the step to try (``step_size``)
and tells it what the scheme took (``advance``); with fixed steps the time is recomputed as
t0 + j dt from the start t0 of the current output interval and the steps j taken in it (never summed),
an interval that is not a multiple of dt (only the last, to t_end) ending with one shorter step; with
adaptive steps t accumulates in double-double arithmetic (t, t_lo), so that at t ~ 1e18 a step of 1
still counts, and a step that reaches the output time lands on it exactly.
"""

from __future__ import annotations

import math

import numpy as np

#: the clock's numbers, as a checkpoint stores them (the names are those of the HDF5 resume point)
FIELDS = ("t", "t_lo", "dt", "steps", "next_output", "t0", "j")


def fixed_step_count(span: float, dt: float) -> int:
    """Steps of at most ``dt`` that cover ``span``: a span within 1e-9 relative of a multiple of dt
    takes that many steps of dt, any other ends with one shorter step."""
    ratio = span / dt
    n = round(ratio)
    return max(1, n if abs(ratio - n) <= 1e-9 * max(ratio, 1.0) else math.ceil(ratio))


class Clock:
    """t (+ t_lo), dt (the step in use), steps (accepted), next_output (index into the output times),
    and the fixed-step position (t0, j).  ``fixed_dt`` is time.dt, the step of fixed-step phases."""

    def __init__(self, dt: float, fixed_dt: float | None = None):
        self.t, self.t_lo, self.dt, self.steps = 0.0, 0.0, float(dt), 0
        self.next_output, self.t0, self.j = 0, 0.0, 0
        self.fixed_dt = float(dt if fixed_dt is None else fixed_dt)

    def remaining(self, t_stop: float) -> float:
        """t_stop - t, in double-double."""
        return (t_stop - self.t) - self.t_lo

    def step_size(self, t_stop: float, adaptive: bool) -> float:
        """The step to try next, not past ``t_stop``."""
        if adaptive:
            return min(self.dt, self.remaining(t_stop))
        n = fixed_step_count(t_stop - self.t0, self.fixed_dt)
        return (t_stop - self.t0) - (n - 1) * self.fixed_dt if self.j == n - 1 else self.fixed_dt

    def advance(self, t_stop: float, h: float, taken: float, proposed: float, adaptive: bool) -> None:
        """Count an accepted step: ``h`` was tried, ``taken`` taken, ``proposed`` is the scheme's next step."""
        self.steps += 1
        if not adaptive:
            self.j += 1
            n = fixed_step_count(t_stop - self.t0, self.fixed_dt)
            self.t = t_stop if self.j >= n else self.t0 + self.j * self.fixed_dt
            return
        remaining = self.remaining(t_stop)
        # a step shortened only to land on an output time says nothing against the current dt
        self.dt = max(proposed, self.dt) if (h < self.dt and taken == h) else proposed
        if taken == h == remaining:  # landed (a relative tolerance on t would skip dynamics at t ~ 1e18)
            self.t, self.t_lo = t_stop, 0.0
        else:
            self._add(taken)

    def _add(self, h: float) -> None:
        """t += h in double-double arithmetic (t, t_lo)."""
        s = self.t + h
        bp = s - self.t
        err = (self.t - (s - bp)) + (h - bp) + self.t_lo
        self.t = s + err
        self.t_lo = err - (self.t - s)

    def output_reached(self) -> None:
        """The run is at its next output time: count it, and start the next interval there."""
        self.next_output += 1
        self.t0, self.j = self.t, 0

    def reschedule(self, times: np.ndarray) -> None:
        """Continue on the output times ``times`` (a run extended to a later t_end): the next output is the
        first after t, and a new interval starts here."""
        self.next_output = int(np.searchsorted(times, self.t * (1 + 1e-12) + 1e-300, side="right"))
        self.t0, self.j = self.t, 0

    def state(self) -> dict:
        """The clock's numbers (``FIELDS``)."""
        return {name: getattr(self, name) for name in FIELDS}

    def load(self, numbers: dict) -> None:
        """Set the clock from ``state()``'s numbers (a checkpoint's)."""
        self.t, self.t_lo = float(numbers["t"]), float(numbers.get("t_lo", 0.0))
        self.dt, self.steps = float(numbers["dt"]), int(numbers["steps"])
        self.next_output, self.t0, self.j = int(numbers["next_output"]), float(numbers["t0"]), int(numbers["j"])
