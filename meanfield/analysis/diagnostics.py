"""Diagnostics of a history: growth rates measured in the linear phase.

A mode k is in its linear phase while the nonlinear part of its right-hand side
is negligible: |N_k(c(t))| <= tol |lambda_k| |c_k(t)|.  Then d/dt log|c_k| =
lambda_k + O(tol), so a least-squares fit of log|c_k(t)| over that window measures
lambda_k to relative accuracy ~tol.  N is recomputed from the stored
coefficients with the run's own model: the window is chosen from the data and
the equation, never from the theory it is compared with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Coefficients below this multiple of rho_0 are at the round-off noise floor and are not fitted.
NOISE_FLOOR = 1e-11


@dataclass(frozen=True)
class RateFit:
    """A measured growth rate of one mode."""

    mode: tuple
    measured: float
    stderr: float
    t_start: float
    t_stop: float
    points: int
    status: str  # "ok" | "noise" (below the noise floor) | "nonlinear" (no linear window)


def fit_rate(t: np.ndarray, amplitude: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of log(amplitude) against t, and its standard error.  Time is fitted in units
    of its span (USA at beta = 400 runs over t ~ 1e-171, where t^2 underflows)."""
    y = np.log(amplitude)
    t = np.asarray(t, dtype=float)
    scale = float(np.max(np.abs(t - t[0]))) or 1.0
    s = (t - t[0]) / scale
    A = np.vstack([s, np.ones_like(s)]).T
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    slope = float(coef[0]) / scale
    if t.size > 2:
        resid = y - A @ coef
        s2 = float(resid @ resid) / (t.size - 2)
        stderr = float(np.sqrt(s2 / np.sum((s - s.mean()) ** 2))) / scale
    else:
        stderr = float("nan")
    return slope, stderr


def linear_window(ok: np.ndarray) -> int:
    """Length of the leading run of True in ``ok`` (the linear phase is a prefix of the history)."""
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else int(ok.size)


def crossing_time(t: np.ndarray, y: np.ndarray, level: float) -> float:
    """When the positive, exponentially growing series ``y`` (at times ``t``) first reaches ``level``: log(y)
    interpolated linearly between the two snapshots around the crossing; nan if it never does or already
    does at the first snapshot (no crossing seen)."""
    hit = np.flatnonzero(np.asarray(y) >= level)
    if hit.size == 0 or hit[0] == 0:
        return math.nan
    i = int(hit[0])
    return float(t[i - 1] + (t[i] - t[i - 1]) * math.log(level / y[i - 1]) / math.log(y[i] / y[i - 1]))


def measure_growth_rates(time: np.ndarray, rho_hat: np.ndarray, model, tol: float = 1e-5,
                         min_points: int = 3) -> list[RateFit]:
    """Fit the growth rate of every mode k >= 1 of a history over its linear window.

    ``rho_hat``: (n, *spectral_shape) coefficients; ``model``: the run's AttentionModel.
    """
    n = time.size
    flat = rho_hat.reshape(n, -1)
    L = np.ravel(model.L)
    nonlin = np.array([np.ravel(model.nonlinear(rho_hat[i])) for i in range(n)])
    c0 = np.abs(flat[:, 0].real)
    labels = model.geometry.mode_labels()
    fits = []
    for j in range(1, flat.shape[1]):
        amp = np.abs(flat[:, j])
        above = amp > NOISE_FLOOR * c0
        linear = np.abs(nonlin[:, j]) <= tol * abs(L[j]) * amp
        m_noise = linear_window(above)
        m = linear_window(above & linear)
        mode = labels[j]
        if m_noise < min_points:
            fits.append(RateFit(mode, np.nan, np.nan, np.nan, np.nan, m_noise, "noise"))
        elif m < min_points:
            fits.append(RateFit(mode, np.nan, np.nan, np.nan, np.nan, m, "nonlinear"))
        else:
            slope, err = fit_rate(time[:m], amp[:m])
            fits.append(RateFit(mode, slope, err, float(time[0]), float(time[m - 1]), m, "ok"))
    return fits


