"""Many independent systems of tokens advanced as one: ``BatchedTokenModel``.

Monte Carlo over prompts needs thousands of small systems (n ~ 16 .. 128 tokens each); one ``TokenSolver``
per system would spend its time in Python.  Stacked as the rows of one (systems x n, d) array, the systems go
through the package's integrators and ``TokenSolver`` unchanged (one step size for all of them), while the
field of each system sees only its own tokens: the n x n interactions of a block of systems are batched
matrix products.  Each system's field is ``TokenModel``'s for the same weights, beta, variant, causal mask and
ALiBi slope, with Q = K = V = I (tests/test_particles.py checks them against each other).
"""

from __future__ import annotations

import numpy as np

from .field import causal_weights
from .integrators import normalise

#: a block of systems holds at most this many bytes of n x n exponents
BLOCK_BYTES = 64 * 2**20


class BatchedTokenModel:
    """``systems`` independent systems of the same n weighted tokens on S^{d-1} (Q = K = V = I).

    Rows s n .. s n + n - 1 of the state are system s.  Within a system, token i (position s_i = (i + 1) / n
    under a causal mask) moves with

        SA:   dx_i/dt = P_{x_i} sum_j w_ij e^{beta <x_i, x_j>} x_j / sum_j w_ij e^{beta <x_i, x_j>}
        USA:  dx_i/dt = P_{x_i} sum_j w_ij e^{beta <x_i, x_j>} x_j

    with w_ij = w_j (no mask) or, causal, w_j e^{-alibi (s_i - s_j)} for j <= i, normalised over the row for
    USA: the token field of ``TokenModel`` (docs/theory.md, docs/causal.md).  As there, a token's own term is
    left out of the numerator (it is parallel to x_i) and kept in the SA denominator; each row's exponents are
    shifted by their exact maximum, so nothing overflows or underflows a whole row.
    """

    def __init__(self, systems: int, weights: np.ndarray, beta: float, variant: str = "sa", dim: int = 3,
                 causal: bool = False, alibi: float = 0.0, block_bytes: int = BLOCK_BYTES):
        if variant not in ("sa", "usa"):
            raise ValueError(f"variant: got {variant!r}, allowed: 'sa' or 'usa'")
        weights = np.asarray(weights, dtype=float)
        if systems < 1 or weights.ndim != 1 or weights.size < 1 or not np.all(weights > 0):
            raise ValueError(f"systems: got {systems} systems of {weights.size} weights, allowed: at least one "
                             "system of at least one token, every weight > 0")
        self.systems, self.size = int(systems), weights.size
        self.beta, self.variant, self.dim = float(beta), variant, int(dim)
        self.causal, self.alibi = bool(causal), float(alibi) if causal else 0.0
        self.w = np.tile(weights, self.systems)  # the TokenSolver's view: one weight per row
        self.n = self.w.size
        self._log_w, self._row_scale = np.log(weights), None
        if self.causal:  # TokenModel's causal weights
            self._log_w, self._row_scale = causal_weights(self._log_w, self.alibi)
        mask = np.zeros((self.size, self.size))
        if self.causal:
            mask[np.triu_indices(self.size, 1)] = -np.inf
        self._mask = mask
        self._block = max(1, int(block_bytes) // (8 * self.size * self.size))

    def project(self, x: np.ndarray) -> np.ndarray:
        """Back onto the sphere: x / |x| row by row."""
        return normalise(x)

    def set_weights(self, weights: np.ndarray) -> None:
        """The systems' weights cannot change (no merging of batched systems): refuse anything else."""
        if not np.array_equal(np.asarray(weights, dtype=float), self.w):
            raise ValueError("BatchedTokenModel: the systems' weights are fixed (set particles merge_tol = 0)")

    def velocity(self, x: np.ndarray) -> np.ndarray:
        """dx/dt of every token of every system, rows as in ``x`` (systems x n, d), tangent to the sphere."""
        n = self.size
        X = x.reshape(self.systems, n, x.shape[1])
        out = np.empty_like(X)
        idx = np.arange(n)
        for b0 in range(0, self.systems, self._block):
            Xb = X[b0:b0 + self._block]
            e = self.beta * (Xb @ Xb.transpose(0, 2, 1)) + (self._log_w + self._mask)
            top = e.max(axis=2, keepdims=True)  # the self term is allowed: the row max is finite
            e -= top
            np.exp(e, out=e)
            own = e[:, idx, idx].copy()
            e[:, idx, idx] = 0.0  # V = I: the own term is parallel to x_i (out of the numerator)
            num = e @ Xb
            if self.variant == "sa":
                out[b0:b0 + self._block] = num / (e.sum(axis=2) + own)[:, :, None]
            else:
                scale = np.exp(top[:, :, 0])
                if self._row_scale is not None:
                    scale = scale * self._row_scale
                out[b0:b0 + self._block] = num * scale[:, :, None]
        out = out.reshape(x.shape)
        return out - np.sum(out * x, axis=1, keepdims=True) * x
