"""Time steppers for  du/dt = L u + N(u)  with L diagonal.

A scheme sees an array ``L`` and a callable ``N``, never a geometry.  Schemes are
functional: ``state = scheme.start(u)``, ``state = scheme.step(state, h)`` return new
states and never mutate old ones, so a controller can try a step and throw it away
(step doubling) and a checkpoint is just the state's arrays.

Schemes (registered by name in ``SCHEMES``):
    sbdf1   IMEX Euler (order 1)
    sbdf2   IMEX BDF2 / SBDF2, variable step (order 2); started with one SBDF1 step
    etdrk4  Cox–Matthews exponential Runge–Kutta (order 4); L integrated exactly

Controllers: ``FixedStep`` and ``AdaptiveStep`` (step doubling error estimate
plus a velocity CFL bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import NumericalError


@dataclass(frozen=True)
class State:
    """Solver state: the solution ``u`` and the scheme's history (previous u, N(u), step)."""

    u: np.ndarray
    history: tuple = field(default=())


def phi_functions(z: np.ndarray, count: int = 3) -> list[np.ndarray]:
    """phi_1..phi_count of z (phi_j(z) = sum_n z^n / (n + j)!), accurate near z = 0.

    Uses the Taylor series for |z| < 1 (no cancellation) and the closed form
    phi_{j}(z) = (phi_{j-1}(z) - 1/(j-1)!) / z elsewhere.
    """
    z = np.asarray(z, dtype=float)
    small = np.abs(z) < 1.0
    zs = np.where(small, z, 0.0)
    zl = np.where(small, 1.0, z)
    out = []
    prev = np.exp(zl)  # phi_0 on the large branch
    for j in range(1, count + 1):
        series = np.zeros_like(zs)
        term = np.full_like(zs, 1.0 / math.factorial(j))
        for n in range(25):
            series = series + term
            term = term * zs / (n + j + 1)
        prev = (prev - 1.0 / math.factorial(j - 1)) / zl
        out.append(np.where(small, series, prev))
    return out


class Scheme:
    """Base class: a scheme of a given ``order`` for du/dt = L u + N(u)."""

    name = ""
    order = 0

    def __init__(self, L: np.ndarray, N: Callable[[np.ndarray], np.ndarray]):
        self.L = np.asarray(L)
        self.N = N

    def start(self, u: np.ndarray) -> State:
        """The state holding the initial value u (no history yet)."""
        return State(np.array(u, copy=True))

    def step(self, state: State, h: float) -> State:  # pragma: no cover - interface
        """The state one step of size h later."""
        raise NotImplementedError


class SBDF1(Scheme):
    """IMEX Euler: (u1 - u0)/h = L u1 + N(u0)."""

    name = "sbdf1"
    order = 1

    def step(self, state: State, h: float) -> State:
        """One IMEX Euler step."""
        n0 = self.N(state.u)
        u1 = (state.u + h * n0) / (1.0 - h * self.L)
        return State(u1, (state.u, n0, h))


class SBDF2(Scheme):
    """Variable-step IMEX BDF2 (SBDF2).  With w = h_n / h_{n-1}:

    (1+2w)/(1+w) u1 - (1+w) u0 + w^2/(1+w) u_-1 = h [L u1 + (1+w) N(u0) - w N(u_-1)].
    The first step is SBDF1 (its O(h^2) local error keeps global order 2).
    """

    name = "sbdf2"
    order = 2

    def step(self, state: State, h: float) -> State:
        """One SBDF2 step (SBDF1 when there is no history yet)."""
        n0 = self.N(state.u)
        if not state.history:
            u1 = (state.u + h * n0) / (1.0 - h * self.L)
        else:
            u_prev, n_prev, h_prev = state.history
            w = h / h_prev
            a1 = (1 + 2 * w) / (1 + w)
            rhs = (1 + w) * state.u - (w * w / (1 + w)) * u_prev + h * ((1 + w) * n0 - w * n_prev)
            u1 = rhs / (a1 - h * self.L)
        return State(u1, (state.u, n0, h))


class ETDRK4(Scheme):
    """Cox & Matthews (2002) ETDRK4; phi-functions evaluated without cancellation."""

    name = "etdrk4"
    order = 4

    def __init__(self, L, N):
        super().__init__(L, N)
        self._cache = {}  # h -> coefficients; step doubling alternates h and h/2

    def _coefficients(self, h: float):
        if h not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            z = h * self.L
            p1, p2, p3 = phi_functions(z)
            (q1,) = phi_functions(z / 2, 1)
            self._cache[h] = (np.exp(z / 2), np.exp(z), h / 2 * q1,
                              h * (p1 - 3 * p2 + 4 * p3), h * 2 * (p2 - 2 * p3), h * (4 * p3 - p2))
        return self._cache[h]

    def step(self, state: State, h: float) -> State:
        """One ETDRK4 step (four evaluations of N)."""
        e2, e1, q, f1, f2, f3 = self._coefficients(h)
        u = state.u
        nu = self.N(u)
        a = e2 * u + q * nu
        na = self.N(a)
        b = e2 * u + q * na
        nb = self.N(b)
        c = e2 * a + q * (2 * nb - nu)
        nc = self.N(c)
        return State(e1 * u + f1 * nu + f2 * (na + nb) + f3 * nc)


SCHEMES = {cls.name: cls for cls in (SBDF1, SBDF2, ETDRK4)}


def make_scheme(name: str, L, N) -> Scheme:
    """The scheme registered as ``name`` for du/dt = L u + N(u)."""
    return SCHEMES[name](L, N)


class FixedStep:
    """Constant step h (the last step before an output time may be shorter)."""

    adaptive = False

    def __init__(self, dt: float):
        self.dt = float(dt)

    def advance(self, scheme: Scheme, state: State, h: float):
        """Take one step of size h; returns (new_state, h_taken, next_h)."""
        return scheme.step(state, h), h, self.dt


class AdaptiveStep:
    """Step-doubling error control plus a CFL bound.

    One step of h and two of h/2 are taken from the same state; their difference
    over (2^p - 1) estimates the local error of the two half steps, measured
    against the size of the perturbation from the mean (mode 0):

        err = |u_half - u_full|_2 / (2^p - 1) / (atol + rtol |u - u_0|_2).

    The step is accepted when err <= 1 (the more accurate half-step result is kept)
    and h is rescaled by 0.9 err^{-1/(p+1)}, clipped to [0.2, 5] and to the CFL
    bound cfl * spacing / max|X|.
    """

    adaptive = True

    def __init__(self, dt: float, rtol: float = 1e-6, atol: float = 1e-12, cfl: float = 0.5,
                 dt_min: float = 1e-12, dt_max: float = math.inf, spacing: float = 1.0,
                 max_speed: Callable[[np.ndarray], float] | None = None):
        self.dt = float(dt)
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
            pert = state.u.copy()
            pert.flat[0] = 0.0
            scale = self.atol + self.rtol * np.linalg.norm(pert)
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
