"""Step control: fixed steps, embedded error estimates, step doubling.

``FixedStep`` (constant h), ``EmbeddedStep`` (the error estimate of an embedded pair: ark43, dopri5,
dop853, the token integrators) and ``AdaptiveStep`` (step doubling plus a CFL bound, for the schemes
without a pair: sbdf1, sbdf2, etdrk4).  Each ``advance(scheme, state, h)`` returns (new state, h taken,
next h).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..errors import NumericalError
from .schemes import Scheme, State


class FixedStep:
    """Constant step h (the last step before an output time may be shorter)."""

    adaptive = False

    def __init__(self, dt: float):
        self.dt = float(dt)

    def advance(self, scheme: Scheme, state: State, h: float):
        """Take one step of size h; returns (new_state, h_taken, next_h)."""
        return scheme.step(state, h), h, self.dt


def row_error(u: np.ndarray, e: np.ndarray, rtol: float, atol: float) -> float:
    """max_i |e_i| / (atol + rtol |u_i|) over the rows of a state (a token: its displacement in R^d)."""
    e = e.reshape(e.shape[0], -1) if e.ndim > 1 else e[:, None]
    u = u.reshape(u.shape[0], -1) if u.ndim > 1 else u[:, None]
    scale = atol + rtol * np.linalg.norm(u, axis=1)
    return float(np.max(np.linalg.norm(e, axis=1) / scale)) if e.size else 0.0


def perturbation(u: np.ndarray, means: np.ndarray | None = None) -> np.ndarray:
    """``u`` with its means set to 0: the perturbation from the uniform state.  ``means``: a boolean mask of the
    entries that are means (one per causal position); None: entry 0 alone."""
    out = np.array(u, copy=True)
    if means is None:
        out.flat[0] = 0.0
    else:
        out[means] = 0.0
    return out


def perturbation_error(u: np.ndarray, e: np.ndarray, rtol: float, atol: float, means=None) -> float:
    """|e|_2 / (atol + rtol |u - means|_2): a density's coefficients, the error measured against the
    perturbation from the uniform state (the means, conserved, are excluded: ``means`` masks them, one per
    causal position; None: entry 0)."""
    return float(np.linalg.norm(perturbation(e, means))) / (atol + rtol * np.linalg.norm(perturbation(u, means)))


class EmbeddedStep:
    """Error control with an embedded pair (``DormandPrince``, ``ARK43``, ``DOPRI5``): a step is accepted
    when its error norm ``err = norm(u, e, rtol, atol)`` is <= 1 (e the pair's estimate; ``row_error`` by
    default), and the next step is h * min(10, max(0.2, 0.9 err^(-1/(q+1)))), q the embedded order,
    never growing right after a rejection.  Steps may grow by many decades on slow plateaus.

    ``span`` (a time) switches to error per unit step: err is multiplied by span / h and the exponent
    becomes 1/q, so the local errors of a run of length span add up to about rtol (relative errors
    of a growing perturbation add, step after step, rather than staying per step).
    ``hint`` ends the message of a step that fell below dt_min (what to change)."""

    adaptive = True

    def __init__(self, dt: float, rtol: float = 1e-9, atol: float = 1e-12, dt_min: float = 0.0,
                 dt_max: float = math.inf, norm: Callable = row_error, span: float | None = None,
                 hint: str = "loosen the tolerance (time.rtol, or longtime.rtol after a hand-off) or lower model.beta"):
        self.dt = float(dt)
        self.span = span
        self.rtol, self.atol = float(rtol), float(atol)
        self.dt_min, self.dt_max = float(dt_min), float(dt_max)
        self.norm, self.hint = norm, hint
        self.accepted = 0
        self.rejected = 0

    def error(self, u: np.ndarray, e: np.ndarray) -> float:
        """The scaled error norm of an estimate e at state u (inf if not finite)."""
        err = self.norm(u, e, self.rtol, self.atol)
        return err if math.isfinite(err) else math.inf

    def advance(self, scheme, state: State, h: float):
        """Take one accepted step of size <= h; returns (new_state, h_taken, next_h)."""
        h = min(h, self.dt_max)
        rejected = False
        q = getattr(scheme, "embedded_order", 4)
        exponent = -1.0 / (q if self.span else q + 1)
        while True:
            new, e = scheme.step_with_error(state, h)
            err = self.error(new.u, e)
            if self.span:
                err *= self.span / h
            factor = 10.0 if err == 0 else min(10.0, max(0.2, 0.9 * err ** exponent))
            if err <= 1.0:
                self.accepted += 1
                grow = min(factor, 1.0) if rejected else factor
                return new, h, max(self.dt_min, min(h * grow, self.dt_max))
            self.rejected += 1
            rejected = True
            h *= min(factor, 0.9)
            if not h > self.dt_min:
                raise NumericalError(f"adaptive step fell below {self.dt_min:g} (error estimate {err:.3g}); {self.hint}")


class AdaptiveStep:
    """Step-doubling error control plus a CFL bound.

    One step of h and two of h/2 are taken from the same state; their difference
    over (2^p - 1) estimates the local error of the two half steps, measured
    against the size of the perturbation from the mean (mode 0):

        err = |u_half - u_full|_2 / (2^p - 1) / (atol + rtol |u - means|_2)

    (``means``: the mask of the entries that are means, one per causal position; None: entry 0).

    The step is accepted when err <= 1 (the more accurate half-step result is kept)
    and h is rescaled by 0.9 err^{-1/(p+1)}, clipped to [0.2, 5] and to the CFL
    bound cfl * spacing / max|X|.
    """

    adaptive = True

    def __init__(self, dt: float, rtol: float = 1e-6, atol: float = 1e-12, cfl: float = 0.5,
                 dt_min: float = 1e-12, dt_max: float = math.inf, spacing: float = 1.0,
                 max_speed: Callable[[np.ndarray], float] | None = None, means: np.ndarray | None = None):
        self.dt = float(dt)
        self.means = means  # the entries that are means (perturbation): one per causal position
        self.rtol, self.atol, self.cfl = rtol, atol, cfl
        self.dt_min, self.dt_max = dt_min, dt_max
        self.spacing = spacing
        self.max_speed = max_speed
        self.rejected = 0

    def cfl_limit(self, u: np.ndarray) -> float:
        """Largest step the CFL condition allows at state u."""
        if self.max_speed is None:
            return math.inf
        speed = self.max_speed(u)
        return self.cfl * self.spacing / speed if speed > 0 else math.inf

    def advance(self, scheme: Scheme, state: State, h: float):
        """Take one accepted step of size <= h; returns (new_state, h_taken, next_h)."""
        h = min(h, self.dt_max, self.cfl_limit(state.u))
        p = scheme.order
        while True:
            full = scheme.step(state, h)
            half = scheme.step(scheme.step(state, h / 2), h / 2)
            diff = half.u - full.u
            scale = self.atol + self.rtol * np.linalg.norm(perturbation(state.u, self.means))
            err = np.linalg.norm(diff) / (2**p - 1) / scale
            if not np.isfinite(err):
                err = math.inf
            factor = min(5.0, max(0.2, 0.9 * err ** (-1.0 / (p + 1)))) if err > 0 else 5.0
            if err <= 1.0:
                return half, h, max(self.dt_min, min(h * factor, self.dt_max))
            self.rejected += 1
            h = h * factor
            if h < self.dt_min:
                raise NumericalError(
                    f"adaptive step fell below time.dt_min = {self.dt_min:g} (error estimate {err:.3g}); "
                    "loosen time.rtol, raise grid.modes or add viscosity"
                )
