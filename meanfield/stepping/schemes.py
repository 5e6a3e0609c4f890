"""Schemes for  du/dt = L u + N(u)  with L diagonal, each written as its coefficients.

A scheme sees an array ``L`` and a callable ``N``, never a geometry.  Schemes are functional:
``state = scheme.start(u)``, ``state = scheme.step(state, h)`` return new states and never mutate old
ones, so a controller can try a step and throw it away (step doubling) and a checkpoint is just the
state's arrays.  Every scheme counts its evaluations of N (``nfev``, as scipy's solvers do)::

    sbdf1, sbdf2   multistep IMEX (a coefficient table of the step ratio, ``MultistepIMEX``)
    etdrk4         Cox–Matthews exponential Runge–Kutta (order 4): L integrated exactly
    ark43          Kennedy–Carpenter ARK4(3)6L[2]SA additive Runge–Kutta (a Butcher tableau pair, L implicit)

The explicit pairs on the whole right-hand side (dopri5, dop853) are in ``pairs.py``; ``registry.py``
names them all.
"""

from __future__ import annotations

import cmath
import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


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
    zs = z[small]  # the series runs on these alone (a few low modes of a stiff L)
    zl = np.where(small, 1.0, z)
    powers = np.vander(zs, _SERIES_TERMS, increasing=True)  # z^n, n < 25: every phi_j's series is one product
    out = []
    prev = np.exp(zl)  # phi_0 on the large branch
    for j in range(1, count + 1):
        prev = (prev - 1.0 / math.factorial(j - 1)) / zl
        phi = prev.copy()
        phi[small] = powers @ _series_coefficients(j)
        out.append(phi)
    return out


_SERIES_TERMS = 25


@functools.lru_cache(maxsize=16)
def _series_coefficients(j: int) -> np.ndarray:
    """1 / (n + j)! for n < 25: phi_j's Taylor coefficients."""
    return np.array([1.0 / math.factorial(n + j) for n in range(_SERIES_TERMS)])


def counted(owner, fn: Callable) -> Callable:
    """``fn``, counting its calls in ``owner.nfev``."""
    def f(u):
        owner.nfev += 1
        return fn(u)

    return f


class Scheme:
    """Base class: a scheme of a given ``order`` for du/dt = L u + N(u)."""

    name = ""
    order = 0
    implicit = False  # the linear part by an implicit rule (exact for the exponential schemes)
    budgeted = True  # an embedded pair's local errors are budgeted over the run (EmbeddedStep's span)

    def __init__(self, L: np.ndarray, N: Callable[[np.ndarray], np.ndarray]):
        self.L = np.asarray(L)
        self.N = counted(self, N)
        self.nfev = 0  # evaluations of N so far (scipy.integrate's name)

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


class MultistepIMEX(Scheme):
    """A multistep IMEX scheme given by its coefficients, as Dedalus writes them: with w = h_n / h_{n-1},

        a_0 u_{n+1} + sum_{j >= 1} a_j u_{n+1-j} = h [L u_{n+1} + sum_{j >= 1} c_j N(u_{n+1-j})],

    ``coefficients(w) -> (a, c)``.  L is implicit (one diagonal division per step), N explicit.  The state
    carries (u_n, N(u_n), h_n) for the next step; the first step of a two-step scheme is SBDF1's (its
    O(h^2) local error keeps global order 2)."""

    implicit = True
    steps = 1

    @staticmethod
    def coefficients(w: float) -> tuple[tuple, tuple]:  # pragma: no cover - interface
        """(a_0, a_1, ...), (c_1, ...) for the step ratio w."""
        raise NotImplementedError

    @classmethod
    def growth_factor(cls, z: float) -> float:
        """The principal root g (g = 1 at z = 0) of (a_0 - z) g^k + a_1 g^(k-1) + ... + a_k = 0 (constant
        steps, N = 0): the per-step factor of a mode u' = lambda u at z = lambda h; its modulus where it is
        complex."""
        a, _ = cls.coefficients(1.0)
        if z == a[0]:
            return math.inf
        if len(a) == 2:
            return -a[1] / (a[0] - z)
        disc = a[1] * a[1] - 4 * (a[0] - z) * a[2]
        if disc < 0:
            return abs((-a[1] + cmath.sqrt(disc)) / (2 * (a[0] - z)))
        return (-a[1] + math.sqrt(disc)) / (2 * (a[0] - z))

    def step(self, state: State, h: float) -> State:
        """One step (SBDF1's while the state holds no previous step)."""
        u0 = state.u
        n0 = self.N(u0)
        if self.steps == 1 or not state.history:
            a, c = SBDF1.coefficients(1.0)
            us, ns = (u0,), (n0,)
        else:
            u_prev, n_prev, h_prev = state.history
            a, c = self.coefficients(h / h_prev)
            us, ns = (u0, u_prev), (n0, n_prev)
        rhs = -a[1] * us[0]
        for aj, uj in zip(a[2:], us[1:]):
            rhs = rhs - aj * uj
        explicit = c[0] * ns[0]
        for cj, nj in zip(c[1:], ns[1:]):
            explicit = explicit + cj * nj
        return State((rhs + h * explicit) / (a[0] - h * self.L), (u0, n0, h))


