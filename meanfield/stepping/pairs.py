"""Explicit embedded Runge–Kutta pairs: Dormand–Prince 5(4) and 8(5,3), as tableaus.

``ExplicitPair`` advances du/dt = f(u) (the token solver uses it, with a projection back onto the sphere);
``ExplicitScheme`` wraps a pair around the whole right-hand side L u + N(u) of a density (dopri5, dop853):
no solve and no growth-rate limit, but a step bounded by explicit stability.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .schemes import Scheme, State, counted


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
        self.f = counted(self, f)
        self.nfev = 0  # evaluations of f so far
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
