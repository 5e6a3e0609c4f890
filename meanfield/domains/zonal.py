"""Zonal densities on S^{d-1}: functions of t = <x, e> (e the north pole) only, any d >= 2.

rho(x) = sum_{l=0}^{L} a_l R_l(t),   R_l = C_l^{(d-2)/2}(t) / C_l^{(d-2)/2}(1)
(normalised Gegenbauer polynomials, R_l(1) = 1: Chebyshev T_l for d = 2, Legendre P_l for
d = 3), eigenfunctions of the Laplace–Beltrami operator, -Lap R_l = l(l+d-2) R_l.  The surface
measure of S^{d-1} reduces to |S^{d-2}| (1 - t^2)^{(d-3)/2} dt, and the grid is the Gauss
quadrature for that weight (Gauss–Gegenbauer; Gauss–Chebyshev for d = 2), with n >=
dealias (L + 1) nodes, ordered from the north pole (colatitude theta = arccos t ascending).

A zonal tangent field is v e_theta; grad f = -sin(theta) f'(t) e_theta, and the weak form
int R_l div(F) = int sin(theta) R_l'(t) F_theta gives the divergence spectrally, exactly for
polynomial integrands of degree < 2n.  Coefficients are real; they are carried as complex
arrays (zero imaginary part) like every other geometry's.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, ive, roots_chebyt, roots_gegenbauer

from ..config import DEFAULT_DEALIAS, is_int, need, register
from .base import LineGeometry


def sphere_area(d: int) -> float:
    """|S^{d-1}|, the area of the unit sphere in R^d."""
    return math.exp(math.log(2) + (d / 2) * math.log(math.pi) - gammaln(d / 2))  # no overflow of Gamma(d/2)


def log_norm(d: int, l: int) -> float:
    """log of int_{S^{d-1}} R_l^2 = |S^{d-1}| / dim H_l (H_l: spherical harmonics of degree l),
    dim H_l = (2l + d - 2) / (l + d - 2) * binom(l + d - 2, l)."""
    log_area = math.log(2) + (d / 2) * math.log(math.pi) - gammaln(d / 2)
    if l == 0:
        return log_area
    log_dim = math.log((2 * l + d - 2) / (l + d - 2)) + gammaln(l + d - 1) - gammaln(l + 1) - gammaln(d - 1)
    return log_area - log_dim


#: The densities are stored with respect to the surface measure: 1 / |S^{d-1}| and int R_L^2 must stay
#: well inside float64 (1e+-300), with room for products of densities.
LOG_FLOAT_ROOM = 600.0


def max_dimension(L: int) -> int:
    """The largest d for which a zonal density of degree <= L on S^{d-1} is representable in float64."""
    d = 2
    while d < 100_000 and -log_norm(d + 1, L) < LOG_FLOAT_ROOM and -log_norm(d + 1, 0) < LOG_FLOAT_ROOM:
        d += 1
    return d


@register
def check_dimension(cfg) -> None:
    """A zonal density of degree L = grid.modes on S^{d-1} (model.dim, or particles.dim >= 4 for the tokens'
    density estimate) must be representable in float64: it is stored with respect to the surface measure,
    which underflows as d grows (|S^{399}| ~ 1e-273)."""
    if cfg.model.method == "particles":
        where, d = "particles.dim", cfg.particles.dim
    elif cfg.model.geometry == "zonal":
        where, d = "model.dim", cfg.model.dim
    else:
        return
    L = cfg.grid.modes
    if is_int(L) and 1 <= L <= 100_000 and d > 3:
        top = max_dimension(L)
        need(d <= top, where, d, f"<= {top} with grid.modes = {L} (a density with respect to the surface measure "
             f"of S^{{d-1}} and its degree-{L} normalisation leave the float64 range beyond; fewer modes allow a "
             "little more)")


def gegenbauer_table(L: int, alpha: float, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R_l(t) and R_l'(t), l = 0..L, by the normalised three-term recurrence
    R_{n+1} = [2 (n + a) t R_n - n R_{n-1}] / (n + 2a)  (R_0 = 1, R_1 = t; stable, no large C_l(1))."""
    R = np.zeros((L + 1, t.size))
    D = np.zeros((L + 1, t.size))
    R[0] = 1.0
    if L >= 1:
        R[1], D[1] = t, 1.0
    for n in range(1, L):
        R[n + 1] = (2 * (n + alpha) * t * R[n] - n * R[n - 1]) / (n + 2 * alpha)
        D[n + 1] = (2 * (n + alpha) * (R[n] + t * D[n]) - n * D[n - 1]) / (n + 2 * alpha)
    return R, D