# -------------------------------------------------------------------------------------------
def mean_overlap(x: np.ndarray, w: np.ndarray | None = None) -> float:
    """The mean pairwise overlap sum_{i != j} w_i w_j <x_i, x_j> / sum_{i != j} w_i w_j of tokens ``x`` (n x d,
    unit rows) with weights ``w`` (default: equal); 1 when they have synchronised, nan for fewer than two."""
    w = np.full(len(x), 1.0 / max(len(x), 1)) if w is None else np.asarray(w, float)
    m = w @ x
    pairs = w.sum() ** 2 - np.sum(w * w)
    if len(x) < 2 or pairs <= 0:
        return math.nan
    return float((m @ m - np.sum(w * w * np.einsum("ij,ij->i", x, x))) / pairs)


def circle_values(ck: np.ndarray, points: int, midpoints: bool = False) -> np.ndarray:
    """sum_{k >= 1} 2 Re(c_k e^{ik theta_j}), the departure of a real circle function from its mean, at the
    ``points`` angles theta_j = 2 pi j / points (``midpoints``: 2 pi (j + 1/2) / points).  ``ck`` holds
    c_1 .. c_K on its last axis (any leading axes: one series each); one real FFT per series, K < points / 2."""
    ck = np.asarray(ck)
    K = ck.shape[-1]
    if 2 * K >= points:
        raise ValueError(f"circle_values: {K} modes need more than {2 * K} points, got {points}")
    if midpoints:  # evaluate at theta + pi / points: a phase per mode
        ck = ck * np.exp(1j * np.pi * np.arange(1, K + 1) / points)
    spec = np.zeros((*ck.shape[:-1], points // 2 + 1), dtype=complex)
    spec[..., 1:K + 1] = ck
    return np.fft.irfft(spec, points, axis=-1) * points


# -------------------------------------------------------------------------------------------
# distances between a token measure and a density (particles vs PDE)
def wasserstein1_circle(geometry, c: np.ndarray, x: np.ndarray, w: np.ndarray, nquad: int = 8192) -> float:
    """W1 between sum_i w_i delta_{x_i} (x: unit vectors in R^2) and the density with Fourier
    coefficients c on the circle: min_a int |F - G - a| dtheta over the CDFs F, G (the optimal
    shift a is the median of F - G).  G is integrated exactly from c; midpoint rule in theta."""
    th = 2 * np.pi * (np.arange(nquad) + 0.5) / nquad
    prim = c[1:] / (1j * geometry.k[1:])  # antiderivative of e^{ik theta} is e^{ik theta} / (ik)
    G = c[0].real * th + circle_values(prim, nquad, midpoints=True) - 2 * np.real(np.sum(prim))
    ang = np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * np.pi)
    order = np.argsort(ang)
    F = np.concatenate([[0.0], np.cumsum(w[order])])[np.searchsorted(ang[order], th)]
    D = F - G
    return float(np.mean(np.abs(D - np.median(D))) * 2 * np.pi)


def wasserstein1_densities_circle(c1: np.ndarray, c2: np.ndarray, nquad: int = 8192) -> float:
    """W1 between two densities on the circle given by their Fourier coefficients (k = 0..K, the same K):
    min_a int |F_1 - F_2 - a| dtheta, the CDF difference integrated exactly from c1 - c2."""
    d = np.asarray(c1)[1:] - np.asarray(c2)[1:]
    D = circle_values(d / (1j * np.arange(1, d.size + 1)), nquad, midpoints=True)
    return float(np.mean(np.abs(D - np.median(D))) * 2 * np.pi)


def kernel_distance(geometry, c: np.ndarray, x: np.ndarray, w: np.ndarray, kappa: float = 1.0,
                    block: int = 2048) -> float:
    """Maximum mean discrepancy with the kernel e^{kappa <x, y>} between sum_i w_i delta_{x_i} and
    the density with coefficients c on ``geometry`` (any sphere)::

        MMD^2 = sum_ij w_i w_j k(x_i, x_j) - 2 sum_i w_i (G rho)(x_i) + int (G rho) rho,

    with G the kernel's Funk–Hecke multiplier (exact in the density's coefficients).  A metric
    for probability measures (the kernel is positive definite), scaled by e^{-kappa}."""
    g = np.asarray(geometry.funk_hecke(kappa))  # e^{-kappa} multipliers
    pde = geometry.inner(g * c, c)
    cross = float(w @ geometry.evaluate(g * c, x))
    tok = 0.0
    for i0 in range(0, x.shape[0], block):
        tok += float(w[i0:i0 + block] @ np.exp(kappa * (x[i0:i0 + block] @ x.T - 1)) @ w)
    return float(np.sqrt(max(tok - 2 * cross + pde, 0.0)))


# -------------------------------------------------------------------------------------------
# long runs: when clusters merge
