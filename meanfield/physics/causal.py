"""The causal (decoder) density f(t, s, x): position s in [0, 1] of a token in the prompt (docs/causal.md).

The token at position s attends to the positions s' <= s, weighted by the ALiBi kernel

    k_lambda(s, s') = lambda e^{-lambda (s - s')} / (1 - e^{-lambda s})    (lambda -> 0: 1 / s),

so X(t, s, .) is the field (SA or USA, any heads) of the probability measure
mu_s = int_0^s k_lambda(s, s') f(t, s', .) ds', and d_t f(s) = -div(f(s) X[mu_s]) + nu Lap f(s).

Quadrature in s: the product trapezoid rule on the nodes s_j = j / (S - 1).  f is interpolated
piecewise linearly between nodes and the kernel is integrated exactly against each hat function
(Gauss–Legendre, 16 points per cell), so: second order in 1 / S for smooth f; strictly causal (s_i
uses s_j <= s_i only, like the tokens' mask); each row is a probability vector, so the uniform state
stays stationary and mass is exact; and the 1 / s kernel of lambda = 0 is no harder than any other
(position 0 attends to itself alone: mu_0 = f(0)).  Since mu is linear in f, mu_s's coefficients are
one matrix product W c over the position axis.
"""

from __future__ import annotations

import numpy as np

from .kernels import alibi_kernel
from .model import AttentionModel

#: Gauss–Legendre points per cell for the kernel's integrals against the hat functions
CELL_POINTS = 16


def causal_weights(s: np.ndarray, alibi: float = 0.0) -> np.ndarray:
    """W (S x S, lower triangular, rows summing to 1): mu_{s_i} = sum_j W_ij f(s_j) (module docstring)."""
    S = len(s)
    W = np.zeros((S, S))
    W[0, 0] = 1.0
    z, zw = np.polynomial.legendre.leggauss(CELL_POINTS)
    for i in range(1, S):
        for m in range(i):  # cell [s_m, s_{m+1}]
            a, b = s[m], s[m + 1]
            sp = (a + b) / 2 + (b - a) / 2 * z
            k = alibi_kernel(s[i], sp, alibi) * zw * (b - a) / 2
            W[i, m] += np.sum(k * (b - sp) / (b - a))
            W[i, m + 1] += np.sum(k * (sp - a) / (b - a))
        W[i] /= W[i].sum()  # exact already to ~1e-16: keep rows probability vectors to round-off
    return W


class CausalModel(AttentionModel):
    """The causal density on a ``domains.positions.Positions`` geometry, each position carried by
    ``base`` (an AttentionModel or GeneralModel on the base geometry) with the field of mu_s.

    The stepper's linear part is viscosity alone: the linearisation couples positions (a Volterra
    operator in s, docs/causal.md), so the attention terms are all explicit.
    """

    def __init__(self, positions, base, alibi: float = 0.0):
        super().__init__(positions, base.variant, base.beta, base.viscosity)
        self.base, self.alibi = base, float(alibi)
        self.W = causal_weights(positions.s, self.alibi)
        self.L = (self.viscosity * self.lap).astype(float)

    def attended(self, c: np.ndarray) -> np.ndarray:
        """Coefficients of mu_s at every position: W c along the position axis."""
        return np.tensordot(self.W, c, axes=(1, 0))

    def transport(self, mu: np.ndarray, f: np.ndarray) -> np.ndarray:
        """-div(f(s) X[mu_s]) at every position."""
        return np.stack([self.base.transport(m, g) for m, g in zip(mu, f)])

    def rhs(self, c: np.ndarray) -> np.ndarray:
        """F(c) = -div(f X[mu]) + nu Lap f at every position."""
        out = self.transport(self.attended(c), c)
        if self.viscosity:
            out += self.viscosity * self.lap * c
        return out

    def nonlinear(self, c: np.ndarray) -> np.ndarray:
        """F(c) - nu Lap c (mass exact: every position's mean mode is zeroed)."""
        out = self.rhs(c) - self.L * c
        out[(slice(None),) + (0,) * (c.ndim - 1)] = 0.0
        return out

    def velocity(self, c: np.ndarray) -> np.ndarray:
        """The field X[mu_s] at every position, shape (components, S, *grid)."""
        return np.stack([self.base.velocity(m) for m in self.attended(c)], axis=1)

    def psi_range(self, c: np.ndarray) -> float:
        """The smallest over positions (SA's denominators are those of mu_s)."""
        return min(self.base.psi_range(m) for m in self.attended(c))
