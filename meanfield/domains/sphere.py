"""The sphere S^2: spherical harmonics up to degree L on a Gauss–Legendre grid.

Coefficients c_lm, 0 <= m <= l <= L, are stored in the healpy / ducc0 / shtns order
(m-major: index m (2L + 1 - m) / 2 + l) for a real field
    rho = sum_l [ c_l0 Y_l0 + 2 Re sum_{m>0} c_lm Y_lm ],
with orthonormal complex Y_lm including the Condon–Shortley phase (scipy's sph_harm_y).
The uniform probability density has c_00 = 1 / sqrt(4 pi).

The grid has ntheta Gauss–Legendre rings, north (colatitude ~0) first, and nphi
equispaced longitudes from 0; ntheta >= dealias (L + 1), nphi >= dealias (2L + 1), so
dealias = 1.5 is the 3/2 rule (products of two degree-L fields projected exactly).

Transforms come from a backend: ``ducc0`` (a wheel, always there) or ``shtns`` (faster, needs
FFTW and a compiler: the ``shtns`` extra).  Both use this layout and grid.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy.special import ive, sph_harm_y

from ..errors import ConfigError
from .base import Geometry
from ..config import DEFAULT_DEALIAS

BACKENDS = ("auto", "ducc0", "shtns")

#: grid.backend = "auto" with several libraries installed times the work of one right-hand side (a synthesis,
#: a gradient synthesis, a divergence analysis) with each, on this grid and thread count, and takes the faster:
#: which wins depends on the machine, the FFTW build and the degree (SHTns was 1.6-2.1x faster than ducc0 on one
#: machine at L <= 255, 0.88x at L = 511, and 0.7x on the sphere example on another). Measured once per process.
_CHOSEN: dict = {}


def _rhs_seconds(backend, repeats: int = 5) -> float:
    """Best of ``repeats`` timings of one right-hand side's transforms with ``backend``."""
    import time

    rng = np.random.default_rng(0)
    n = (backend.lmax + 1) * (backend.lmax + 2) // 2
    c = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    c[: backend.lmax + 1] = c[: backend.lmax + 1].real  # m = 0: real
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        f = backend.synth(c)
        v = backend.grad(c)
        backend.div(v * f)
        best = min(best, time.perf_counter() - t0)
    return best


def fastest_backend(have, lmax: int, ntheta: int, nphi: int, threads: int = 1) -> tuple[str, str]:
    """(name, why): the installed library that runs this grid's right-hand side fastest, by measurement."""
    if len(have) == 1:
        return have[0], "the only one installed"
    key = (tuple(have), lmax, ntheta, nphi, threads)
    if key not in _CHOSEN:
        seconds = {name: _rhs_seconds(_CLASSES[name](lmax, ntheta, nphi, threads)) for name in have}
        best = min(seconds, key=seconds.get)
        _CHOSEN[key] = best, "measured fastest here: " + ", ".join(f"{n} {s * 1e3:.3g} ms" for n, s in seconds.items())
    return _CHOSEN[key]


class DuccBackend:
    """Transforms by ducc0.sht (pure pip wheel)."""

    name = "ducc0"

    def __init__(self, lmax: int, ntheta: int, nphi: int, threads: int = 1):
        self.lmax, self.chosen = lmax, "grid.backend"
        import ducc0

        self.sht = ducc0.sht
        self.version = ducc0.__version__
        self.kw = dict(lmax=lmax, geometry="GL", ntheta=ntheta, nphi=nphi, nthreads=threads)
        ll = np.concatenate([np.arange(m, lmax + 1) for m in range(lmax + 1)])
        self.root = np.sqrt(ll * (ll + 1.0))

    def synth(self, c):
        """Coefficients -> grid."""
        return self.sht.synthesis_2d(alm=c[None], spin=0, **self.kw)[0]

    def analys(self, f):
        """Grid -> coefficients (Gauss–Legendre quadrature: exact below degree 2 ntheta - L)."""
        return self.sht.analysis_2d(map=f[None], spin=0, lmax=self.kw["lmax"], geometry="GL",
                                    nthreads=self.kw["nthreads"])[0]

    def grad(self, c):
        """(d/dtheta, 1/sin(theta) d/dphi) of the field with coefficients c, on the grid."""
        return self.sht.synthesis_2d_deriv1(alm=c[None], **self.kw)

    def div(self, v):
        """Coefficients of the divergence of the tangent field v = (v_theta, v_phi)."""
        e, _ = self.sht.analysis_2d(map=v, spin=1, lmax=self.kw["lmax"], geometry="GL", nthreads=self.kw["nthreads"])
        return -self.root * e  # v = grad S + curl part  ->  E = sqrt(l(l+1)) S, div v = -l(l+1) S


