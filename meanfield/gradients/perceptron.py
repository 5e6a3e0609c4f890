"""The perceptron (MLP) velocity term  P_x W sigma(A x + b)  and its transpose.

W is d x m, A is m x d, b has m entries (m units); sigma acts entry by entry.  At a point x of the sphere
the field is the tangent part of the ambient vector W sigma(A x + b).
"""

from __future__ import annotations

import numpy as np

from ..physics.perceptron import ACTIVATIONS, activation  # noqa: F401 (the names are this module's API too)


class Perceptron:
    """The ambient field u(x) = W sigma(A x + b) at points x (..., d), and its transpose."""

    def __init__(self, name: str = "relu"):
        self.name = name
        self.sigma, self.dsigma = activation(name)

    def field(self, x: np.ndarray, p: dict):
        """(u (n, d), cache)."""
        h = x @ p["A"].T + p["b"]
        return self.sigma(h) @ p["W"].T, (x, h)

    def field_T(self, cache, ub: np.ndarray, p: dict, pbar: dict) -> np.ndarray:
        """Cotangent of x given that of u; the cotangents of W, A, b are added into pbar."""
        x, h = cache
        s = self.sigma(h)
        hb = (ub @ p["W"]) * self.dsigma(h)
        m, d = h.shape[-1], x.shape[-1]
        _add(pbar, "W", ub.reshape(-1, d).T @ s.reshape(-1, m))
        _add(pbar, "A", hb.reshape(-1, m).T @ x.reshape(-1, d))
        _add(pbar, "b", hb.reshape(-1, m).sum(axis=0))
        return hb @ p["A"]


def _add(pbar: dict, name: str, g) -> None:
    pbar[name] = pbar[name] + g if name in pbar else g
