"""Tokens drawn from a density, and densities estimated from tokens."""

from __future__ import annotations

import math

import numpy as np

from ..physics.initial import initial_coefficients
from .integrators import normalise


def sample_tokens(cfg, geometry, n: int, rng: np.random.Generator, snapshot: dict | None = None) -> np.ndarray:
    """n unit vectors in R^d drawn from the [initial] density on ``geometry`` (reproducible with rng).

    uniform: g / |g| with g ~ N(0, I_d) (exact; the peers' draws); von_mises: exact draws from the von
    Mises(–Fisher) mixture (scipy.stats); every other kind: rejection sampling of uniform proposals against the
    density's coefficients (``snapshot``: the initial.path snapshot of a ``file`` density, read by the caller).
    """
    d = geometry.dim
    ini = cfg.initial
    if ini.kind == "uniform":
        return normalise(rng.standard_normal((n, d)))
    if ini.kind == "von_mises":
        from scipy.stats import vonmises_fisher

        w = np.asarray(ini.weights or [1.0] * len(ini.centers), dtype=float)
        comp = rng.choice(len(ini.centers), size=n, p=w / w.sum())
        x = np.empty((n, d))
        for j, (mu, kappa) in enumerate(zip(ini.centers, ini.concentrations)):
            sel = comp == j
            x[sel] = vonmises_fisher(_center_vector(geometry, mu), kappa).rvs(int(sel.sum()), random_state=rng)
        return normalise(x)
    c = initial_coefficients(cfg, geometry, snapshot)
    top = 1.05 * float(np.max(geometry.to_grid(c)))
    out, have = [], 0
    while have < n:
        prop = normalise(rng.standard_normal((max(2 * (n - have), 64), d)))
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


def heat_kernel(geometry, bandwidth: float) -> np.ndarray:
    """Multipliers of the heat kernel at time bandwidth^2 / 2 per spectral entry: e^{-l(l+d-2) bandwidth^2 / 2}."""
    return np.exp(geometry.laplacian() * bandwidth**2 / 2)


def smoothed_density(geometry, x, w, bandwidth: float) -> np.ndarray:
    """Coefficients of the token measure smoothed by the heat kernel at time bandwidth^2 / 2
    (a positive density: the measure's coefficients times ``heat_kernel``)."""
    return geometry.measure_coefficients(x, w) * heat_kernel(geometry, bandwidth)


def default_bandwidth(n: int, d: int) -> float:
    """The kernel-density rate on the (d-1)-dimensional sphere: n^{-1/(d+3)}."""
    return n ** (-1.0 / (d + 3))


def max_distance_to_mean(x, w) -> float:
    """max_i |x_i - m| with m the normalised weighted mean: 0 when all tokens coincide.  Rows that
    are NaN or carry no weight (merged away) are left out."""
    live = np.all(np.isfinite(x), axis=1) & (np.asarray(w) > 0)
    x, w = x[live], np.asarray(w)[live]
    m = w @ x
    norm = np.linalg.norm(m)
    if norm == 0:
        return 2.0
    return float(np.max(np.linalg.norm(x - m / norm, axis=1)))
