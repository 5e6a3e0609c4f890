"""A differentiable solve: dynamics, a schedule of parameters, an initial state and a loss.

``Problem.value_and_gradient()`` solves forward once (checkpoints), then runs the discrete adjoint
(stepper.py) and returns the loss and its exact gradient with respect to the initial state and every
parameter of the schedule.
"""

from __future__ import annotations

import numpy as np

from .stepper import Solve


class Problem:
    """Everything a gradient needs.

    Parameters
    ----------
    dynamics : DensityDynamics or TokenDynamics
        The right-hand side (and its transpose).
    schedule : ParameterSchedule
        Parameter values per interval; its first and last times are the solve's start and end.
    initial : numpy.ndarray
        The initial coefficients (density) or positions (tokens, (n, d) unit vectors).
    dt : float
        The largest step; each interval is split into equal steps (fixed: the gradient of an adaptive
        step-size choice is not defined).
    loss : callable or dict
        ``loss(state, dynamics) -> (value, gradient)`` of the final state, or ``{time: loss}`` for losses
        of the states at several times (each a step boundary; they add).
    """

    def __init__(self, dynamics, schedule, initial, dt: float, loss):
        if not (dt > 0 and np.isfinite(dt)):
            raise ValueError(f"dt: got {dt!r}, allowed: a positive step")
        self.dynamics, self.schedule, self.initial, self.dt = dynamics, schedule, np.asarray(initial), float(dt)
        self.losses = dict(loss) if isinstance(loss, dict) else {float(schedule.times[-1]): loss}
        for t in self.losses:
            if not schedule.times[0] <= t <= schedule.times[-1]:
                raise ValueError(f"loss time: got {t:g}, allowed: within [{schedule.times[0]:g}, "
                                 f"{schedule.times[-1]:g}]")
        self.last = None

    def solve(self, schedule=None, initial=None, adjoint: bool = False) -> Solve:
        """The forward solve (kept for its adjoint; ``adjoint``: one will follow, keep the last segment's stages)."""
        self.last = Solve(self.dynamics, schedule or self.schedule, self.initial if initial is None else initial,
                          self.dt, marks=tuple(self.losses), adjoint=adjoint)
        return self.last

    def value(self, schedule=None, initial=None) -> float:
        """The loss of a forward solve."""
        s = self.solve(schedule, initial)
        return sum(loss(s.at(t), self.dynamics)[0] for t, loss in self.losses.items())

    def value_and_gradient(self, schedule=None, initial=None) -> tuple[float, dict]:
        """(loss, gradient): the gradient maps ``"initial"`` and each parameter name to an array of its shape."""
        s = self.solve(schedule, initial, adjoint=True)
        total, cot = 0.0, {}
        for t, loss in self.losses.items():
            v, g = loss(s.at(t), self.dynamics)
            total += v
            i = s.marks[float(t)]
            cot[i] = cot[i] + g if i in cot else g
        g0, pbar = s.backward(cot)
        return total, {"initial": g0, **pbar}
