"""Zonal token measures on S^{d-1}: rings, the exact measure-valued solutions of the axisymmetric equation."""

from __future__ import annotations

import math

import numpy as np

from .integrators import normalise


class RingModel:
    """Zonal token measures on S^{d-1}: each token is a ring {cos(theta) e + sin(theta) u : u in S^{d-2}}
    (a point on the axis when sin(theta) = 0) carrying weight w, the exact measure-valued solutions of
    the zonal (axisymmetric) equation.  A ring is held as the unit vector p = (sin theta, cos theta) of
    the meridian plane (axis last, sin theta >= 0), and moves in theta only.

    Averaging the kernel over the ring of y (v uniform on S^{d-2}, a = beta sin(theta_x) sin(theta_y)):
        avg e^{beta <x, y>}     = e^{beta cos cos} A(a),               A(a) = 0F1(; (d-1)/2; a^2/4)
        avg e^{beta <x, y>} y   = e^{beta cos cos} (sin_y A'(a) u + cos_y A(a) e),
    and A'/A = I_{(d-1)/2}(a) / I_{(d-3)/2}(a): the token field with these kernels in the plane.

    A ring within ``pole_tol`` of a pole is the pole point (its points are closer than 2 pole_tol
    to each other, as tokens about to merge): ``project`` puts it there, where it is at rest.
    Without this a ring at sin(theta) ~ 1e-16 keeps a stiff radial mode (rate ~1) for ever.
    """

    def __init__(self, weights: np.ndarray, beta: float, variant: str = "sa", dim: int = 3, pole_tol: float = 0.0):
        self.beta, self.variant, self.dim = float(beta), variant, int(dim)
        self.nu = (self.dim - 3) / 2  # order of the Bessel function of the ring average
        self.pole_sin = math.sin(min(max(pole_tol, 0.0), math.pi / 2))
        self.set_weights(weights)

    def set_weights(self, weights: np.ndarray) -> None:
        """Use these ring weights."""
        self.w = np.asarray(weights, dtype=float)
        self.n = self.w.size

    def project(self, p: np.ndarray) -> np.ndarray:
        """Back onto the unit circle of the meridian plane, on the side sin(theta) >= 0 (the ring at
        -theta is the ring at theta)."""
        p = normalise(p)
        p[:, 0] = np.abs(p[:, 0])
        pole = p[:, 0] < self.pole_sin
        p[pole, 0], p[pole, 1] = 0.0, np.where(p[pole, 1] < 0, -1.0, 1.0)
        return p

    def ring_average_exact(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log(A(a) e^{-a}), A'(a)/A(a)) for a >= 0, without overflow: the series 0F1 below a = 1,
        scaled Bessel functions above (~1 us per value: ``ring_average`` interpolates it)."""
        from scipy.special import gammaln, hyp0f1, ive

        nu = self.nu
        a = np.asarray(a, dtype=float)
        log_a, ratio = np.empty_like(a), np.empty_like(a)
        small = a < 1.0
        z = a[small]
        s0 = hyp0f1(nu + 1, z * z / 4)
        log_a[small] = np.log(s0) - z
        ratio[small] = z / (2 * (nu + 1)) * hyp0f1(nu + 2, z * z / 4) / s0
        z = a[~small]
        i0 = ive(nu, z)
        log_a[~small] = gammaln(nu + 1) + nu * np.log(2 / z) + np.log(i0)
        ratio[~small] = ive(nu + 1, z) / i0
        return log_a, ratio

    def ring_average(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``ring_average_exact`` by piecewise Chebyshev interpolation on [0, beta] (pieces [0, 1/2],
        [1/2, 1], [1, 2], [2, 4], ...), built once and checked to 1e-13 against the exact values."""
        if not hasattr(self, "_pieces"):
            self._pieces = _interpolants(self.ring_average_exact, max(self.beta, 1.0))
        edges, fits = self._pieces
        a = np.asarray(a, dtype=float)
        flat = a.ravel()
        piece = np.clip(np.searchsorted(edges, flat, side="right") - 1, 0, len(fits) - 1)
        log_a, ratio = np.empty_like(flat), np.empty_like(flat)
        for k in np.unique(piece):
            sel = piece == k
            log_a[sel], ratio[sel] = fits[k][0](flat[sel]), fits[k][1](flat[sel])
        return log_a.reshape(a.shape), ratio.reshape(a.shape)

    def _kernel(self, p: np.ndarray):
        """log of the ring-averaged kernel (n, n) and A'/A (n, n)."""
        s, c = p[:, 0], p[:, 1]
        a = self.beta * np.abs(np.outer(s, s))
        log_a, ratio = self.ring_average(a)
        return self.beta * np.outer(c, c) + a + log_a, ratio

    def _numerator(self, p, e, ratio):
        """sum_j e_ij (sign(s_i) |s_j| A'/A(a_ij), c_j): the ring-averaged sum of e^{beta <x, y>} y."""
        s, c = np.abs(p[:, 0]), p[:, 1]
        side = np.where(p[:, 0] < 0, -1.0, 1.0)  # a stage point may sit on the other side of the axis
        return np.stack([side * ((e * ratio) @ s), e @ c], axis=1)

    def velocity(self, p: np.ndarray) -> np.ndarray:
        """d p_i / dt for every ring (n, 2), tangent to the unit circle at p_i."""
        logk, ratio = self._kernel(p)
        top = logk.max(axis=1, keepdims=True)
        e = np.exp(logk - top) * self.w
        num = self._numerator(p, e, ratio)
        if self.variant == "sa":
            num /= e.sum(axis=1, keepdims=True)
        else:
            num *= np.exp(top)
        return num - np.sum(num * p, axis=1, keepdims=True) * p

    def energy_scaled(self, p: np.ndarray) -> float:
        """e^{-beta} (1/(2 beta)) sum_ij w_i w_j avg e^{beta <x, y>} over rings i and j."""
        logk, _ = self._kernel(p)
        return float(self.w @ np.exp(logk - self.beta) @ self.w) / (2 * self.beta)

    def energy_rate_scaled(self, p: np.ndarray, v: np.ndarray | None = None) -> float:
        """e^{-beta} dE/dt = e^{-beta} sum_i w_i <dp_i/dt, N_i>, N_i the ring-averaged numerator."""
        v = self.velocity(p) if v is None else v
        logk, ratio = self._kernel(p)
        num = self._numerator(p, np.exp(logk - self.beta) * self.w, ratio)
        return float(np.sum(self.w * np.sum(v * num, axis=1)))


def _interpolants(f, top: float, tol: float = 1e-13):
    """Piecewise Chebyshev interpolants of the two outputs of f on [0, top]: (edges, [(c1, c2), ...])."""
    from numpy.polynomial import Chebyshev

    edges = [0.0, 0.5]
    while edges[-1] < top:
        edges.append(edges[-1] * 2)
    fits = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        for deg in (16, 24, 32, 48, 64):
            pair = [Chebyshev.interpolate(lambda z, i=i: f(z)[i], deg, domain=[lo, hi]) for i in range(2)]
            z = np.linspace(lo, hi, 257)
            exact = f(z)
            err = max(float(np.max(np.abs(p(z) - e) / np.maximum(1.0, np.abs(e)))) for p, e in zip(pair, exact))
            if err <= tol:
                break
        fits.append(pair)
    return np.array(edges), fits
