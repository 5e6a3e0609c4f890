"""Losses of a solve's state, each returning (value, gradient with respect to the state).

A state is a density's coefficients (with the geometry of the ``DensityDynamics``) or the tokens' positions
(n, d) (with the weights of the ``TokenDynamics``).  Gradients are in the real inner product of
``adjoints.py``.  Any Python callable ``f(state, dynamics) -> (value, gradient)`` is a loss too.
"""

from __future__ import annotations

import math

import numpy as np

from .adjoints import to_grid_T


class KL:
    """Relative entropy of the density to a target: KL(rho | target) = int rho log(rho / target).

    ``target``: values on the geometry's grid (a positive density).  Computed with the grid's quadrature;
    rho must stay positive on the grid (a density that is not is refused, never clipped)."""

    def __init__(self, target: np.ndarray):
        self.target = np.asarray(target, dtype=float)
        if np.any(~np.isfinite(self.target)) or np.any(self.target <= 0):
            raise ValueError("KL target: got a density that is not positive and finite at every grid point; "
                             "allowed: positive values on the grid")

    def __call__(self, c, dynamics):
        g = dynamics.geometry
        rho = g.to_grid(c)
        if np.min(rho) <= 0:
            raise FloatingPointError(f"KL: the density is not positive on the grid (min {np.min(rho):.3g}); "
                                     "resolve it with more modes or choose another loss")
        log = np.log(rho / self.target)
        return g.integrate(rho * log), to_grid_T(g, g.weights * (log + 1.0))


class MMD:
    """Squared maximum mean discrepancy with the kernel k(x, y) = e^{kappa (<x, y> - 1)} on the sphere.

    Densities: ``target`` is coefficients; MMD^2 = <G (rho - tau), rho - tau> with G the kernel's Funk–Hecke
    multipliers (exact, no sampling).  Tokens: ``target`` is (points (m, d), weights (m,)) and the state's
    weights are the dynamics' ones."""

    def __init__(self, target, kappa: float = 4.0):
        self.target, self.kappa = target, float(kappa)

    def __call__(self, state, dynamics):
        if hasattr(dynamics, "geometry"):
            g = dynamics.geometry
            k = g.funk_hecke(self.kappa)  # e^{-kappa} scaled: exactly this kernel
            r = state - self.target
            gram = g.gram()
            return float(np.sum(gram * (k * r * np.conj(r)).real)), 2 * gram * k * r
        y, v = self.target
        w = dynamics.w
        kxx = np.exp(self.kappa * (state @ state.T - 1))
        kxy = np.exp(self.kappa * (state @ y.T - 1))
        kyy = np.exp(self.kappa * (y @ y.T - 1))
        value = w @ kxx @ w - 2 * w @ kxy @ v + v @ kyy @ v
        grad = 2 * self.kappa * ((w[:, None] * kxx * w[None, :]) @ state - (w[:, None] * kxy * v[None, :]) @ y)
        return float(value), grad


class Energy:
    """The interaction energy's negative, -(1/(2 beta)) int int e^{beta (<x, y> - 1)} dmu dmu (scaled by
    e^{-beta}; minimising it concentrates the measure), at a given ``beta``."""

    def __init__(self, beta: float):
        self.beta = float(beta)

    def __call__(self, state, dynamics):
        if hasattr(dynamics, "geometry"):
            g = dynamics.geometry
            k = g.funk_hecke(self.beta)
            gram = g.gram()
            e = float(np.sum(gram * (k * state * np.conj(state)).real)) / (2 * self.beta)
            return -e, -gram * k * state / self.beta
        w = dynamics.w
        kxx = np.exp(self.beta * (state @ state.T - 1))
        e = float(w @ kxx @ w) / (2 * self.beta)
        return -e, -((w[:, None] * kxx * w[None, :]) @ state)


class Squared:
    """The mean squared distance sum_i |x_i - y_i|^2 / n to observed positions y of the same tokens (an observed
    trajectory: one per observation time, as ``{time: Squared(y_t)}``); for densities, the L2 distance of the
    coefficients' fields, int (rho - tau)^2."""

    def __init__(self, observed):
        self.observed = np.asarray(observed)

    def __call__(self, state, dynamics):
        r = state - self.observed
        if hasattr(dynamics, "geometry"):
            gram = dynamics.geometry.gram()
            return float(np.sum(gram * (r * np.conj(r)).real)), 2 * gram * r
        n = state.shape[-2]
        return float(np.sum(r * r)) / n, 2 * r / n


def circle_angles(x: np.ndarray) -> np.ndarray:
    """Angles in [0, 2 pi) of points (n, 2) on the circle."""
    return np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * math.pi)


