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


def primitive(name: str):
    """S with S' = sigma, for an activation named in ACTIVATIONS (the perceptron's potential, below)."""
    if name == "relu":
        return lambda h: 0.5 * np.maximum(h, 0.0) ** 2
    if name == "tanh":
        return lambda h: np.logaddexp(h, -h) - np.log(2.0)  # log cosh
    if name == "sigmoid":
        return lambda h: np.logaddexp(0.0, h)
    if name == "softplus":  # -Li2(-e^h), with Li2(-x) + Li2(-1/x) = -pi^2/6 - log(x)^2 / 2 for h > 0
        from scipy.special import spence  # spence(z) = Li2(1 - z)

        def s(h):
            h = np.asarray(h, dtype=float)
            e = np.exp(-np.abs(h))
            return np.where(h > 0, np.pi**2 / 6 + 0.5 * h**2 + spence(1.0 + e), -spence(1.0 + e))
        return s
    raise ValueError(f"activation: got {name!r}, allowed: {' | '.join(ACTIVATIONS)}")


class PerceptronField:
    """The field P_x W sigma(A x + b) of fixed parameters."""

    def __init__(self, name: str, W, A, b):
        self.name = name
        self.sigma, _ = activation(name)
        self.W, self.A, self.b = (np.asarray(v, dtype=float) for v in (W, A, b))
        self._c = self._potential_weights()  # fixed parameters: whether the term is a gradient, once

    def ambient(self, x: np.ndarray) -> np.ndarray:
        """W sigma(A x + b) at points x (..., d)."""
        return self.sigma(x @ self.A.T + self.b) @ self.W.T

    def tangent(self, x: np.ndarray) -> np.ndarray:
        """The field at unit vectors x (..., d): the ambient vector's tangent part."""
        u = self.ambient(x)
        return u - np.sum(u * x, axis=-1, keepdims=True) * x

    def gradient_weights(self) -> np.ndarray | None:
        """c with W = A^T diag(c) (each unit's output along its input weights), or None when W is not of this
        form.  Then W sigma(A x + b) = grad Phi(x), Phi(x) = sum_k c_k S(a_k . x + b_k) (S' = sigma), and on the
        sphere the field is the gradient of Phi's restriction: the perceptron is a gradient term."""
        return self._c

    def _potential_weights(self, tol: float = 1e-12) -> np.ndarray | None:
        norms = np.sum(self.A**2, axis=1)
        c = np.where(norms > 0, np.sum(self.W.T * self.A, axis=1) / np.where(norms > 0, norms, 1.0), 0.0)
        # a unit with a_k = 0 adds the constant vector sigma(b_k) w_k = grad <sigma(b_k) w_k, x>: a gradient too
        rest = self.W - self.A.T * c
        rest[:, norms == 0] = 0.0
        return c if np.linalg.norm(rest) <= tol * max(np.linalg.norm(self.W), 1e-300) else None

    def potential(self, x: np.ndarray) -> np.ndarray:
        """Phi at points x (..., d), with grad Phi = W sigma(A x + b) (for a gradient perceptron; see
        ``gradient_weights``, which must not be None)."""
        c = self._c
        if c is None:
            raise ValueError("perceptron: W is not A^T diag(c), so the field has no potential")
        h = x @ self.A.T + self.b
        flat = np.sum(self.A**2, axis=1) == 0
        const = (self.sigma(self.b) * flat) @ self.W.T  # the units with a_k = 0: a constant vector
        return primitive(self.name)(h) @ c + x @ const

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