class ShtnsBackend:
    """Transforms by SHTns (compiled against FFTW; the fastest)."""

    name = "shtns"

    def __init__(self, lmax: int, ntheta: int, nphi: int, threads: int = 1):
        self.lmax, self.chosen = lmax, "grid.backend"
        shtns = _import_quietly("shtns")
        self.version = getattr(shtns, "__version__", "")
        self.sh = shtns.sht(lmax, lmax, nthreads=threads)
        self.sh.set_grid(ntheta, nphi, shtns.sht_gauss | shtns.SHT_PHI_CONTIGUOUS, 1e-12)
        ll = self.sh.l.astype(float)
        self.lap = -ll * (ll + 1)

    def synth(self, c):
        """Coefficients -> grid."""
        out = np.empty(self.sh.spat_shape)
        self.sh.SH_to_spat(np.ascontiguousarray(c), out)
        return out

    def analys(self, f):
        """Grid -> coefficients."""
        out = self.sh.spec_array()
        self.sh.spat_to_SH(np.ascontiguousarray(f), out)
        return out

    def grad(self, c):
        """(d/dtheta, 1/sin(theta) d/dphi) on the grid."""
        out = np.empty((2, *self.sh.spat_shape))
        self.sh.SHsph_to_spat(np.ascontiguousarray(c), out[0], out[1])
        return out

    def div(self, v):
        """Coefficients of the divergence of the tangent field v = (v_theta, v_phi)."""
        s, t = self.sh.spec_array(), self.sh.spec_array()
        self.sh.spat_to_SHsphtor(np.ascontiguousarray(v[0]), np.ascontiguousarray(v[1]), s, t)
        return self.lap * s  # v = grad S + curl T  ->  div v = Lap S


def _import_quietly(module: str):
    """Import ``module`` with the process's stdout silenced (SHTns prints a banner from C on import)."""
    import importlib
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            return importlib.import_module(module)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


#: The transform libraries by name (grid.backend).
_CLASSES = {"ducc0": DuccBackend, "shtns": ShtnsBackend}


def installed_backends() -> list[str]:
    """Names of the installed transform libraries, fastest first (found without importing them)."""
    from importlib.util import find_spec

    return [name for name in ("shtns", "ducc0") if find_spec(name) is not None]


def make_backend(name: str, lmax: int, ntheta: int, nphi: int, threads: int = 1):
    """The backend called ``name`` ("auto": the fastest installed), or ConfigError saying how to install it."""
    if name not in BACKENDS:
        raise ConfigError(f"grid.backend: got {name!r}, allowed: {' | '.join(repr(b) for b in BACKENDS)}")
    have = installed_backends()
    if name == "auto":
        if not have:
            raise ConfigError("grid.backend: no spherical-harmonic library found; pip install ducc0")
        name, why = fastest_backend(have, lmax, ntheta, nphi, threads)
        backend = _CLASSES[name](lmax, ntheta, nphi, threads)
        backend.chosen = f"auto: {why}"
        return backend
    if name not in have:
        how = {"ducc0": "pip install ducc0",
               "shtns": "apt-get install -y libfftw3-dev, then pip install 'meanfield[shtns]'"}[name]
        raise ConfigError(f"grid.backend: got {name!r}, which is not installed; {how}")
    return _CLASSES[name](lmax, ntheta, nphi, threads)


def _sphere_points(theta, phi) -> np.ndarray:
    """Unit vectors of the grid (theta x phi), row-major."""
    T, P = np.meshgrid(theta, phi, indexing="ij")
    return np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], axis=-1).reshape(-1, 3)