class Wasserstein:
    """W_p^p (p = 1 or 2) to a target measure, with the geodesic distance.

    Tokens (circle or sphere): ``target`` is (points (m, d), weights (m,)); the optimal plan comes from POT
    (``ot.emd``) and the gradient is that of the cost at the optimal plan (envelope theorem; exact where the
    plan is unique).

    Densities on the circle: ``target`` is the target density's values on the grid; both densities are read as
    masses rho_j h at the grid's points (normalised to mass 1).  W_1 is the closed form
    h sum_j |F_j - median(F)|, F the cumulative sum of the difference of the masses (defined for signed
    densities too); W_2^2 is the optimal plan's cost from ``ot.emd`` with the squared arc length, its gradient
    the plan's dual potential, and needs rho >= 0 on the grid (a density that is not is refused, never
    clipped)."""

    def __init__(self, target, p: int = 2):
        if p not in (1, 2):
            raise ValueError(f"Wasserstein p: got {p!r}, allowed: 1 | 2")
        self.target, self.p = target, p
        self._cost = None

    def __call__(self, x, dynamics):
        if hasattr(dynamics, "geometry"):
            return self._density(x, dynamics.geometry)
        import ot

        y, v = self.target
        w = dynamics.w
        cos = np.clip(x @ y.T, -1.0, 1.0)
        dist = np.arccos(cos)
        plan = ot.emd(w / w.sum(), v / v.sum(), dist**self.p)
        value = float(np.sum(plan * dist**self.p))
        # d dist / dx = -y / sin(dist) (ambient; the stepper's projection removes the radial part)
        with np.errstate(divide="ignore", invalid="ignore"):
            ddist = np.where(dist > 1e-12, -1.0 / np.sqrt(1 - cos**2), 0.0)
        coef = plan * (self.p * dist ** (self.p - 1)) * ddist
        return value, coef @ y

    def _density(self, c, g):
        if g.name != "circle":
            raise ValueError(f"Wasserstein: got a density on the {g.name}, allowed: densities on the circle "
                             "(tokens elsewhere)")
        rho = g.to_grid(c)
        h = g.weights
        total = float(np.sum(h * rho))
        a = h * rho / total
        b = h * self.target / np.sum(h * self.target)
        if self.p == 1:
            F = np.cumsum(a - b)
            s = np.sign(F - np.median(F))
            value = float(np.sum(h * np.abs(F - np.median(F))))
            da = np.cumsum((h * s)[::-1])[::-1]  # d value / d a_k = sum_{j >= k} h_j sign(F_j - m)
        else:
            import ot

            if np.min(rho) < 0:
                raise FloatingPointError(f"Wasserstein: the density is negative on the grid (min {np.min(rho):.3g}); "
                                         "resolve it with more modes or use p = 1")
            if self._cost is None or self._cost.shape[0] != len(rho):
                d = np.abs(g.theta[:, None] - g.theta[None, :])
                self._cost = np.minimum(d, 2 * math.pi - d) ** 2
            _, log = ot.emd(a, b, self._cost, log=True)
            value, da = float(log["cost"]), np.asarray(log["u"])
        # a = h rho / total: d value / d rho_k = (h_k / total) (da_k - sum_i da_i a_i)
        grad = h / total * (da - np.dot(da, a))
        return value, to_grid_T(g, grad)


class SlicedWasserstein:
    """Sliced W_2^2 on the sphere: the mean over ``projections`` fixed random directions theta of W_2^2 between
    the measures of <theta, x> (sorted in one dimension; tokens and target with equal numbers and weights).
    The directions are drawn once (``seed``), so the loss is one smooth function of the tokens."""

    def __init__(self, target, projections: int = 64, seed: int = 0):
        y, v = target
        self.y = np.asarray(y, dtype=float)
        d = self.y.shape[1]
        theta = np.random.default_rng(seed).standard_normal((projections, d))
        self.theta = theta / np.linalg.norm(theta, axis=1, keepdims=True)
        self.ys = np.sort(self.y @ self.theta.T, axis=0)

    def __call__(self, x, dynamics):
        n = x.shape[0]
        if n != self.y.shape[0]:
            raise ValueError(f"SlicedWasserstein: got {n} tokens and a target of {self.y.shape[0]}; allowed: equal")
        px = x @ self.theta.T
        order = np.argsort(px, axis=0)
        diff = np.take_along_axis(px, order, axis=0) - self.ys
        L = self.theta.shape[0]
        value = float(np.sum(diff**2) / (n * L))
        gp = np.empty_like(px)
        np.put_along_axis(gp, order, 2 * diff / (n * L), axis=0)
        return value, gp @ self.theta


class _System:
    """One system of a batched token state: its weights."""

    def __init__(self, w):
        self.w = w


class Systems:
    """The sum over independent token systems (the state's leading axis) of one loss per system (each with its
    own target): a measure-to-measure fit sends several input measures to their targets at once."""

    def __init__(self, losses):
        self.losses = list(losses)

    def __call__(self, state, dynamics):
        if state.ndim != 3 or state.shape[0] != len(self.losses):
            raise ValueError(f"Systems: got a state of shape {state.shape}, allowed: ({len(self.losses)}, n, d)")
        total, grad = 0.0, np.zeros_like(state)
        for g, loss in enumerate(self.losses):
            value, grad[g] = loss(state[g], _System(dynamics.w[g]))
            total += value
        return total, grad
