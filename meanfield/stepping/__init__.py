"""Time steppers for  du/dt = L u + N(u)  with L diagonal.

A scheme sees an array ``L`` and a callable ``N``, never a geometry.  Schemes are
functional: ``state = scheme.start(u)``, ``state = scheme.step(state, h)`` return new
states and never mutate old ones, so a controller can try a step and throw it away
(step doubling) and a checkpoint is just the state's arrays.

Schemes (registered by name in ``SCHEMES``):
    sbdf1   IMEX Euler (order 1)
    sbdf2   IMEX BDF2 / SBDF2, variable step (order 2); started with one SBDF1 step
    etdrk4  Cox–Matthews exponential Runge–Kutta (order 4); L integrated exactly
    ark43   Kennedy–Carpenter ARK4(3)6L[2]SA additive IMEX Runge–Kutta (order 4, embedded 3):
            L implicit (a diagonal solve per stage), N explicit
    dopri5  Dormand–Prince 5(4), fully explicit (L u + N(u) together): for runs without stiffness
    dop853  Dormand–Prince 8(5,3), fully explicit: the same, fewer steps at tight tolerances

``DormandPrince`` and ``DormandPrince853`` are the explicit embedded pairs for du/dt = f(u); the
token solver uses them too (with a projection back onto the sphere).

Controllers: ``FixedStep``, ``EmbeddedStep`` (the error estimate of an embedded pair: ark43,
dopri5, dop853) and ``AdaptiveStep`` (step doubling, for the schemes without a pair: sbdf1, sbdf2, etdrk4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import NumericalError


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



class ExplicitPair:
    """An explicit embedded Runge–Kutta pair for du/dt = f(u), with local extrapolation (the
    higher-order solution is kept) and first-same-as-last: the derivative at the new point is the next
    step's first stage, carried in ``State.history``.  Subclasses give the tableau (``C``, ``A`` as rows
    below the diagonal, ``B``) and ``E``, the weights of the error estimate over the stages plus f at
    the new point.

    ``project`` (optional) maps the solution back onto a constraint manifold (tokens: the sphere)
    before that last stage is evaluated, so the carried derivative belongs to the kept point.
    ``step_with_error`` also returns the per-entry local error estimate.
    """

    name = ""
    order = 0
    embedded_order = 0
    C: tuple = ()
    A: tuple = ()
    B: tuple = ()
    E: tuple = ()

    def __init__(self, f: Callable[[np.ndarray], np.ndarray], project: Callable | None = None):
        self.f = f
        self.project = project
        # the tableau as arrays: one small matrix product per stage instead of a Python sum of terms
        s = len(self.B)
        self._a = [np.array(row, dtype=float) for row in self.A]
        self._b = np.array(self.B, dtype=float)
        self._e = np.array(self.E, dtype=float)
        self._s = s

    def start(self, u: np.ndarray) -> State:
        """The state holding u (its derivative is computed by the first step)."""
        return State(np.array(u, copy=True))

    def _stages(self, state: State, h: float):
        """The stage derivatives k (shape (s + 1, u.size), the last row f at the new point) and u_new."""
        u = state.u
        k = np.empty((self._s + 1, u.size), dtype=np.result_type(u, 1.0))
        k[0] = (state.history[0] if state.history else self.f(u)).ravel()
        flat = u.ravel()
        for i in range(1, self._s):
            k[i] = self.f((flat + h * (self._a[i] @ k[:i])).reshape(u.shape)).ravel()
        new = (flat + h * (self._b @ k[:self._s])).reshape(u.shape)
        if self.project is not None:
            new = self.project(new)
        k[self._s] = self.f(new).ravel()
        return k, new

    def estimate(self, k: np.ndarray, h: float) -> np.ndarray:
        """The local error estimate from the stage derivatives (flat)."""
        return h * (self._e @ k)

    def step_with_error(self, state: State, h: float) -> tuple[State, np.ndarray]:
        """One step of size h: (new state, local error estimate, per entry)."""
        k, new = self._stages(state, h)
        return State(new, (k[-1].reshape(new.shape),)), self.estimate(k, h).reshape(new.shape)

    def step(self, state: State, h: float) -> State:
        """One step of size h (fixed steps: the higher-order solution)."""
        return self.step_with_error(state, h)[0]


class DormandPrince(ExplicitPair):
    """Dormand & Prince (1980) pair of orders 5(4), seven stages with first-same-as-last."""

    name = "dopri5"
    order = 5
    embedded_order = 4
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


class DormandPrince853(ExplicitPair):
    """Dormand & Prince's order-8 pair with Hairer's error estimate of orders 5 and 3 (DOP853; Hairer,
    Nørsett & Wanner, *Solving ODEs I*, 2nd ed., Sec. II.10): twelve stages plus first-same-as-last.
    The estimate is err5 * |err5| / sqrt(|err5|^2 + 0.01 |err3|^2) (2-norms): close to the order-5
    estimate where the two agree, and smaller, like the order-8 error, where err5 << err3 would say
    the step is too cautious.  The controller treats it as an order-7 estimate, as DOP853 does."""

    name = "dop853"
    order = 8
    embedded_order = 7
    C = (0.0, 0.05260015195876773, 0.0789002279381516, 0.1183503419072274, 0.2816496580927726,
         1 / 3, 0.25, 4 / 13, 127 / 195, 0.6, 6 / 7, 1.0)
    A = ((),
         (0.05260015195876773,),
         (0.0197250569845379, 0.0591751709536137),
         (0.02958758547680685, 0.0, 0.08876275643042054),
         (0.2413651341592667, 0.0, -0.8845494793282861, 0.924834003261792),
         (0.037037037037037035, 0.0, 0.0, 0.17082860872947386, 0.12546768756682242),
         (0.037109375, 0.0, 0.0, 0.17025221101954405, 0.06021653898045596, -0.017578125),
         (0.03709200011850479, 0.0, 0.0, 0.17038392571223998, 0.10726203044637328, -0.015319437748624402,
          0.008273789163814023),
         (0.6241109587160757, 0.0, 0.0, -3.3608926294469414, -0.868219346841726, 27.59209969944671,
          20.154067550477894, -43.48988418106996),
         (0.47766253643826434, 0.0, 0.0, -2.4881146199716677, -0.590290826836843, 21.230051448181193,
          15.279233632882423, -33.28821096898486, -0.020331201708508627),
         (-0.9371424300859873, 0.0, 0.0, 5.186372428844064, 1.0914373489967295, -8.149787010746927,
          -18.52006565999696, 22.739487099350505, 2.4936055526796523, -3.0467644718982196),
         (2.273310147516538, 0.0, 0.0, -10.53449546673725, -2.0008720582248625, -17.9589318631188,
          27.94888452941996, -2.8589982771350235, -8.87285693353063, 12.360567175794303,
          0.6433927460157636))
    B = (0.054293734116568765, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003,
         -5.801203960010585, 0.3111643669578199, -0.1521609496625161, 0.20136540080403034,
         0.04471061572777259)
    # order-5 and order-3 error weights over the twelve stages (f at the new point has weight 0)
    E5 = (0.01312004499419488, 0.0, 0.0, 0.0, 0.0, -1.2251564463762044, -0.4957589496572502,
          1.6643771824549864, -0.35032884874997366, 0.3341791187130175, 0.08192320648511571,
          -0.022355307863886294, 0.0)
    E3 = (-0.18980075407240762, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003,
          -5.801203960010585, -0.4226823213237919, -0.1521609496625161, 0.20136540080403034,
          0.02265179219836082, 0.0)
    E = E5

    def __init__(self, f, project=None):
        super().__init__(f, project)
        self._e3 = np.array(self.E3, dtype=float)

    def estimate(self, k: np.ndarray, h: float) -> np.ndarray:
        """Hairer's combined estimate (see the class docstring)."""
        e5 = super().estimate(k, h)
        n5, n3 = np.linalg.norm(e5), np.linalg.norm(h * (self._e3 @ k))
        return e5 * (n5 / math.sqrt(n5 * n5 + 0.01 * n3 * n3)) if n5 > 0 else e5


