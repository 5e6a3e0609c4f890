"""Diagnostics of a history: growth rates measured in the linear phase.

A mode k is in its linear phase while the nonlinear part of its right-hand side
is negligible: |N_k(c(t))| <= tol |lambda_k| |c_k(t)|.  Then d/dt log|c_k| =
lambda_k + O(tol), so a least-squares fit of log|c_k(t)| over that window measures
lambda_k to relative accuracy ~tol.  N is recomputed from the stored
coefficients with the run's own model: the window is chosen from the data and
the equation, never from the theory it is compared with.
"""

from __future__ import annotations

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
    """Least-squares slope of log(amplitude) against t, and its standard error."""
    y = np.log(amplitude)
    A = np.vstack([t, np.ones_like(t)]).T
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    slope = float(coef[0])
    if t.size > 2:
        resid = y - A @ coef
        s2 = float(resid @ resid) / (t.size - 2)
        stderr = float(np.sqrt(s2 / np.sum((t - t.mean()) ** 2)))
    else:
        stderr = float("nan")
    return slope, stderr


def linear_window(ok: np.ndarray) -> int:
    """Length of the leading run of True in ``ok`` (the linear phase is a prefix of the history)."""
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else int(ok.size)


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
# distances between a token measure and a density (particles vs PDE)
def wasserstein1_circle(geometry, c: np.ndarray, x: np.ndarray, w: np.ndarray, nquad: int = 8192) -> float:
    """W1 between sum_i w_i delta_{x_i} (x: unit vectors in R^2) and the density with Fourier
    coefficients c on the circle: min_a int |F - G - a| dtheta over the CDFs F, G (the optimal
    shift a is the median of F - G).  G is integrated exactly from c; midpoint rule in theta."""
    th = 2 * np.pi * (np.arange(nquad) + 0.5) / nquad
    k = geometry.k[1:]
    prim = c[1:] / (1j * k)  # antiderivative of e^{ik theta} is e^{ik theta} / (ik)
    G = c[0].real * th + 2 * np.real(np.exp(1j * np.outer(th, k)) @ prim) - 2 * np.real(np.sum(prim))
    ang = np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * np.pi)
    order = np.argsort(ang)
    F = np.concatenate([[0.0], np.cumsum(w[order])])[np.searchsorted(ang[order], th)]
    D = F - G
    return float(np.mean(np.abs(D - np.median(D))) * 2 * np.pi)


def kernel_distance(geometry, c: np.ndarray, x: np.ndarray, w: np.ndarray, kappa: float = 1.0,
                    block: int = 2048) -> float:
    """Maximum mean discrepancy with the kernel e^{kappa <x, y>} between sum_i w_i delta_{x_i} and
    the density with coefficients c on ``geometry`` (any sphere):
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
