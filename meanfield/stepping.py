"""Time steppers for  du/dt = L u + N(u)  with L diagonal.

A scheme sees an array ``L`` and a callable ``N``, never a geometry.  Schemes are
functional: ``state = scheme.start(u)``, ``state = scheme.step(state, h)`` return new
states and never mutate old ones, so a controller can try a step and throw it away
(step doubling) and a checkpoint is just the state's arrays.

Schemes (registered by name in ``SCHEMES``):
    sbdf1   IMEX Euler (order 1)
    sbdf2   IMEX BDF2 / SBDF2, variable step (order 2); started with one SBDF1 step
    etdrk4  Cox–Matthews exponential Runge–Kutta (order 4); L integrated exactly

``DormandPrince`` is an explicit embedded pair (orders 5 and 4) for du/dt = f(u) with no
stiff part; the token solver uses it (with a projection back onto the sphere).

Controllers: ``FixedStep``, ``AdaptiveStep`` (step doubling error estimate plus a
velocity CFL bound) and ``EmbeddedStep`` (the error estimate of an embedded pair).
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
    implicit = False  # the linear part by an implicit rule (exact for the exponential schemes)

    def __init__(self, L: np.ndarray, N: Callable[[np.ndarray], np.ndarray]):
        self.L = np.asarray(L)
        self.N = N

    def start(self, u: np.ndarray) -> State:
        """The state holding the initial value u (no history yet)."""
        return State(np.array(u, copy=True))

    def step(self, state: State, h: float) -> State:  # pragma: no cover - interface
        """The state one step of size h later."""
        raise NotImplementedError

    @staticmethod
    def growth_factor(z: float) -> float:
        """Per-step factor of a mode u' = lambda u at z = lambda h (exact: e^z)."""
        return math.exp(min(z, 700.0))

    @classmethod
    def rate_error(cls, z: float) -> float:
        """Relative error of the scheme's discrete growth rate log(g(z)) / h against lambda, for a
        growing mode at z = lambda h > 0 (inf where the step no longer grows: g <= 1)."""
        g = cls.growth_factor(z)
        if not (math.isfinite(g) and g > 1):
            return math.inf
        return abs(math.log(g) / z - 1)

    @classmethod
    def growth_step_limit(cls, tol: float) -> float:
        """The largest z = lambda h at which the discrete growth rate is within ``tol`` (inf: exact)."""
        if not cls.implicit:
            return math.inf
        from scipy.optimize import brentq

        hi = 1e-8
        while cls.rate_error(hi * 2) <= tol and hi < 1e3:
            hi *= 2
        return brentq(lambda z: cls.rate_error(z) - tol, hi / 2 if hi > 1e-8 else 0.0, hi * 2, xtol=1e-14)


class SBDF1(Scheme):
    """IMEX Euler: (u1 - u0)/h = L u1 + N(u0)."""

    name = "sbdf1"
    order = 1
    implicit = True

    @staticmethod
    def growth_factor(z: float) -> float:
        """1 / (1 - z): below 1 in modulus for z > 2, so a long step damps a growing mode."""
        return 1.0 / (1.0 - z) if z != 1 else math.inf

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
    implicit = True

    @staticmethod
    def growth_factor(z: float) -> float:
        """Principal root of (3/2 - z) g^2 - 2 g + 1/2 = 0 (constant steps): (2 + sqrt(1 + 2z)) / (3 - 2z),
        infinite at z = 3/2 and negative beyond, where a growing mode decays or oscillates."""
        return (2 + math.sqrt(1 + 2 * z)) / (3 - 2 * z) if z != 1.5 else math.inf

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
            with np.errstate(over="ignore", invalid="ignore"):  # lambda h > 709: inf, the guard stops the run
                p1, p2, p3 = phi_functions(z)
                (q1,) = phi_functions(z / 2, 1)
                self._cache[h] = (np.exp(z / 2), np.exp(z), h / 2 * q1,
                                  h * (p1 - 3 * p2 + 4 * p3), h * 2 * (p2 - 2 * p3), h * (4 * p3 - p2))
        return self._cache[h]

    def step(self, state: State, h: float) -> State:
        """One ETDRK4 step (four evaluations of N)."""
        e2, e1, q, f1, f2, f3 = self._coefficients(h)
        u = state.u
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite: the blow-up guard names it
            nu = self.N(u)
            a = e2 * u + q * nu
            na = self.N(a)
            b = e2 * u + q * na
            nb = self.N(b)
            c = e2 * a + q * (2 * nb - nu)
            nc = self.N(c)
            return State(e1 * u + f1 * nu + f2 * (na + nb) + f3 * nc)