class SBDF1(MultistepIMEX):
    """IMEX Euler: (u1 - u0) / h = L u1 + N(u0); growth factor 1 / (1 - z), below 1 in modulus for z > 2,
    so a long step damps a growing mode."""

    name = "sbdf1"
    order = 1

    @staticmethod
    def coefficients(w: float) -> tuple[tuple, tuple]:
        """a = (1, -1), c = (1,)."""
        return (1.0, -1.0), (1.0,)


class SBDF2(MultistepIMEX):
    """Variable-step IMEX BDF2 (SBDF2, Ascher–Ruuth–Wetton 1995): with w = h_n / h_{n-1},

        (1+2w)/(1+w) u1 - (1+w) u0 + w^2/(1+w) u_-1 = h [L u1 + (1+w) N(u0) - w N(u_-1)];

    growth factor (2 + sqrt(1 + 2z)) / (3 - 2z), infinite at z = 3/2 and negative beyond, where a
    growing mode decays or oscillates."""

    name = "sbdf2"
    order = 2
    steps = 2

    @staticmethod
    def coefficients(w: float) -> tuple[tuple, tuple]:
        """a = ((1 + 2w)/(1 + w), -(1 + w), w^2/(1 + w)), c = (1 + w, -w)."""
        return ((1 + 2 * w) / (1 + w), -(1 + w), w * w / (1 + w)), (1 + w, -w)


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
                                  h * (p1 - 3 * p2 + 4 * p3), h * 2 * (p2 - 2 * p3), h * (4 * p3 - p2),
                                  h * (p1 - p2), h * p2)  # the last two: ETD42's embedded ETD2RK
        return self._cache[h]

    def step(self, state: State, h: float) -> State:
        """One ETDRK4 step (four evaluations of N)."""
        return State(self._stages(state.u, self._coefficients(h))[0])

    def _stages(self, u: np.ndarray, coefficients) -> tuple:
        """(the new u, N(u), N at the end-point stage c) of one step from u."""
        e2, e1, q, f1, f2, f3 = coefficients[:6]
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite: the blow-up guard names it
            nu = self.N(u)
            a = e2 * u + q * nu
            na = self.N(a)
            b = e2 * u + q * na
            nb = self.N(b)
            c = e2 * a + q * (2 * nb - nu)
            nc = self.N(c)
            return e1 * u + f1 * nu + f2 * (na + nb) + f3 * nc, nu, nc


class ETD42(ETDRK4):
    """ETDRK4 with an error estimate from its own stages (no extra evaluation of N): ETD2RK (Cox & Matthews 2002),
    u2 = e^{hL} u + h phi_1 N(u) + h phi_2 (N(c) - N(u)), with ETDRK4's end-point stage c as its predictor, is
    of order 2, so u4 - u2 = O(h^3) estimates the local error (embedded order 2).  For adaptive steps where the
    dynamics speed up (a growing perturbation's linear phase, then clusters forming): the exact linear part lets
    the steps be long while N is small."""

    name = "etd42"
    embedded_order = 2
    #: its steps are controlled per step (each local error within rtol of the perturbation, as scipy's solvers
    #: do), not budgeted over the run: measured on the stiff circle (K = 2048, viscosity 1e-3, beta 25), the budget
    #: (error x span / h) drives the steps down to 1e-4 in the first transient of the damped high modes, whose
    #: errors never grow, and costs 2x the right-hand sides for the same error at t_end (benchmarks/results.md)
    budgeted = False

    def step_with_error(self, state: State, h: float) -> tuple[State, np.ndarray]:
        """One ETDRK4 step and its error estimate u4 - u2 (four evaluations of N)."""
        co = self._coefficients(h)
        u4, nu, nc = self._stages(state.u, co)
        with np.errstate(over="ignore", invalid="ignore"):
            return State(u4), u4 - (co[1] * state.u + co[6] * nu + co[7] * nc)


