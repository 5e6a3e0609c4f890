"""The attention kernels: e^{beta <x, y>} expanded in harmonics (Funk–Hecke), its reach for general heads, and
the causal (ALiBi) kernel over prompt positions.

With a_l the kernel's scaled Legendre (Fourier) weights, e^{beta (t - 1)} = sum_l a_l P_l(t) (S^2: a_l =
(2l + 1) sqrt(pi / (2 beta)) ive(l + 1/2, beta); circle: a_0 = ive(0, beta), a_k = 2 ive(k, beta),
P_k(t) = cos(k arccos t)); |P_l| <= 1 and |grad_S P_l(<x, y>)| <= l(l + 1) bound what the degrees above L
add to e^{-beta} psi and to e^{-beta} grad psi / beta by tail(L) = sum_{l > L} a_l (1 + l (l + 1) / beta)
(the weights sum to 1).  Everything is scaled by e^{-beta} (ive), never overflowing.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ive

#: the quadrature must leave the kernel's coefficients beyond its exact degree below this (relative)
QUADRATURE_TOL = 1e-15


def kernel_weights(beta: float, dim: int, top: int) -> np.ndarray:
    """a_0..a_top: e^{beta (t - 1)} = sum_l a_l P_l(t) on S^{dim - 1} (dim = 2: Chebyshev, 3: Legendre)."""
    l = np.arange(top + 1, dtype=float)
    if dim == 2:
        a = 2 * ive(l, beta)
        a[0] = ive(0, beta)
        return a
    return (2 * l + 1) * math.sqrt(math.pi / (2 * beta)) * ive(l + 0.5, beta)


def degree(beta: float, dim: int, tol: float) -> int:
    """The least L with tail(L) <= tol (module docstring); tol is relative to e^{-beta} psi."""
    top = int(4 * beta + 40 * math.sqrt(beta) + 64)  # far past the Gaussian decay of a_l ~ e^{-l^2 / (2 beta)}
    l = np.arange(top + 1, dtype=float)
    terms = kernel_weights(beta, dim, top) * (1 + l * (l + 1) / beta)
    tails = np.cumsum(terms[::-1])[::-1]  # tails[L] = sum_{l >= L}
    ok = np.nonzero(tails <= tol)[0]
    return max(int(ok[0]) - 1, 1) if ok.size else top


def kernel_radius(beta: float, Q: np.ndarray, K: np.ndarray) -> float:
    """max_x beta |K^T Q x| = beta ||K^T Q||_2: the largest |a| of e^{<a, y>}, a = beta K^T Q x."""
    return beta * float(np.linalg.norm(K.T @ Q, 2))


def kernel_degree(a: float, dim: int, tol: float = QUADRATURE_TOL) -> int:
    """The least degree l such that the coefficients of e^{a (<x, y> - 1)} above l weigh at most ``tol``
    (relative: the weights sum to 1).  0 for a = 0 (a constant)."""
    if a <= 0:
        return 0
    top = int(4 * a + 40 * math.sqrt(a) + 64)
    w = kernel_weights(a, 2 if dim == 2 else 3, top)
    tails = np.cumsum(w[::-1])[::-1]  # tails[l] = sum_{l' >= l}
    ok = np.nonzero(tails <= tol)[0]
    return max(int(ok[0]) - 1, 0) if ok.size else top


def alibi_kernel(s: float, sp: np.ndarray, alibi: float) -> np.ndarray:
    """k_lambda(s, s') for s' in [0, s] (lambda = 0: 1 / s)."""
    if alibi == 0:
        return np.full_like(np.asarray(sp, dtype=float), 1.0 / s)
    return alibi * np.exp(-alibi * (s - np.asarray(sp))) / -math.expm1(-alibi * s)
