"""The perceptron (MLP) velocity term  P_x W sigma(A x + b)  beside attention (docs/gradients.md).

W is d x m, A is m x d, b has m entries (m units); sigma acts entry by entry.  At a point x of the sphere the
field is the tangent part of the ambient vector W sigma(A x + b).  It does not depend on the measure, so on a
density's grid it is computed once per run.
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus")


def _sigmoid(h):
    return 0.5 * (1.0 + np.tanh(0.5 * h))


def activation(name: str):
    """(sigma, sigma') of an activation named in ACTIVATIONS."""
    if name == "relu":
        return (lambda h: np.maximum(h, 0.0)), (lambda h: (h > 0).astype(float))
    if name == "tanh":
        return np.tanh, (lambda h: 1.0 - np.tanh(h) ** 2)
    if name == "sigmoid":
        return _sigmoid, (lambda h: _sigmoid(h) * (1.0 - _sigmoid(h)))
    if name == "softplus":
        return (lambda h: np.logaddexp(0.0, h)), _sigmoid
    raise ValueError(f"activation: got {name!r}, allowed: {' | '.join(ACTIVATIONS)}")


class PerceptronField:
    """The field P_x W sigma(A x + b) of fixed parameters."""

    def __init__(self, name: str, W, A, b):
        self.name = name
        self.sigma, _ = activation(name)
        self.W, self.A, self.b = (np.asarray(v, dtype=float) for v in (W, A, b))

    def ambient(self, x: np.ndarray) -> np.ndarray:
        """W sigma(A x + b) at points x (..., d)."""
        return self.sigma(x @ self.A.T + self.b) @ self.W.T

    def tangent(self, x: np.ndarray) -> np.ndarray:
        """The field at unit vectors x (..., d): the ambient vector's tangent part."""
        u = self.ambient(x)
        return u - np.sum(u * x, axis=-1, keepdims=True) * x

    def on_grid(self, geometry) -> np.ndarray:
        """The field as a grid vector of the geometry (components first, in its tangent frame)."""
        u = self.ambient(geometry.points())
        return np.einsum("cnd,nd->cn", geometry.tangent_frame(), u).reshape((-1, *geometry.grid_shape))


def from_config(cfg) -> PerceptronField | None:
    """The [perceptron] of a config (None when perceptron.activation = "none")."""
    p = cfg.perceptron
    if p.activation == "none":
        return None
    return PerceptronField(p.activation, p.W, p.A, p.b)
