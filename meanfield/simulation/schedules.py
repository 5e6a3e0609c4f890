"""When things happen in a run: the output times the run lands on, and the schedules trackers act on.

The run steps to every output time exactly (``output_times``) and offers each tracker every accepted step
and every snapshot; a tracker's ``schedule`` says at which of those it acts:

    EverySnapshot(k)        every k-th snapshot (k = 1: each)
    EverySteps(n)           after every n-th step
    EveryTime(dt)           at the first step at or after each multiple of dt (no landing: steps are not cut)
    LogTime(t0, per_decade) at the first step past each time of a geometric grid from t0
    EveryWall(seconds)      after the first step once ``seconds`` of wall-clock time have passed since it acted
    Never()                 never (a tracker switched off)
    AnyOf(a, b, ...)        whenever one of them is due
"""

from __future__ import annotations

import math
import time as _time

import numpy as np


def output_times(cfg) -> np.ndarray:
    """Snapshot times of a run::

        linear: 0, interval, 2 interval, ... <= t_end, and t_end.
        log:    0, interval, then t_{k+1} = max(t_k + interval, t_k 10^(1/per_decade)) up to t_end: linear
                while that is denser, geometric after (per_decade snapshots per decade of time).

    With fixed steps every time is a multiple of time.dt.  The end of every [schedule] layer is a snapshot too
    (the run stops there to change its parameters)."""
    times = _spaced_times(cfg)
    ends = [t for t in cfg.schedule.times if t < cfg.time.t_end]
    if not ends:
        return times
    times = np.union1d(times, ends)
    keep = np.r_[True, np.diff(times) > 1e-12 * np.maximum(times[1:], 1.0)]  # a layer's end already a snapshot
    return times[keep]


def _spaced_times(cfg) -> np.ndarray:
    t_end, interval, o = cfg.time.t_end, cfg.output.interval, cfg.output
    if o.spacing == "linear":
        n = int(math.floor(t_end / interval * (1 + 1e-12)))
        times = interval * np.arange(n + 1)
        if t_end - times[-1] > 1e-9 * t_end:
            return np.append(times, t_end)
        times[-1] = t_end
        return times
    ratio = 10.0 ** (1.0 / o.per_decade)
    times, t = [0.0], interval
    while t < t_end * (1 - 1e-12):
        times.append(t)
        t = max(t + interval, t * ratio)
    times = np.array(times + [t_end])
    if not cfg.time.adaptive:
        dt = cfg.time.dt
        times[1:-1] = np.round(times[1:-1] / dt) * dt
        times = times[np.r_[True, np.diff(times) > 0.5 * dt]]
        times[-1] = t_end
    return times


class Schedule:
    """When a tracker acts: ``due(event, sim)`` for event "step" (after an accepted step) or "snapshot"."""

    def due(self, event: str, sim) -> bool:  # pragma: no cover - interface
        """Whether the tracker acts at this event."""
        raise NotImplementedError


class EverySnapshot(Schedule):
    """Every ``every``-th snapshot."""

    def __init__(self, every: int = 1):
        self.every, self.seen = int(every), 0

    def due(self, event: str, sim) -> bool:
        if event != "snapshot" or self.every <= 0:
            return False
        self.seen += 1
        return self.seen % self.every == 0


class EverySteps(Schedule):
    """After every ``every``-th accepted step (counted by the run's clock)."""

    def __init__(self, every: int = 1):
        self.every = int(every)

    def due(self, event: str, sim) -> bool:
        return event == "step" and self.every > 0 and sim.steps % self.every == 0


class EveryTime(Schedule):
    """At the first step at or after each multiple of ``interval`` of simulation time."""

    def __init__(self, interval: float):
        self.interval, self.next = float(interval), None

    def due(self, event: str, sim) -> bool:
        if event != "step":
            return False
        if self.next is None:
            self.next = (math.floor(sim.t / self.interval) + 1) * self.interval
            return False
        if sim.t < self.next:
            return False
        self.next = (math.floor(sim.t / self.interval) + 1) * self.interval
        return True


class LogTime(Schedule):
    """At the first step past each time t0 10^(k / per_decade), k = 0, 1, ...: log-spaced in time."""

    def __init__(self, t0: float, per_decade: int = 10):
        self.t0, self.ratio, self.k = float(t0), 10.0 ** (1.0 / per_decade), 0

    def due(self, event: str, sim) -> bool:
        if event != "step" or sim.t < self.t0 * self.ratio ** self.k:
            return False
        while sim.t >= self.t0 * self.ratio ** self.k:
            self.k += 1
        return True


class EveryWall(Schedule):
    """After the first step once ``seconds`` of wall-clock time have passed since the tracker last acted (or
    since the schedule was made)."""

    def __init__(self, seconds: float, clock=_time.monotonic):
        self.seconds, self.clock = float(seconds), clock
        self.last = clock()

    def due(self, event: str, sim) -> bool:
        if event != "step" or self.seconds <= 0:
            return False
        now = self.clock()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


class Never(Schedule):
    """Never due."""

    def due(self, event: str, sim) -> bool:
        return False


class AnyOf(Schedule):
    """Due when any of ``schedules`` is (each is asked, so every one keeps its own count)."""

    def __init__(self, *schedules: Schedule):
        self.schedules = schedules

    def due(self, event: str, sim) -> bool:
        return any([s.due(event, sim) for s in self.schedules])
