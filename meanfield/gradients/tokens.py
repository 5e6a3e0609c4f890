"""The tokens' right-hand side with its transpose: attention with heads (Q_h, K_h, V_h) and a perceptron.

    dx_i/dt = P_{x_i} [ sum_h sum_j p^h_ij V_h x_j  +  W sigma(A x_i + b) ],   P_x = I - x x^T,
    SA:  p^h_ij = w_j e^{beta <Q_h x_i, K_h x_j>} / sum_j' w_j' e^{beta <Q_h x_i, K_h x_j'>},
    USA: p^h_ij = w_j e^{beta <Q_h x_i, K_h x_j>},

as meanfield.tokens.field (whose tiled, overflow-proof sums serve the forward runs; here the n x n matrices
are formed whole: the adjoint needs them).  After each step the stepper puts every token back on the sphere
(x / |x|), and its transpose is part of the gradient.  Parameters: ``beta``, ``Q``, ``K``, ``V`` (heads x d x d)
and, with a perceptron, ``W``, ``A``, ``b``.
"""

from __future__ import annotations

import numpy as np

from .perceptron import Perceptron


class TokenDynamics:
    """The token field of a weighted empirical measure (weights fixed), with its transpose.

    Several independent systems move with the same parameters when the state has a leading axis (systems, n, d)
    and ``weights`` is (systems, n): each token attends to its own system only (measure-to-measure maps)."""

    def __init__(self, weights, variant: str = "sa", attention: bool = True, perceptron: str | None = None):
        if variant not in ("sa", "usa"):
            raise ValueError(f"variant: got {variant!r}, allowed: sa | usa")
        self.w = np.asarray(weights, dtype=float)
        self.variant, self.attention = variant, attention
        self.mlp = Perceptron(perceptron) if perceptron else None

    def linear(self, p: dict):
        """No linear part."""
        return None

    def finish_T(self, p: dict, pbar: dict) -> None:
        """Nothing is deferred to the end of an interval."""

    def project(self, x):
        """Back onto the sphere: x / |x|."""
        r = np.linalg.norm(x, axis=-1, keepdims=True)
        y = x / r
        return y, (y, r)

    def project_T(self, cache, g):
        """Transpose of ``project``."""
        y, r = cache
        return (g - y * np.sum(y * g, axis=-1, keepdims=True)) / r

    def _head(self, x, beta, Q, K, V):
        a, b = x @ Q.T, x @ K.T
        s = beta * (a @ np.swapaxes(b, -1, -2))
        if self.variant == "sa":
            e = self.w[..., None, :] * np.exp(s - s.max(axis=-1, keepdims=True))
            P = e / e.sum(axis=-1, keepdims=True)
        else:
            P = self.w[..., None, :] * np.exp(s)
        vx = x @ V.T
        return P @ vx, (a, b, P, vx)

    def rhs(self, x: np.ndarray, p: dict):
        """(dx/dt, cache)."""
        m = np.zeros_like(x)
        heads = []
        if self.attention:
            for Q, K, V in zip(p["Q"], p["K"], p["V"]):
                mh, ch = self._head(x, float(p["beta"]), Q, K, V)
                m += mh
                heads.append(ch)
        mc = None
        if self.mlp is not None:
            u, mc = self.mlp.field(x, p)
            m += u
        xm = np.sum(x * m, axis=-1, keepdims=True)
        return m - xm * x, (x, m, xm, heads, mc)

    def rhs_T(self, cache, vb: np.ndarray, p: dict, pbar: dict) -> np.ndarray:
        """Cotangent of x given that of dx/dt; parameter cotangents are added into pbar."""
        x, m, xm, heads, mc = cache
        xv = np.sum(x * vb, axis=-1, keepdims=True)
        mb = vb - xv * x
        xb = -xm * vb - xv * m
        flat = x.reshape(-1, x.shape[-1])  # parameter cotangents sum over every system and token
        if self.attention:
            beta = float(p["beta"])
            gQ, gK, gV = np.zeros_like(p["Q"]), np.zeros_like(p["K"]), np.zeros_like(p["V"])
            gbeta = 0.0
            for h, (Q, K, V) in enumerate(zip(p["Q"], p["K"], p["V"])):
                a, b, P, vx = heads[h]
                Pb = mb @ np.swapaxes(vx, -1, -2)
                vxb = np.swapaxes(P, -1, -2) @ mb
                gV[h] += vxb.reshape(flat.shape).T @ flat
                xb += vxb @ V
                if self.variant == "sa":
                    sb = P * (Pb - np.sum(P * Pb, axis=-1, keepdims=True))
                else:
                    sb = P * Pb
                ab = beta * (sb @ b)
                bb = beta * (np.swapaxes(sb, -1, -2) @ a)
                gbeta += float(np.sum(sb * (a @ np.swapaxes(b, -1, -2))))
                gQ[h] += ab.reshape(flat.shape).T @ flat
                gK[h] += bb.reshape(flat.shape).T @ flat
                xb += ab @ Q + bb @ K
            for name, g in (("beta", gbeta), ("Q", gQ), ("K", gK), ("V", gV)):
                pbar[name] = pbar.get(name, 0.0) + g
        if self.mlp is not None:
            xb += self.mlp.field_T(mc, mb, p, pbar)
        return xb