def grid_size(modes: int, dealias: float) -> tuple[int, int]:
    """(ntheta, nphi) for degree L = modes: >= dealias (L + 1) rings (and >= 32, SHTns' minimum),
    an even, FFT-friendly nphi >= dealias (2L + 1)."""
    ntheta = max(math.ceil(dealias * (modes + 1)), modes + 2, 32)
    nphi = scipy.fft.next_fast_len(max(math.ceil(dealias * (2 * modes + 1)), 2 * modes + 2), real=True)
    while nphi % 2:  # the next even 5-smooth length (243 + 1 = 244 = 4 x 61 made L = 80 at 3/2 2.3x slower)
        nphi = scipy.fft.next_fast_len(nphi + 1, real=True)
    return ntheta, nphi


class Sphere(Geometry):
    """Spherical-harmonic pseudo-spectral discretisation of S^2 up to degree ``modes``."""

    name = "sphere"
    dim = 3
    measure = 4 * math.pi  # |S^2|

    def __init__(self, modes: int, dealias: float = DEFAULT_DEALIAS, backend: str = "auto", threads: int = 1):
        L = self.modes = int(modes)
        self.dealias = float(dealias)
        self.threads = int(threads)
        self.ntheta, self.nphi = grid_size(L, self.dealias)
        self.backend = make_backend(backend, L, self.ntheta, self.nphi, self.threads)
        self.l = np.concatenate([np.arange(m, L + 1) for m in range(L + 1)])
        self.m = np.concatenate([np.full(L + 1 - m, m) for m in range(L + 1)])
        x, w = np.polynomial.legendre.leggauss(self.ntheta)
        self.colatitude = np.arccos(-x)  # ascending: north pole first
        self.longitude = 2 * math.pi * np.arange(self.nphi) / self.nphi
        self.weights = np.outer(w, np.full(self.nphi, 2 * math.pi / self.nphi))
        # CFL length: the resolved scale pi / L (as on the circle), not the crowded pole rows,
        # which a spectral transform method does not see
        self.spacing = 2 * math.pi / self.nphi

    def index(self, l: int, m: int) -> int:
        """Position of (l, m), m >= 0, in a coefficient array."""
        return m * (2 * self.modes + 1 - m) // 2 + l

    def resample(self, c: np.ndarray, modes: int) -> np.ndarray:
        """Coefficients ``c`` of a degree-``modes`` run, truncated or zero-padded to degree L."""
        out = np.zeros(self.spectral_shape, dtype=complex)
        keep = self.l <= modes
        l, m = self.l[keep], self.m[keep]
        out[keep] = c[m * (2 * int(modes) + 1 - m) // 2 + l]
        return out

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Shape of grid arrays: (ntheta, nphi)."""
        return (self.ntheta, self.nphi)

    @property
    def spectral_shape(self) -> tuple[int, ...]:
        """Shape of coefficient arrays: ((L + 1)(L + 2) / 2,)."""
        return (self.l.size,)

    def grid_coords(self) -> dict[str, np.ndarray]:
        """Named 1-D grid coordinates, in the order of the grid axes."""
        return {"colatitude": self.colatitude, "longitude": self.longitude}

    def spectral_coords(self) -> dict[str, np.ndarray]:
        """Along the coefficient axis: ``mode`` (its index) first, then degree l and order m."""
        return {"mode": np.arange(self.l.size), "degree": self.l, "order": self.m}

    def degrees(self) -> np.ndarray:
        """Harmonic degree of each coefficient."""
        return self.l

    def mode_labels(self) -> list[tuple]:
        """(l, m) of each coefficient."""
        return list(zip(self.l.tolist(), self.m.tolist()))

    # --- transforms and calculus ----------------------------------------------------
    def to_grid(self, c):
        """Coefficients -> values on the grid."""
        return self.backend.synth(np.asarray(c, dtype=complex))

    def to_spectral(self, f):
        """Grid values -> coefficients up to degree L."""
        return self.backend.analys(np.asarray(f, dtype=float))

    def grad(self, c):
        """Gradient (theta, phi components) of the field with coefficients c, on the grid."""
        return self.backend.grad(np.asarray(c, dtype=complex))

    def div(self, v):
        """Coefficients of the divergence of the grid tangent field v, shape (2, ntheta, nphi)."""
        return self.backend.div(np.asarray(v, dtype=float))

    def laplacian(self):
        """Eigenvalues of the Laplacian per coefficient: -l(l+1)."""
        return -(self.l * (self.l + 1.0))

    def funk_hecke(self, beta: float):
        """Multipliers of G_beta scaled by e^{-beta}: 4 pi i_l(beta) e^{-beta}."""
        return 4 * math.pi * math.sqrt(math.pi / (2 * beta)) * ive(self.l + 0.5, beta)

    def funk_hecke_radial(self, beta: float):
        """Multipliers of d/dbeta G_beta (the kernel <x, y> e^{beta <x, y>}) scaled by e^{-beta}:
        4 pi sqrt(pi / (2 beta)) (I_{l+3/2} + (l / beta) I_{l+1/2}) e^{-beta}."""
        return 4 * math.pi * math.sqrt(math.pi / (2 * beta)) * (ive(self.l + 1.5, beta)
                                                                + self.l / beta * ive(self.l + 0.5, beta))

    def gram(self) -> np.ndarray:
        """inner(e, e) for each real degree of freedom e of a coefficient: 1 for m = 0, 2 for m > 0
        (the diagonal of ``inner``; the adjoints in meanfield.gradients)."""
        return np.where(self.m == 0, 1.0, 2.0)

    def integrate(self, f) -> float:
        """Integral over S^2 of grid values (Gauss–Legendre x trapezoid)."""
        return float(np.sum(self.weights * f))

    def inner(self, a, b) -> float:
        """Integral of f g for real f, g with coefficients a, b (Parseval, orthonormal Y_lm)."""
        prod = (a * np.conj(b)).real
        return float(np.sum(prod[self.m == 0]) + 2 * np.sum(prod[self.m > 0]))

    def tail(self, c) -> float:
        """Largest |c_lm| / c_00 over degrees in the top third (2L/3 < l <= L)."""
        top = np.abs(c[self.l > (2 * self.modes) // 3])
        return float(top.max() / abs(c[0])) if top.size else 0.0

    def coefficient_ratio(self, c) -> float:
        """max |c_lm| / (sqrt(2l + 1) c_00): at most 1 for a non-negative density (|Y_lm| <= sqrt((2l+1)/4pi))."""
        return float(np.max(np.abs(c) / np.sqrt(2 * self.l + 1.0)) / abs(c[0].real))

    # --- points (tokens) ------------------------------------------------------------
    @staticmethod
    def _loc(x):
        return np.stack([np.arccos(np.clip(x[:, 2], -1, 1)), np.arctan2(x[:, 1], x[:, 0]) % (2 * math.pi)], 1)

    def evaluate(self, c, x):
        """The field with coefficients c at unit vectors x (n, 3) (ducc0's non-uniform synthesis, 1e-13)."""
        import ducc0

        return ducc0.sht.synthesis_general(alm=np.asarray(c, complex)[None], spin=0, lmax=self.modes,
                                           loc=self._loc(x), epsilon=1e-13)[0]

    def measure_coefficients(self, x, w):
        """Coefficients of sum_i w_i delta_{x_i}: c_lm = sum_i w_i conj(Y_lm(x_i))."""
        import ducc0

        return ducc0.sht.adjoint_synthesis_general(map=np.asarray(w, float)[None], spin=0, lmax=self.modes,
                                                   loc=self._loc(x), epsilon=1e-13)[0]

    def points(self):
        """The grid nodes as unit vectors, (ntheta * nphi, 3) in the grid's row-major order."""
        return _sphere_points(self.colatitude, self.longitude)

    def tangent_frame(self) -> np.ndarray:
        """The unit tangents (e_theta (colatitude), e_phi (longitude)) at every node, (2, N, 3): the frame of this
        geometry's grid vectors, nodes in the grid's order."""
        T, P = np.meshgrid(self.colatitude, self.longitude, indexing="ij")
        T, P = T.ravel(), P.ravel()
        e_t = np.stack([np.cos(T) * np.cos(P), np.cos(T) * np.sin(P), -np.sin(T)], axis=1)
        e_p = np.stack([-np.sin(P), np.cos(P), np.zeros_like(P)], axis=1)
        return np.stack([e_t, e_p])

    def quadrature(self, c, oversample: int = 1):
        """(nodes (n, 3), weights (n,), density values (n,)) of the Gauss–Legendre x trapezoid rule
        with oversample times the grid's rings and longitudes: exact for products rho f of degree
        < 2 ntheta' in colatitude and order < nphi', so every coefficient of rho is reproduced."""
        nt, nph = int(oversample) * self.ntheta, int(oversample) * self.nphi
        if oversample == 1:
            rho, theta, phi, w = self.to_grid(c), self.colatitude, self.longitude, self.weights
        else:
            backend = make_backend(self.backend.name, self.modes, nt, nph)
            rho = backend.synth(np.asarray(c, dtype=complex))
            x, wt = np.polynomial.legendre.leggauss(nt)
            theta, phi = np.arccos(-x), 2 * math.pi * np.arange(nph) / nph
            w = np.outer(wt, np.full(nph, 2 * math.pi / nph))
        return _sphere_points(theta, phi), np.ravel(w), np.ravel(rho)

    def quadrature_size(self, oversample: int = 1) -> int:
        """Number of nodes of ``quadrature(c, oversample)``."""
        return int(oversample) ** 2 * self.ntheta * self.nphi

    # --- initial data -----------------------------------------------------------------
    def uniform(self):
        """Coefficients of the uniform probability density 1/(4 pi)."""
        c = np.zeros(self.spectral_shape, dtype=complex)
        c[0] = 1 / math.sqrt(4 * math.pi)
        return c

    def random_perturbation(self, rng, max_mode: int = 0):
        """eta = sqrt(4 pi) sum_{1 <= l <= max_mode} sum_m g_lm Y^real_lm with g_lm ~ N(0, 1): each term
        has RMS 1 (max_mode 0: every degree).  Drawn degree by degree (2l + 1 numbers each, m = 0
        first, then cos and sin parts of m = 1, 2, ...): a seed gives the same g_lm at every resolution."""
        rng = np.random.default_rng(rng)  # a Generator, or a seed (Scientific Python spec 7)
        top = min(max_mode or self.modes, self.modes)
        g = rng.standard_normal((top + 1) ** 2)
        start = self.l**2 + np.maximum(2 * self.m - 1, 0)  # where (l, m) begins in the degree-major stream
        keep = self.l <= top
        a = np.where(keep, g[np.where(keep, start, 0)], 0.0)
        b = np.where(keep & (self.m > 0), g[np.where(keep, start + 1, 0) % g.size], 0.0)
        eta = np.where(self.m == 0, a, (a - 1j * b) / math.sqrt(2)) * math.sqrt(4 * math.pi)
        eta[self.l == 0] = 0
        return eta.astype(complex)

    def mode_function(self, spec):
        """Coefficients of sqrt(4 pi) Y^real_lm for spec = (l, m): m > 0 -> sqrt(2) Re Y_lm,
        m < 0 -> sqrt(2) Im Y_l|m|, m = 0 -> Y_l0 (each with RMS 1 over the sphere)."""
        l, m = spec
        c = np.zeros(self.spectral_shape, dtype=complex)
        i = self.index(l, abs(m))
        s = math.sqrt(4 * math.pi)
        c[i] = s if m == 0 else (s / math.sqrt(2) if m > 0 else -1j * s / math.sqrt(2))
        return c

    def von_mises(self, center, concentration: float):
        """Coefficients of the von Mises–Fisher density kappa e^{kappa <x, mu>} / (4 pi sinh kappa).

        ``center``: a vector mu in R^3 (normalised here).  Exact by Funk–Hecke:
        c_lm = kappa i_l(kappa) / sinh(kappa) * conj(Y_lm(mu)).
        """
        mu = np.asarray(center, dtype=float)
        mu = mu / np.linalg.norm(mu)
        theta, phi = math.acos(max(-1.0, min(1.0, mu[2]))), math.atan2(mu[1], mu[0])
        k = float(concentration)
        # i_l(k) / sinh(k) = sqrt(pi/(2k)) ive(l+1/2, k) * 2 / (1 - e^{-2k})
        radial = k * math.sqrt(math.pi / (2 * k)) * ive(self.l + 0.5, k) * 2 / -math.expm1(-2 * k)
        return radial * np.conj(sph_harm_y(self.l, self.m, theta, phi))