SCHEMES = {cls.name: cls for cls in (SBDF1, SBDF2, ETDRK4)}


class DormandPrince:
    """Dormand & Prince (1980) explicit Runge–Kutta pair of orders 5(4) for du/dt = f(u), with
    local extrapolation (the order-5 solution is kept) and first-same-as-last: the derivative at
    the new point is the next step's first stage, carried in ``State.history``.

    ``project`` (optional) maps the order-5 solution back onto a constraint manifold (tokens: the
    sphere) before that last stage is evaluated, so the carried derivative belongs to the kept point.
    ``step_with_error`` also returns the per-entry local error estimate u5 - u4.
    """

    name = "dopri5"
    order = 5
    C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
    A = ((),
         (1 / 5,),
         (3 / 40, 9 / 40),
         (44 / 45, -56 / 15, 32 / 9),
         (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
         (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656))
    B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
    # b - b_hat over the seven stages (the seventh is f at the new point)
    E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)

    def __init__(self, f: Callable[[np.ndarray], np.ndarray], project: Callable | None = None):
        self.f = f
        self.project = project

    def start(self, u: np.ndarray) -> State:
        """The state holding u (its derivative is computed by the first step)."""
        return State(np.array(u, copy=True))

    def step_with_error(self, state: State, h: float) -> tuple[State, np.ndarray]:
        """One step of size h: (new state, local error estimate u5 - u4, per entry)."""
        u = state.u
        k = [state.history[0] if state.history else self.f(u)]
        for a_row in self.A[1:]:
            k.append(self.f(u + h * sum(a * ki for a, ki in zip(a_row, k) if a)))
        u5 = u + h * sum(b * ki for b, ki in zip(self.B, k) if b)
        if self.project is not None:
            u5 = self.project(u5)
        k.append(self.f(u5))
        err = h * sum(e * ki for e, ki in zip(self.E, k) if e)
        return State(u5, (k[-1],)), err

    def step(self, state: State, h: float) -> State:
        """One step of size h (fixed steps: the order-5 solution)."""
        return self.step_with_error(state, h)[0]


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


class EmbeddedStep:
    """Error control with an embedded pair (``DormandPrince``): the step is accepted when

        err = max_i |e_i| / (atol + rtol |u_i|) <= 1,

    e_i the pair's local error estimate of row i of the state (a token: its displacement error in
    R^d, |u_i| = 1 on the sphere), and the next step is h * min(10, max(0.2, 0.9 err^(-1/5))),
    never growing right after a rejection.  Steps may grow by many decades on slow plateaus.
    """

    adaptive = True

    def __init__(self, dt: float, rtol: float = 1e-9, atol: float = 1e-12, dt_min: float = 0.0,
                 dt_max: float = math.inf):
        self.dt = float(dt)
        self.rtol, self.atol = float(rtol), float(atol)
        self.dt_min, self.dt_max = float(dt_min), float(dt_max)
        self.accepted = 0
        self.rejected = 0

    def error(self, u: np.ndarray, e: np.ndarray) -> float:
        """The scaled error norm of an estimate e at state u (max over rows)."""
        e = e.reshape(e.shape[0], -1) if e.ndim > 1 else e[:, None]
        u = u.reshape(u.shape[0], -1) if u.ndim > 1 else u[:, None]
        scale = self.atol + self.rtol * np.linalg.norm(u, axis=1)
        err = float(np.max(np.linalg.norm(e, axis=1) / scale)) if e.size else 0.0
        return err if math.isfinite(err) else math.inf

    def advance(self, scheme, state: State, h: float):
        """Take one accepted step of size <= h; returns (new_state, h_taken, next_h)."""
        h = min(h, self.dt_max)
        rejected = False
        while True:
            new, e = scheme.step_with_error(state, h)
            err = self.error(new.u, e)
            factor = 10.0 if err == 0 else min(10.0, max(0.2, 0.9 * err ** -0.2))
            if err <= 1.0:
                self.accepted += 1
                grow = min(factor, 1.0) if rejected else factor
                return new, h, max(self.dt_min, min(h * grow, self.dt_max))
            self.rejected += 1
            rejected = True
            h *= min(factor, 0.9)
            if not h > self.dt_min:
                raise NumericalError(
                    f"adaptive step fell below {self.dt_min:g} (error estimate {err:.3g}); "
                    "loosen the tolerance (time.rtol, or longtime.rtol after a hand-off) or lower model.beta")


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
