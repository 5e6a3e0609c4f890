"""Exact adjoints of a geometry's transforms, from its own forward transforms.

Coefficient arrays are complex but stand for real degrees of freedom (the real and imaginary
parts; a field is real), so "adjoint" means the transpose in the real inner products

    <a, b> = Re sum_i a_i conj(b_i)   (coefficients),      <f, g> = sum_j f_j g_j   (grid values).

With Phi the basis functions at the nodes, n_i their norms, w the quadrature weights and
gram = ``geometry.gram()`` (the diagonal of the geometry's Parseval inner product), the forward
maps are to_grid c = Re Phi (b c), to_spectral f = Phi^H (w f) / n, div v = -(grad)^* weighted, and
the quadrature is exact for the degrees involved, so

    to_grid^T g = gram * to_spectral(g / w)        to_spectral^T h = w * to_grid(h / gram)
    grad^T v    = -gram * div(v / w)               div^T y         = -w * grad(y / gram)

The dot-product test (tests/test_gradients.py) checks each to 1e-12 on every geometry.
"""

from __future__ import annotations

import numpy as np


def inner(a: np.ndarray, b: np.ndarray) -> float:
    """The real inner product Re sum a conj(b) of two arrays (coefficients or grid values)."""
    return float(np.sum((np.asarray(a) * np.conj(b)).real))


def to_grid_T(geometry, g: np.ndarray, gram=None) -> np.ndarray:
    """Transpose of ``geometry.to_grid``: grid values -> coefficients (``gram``: geometry.gram(), if kept)."""
    return (geometry.gram() if gram is None else gram) * geometry.to_spectral(g / geometry.weights)


def to_spectral_T(geometry, h: np.ndarray, gram=None) -> np.ndarray:
    """Transpose of ``geometry.to_spectral``: coefficients -> grid values."""
    return geometry.weights * geometry.to_grid(h / (geometry.gram() if gram is None else gram))


def grad_T(geometry, v: np.ndarray, gram=None) -> np.ndarray:
    """Transpose of ``geometry.grad``: a grid vector field (components first) -> coefficients."""
    return -(geometry.gram() if gram is None else gram) * geometry.div(v / geometry.weights)


def div_T(geometry, y: np.ndarray, gram=None) -> np.ndarray:
    """Transpose of ``geometry.div``: coefficients -> a grid vector field."""
    return -geometry.weights * geometry.grad(y / (geometry.gram() if gram is None else gram))
