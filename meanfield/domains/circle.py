"""The circle S^1: real Fourier series on an equispaced, de-aliased grid.

Spectral coefficients are c_k, k = 0..K, with rho(theta) = sum_{k=-K}^{K} c_k e^{i k theta}
and c_{-k} = conj(c_k); so c_0 is the mean of rho and the uniform density has c_0 = 1/(2 pi).
The grid has M >= dealias * (2K + 1) points.  dealias = 1.5 (the 3/2 rule) forms a product
of two degree-K functions without aliasing onto the retained modes; the default 2 also keeps
SA's non-polynomial flux rho grad(psi)/psi accurate (docs/numerics.md).
"""

from __future__ import annotations

import math

import ducc0
import numpy as np
import scipy.fft
from scipy.special import ive

from ..config import DEFAULT_DEALIAS
from .base import LineGeometry



#: measure_coefficients sums directly below this many (tokens x modes), by ducc0's non-uniform FFT above
#: (65,536 tokens x 129 modes: 0.82 s direct, 0.003 s non-uniform, relative difference 8e-16)
NUFFT_FROM = 2**18


class Circle(LineGeometry):
    """Fourier pseudo-spectral discretisation of S^1 with largest wavenumber ``modes``."""

    name = "circle"
    dim = 2
    measure = 2 * math.pi  # |S^1|

    def __init__(self, modes: int, dealias: float = DEFAULT_DEALIAS, threads: int = 1):
        self.modes = int(modes)
        self.threads = int(threads)
        self.dealias = float(dealias)
        n_min = max(math.ceil(self.dealias * (2 * self.modes + 1)), 2 * self.modes + 2)
        self.npoints = scipy.fft.next_fast_len(n_min, real=True)
        self.k = np.arange(self.modes + 1)
        self.theta = 2 * math.pi * np.arange(self.npoints) / self.npoints
        self.weights = np.full(self.npoints, 2 * math.pi / self.npoints)
        self.spacing = 2 * math.pi / self.npoints
        self._ik = 1j * self.k
        # the transport term's work arrays: three padded coefficient rows in, three grid rows out
        self._rows = np.zeros((3, self.npoints // 2 + 1), dtype=complex)
        self._grid = np.empty((3, self.npoints))
        self._flux_hat = np.empty(self.npoints // 2 + 1, dtype=complex)

    def grid_coords(self) -> dict[str, np.ndarray]:
        """Named 1-D grid coordinates, in the order of the grid axes."""
        return {"theta": self.theta}

    # --- transforms ---------------------------------------------------------------
    def to_grid(self, c: np.ndarray) -> np.ndarray:
        """Coefficients c_k (k = 0..K) -> values on the grid."""
        c = np.asarray(c)
        padded = np.zeros((*c.shape[:-1], self.npoints // 2 + 1), dtype=complex)
        padded[..., : self.modes + 1] = c[..., : self.modes + 1]
        return ducc0.fft.c2r(padded, axes=(-1,), lastsize=self.npoints, forward=False, nthreads=self.threads)

    def to_spectral(self, f: np.ndarray) -> np.ndarray:
        """Grid values -> coefficients c_k, k = 0..K (higher modes are dropped)."""
        f = np.asarray(f, dtype=float)
        return ducc0.fft.r2c(f, axes=(-1,), forward=True, inorm=2, nthreads=self.threads)[..., : self.modes + 1]

    def flux_divergence(self, psi: np.ndarray, c: np.ndarray, quotient: bool, scale: float) -> np.ndarray:
        """Coefficients of div(rho v), v = scale * grad(psi) [/ psi]: the three (two for USA) inverse
        transforms in one batched ducc0 call into preallocated rows, one forward transform.  About
        half the cost of separate scipy.fft calls at K <= 512 was per-call overhead and padding copies."""
        K, rows, grid = self.modes + 1, self._rows, self._grid
        n = 3 if quotient else 2
        np.multiply(self._ik, psi, out=rows[0, :K])
        rows[1, :K] = c
        if quotient:
            rows[2, :K] = psi
        ducc0.fft.c2r(rows[:n], axes=(1,), lastsize=self.npoints, forward=False, out=grid[:n],
                      nthreads=self.threads)
        flux = grid[0]
        flux *= grid[1]
        if quotient:
            with np.errstate(divide="ignore", invalid="ignore"):
                flux /= grid[2]
        ducc0.fft.r2c(flux, forward=True, inorm=2, out=self._flux_hat, nthreads=self.threads)
        out = self._ik * self._flux_hat[:K]
        out *= scale
        return out

    def grad(self, c: np.ndarray) -> np.ndarray:
        """Gradient of the function with coefficients c, on the grid, shape (1, M)."""
        return self.to_grid(1j * self.k * c)[None]

    def div(self, v: np.ndarray) -> np.ndarray:
        """Spectral coefficients of the divergence of the grid vector field v (shape (1, M))."""
        return 1j * self.k * self.to_spectral(v[0])

    def laplacian(self) -> np.ndarray:
        """Eigenvalues of the Laplacian per spectral entry: -k^2."""
        return -(self.k.astype(float) ** 2)

    def funk_hecke(self, beta: float) -> np.ndarray:
        """Multipliers of G_beta scaled by e^{-beta}: (G rho)_k = e^beta * 2 pi ive(k, beta) rho_k."""
        return 2 * math.pi * ive(self.k, beta)

    def funk_hecke_radial(self, beta: float) -> np.ndarray:
        """Multipliers of d/dbeta G_beta (the kernel <x, y> e^{beta <x, y>}) scaled by e^{-beta}:
        2 pi (I_{k+1} + (k / beta) I_k) e^{-beta} = pi (I_{k-1} + I_{k+1}) e^{-beta}."""
        return 2 * math.pi * (ive(self.k + 1, beta) + self.k / beta * ive(self.k, beta))

    def gram(self) -> np.ndarray:
        """inner(e, e) for each real degree of freedom e of a coefficient (its real or imaginary part):
        2 pi for k = 0, 4 pi above (the diagonal of ``inner``; the adjoints in meanfield.gradients)."""
        g = np.full(self.modes + 1, 4 * math.pi)
        g[0] = 2 * math.pi
        return g

    def integrate(self, f: np.ndarray) -> float:
        """Integral over S^1 of grid values f (exact for degree < M)."""
        return float(np.sum(self.weights * f))

    def inner(self, a: np.ndarray, b: np.ndarray) -> float:
        """Integral of f g for real f, g with coefficients a, b (Parseval)."""
        s = a[0].real * b[0].real + 2 * np.sum((a[1:] * np.conj(b[1:])).real)
        return float(2 * math.pi * s)

    def coefficient_ratio(self, c: np.ndarray) -> float:
        """max |c_k| / c_0: at most 1 for a non-negative density."""
        return float(np.max(np.abs(c)) / abs(c[0].real))

    def tail(self, c: np.ndarray) -> float:
        """Largest |c_k| over the top third of the retained modes, relative to c_0."""
        top = c[max(1, (2 * self.modes) // 3 + 1):]
        return float(np.max(np.abs(top)) / abs(c[0])) if top.size else 0.0

    # --- points (tokens) ------------------------------------------------------------
    def evaluate(self, c: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The field with coefficients c at unit vectors x (shape (n, 2)), by direct summation."""
        theta = np.arctan2(x[:, 1], x[:, 0])
        return c[0].real + 2 * np.real(np.exp(1j * np.outer(theta, self.k[1:])) @ c[1:])

    def measure_coefficients(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Coefficients of the measure sum_i w_i delta_{x_i}: c_k = sum_i w_i e^{-ik theta_i} / (2 pi)."""
        theta = np.arctan2(x[:, 1], x[:, 0])
        if theta.size * self.k.size < NUFFT_FROM:
            return np.exp(-1j * np.outer(self.k, theta)) @ w / self.measure
        import ducc0

        K = int(self.k[-1])
        out = np.zeros(2 * K + 2, dtype=complex)  # modes -K-1 .. K in FFT order; eps 1e-13 (measured 8e-16)
        ducc0.nufft.nu2u(coord=theta[:, None], points=np.asarray(w, dtype=complex), forward=True, epsilon=1e-13,
                         nthreads=1, out=out, periodicity=2 * np.pi, fft_order=True)
        return out[:K + 1] / self.measure

    def points(self) -> np.ndarray:
        """The grid nodes as unit vectors (M, 2)."""
        return np.stack([np.cos(self.theta), np.sin(self.theta)], axis=1)

    def tangent_frame(self) -> np.ndarray:
        """The unit tangent e_theta at every node, (1, M, 2): the frame of this geometry's grid vectors."""
        x = self.points()
        return np.stack([-x[:, 1], x[:, 0]], axis=1)[None]

    def quadrature(self, c: np.ndarray, oversample: int = 1):
        """(nodes (n, 2), weights (n,), density values (n,)) of the equispaced rule with
        oversample * M points: sum_j w_j rho_j f(x_j) is exact for trigonometric polynomials
        rho f of degree < oversample * M, so every coefficient of rho is reproduced."""
        m = int(oversample) * self.npoints
        theta = 2 * math.pi * np.arange(m) / m
        rho = scipy.fft.irfft(c, n=m, norm="forward")  # once per hand-off: no need for ducc0's speed
        return np.stack([np.cos(theta), np.sin(theta)], axis=1), np.full(m, 2 * math.pi / m), rho

    def quadrature_size(self, oversample: int = 1) -> int:
        """Number of nodes of ``quadrature(c, oversample)``."""
        return int(oversample) * self.npoints

    # --- initial data --------------------------------------------------------------
    def uniform(self) -> np.ndarray:
        """Coefficients of the uniform probability density 1/(2 pi)."""
        c = np.zeros(self.spectral_shape, dtype=complex)
        c[0] = 1 / self.measure
        return c

    def random_perturbation(self, rng: np.random.Generator, max_mode: int = 0) -> np.ndarray:
        """Coefficients of eta = sum_{1<=k<=max_mode} (a_k cos k theta + b_k sin k theta), a_k, b_k ~ N(0, 1)
        (max_mode 0: every mode).  Drawn mode by mode (a_1, b_1, a_2, ...): a seed gives the same
        a_k, b_k at every resolution."""
        rng = np.random.default_rng(rng)  # a Generator, or a seed (Scientific Python spec 7)
        top = min(max_mode or self.modes, self.modes)
        g = rng.standard_normal((top, 2))
        eta = np.zeros(self.spectral_shape, dtype=complex)
        eta[1:top + 1] = (g[:, 0] - 1j * g[:, 1]) / 2
        return eta

    def mode_function(self, spec) -> np.ndarray:
        """Coefficients of cos(k theta) for spec = (k,)."""
        (k,) = spec
        c = np.zeros(self.spectral_shape, dtype=complex)
        if k == 0:
            c[0] = 1.0
        else:
            c[k] = 0.5
        return c

    def von_mises(self, center, concentration: float) -> np.ndarray:
        """Coefficients of the von Mises density e^{kappa cos(theta - mu)} / (2 pi I_0(kappa)).

        ``center`` is the angle mu.  Exact: c_k = I_k(kappa) / (2 pi I_0(kappa)) e^{-i k mu}.
        """
        mu = float(np.atleast_1d(center)[0])
        return ive(self.k, concentration) / ive(0, concentration) / self.measure * np.exp(-1j * self.k * mu)
