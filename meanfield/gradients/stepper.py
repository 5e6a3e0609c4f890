"""Fixed-step integrating-factor RK4 (Lawson) and its discrete adjoint, with checkpoints.

A dynamics ``du/dt = L(p) u + N(u, p)`` (L diagonal, the stiff viscosity; N the rest) with parameters p
constant on each interval of a schedule is stepped by Lawson's RK4 with E = e^{h L / 2}:

    k1 = N(u)                  k2 = N(E (u + h/2 k1))       k3 = N(E u + h/2 k2)
    k4 = N(E^2 u + h E k3)     u+ = P(E^2 u + h/6 (E^2 k1 + 2 E (k2 + k3) + k4))

(P: a projection after the step, the tokens' x / |x|; the identity for densities).  The adjoint runs
the same arithmetic backwards (``_step_back``), so the gradient is exact for the computed solution,
not an approximation of the continuous one.  Memory: the forward pass keeps one state every
m = ceil(sqrt(steps)) steps; the backward pass recomputes one segment of m steps at a time, keeping its
stages: about sqrt(steps) states plus m steps of stage data, instead of every step of the solve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Plan:
    """The steps of a solve: interval k of the schedule [times[k], times[k+1]] in ``counts[k]`` equal steps."""

    times: np.ndarray
    counts: np.ndarray
    steps: list = field(default_factory=list)  # (t, h, interval) per step

    @classmethod
    def make(cls, times, dt: float, marks=()) -> "Plan":
        """Steps of at most ``dt`` that end exactly on every schedule time and on every time in ``marks``."""
        times = np.asarray(times, dtype=float)
        cuts = np.unique(np.concatenate([times, [m for m in marks if times[0] < m < times[-1]]]))
        steps = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            n = max(1, math.ceil((b - a) / dt - 1e-9))
            k = int(np.searchsorted(times, a, side="right") - 1)
            steps += [(a + i * (b - a) / n, (b - a) / n, min(k, len(times) - 2)) for i in range(n)]
        counts = np.bincount([s[2] for s in steps], minlength=len(times) - 1)
        return cls(times, counts, steps)

    def index(self, t: float) -> int:
        """The number of steps that end at or before time t (t must be a step boundary)."""
        ends = np.array([s[0] + s[1] for s in self.steps])
        if abs(t - self.times[0]) <= 1e-12 * max(1.0, abs(t)):
            return 0
        i = int(np.argmin(np.abs(ends - t)))
        if abs(ends[i] - t) > 1e-9 * max(1.0, abs(t)):
            raise ValueError(f"time {t:g} is not a step boundary of the plan")
        return i + 1


def _factors(dynamics, p: dict, h: float):
    lin = dynamics.linear(p)
    return (1.0, None) if lin is None else (np.exp(0.5 * h * lin), lin)


def _step(dynamics, u, p, h, keep: bool):
    e, _ = _factors(dynamics, p, h)
    k1, c1 = dynamics.rhs(u, p)
    u2 = e * (u + 0.5 * h * k1)
    k2, c2 = dynamics.rhs(u2, p)
    u3 = e * u + 0.5 * h * k2
    k3, c3 = dynamics.rhs(u3, p)
    e2 = e * e
    u4 = e2 * u + h * e * k3
    k4, c4 = dynamics.rhs(u4, p)
    out = e2 * u + (h / 6) * (e2 * k1 + 2 * e * (k2 + k3) + k4)
    out, cp = dynamics.project(out)
    return out, ((u, k1, k2, k3, c1, c2, c3, c4, cp) if keep else None)


def _re(a, b):
    return (a * np.conj(b)).real


def _step_back(dynamics, tape, g, p, h, pbar: dict):
    """The transpose of one step: the cotangent g of its result -> that of its input (parameters into pbar)."""
    u, k1, k2, k3, c1, c2, c3, c4, cp = tape
    e, lin = _factors(dynamics, p, h)
    g = dynamics.project_T(cp, g)
    e2 = e * e
    ub = e2 * g
    k1b, k2b, k4b = (h / 6) * e2 * g, (h / 3) * e * g, (h / 6) * g
    k3b = k2b.copy()
    b4 = dynamics.rhs_T(c4, k4b, p, pbar)
    ub += e2 * b4
    k3b += h * e * b4
    b3 = dynamics.rhs_T(c3, k3b, p, pbar)
    ub += e * b3
    k2b += 0.5 * h * b3
    b2 = dynamics.rhs_T(c2, k2b, p, pbar)
    ub += e * b2
    k1b += 0.5 * h * e * b2
    ub += dynamics.rhs_T(c1, k1b, p, pbar)
    if lin is not None:
        eb = (_re(g, 2 * e * u + (h / 3) * e * k1 + (h / 3) * (k2 + k3)) + _re(b4, 2 * e * u + h * k3)
              + _re(b3, u) + _re(b2, u + 0.5 * h * k1))
        dynamics.linear_T(eb * e * (0.5 * h), p, pbar)  # dE/dL = (h/2) E, entry by entry
    return ub


class Solve:
    """One forward solve kept for its adjoint: checkpoints every ``segment`` steps and the states at ``marks``."""

    def __init__(self, dynamics, schedule, u0, dt: float, marks=(), adjoint: bool = False):
        self.dynamics, self.schedule = dynamics, schedule
        self.plan = Plan.make(schedule.times, dt, marks)
        n = len(self.plan.steps)
        self.segment = max(1, math.ceil(math.sqrt(n)))
        # with an adjoint to follow, the last segment keeps its stage data now (the backward pass would only
        # recompute it): one segment's worth, as the backward pass holds anyway
        last = self.last_segment if adjoint else n
        self.tapes = []
        self.marks = {float(t): self.plan.index(t) for t in marks}
        wanted = set(self.marks.values())
        self.checkpoints, self.states = {0: np.array(u0, copy=True)}, {}
        u = self.checkpoints[0]
        if 0 in wanted:
            self.states[0] = u
        self.rhs_calls = 0
        for i, (t, h, k) in enumerate(self.plan.steps):
            u, tape = _step(dynamics, u, schedule.at(k), h, keep=i >= last)
            if i >= last:
                self.tapes.append(tape)
            self.rhs_calls += 4
            if (i + 1) % self.segment == 0:
                self.checkpoints[i + 1] = u
            if i + 1 in wanted:
                self.states[i + 1] = u
        self.final = u

    @property
    def last_segment(self) -> int:
        """The index of the last segment's first step, where the backward pass starts."""
        return ((len(self.plan.steps) - 1) // self.segment) * self.segment

    def at(self, t: float) -> np.ndarray:
        """The state at a marked time."""
        return self.states[self.marks[float(t)]]

    def backward(self, cotangents: dict) -> tuple[np.ndarray, dict]:
        """(cotangent of u0, cotangents of the schedule's values) given the cotangents of the states at
        step indices (``cotangents[i]``: of the state after step i)."""
        steps, m = self.plan.steps, self.segment
        pbar = self.schedule.zeros()
        g = np.zeros_like(self.final)
        n = len(steps)
        local, current = {}, None  # one interval's cotangents, handed on when the interval changes

        def flush():
            if current is not None:
                p = self.schedule.at(current)
                self.dynamics.finish_T(p, local)
                self.schedule.accumulate(pbar, current, local)
                local.clear()

        for start in range(self.last_segment, -1, -m):
            stop = min(start + m, n)
            u, tapes = self.checkpoints[start], []
            if start == self.last_segment:  # the stages the forward pass kept, if it did
                tapes, self.tapes = self.tapes, []
            for i in range(start + len(tapes), stop):
                t, h, k = steps[i]
                u, tape = _step(self.dynamics, u, self.schedule.at(k), h, keep=True)
                tapes.append(tape)
                self.rhs_calls += 4
            for i in range(stop - 1, start - 1, -1):
                if i + 1 in cotangents:
                    g = g + cotangents[i + 1]
                t, h, k = steps[i]
                if k != current:
                    flush()
                    current = k
                g = _step_back(self.dynamics, tapes[i - start], g, self.schedule.at(k), h, local)
                tapes[i - start] = None  # free the stage data as we go
        flush()
        if 0 in cotangents:
            g = g + cotangents[0]
        return g, pbar