class Zonal(LineGeometry):
    """Gegenbauer pseudo-spectral discretisation of zonal densities on S^{dim-1}."""

    name = "zonal"

    def __init__(self, modes: int, dim: int = 3, dealias: float = DEFAULT_DEALIAS):
        L = self.modes = int(modes)
        self.dim = d = int(dim)
        self.dealias = float(dealias)
        self.alpha = (d - 2) / 2
        n = max(math.ceil(self.dealias * (L + 1)), L + 2)
        t, w = roots_chebyt(n) if d == 2 else roots_gegenbauer(n, self.alpha)
        order = np.argsort(-t)  # north pole first
        t, w = t[order], w[order]
        self.t = t
        self.colatitude = np.arccos(t)
        self.sin = np.sqrt(1 - t * t)
        self.weights = sphere_area(d - 1) * w  # |S^{d-2}| times the Gauss weights
        self.measure = sphere_area(d)
        self.npoints = n
        self.l = np.arange(L + 1)
        self.R, self.dR = gegenbauer_table(L, self.alpha, t)
        self.norm = (self.R**2) @ self.weights  # int R_l^2 dsigma (exact: degree 2L < 2n)
        self.spacing = math.pi / n

    def grid_coords(self) -> dict[str, np.ndarray]:
        """Named 1-D grid coordinates: the colatitude of each node."""
        return {"colatitude": self.colatitude}

    # --- transforms and calculus ----------------------------------------------------
    def to_grid(self, c):
        """Coefficients -> values at the nodes."""
        return np.asarray(c).real @ self.R

    def to_spectral(self, f):
        """Node values -> coefficients (Gauss quadrature projection onto R_0..R_L)."""
        return ((self.R * self.weights) @ f / self.norm).astype(complex)

    def grad(self, c):
        """theta-component of the gradient on the grid, shape (1, n): -sin(theta) f'(t)."""
        return (-self.sin * (np.asarray(c).real @ self.dR))[None]

    def div(self, v):
        """Coefficients of the divergence of the zonal field v e_theta (v of shape (1, n))."""
        return ((self.dR * (self.weights * self.sin)) @ v[0] / self.norm).astype(complex)

    def laplacian(self):
        """Eigenvalues of the Laplacian: -l(l + d - 2)."""
        return -(self.l * (self.l + self.dim - 2.0))

    def funk_hecke(self, beta: float):
        """Multipliers of G_beta scaled by e^{-beta}: (2 pi)^{d/2} beta^{1-d/2} ive(l + d/2 - 1, beta)."""
        d = self.dim
        return (2 * math.pi) ** (d / 2) * beta ** (1 - d / 2) * ive(self.l + d / 2 - 1, beta)

    def funk_hecke_radial(self, beta: float):
        """Multipliers of d/dbeta G_beta (the kernel <x, y> e^{beta <x, y>}) scaled by e^{-beta}:
        (2 pi)^{d/2} beta^{1-d/2} (I_{l+d/2} + (l / beta) I_{l+d/2-1}) e^{-beta}."""
        d = self.dim
        return (2 * math.pi) ** (d / 2) * beta ** (1 - d / 2) * (ive(self.l + d / 2, beta)
                                                                 + self.l / beta * ive(self.l + d / 2 - 1, beta))

    def gram(self) -> np.ndarray:
        """inner(e, e) for each coefficient's real part: int R_l^2 (the diagonal of ``inner``)."""
        return self.norm

    def integrate(self, f) -> float:
        """Integral over S^{d-1} of a zonal function given at the nodes."""
        return float(np.sum(self.weights * f))

    def inner(self, a, b) -> float:
        """Integral of f g for zonal f, g with coefficients a, b."""
        return float(np.sum(np.asarray(a).real * np.asarray(b).real * self.norm))

    def tail(self, c) -> float:
        """Largest |a_l| / a_0 over the top third of the degrees, each scaled by its bound."""
        top = self.l > (2 * self.modes) // 3
        return float(np.max(np.abs(c[top]) * self.norm[top]) / (abs(c[0]) * self.measure)) if top.any() else 0.0

    def coefficient_ratio(self, c) -> float:
        """max |a_l| norm_l / (a_0 |S^{d-1}|): at most 1 for a non-negative density (|R_l| <= 1)."""
        return float(np.max(np.abs(c) * self.norm) / (abs(c[0].real) * self.measure))

    # --- points (tokens) ------------------------------------------------------------
    def evaluate(self, c, x):
        """The zonal field with coefficients c at unit vectors x (n, d); the axis is the last coordinate."""
        R, _ = gegenbauer_table(self.modes, self.alpha, np.clip(x[:, -1], -1, 1))
        return np.asarray(c).real @ R

    def measure_coefficients(self, x, w):
        """Coefficients of the zonal part (average over rotations about the axis) of sum_i w_i delta_{x_i}."""
        R, _ = gegenbauer_table(self.modes, self.alpha, np.clip(x[:, -1], -1, 1))
        return ((R @ w) / self.norm).astype(complex)

    def points(self):
        """The nodes as points of the meridian plane, (sin theta, cos theta) (axis last): each stands
        for the ring of S^{d-1} at that colatitude."""
        return np.stack([self.sin, self.t], axis=1)

    def quadrature(self, c, oversample: int = 1):
        """(ring points (n, 2), weights (n,), density values (n,)) of the Gauss–Gegenbauer rule with
        oversample times the grid's nodes: exact for zonal products rho f of degree < 2 n', so every
        coefficient a_l is reproduced.  Each node stands for the ring at its colatitude."""
        n = int(oversample) * self.npoints
        if oversample == 1:
            t, w = self.t, self.weights
        else:
            t, w = roots_chebyt(n) if self.dim == 2 else roots_gegenbauer(n, self.alpha)
            order = np.argsort(-t)
            t, w = t[order], sphere_area(self.dim - 1) * w[order]
        R, _ = gegenbauer_table(self.modes, self.alpha, t)
        return np.stack([np.sqrt(1 - t * t), t], axis=1), w, np.asarray(c).real @ R

    def quadrature_size(self, oversample: int = 1) -> int:
        """Number of nodes of ``quadrature(c, oversample)``."""
        return int(oversample) * self.npoints

    # --- initial data -----------------------------------------------------------------
    def uniform(self):
        """Coefficients of the uniform probability density 1 / |S^{d-1}|."""
        c = np.zeros(self.spectral_shape, dtype=complex)
        c[0] = 1 / self.measure
        return c

    def random_perturbation(self, rng, max_mode: int = 0):
        """eta = sum_{1 <= l <= max_mode} g_l R_l / rms(R_l), g_l ~ N(0, 1): each term has RMS 1 (max_mode
        0: every degree).  Drawn degree by degree: a seed gives the same g_l at every resolution."""
        rng = np.random.default_rng(rng)  # a Generator, or a seed (Scientific Python spec 7)
        top = min(max_mode or self.modes, self.modes)
        g = np.zeros(self.modes + 1)
        g[:top + 1] = rng.standard_normal(top + 1)
        eta = g * np.sqrt(self.measure / self.norm)
        eta[0] = 0
        return eta.astype(complex)

    def mode_function(self, spec):
        """Coefficients of R_l for spec = (l,) (cos(l theta) when d = 2)."""
        (l,) = spec
        c = np.zeros(self.spectral_shape, dtype=complex)
        c[l] = 1.0
        return c

    def von_mises(self, center, concentration: float):
        """The von Mises–Fisher density e^{kappa <x, mu>} / int(...) with mu the north pole
        (center = 0) or the south pole (center = pi).  Exact by Funk–Hecke:
        a_l = (m_l(kappa) / m_0(kappa)) / norm_l, m_l = I_{l+d/2-1} up to a common factor."""
        mu = float(np.atleast_1d(center)[0])
        nu = self.dim / 2 - 1
        a = ive(self.l + nu, concentration) / ive(nu, concentration) / self.norm
        if abs(mu - math.pi) < 1e-12:
            a = a * (-1.0) ** self.l
        return a.astype(complex)
