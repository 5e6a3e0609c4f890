"""Weighted tokens on S^{d-1}: the Lagrangian (measure-valued) solution of the same equation.

mu = sum_i w_i delta_{x_i} solves the continuity equation exactly when every token moves with
the attention field of mu (SPEC 1).  With H heads, each with matrices (Q_h, K_h, V_h):

    SA:   dx_i/dt = P_{x_i} sum_h  sum_j w_j e^{beta <Q_h x_i, K_h x_j>} V_h x_j / sum_j w_j e^{beta <Q_h x_i, K_h x_j>}
    USA:  dx_i/dt = P_{x_i} sum_h  sum_j w_j e^{beta <Q_h x_i, K_h x_j>} V_h x_j

with j restricted to j <= i under a causal mask, and P_x = I - x x^T.  The n x n interaction
is computed in blocks of rows, so memory stays O(block * n) (64 MB by default), with the row
maximum of the logits subtracted before exponentiating (no overflow).  Noise of strength nu
(Brownian motion on the sphere, generator nu Lap) is added by a projected Euler–Maruyama step.

Integrators keep every token on the sphere exactly by renormalising after each step:
``rk4`` (classical RK4 in R^d, then x / |x|: order 4, the exact flow stays on the sphere so the
projection error is O(h^5)) and ``euler`` (order 1).  With noise, the deterministic step is
followed by the noise step (weak order 1).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError, NumericalError
from .simulation import HistoryTracker, Simulation
from .stepping import Scheme, State

BLOCK_BYTES = 64 * 2**20


def attention_matrices(spec, d: int, heads: int, rng: np.random.Generator, name: str) -> list[np.ndarray]:
    """Q, K or V for every head from the config: "identity", "random" (N(0, 1/d) entries, drawn
    independently per head), a d x d matrix (list of rows), or a list of ``heads`` of those."""
    if isinstance(spec, str) or _is_matrix(spec):
        per_head = [spec] * heads
    elif isinstance(spec, (list, tuple)) and len(spec) == heads and heads > 1:
        per_head = list(spec)
    else:
        per_head = [None]
    out = []
    for h, s in enumerate(per_head):
        where = f"particles.{name}" + (f"[{h}]" if s is not None and len(per_head) > 1 and not isinstance(spec, str)
                                       and not _is_matrix(spec) else "")
        if isinstance(s, str) and s == "identity":
            out.append(np.eye(d))
        elif isinstance(s, str) and s == "random":
            out.append(rng.standard_normal((d, d)) / math.sqrt(d))
        elif _is_matrix(s) and np.asarray(s, dtype=float).shape == (d, d) and np.all(np.isfinite(np.asarray(s, float))):
            out.append(np.asarray(s, dtype=float))
        else:
            shown = spec if s is None else s
            raise ConfigError(f"{where}: got {_short(shown)}, allowed: 'identity' | 'random' | a finite {d} x {d} "
                              "matrix (list of rows)" + (f", or a list of {heads} of those" if heads > 1 else ""))
    return out


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_matrix(s) -> bool:
    """A non-empty rectangular list of rows of numbers."""
    return isinstance(s, (list, tuple)) and len(s) > 0 and all(
        isinstance(r, (list, tuple)) and len(r) == len(s[0]) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r) for r in s)


class TokenModel:
    """The attention field of a weighted token measure on S^{d-1}."""

    def __init__(self, weights: np.ndarray, beta: float, variant: str = "sa", dim: int = 3, Q=None, K=None,
                 V=None, causal: bool = False, block_bytes: int = BLOCK_BYTES):
        self.w = np.asarray(weights, dtype=float)
        self.n = self.w.size
        self.beta = float(beta)
        self.variant = variant
        self.Q = Q or [np.eye(dim)]  # one head by default; Q = K = V = I
        self.K = K or [np.eye(dim)] * len(self.Q)
        self.V = V or [np.eye(dim)] * len(self.Q)
        self.causal = causal
        self.block = max(1, int(block_bytes // (8 * 3 * max(self.n, 1))))

    def velocity(self, x: np.ndarray) -> np.ndarray:
        """dx_i/dt for every token (n, d), tangent to the sphere at x_i."""
        out = np.zeros_like(x)
        for Q, K, V in zip(self.Q, self.K, self.V):
            q, k, v = x @ Q.T, x @ K.T, x @ V.T
            for i0 in range(0, self.n, self.block):
                i1 = min(self.n, i0 + self.block)
                s = self.beta * (q[i0:i1] @ k.T)
                if self.causal:
                    s[np.arange(i1 - i0)[:, None] + i0 < np.arange(self.n)[None, :]] = -np.inf
                top = s.max(axis=1, keepdims=True)
                e = np.exp(s - top) * self.w
                field = e @ v
                if self.variant == "sa":
                    field /= e.sum(axis=1, keepdims=True)
                else:
                    field *= np.exp(top)
                out[i0:i1] += field
        return out - np.sum(out * x, axis=1, keepdims=True) * x

    def energy_scaled(self, x: np.ndarray) -> float:
        """e^{-beta} (1/(2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>}: the interaction energy of SPEC 4."""
        total = 0.0
        for i0 in range(0, self.n, self.block):
            i1 = min(self.n, i0 + self.block)
            total += self.w[i0:i1] @ np.exp(self.beta * (x[i0:i1] @ x.T - 1)) @ self.w
        return total / (2 * self.beta)


def _normalise(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class ProjectedRK4(Scheme):
    """Classical RK4 in R^d followed by x / |x| (order 4; the tokens stay on the sphere)."""

    name = "rk4"
    order = 4

    def __init__(self, velocity, noise: float = 0.0, rng=None):
        super().__init__(np.zeros(1), velocity)
        self.noise, self.rng = noise, rng

    def _drift(self, x, h):
        f = self.N
        k1 = f(x)
        k2 = f(x + h / 2 * k1)
        k3 = f(x + h / 2 * k2)
        k4 = f(x + h * k3)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    def step(self, state: State, h: float) -> State:
        """One projected step (then the noise step when nu > 0)."""
        x = _normalise(self._drift(state.u, h))
        if self.noise:
            xi = self.rng.standard_normal(x.shape)
            xi -= np.sum(xi * x, axis=1, keepdims=True) * x
            x = _normalise(x + math.sqrt(2 * self.noise * h) * xi)
        return State(x)


class ProjectedEuler(ProjectedRK4):
    """Explicit Euler followed by x / |x| (order 1; with noise: projected Euler–Maruyama)."""

    name = "euler"
    order = 1

    def _drift(self, x, h):
        return x + h * self.N(x)


INTEGRATORS = {cls.name: cls for cls in (ProjectedRK4, ProjectedEuler)}


def sample_tokens(cfg, geometry, n: int, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors in R^d drawn from the [initial] density on ``geometry`` (reproducible with rng).

    von_mises: exact draws from the von Mises(–Fisher) mixture (scipy.stats); every other kind:
    rejection sampling of uniform proposals against the density's coefficients.
    """
    from .initial import initial_coefficients

    d = geometry.dim
    ini = cfg.initial
    if ini.kind == "von_mises":
        from scipy.stats import vonmises_fisher

        w = np.asarray(ini.weights or [1.0] * len(ini.centers), dtype=float)
        comp = rng.choice(len(ini.centers), size=n, p=w / w.sum())
        x = np.empty((n, d))
        for j, (mu, kappa) in enumerate(zip(ini.centers, ini.concentrations)):
            sel = comp == j
            x[sel] = vonmises_fisher(_center_vector(geometry, mu), kappa).rvs(int(sel.sum()), random_state=rng)
        return _normalise(x)
    c = initial_coefficients(cfg, geometry)
    top = 1.05 * float(np.max(geometry.to_grid(c)))
    out, have = [], 0
    while have < n:
        prop = _normalise(rng.standard_normal((max(2 * (n - have), 64), d)))
        keep = prop[rng.uniform(0, top, prop.shape[0]) < geometry.evaluate(c, prop)]
        out.append(keep)
        have += keep.shape[0]
    return np.concatenate(out)[:n]


def _center_vector(geometry, mu) -> np.ndarray:
    if geometry.name == "circle":
        return np.array([math.cos(mu), math.sin(mu)])
    if geometry.name == "sphere":
        v = np.asarray(mu, dtype=float)
        return v / np.linalg.norm(v)
    e = np.zeros(geometry.dim)
    e[-1] = 1.0 if mu == 0 else -1.0
    return e


def smoothed_density(geometry, x, w, bandwidth: float) -> np.ndarray:
    """Coefficients of the token measure smoothed by the heat kernel at time bandwidth^2 / 2
    (a positive density: the measure's coefficients times e^{-l(l+d-2) bandwidth^2 / 2})."""
    return geometry.measure_coefficients(x, w) * np.exp(geometry.laplacian() * bandwidth**2 / 2)


def default_bandwidth(n: int, d: int) -> float:
    """The kernel-density rate on the (d-1)-dimensional sphere: n^{-1/(d+3)}."""
    return n ** (-1.0 / (d + 3))


def max_distance_to_mean(x, w) -> float:
    """max_i |x_i - m| with m the normalised weighted mean: 0 when all tokens coincide."""
    m = w @ x
    norm = np.linalg.norm(m)
    if norm == 0:
        return 2.0
    return float(np.max(np.linalg.norm(x - m / norm, axis=1)))


# -------------------------------------------------------------------------------------------
# a run of tokens: the same run loop and trackers as the spectral solver, another state
def particle_geometry_name(dim: int) -> str:
    """The grid that carries the initial density and the density estimate for tokens in R^dim."""
    return {2: "circle", 3: "sphere"}.get(dim, "zonal")


class ParticleSimulation(Simulation):
    """Weighted tokens driven to t_end: the spectral run loop and trackers, another state.

    ``x`` (n, d) positions, ``weights`` (n,), ``c`` the smoothed density estimate on the grid.
    """

    def __init__(self, cfg, x0: np.ndarray | None = None, weights: np.ndarray | None = None):  # noqa: D107
        from .config import _plain
        from .domains import make_geometry
        from .stepping import FixedStep

        self.cfg = cfg
        p, m = cfg.particles, cfg.model
        self.geometry = make_geometry(particle_geometry_name(p.dim), cfg.grid.modes, cfg.grid.dealias,
                                      cfg.grid.backend, p.dim)
        if x0 is None:
            x0 = sample_tokens(cfg, self.geometry, p.n, np.random.default_rng(cfg.initial.seed))
        x0 = _normalise(np.asarray(x0, dtype=float))
        self.weights = np.full(x0.shape[0], 1.0 / x0.shape[0]) if weights is None else np.asarray(weights, float)
        rng = np.random.default_rng(p.seed)
        mats = {name: attention_matrices(_plain(getattr(p, name)), p.dim, p.heads, rng, name) for name in "QKV"}
        self.model = TokenModel(self.weights, m.beta, m.variant, p.dim, mats["Q"], mats["K"], mats["V"], p.causal)
        self.scheme = INTEGRATORS[p.integrator](self.model.velocity, noise=m.viscosity,
                                                rng=np.random.default_rng([p.seed, cfg.initial.seed, 1]))
        self.controller = FixedStep(cfg.time.dt)
        self.state = self.scheme.start(x0)
        self.t, self.dt, self.steps = 0.0, cfg.time.dt, 0
        self._reset_position()
        self.bandwidth = p.bandwidth or default_bandwidth(x0.shape[0], p.dim)

    @property
    def x(self) -> np.ndarray:
        """Token positions, (n, d)."""
        return self.state.u

    @property
    def c(self) -> np.ndarray:
        """Coefficients of the smoothed density estimate on the grid."""
        return smoothed_density(self.geometry, self.x, self.weights, self.bandwidth)


class TokenGuard:
    """Stops the run (NumericalError) when a token position stops being finite."""

    def step(self, sim) -> None:
        """Check the tokens after every step."""
        if not np.all(np.isfinite(sim.x)):
            raise NumericalError(f"blow-up at t = {sim.t:.6g}: token positions are not finite (step {sim.steps}, "
                                 f"dt = {sim.dt:.3g}); reduce time.dt or model.beta")
        sim.last_good = sim.resume_point()


class TokenHistoryTracker(HistoryTracker):
    """Writes positions, the density estimate and the tokens' diagnostics at each snapshot."""

    def diagnostics(self, sim, c, rho) -> dict:
        """Mass (sum of weights), the tokens' interaction energy, their spread, dt, steps."""
        return {"mass": float(np.sum(sim.weights)), "energy": sim.model.energy_scaled(sim.x),
                "spread": max_distance_to_mean(sim.x, sim.weights), "dt": sim.dt, "steps": sim.steps}

    def extra(self, sim) -> dict:
        """The token positions."""
        return {"positions": sim.x}