class ARK43(Scheme):
    """Kennedy & Carpenter (2003) ARK4(3)6L[2]SA: an additive Runge–Kutta pair, ESDIRK (gamma = 1/4,
    L-stable, stiffly accurate) for L and explicit for N, orders 4 and 3 sharing their stages.  With L
    diagonal every implicit stage is one division.  ``step_with_error`` returns the order-4 solution
    and h sum (b - b_hat)_j F_j, the embedded estimate of its local error."""

    name = "ark43"
    order = 4
    embedded_order = 3
    implicit = True
    gamma = 1 / 4
    C = (0.0, 1 / 2, 83 / 250, 31 / 50, 17 / 20, 1.0)
    AE = ((),
          (1 / 2,),
          (13861 / 62500, 6889 / 62500),
          (-116923316275 / 2393684061468, -2731218467317 / 15368042101831, 9408046702089 / 11113171139209),
          (-451086348788 / 2902428689909, -2682348792572 / 7519795681897, 12662868775082 / 11960479115383,
           3355817975965 / 11060851509271),
          (647845179188 / 3216320057751, 73281519250 / 8382639484533, 552539513391 / 3454668386233,
           3354512671639 / 8306763924573, 4040 / 17871))
    # below-diagonal part of the ESDIRK table (its diagonal is gamma from the second stage on)
    AI = ((),
          (1 / 4,),
          (8611 / 62500, -1743 / 31250),
          (5012029 / 34652500, -654441 / 2922500, 174375 / 388108),
          (15267082809 / 155376265600, -71443401 / 120774400, 730878875 / 902184768, 2285395 / 8070912),
          (82889 / 524892, 0.0, 15625 / 83664, 69875 / 102672, -2260 / 8211))
    B = (82889 / 524892, 0.0, 15625 / 83664, 69875 / 102672, -2260 / 8211, 1 / 4)
    B_HAT = (4586570599 / 29645900160, 0.0, 178811875 / 945068544, 814220225 / 1159782912,
             -3700637 / 11593932, 61727 / 225920)

    @classmethod
    def tables(cls):
        """(A_explicit, A_implicit, b, b_hat, c) as full numpy arrays (for checks and the stability function)."""
        s = len(cls.B)
        ae, ai = np.zeros((s, s)), np.zeros((s, s))
        for i in range(s):
            ae[i, :i] = cls.AE[i]
            ai[i, :i] = cls.AI[i]
            if i:
                ai[i, i] = cls.gamma
        return ae, ai, np.array(cls.B), np.array(cls.B_HAT), np.array(cls.C)

    @classmethod
    def growth_factor(cls, z: float) -> float:
        """The ESDIRK's stability function R(z) = 1 + z b^T (I - z A)^{-1} 1 (N = 0)."""
        _, ai, b, _, _ = cls.tables()
        with np.errstate(all="ignore"):
            try:
                return float(1 + z * b @ np.linalg.solve(np.eye(b.size) - z * ai, np.ones(b.size)))
            except np.linalg.LinAlgError:
                return math.inf

    def __init__(self, L, N):
        super().__init__(L, N)
        self._solve = {}  # h -> 1 / (1 - h gamma L)

    def step_with_error(self, state: State, h: float) -> tuple[State, np.ndarray]:
        """One step: (new state, local error estimate of each entry)."""
        inv = self._solve.get(h)
        if inv is None:
            if len(self._solve) > 8:
                self._solve.clear()
            inv = self._solve[h] = 1.0 / (1.0 - (h * self.gamma) * self.L)
        u = state.u
        n, lu = [], []  # N and L u at each stage
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite: the blow-up guard names it
            for i in range(len(self.B)):
                if i == 0:
                    ui = u
                else:
                    acc = u.copy()
                    for ae, ai, nj, lj in zip(self.AE[i], self.AI[i], n, lu):
                        acc += (h * ae) * nj
                        if ai:
                            acc += (h * ai) * lj
                    ui = acc * inv
                n.append(self.N(ui))
                lu.append(self.L * ui)
            new = u.copy()
            err = np.zeros_like(u)
            for b, bh, nj, lj in zip(self.B, self.B_HAT, n, lu):
                f = nj + lj
                if b:
                    new += (h * b) * f
                if b != bh:
                    err += (h * (b - bh)) * f
        return State(new), err

    def step(self, state: State, h: float) -> State:
        """One step (fixed steps: the order-4 solution)."""
        return self.step_with_error(state, h)[0]