class ExplicitScheme(Scheme):
    """An explicit pair on the whole right-hand side L u + N(u), nothing implicit: no per-stage solve
    and no growth-rate limit, but a step bounded by explicit stability (the error control rejects steps
    beyond it).  For runs whose L is not stiff (viscosity 0 or small nu K^2)."""

    pair = ExplicitPair

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.name, cls.order, cls.embedded_order = cls.pair.name, cls.pair.order, cls.pair.embedded_order

    def __init__(self, L, N):
        super().__init__(L, N)
        self._pair = self.pair(self._f)

    def _f(self, u):
        return self.L * u + self.N(u)

    def step_with_error(self, state: State, h: float) -> tuple[State, np.ndarray]:
        """One step: (new state carrying F at the new point, local error estimate of each entry)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self._pair.step_with_error(state, h)

    def step(self, state: State, h: float) -> State:
        """One step (fixed steps: the higher-order solution)."""
        return self.step_with_error(state, h)[0]


class DOPRI5(ExplicitScheme):
    """Dormand–Prince 5(4) on L u + N(u) (seven stages, six new right-hand sides per step)."""

    pair = DormandPrince


class DOP853(ExplicitScheme):
    """Dormand–Prince 8(5,3) on L u + N(u) (twelve new right-hand sides per step): fewer, longer steps
    than dopri5 at tight tolerances."""

    pair = DormandPrince853


SCHEMES = {cls.name: cls for cls in (SBDF1, SBDF2, ETDRK4, ARK43, DOPRI5, DOP853)}

#: what ``time.stepper = "auto"`` may pick, and the schemes with an embedded error estimate
AUTO = "auto"
EMBEDDED_SCHEMES = tuple(name for name, cls in SCHEMES.items() if getattr(cls, "embedded_order", 0))


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


def row_error(u: np.ndarray, e: np.ndarray, rtol: float, atol: float) -> float:
    """max_i |e_i| / (atol + rtol |u_i|) over the rows of a state (a token: its displacement in R^d)."""
    e = e.reshape(e.shape[0], -1) if e.ndim > 1 else e[:, None]
    u = u.reshape(u.shape[0], -1) if u.ndim > 1 else u[:, None]
    scale = atol + rtol * np.linalg.norm(u, axis=1)
    return float(np.max(np.linalg.norm(e, axis=1) / scale)) if e.size else 0.0


def perturbation_error(u: np.ndarray, e: np.ndarray, rtol: float, atol: float) -> float:
    """|e|_2 / (atol + rtol |u - u_0|_2): a density's coefficients, the error measured against the
    perturbation from the uniform state (entry 0, the mean, is conserved and excluded)."""
    pert = np.linalg.norm(u.ravel()[1:])
    return float(np.linalg.norm(e.ravel()[1:])) / (atol + rtol * pert)


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
