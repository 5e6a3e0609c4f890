"""The attention field of weighted tokens on S^{d-1}: the direct sum in cache-sized tiles (numpy), or the
Funk–Hecke path (``funk_hecke.py``) or torch (``torch_field.py``) where they apply.

mu = sum_i w_i delta_{x_i} solves the continuity equation exactly when every token moves with the
attention field of mu (docs/theory.md).  With H heads, each with matrices (Q_h, K_h, V_h):

    SA:   dx_i/dt = P_{x_i} sum_h  sum_j w_j e^{beta <Q_h x_i, K_h x_j>} V_h x_j / sum_j w_j e^{beta <Q_h x_i, K_h x_j>}
    USA:  dx_i/dt = P_{x_i} sum_h  sum_j w_j e^{beta <Q_h x_i, K_h x_j>} V_h x_j

with j restricted to j <= i under a causal mask, and P_x = I - x x^T.  Causal: token i sits at
position s_i = (i + 1) / n and weighs token j <= i by w_j e^{-alibi (s_i - s_j)} (ALiBi; alibi = 0: by
w_j); USA then attends to the row's probability measure (those weights divided by their sum), the
token form of the causal density's kernel (docs/causal.md).  The n x n interaction is computed in
cache-sized tiles (512 kB per thread), each row's exponents shifted so that nothing overflows or
underflows (``TokenModel.velocity``).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..physics.heads import is_identity
from ..physics.kernels import degree
from .updates import NGPT_ALPHA, apply_update, on_sphere
from .work import Blocks
from .integrators import normalise

#: the token field works on tiles of TILE_ROWS rows x (TILE_BYTES / 8 / TILE_ROWS) columns: 512 kB stays in a
#: core's cache with the operands it reads (measured at n = 20,000, one head: 128 x 512 and 256 x 256 tiles
#: 0.53 s on one thread and 0.27-0.29 s wall on two; whole rows of 6 x 20,000: 0.66 s and 0.64 s; the 64 MB
#: row blocks used before: 1.6 s)
TILE_BYTES = 2**19
TILE_ROWS = 128
#: the energy's row blocks (rows x n doubles), evaluated at snapshots only
BLOCK_BYTES = 64 * 2**20
#: a row's exponent is shifted by its exact maximum (one more pass) only where the bound b_i could let every
#: term of the row underflow: 2 b_i - log(min w) above this (exp underflows below -745)
SAFE_EXPONENT = 600.0


class TokenModel:
    """The attention field of a weighted token measure on S^{d-1}.

    For a head with V = I the token's own term w_i e^{beta} x_i is left out of the numerator: it is
    parallel to x_i, so the projection removes it exactly, but in floating point it would swamp the
    e^{-beta (1 - cos D)}-sized pull of distant clusters (plateaus) in round-off.  It stays in the
    SA denominator.
    """

    def __init__(self, weights: np.ndarray, beta: float, variant: str = "sa", dim: int = 3, Q=None, K=None,
                 V=None, causal: bool = False, tile_bytes: int = TILE_BYTES, field: str = "direct",
                 threads: int = 1, backend: str = "numpy", device: str = "cpu", alibi: float = 0.0,
                 update: str = "post-ln", alpha: float = NGPT_ALPHA):
        self.beta = float(beta)
        self.update, self.alpha = update, float(alpha)  # the residual update (batch.apply_update)
        self.variant = variant
        self.dim = int(dim)
        self.Q = Q or [np.eye(dim)]  # one head by default; Q = K = V = I
        self.K = K or [np.eye(dim)] * len(self.Q)
        self.V = V or [np.eye(dim)] * len(self.Q)
        self.causal = causal
        self.alibi = float(alibi) if causal else 0.0
        self.tile_bytes = int(tile_bytes)
        self._blocks = Blocks(threads, "meanfield-field")
        self._self_free = self._free(self.V)
        self.field = field
        self.funk_hecke = self.torch = None
        if backend == "torch":  # the direct field on torch
            from .torch_field import TorchField  # torch is an optional extra: imported only when asked for

            self.torch = TorchField(self, device, threads)
        self.set_weights(weights)

    def _free(self, V: list) -> list[bool]:
        """Per head: whether the token's own term may leave the numerator (V = I and the post-LN update, which
        keeps only the tangent part of the attention output)."""
        return [self.update == "post-ln" and bool(np.array_equal(V_h, np.eye(self.dim))) for V_h in V]

    def _pick(self) -> None:
        """The Funk–Hecke path or the direct sum for the present number of tokens (``field = "auto"``: the
        direct sum once merging has left fewer than ``funk_hecke_from`` tokens, where it is the faster and
        leaves each token's own term out exactly, as plateaus need)."""
        if self.torch is not None:
            return
        use = self.update == "post-ln" and pick_field(
            self.field, self.dim, len(self.Q), self.causal, is_identity(self.dim, self.Q, self.K, self.V),
            np.size(self.w), self.beta) == "funk_hecke"
        if use and self.funk_hecke is None:
            from .funk_hecke import FunkHeckeField

            self.funk_hecke = FunkHeckeField(self.beta, self.variant, self.dim, threads=self.threads)
        elif not use:
            self.funk_hecke = None

    def set_heads(self, Q: list, K: list, V: list) -> None:
        """Use these heads' matrices from now on (random heads drawn afresh every layer)."""
        self.Q, self.K, self.V = list(Q), list(K), list(V)
        self._self_free = self._free(self.V)
        self._pick()

    def set_weights(self, weights: np.ndarray) -> None:
        """Use these token weights (after tokens merged, their number changes)."""
        self.w = np.asarray(weights, dtype=float)
        self.n = n = self.w.size
        self._pick()
        with np.errstate(divide="ignore"):
            self._log_w = np.log(self.w)  # a zero weight: exp(-inf) = 0
        self._row_scale = None
        if self.causal:
            self._log_w, self._row_scale = causal_weights(self._log_w, self.alibi)
        self.rows = max(1, min(n, TILE_ROWS))
        self.cols = max(1, min(n, max(16, self.tile_bytes // (8 * self.rows))))
        self.block = max(1, int(BLOCK_BYTES // (8 * 3 * max(n, 1))))

    @property
    def threads(self) -> int:
        """Threads over the row blocks (BLAS on one each)."""
        return self._blocks.threads

    def project(self, x: np.ndarray) -> np.ndarray:
        """Back onto the sphere (x / |x| row by row) for post-LN and nGPT; pre-LN and peri-LN keep the stream."""
        return normalise(x) if on_sphere(self.update) else x

    #: the perceptron term (a physics.perceptron.PerceptronField) added to the attention field, or None
    perceptron = None

    def velocity(self, x: np.ndarray) -> np.ndarray:
        """dx_i/dt for every token (n, d): the attention field (``attention_velocity``) and the perceptron term."""
        v = self.attention_velocity(x)
        return v if self.perceptron is None else v + self.perceptron.tangent(x)

    def attention_velocity(self, x: np.ndarray) -> np.ndarray:
        """The attention field for every token (n, d), tangent to the sphere at x_i.

        Per head, on tiles of the n x n interaction that stay in cache, three passes: one product
        builds the exponent beta <Q x_i, K x_j> - s_i + log w_j, one exp, one product with [V x_j, 1]
        adds numerator and denominator together.  The shift s_i is b_i = beta |Q x_i| max_j |K x_j|,
        which bounds the first term (nothing overflows), or, where that could let a whole row
        underflow, the row's exact maximum.  Row blocks run on ``threads`` threads (BLAS on one each);
        each is computed the same way whatever the thread count: the field is bitwise independent of it."""
        if self.funk_hecke is not None:
            return self.funk_hecke.velocity(x, self.w)
        if self.torch is not None:
            return apply_update(self.update, x, self.torch.velocity(x), self.alpha)
        out = np.zeros_like(x)
        starts = range(0, self.n, self.rows)
        for h in range(len(self.Q)):
            ops = self._operands(x, h)
            if ops[-1]:
                ops = self._shift_by_row_max(ops, self._row_max(ops[0], ops[1]))
            self._blocks.run(lambda i0: self._rows(ops, i0, out), starts)
        return apply_update(self.update, x, out, self.alpha)

    def _operands(self, x: np.ndarray, h: int):
        """(A, B^T, [V x, 1], s, self_free, exact) of head h: A B^T is the exponent of ``velocity``
        shifted by the bound s; ``exact``: the bound could let whole rows underflow, so the caller must
        shift by the exact row maxima instead (``_shift_by_row_max``)."""
        n, d = x.shape
        q = self.beta * (x @ self.Q[h].T)
        k = x @ self.K[h].T
        s = np.linalg.norm(q, axis=1) * float(np.max(np.linalg.norm(k, axis=1)))
        A = np.empty((n, q.shape[1] + 2))
        A[:, :-2], A[:, -2], A[:, -1] = q, -s, 1.0
        BT = np.empty((k.shape[1] + 2, n))
        BT[:-2], BT[-2], BT[-1] = k.T, 1.0, self._log_w
        V1 = np.empty((n, d + 1))
        V1[:, :d], V1[:, d] = x @ self.V[h].T, 1.0
        exact = bool(n) and 2 * float(np.max(s)) - float(np.min(self._log_w)) > SAFE_EXPONENT
        if exact:
            A[:, -2] = 0.0
        return A, BT, V1, s, self._self_free[h], exact

    @staticmethod
    def _shift_by_row_max(ops, top):
        """The operands with each row shifted by its exact maximum ``top`` (its largest term is exp(0))."""
        A, BT, V1, _, self_free, _ = ops
        A[:, -2] = -top
        return A, BT, V1, top, self_free, False

    def _tiles(self, i0: int, i1: int):
        """Column ranges (c0, c1) of the tiles of rows i0 .. i1 (causal: only columns j <= i1 - 1)."""
        end = i1 if self.causal else self.n
        return [(c0, min(end, c0 + self.cols)) for c0 in range(0, end, self.cols)]

    def _exponent(self, A, BT, i0, i1, c0, c1) -> np.ndarray:
        """The tile's exponents (this thread's work array), the causal mask's j > i set to -inf."""
        e = self._blocks.array((i1 - i0, c1 - c0))
        np.matmul(A[i0:i1], BT[:, c0:c1], out=e)
        if self.causal and c1 > i0:  # the tile reaches the diagonal
            i = np.arange(i0, i1)[:, None]
            e[np.arange(c0, c1)[None, :] > i] = -np.inf
        return e

    def _row_max(self, A, BT) -> np.ndarray:
        """max_j of A B^T (masked) on every row."""
        top = np.full(self.n, -np.inf)
        for i0 in range(0, self.n, self.rows):
            i1 = min(self.n, i0 + self.rows)
            for c0, c1 in self._tiles(i0, i1):
                np.maximum(top[i0:i1], self._exponent(A, BT, i0, i1, c0, c1).max(axis=1), out=top[i0:i1])
        return top

    def _rows(self, ops, i0: int, out: np.ndarray) -> None:
        """Add the head's field on rows i0 .. i0 + rows to ``out``."""
        A, BT, V1, s, self_free, _ = ops
        d = V1.shape[1] - 1
        i1 = min(self.n, i0 + self.rows)
        acc = np.zeros((i1 - i0, d + 1))
        for c0, c1 in self._tiles(i0, i1):
            e = self._exponent(A, BT, i0, i1, c0, c1)
            np.exp(e, out=e)
            lo, hi = max(i0, c0), min(i1, c1)
            if self_free and lo < hi:  # the own term is parallel to x_i: out of the numerator (class doc)
                r = np.arange(lo, hi)
                own = e[r - i0, r - c0].copy()
                e[r - i0, r - c0] = 0.0
                acc[r - i0, d] += own
            acc += e @ V1[c0:c1]
        if self.variant == "sa":
            out[i0:i1] += acc[:, :d] / acc[:, d:]
        else:
            scale = np.exp(s[i0:i1]) if self._row_scale is None else np.exp(s[i0:i1]) * self._row_scale[i0:i1]
            out[i0:i1] += acc[:, :d] * scale[:, None]

    def _pairs(self, x: np.ndarray):
        """Blocks (i0, i1, e) of e_ij = e^{beta (<x_i, x_j> - 1)} (the Q = K = V = I kernel, scaled);
        e is the work array, valid until the next block."""
        for i0 in range(0, self.n, self.block):
            i1 = min(self.n, i0 + self.block)
            e = self._blocks.array((i1 - i0, self.n))
            np.matmul(x[i0:i1], x.T, out=e)
            e -= 1.0
            e *= self.beta
            np.exp(e, out=e)
            yield i0, i1, e

    def energy_scaled(self, x: np.ndarray) -> float:
        """e^{-beta} (1/(2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>}: the interaction energy."""
        if self.funk_hecke is not None:
            return self.funk_hecke.energy_scaled(x, self.w)
        total = sum(float(self.w[i0:i1] @ (e @ self.w)) for i0, i1, e in self._pairs(x))
        return total / (2 * self.beta)

    def energy_rate_scaled(self, x: np.ndarray, v: np.ndarray | None = None) -> float:
        """e^{-beta} dE/dt = e^{-beta} sum_i w_i <dx_i/dt, sum_{j != i} w_j e^{beta <x_i, x_j>} x_j> for the
        velocities v (default: this model's).  The own term is left out: it is normal to dx_i/dt."""
        v = self.velocity(x) if v is None else v
        if self.funk_hecke is not None:  # sum_j w_j e^{beta <x_i, x_j>} P x_j = grad_S psi / beta
            _, grad = self.funk_hecke.potential(x, self.w)
            return float(np.sum(self.w * np.sum(v * grad, axis=1))) / self.beta
        wx = self.w[:, None] * x
        total = 0.0
        for i0, i1, e in self._pairs(x):
            e[np.arange(i1 - i0), np.arange(i0, i1)] = 0.0
            total += float(np.sum(self.w[i0:i1] * np.sum(v[i0:i1] * (e @ wx), axis=1)))
        return total


def causal_weights(log_w: np.ndarray, alibi: float) -> tuple[np.ndarray, np.ndarray]:
    """Token i (position s_i = (i + 1) / n) weighs token j <= i by w_j e^{-alibi (s_i - s_j)}: the log weights
    shifted by alibi (s_j - 1) (the row's own e^{-alibi (s_i - 1)} cancels in the SA ratio), and the USA row
    scale 1 / sum_{j <= i} of them (USA attends to the row's probability measure, as in the density)."""
    n = log_w.size
    shifted = log_w + alibi * (np.arange(1, n + 1) / max(n, 1) - 1.0)
    return shifted, 1.0 / np.cumsum(np.exp(shifted))


#: particles.field = "auto" takes the Funk–Hecke path from ``funk_hecke_from`` tokens on.  Measured against
#: the tiled direct sum (one thread, SA, equal weights): on S^1 (ducc0.nufft, cost nearly independent of
#: beta) the two break even at 250-350 tokens for beta 25 and 100; on S^2 the transforms' fixed cost grows
#: like L^2 with the degree L(beta), and they break even at about 600-800 tokens for beta 25 (L = 48) and
#: 1000-1100 for beta 100 (L = 90): 16 L is at or just past the break-even point.
FUNK_HECKE_FROM_CIRCLE = 300
FUNK_HECKE_FROM_PER_DEGREE = 16
FIELDS = ("auto", "direct", "funk_hecke")


def funk_hecke_from(dim: int, beta: float) -> int:
    """The number of tokens from which the Funk–Hecke field is the faster (S^1: dim 2, S^2: dim 3)."""
    if dim == 2:
        return FUNK_HECKE_FROM_CIRCLE
    return FUNK_HECKE_FROM_PER_DEGREE * degree(beta, 3, 1e-15)  # the degree for 1000 tokens (1e-12 / n)


def pick_field(field: str, dim: int, heads: int, causal: bool, identity: bool, n: int, beta: float) -> str:
    """"direct" or "funk_hecke" for ``particles.field`` (auto: Funk–Hecke where it applies, S^1 or S^2,
    one head, Q = K = V = I, no causal mask, and from ``funk_hecke_from(dim, beta)`` tokens on)."""
    applies = dim in (2, 3) and heads == 1 and not causal and identity
    if field == "funk_hecke" and not applies:
        raise ConfigError(f"particles.field: got 'funk_hecke', allowed only for particles.dim 2 or 3, one head, "
                          f"Q = K = V = identity and causal = false (got dim {dim}, {heads} heads, causal {causal}, "
                          f"identity {identity}); use 'auto' or 'direct'")
    if field == "auto":
        return "funk_hecke" if applies and n >= funk_hecke_from(dim, beta) else "direct"
    return field
