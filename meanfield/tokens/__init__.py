"""Weighted tokens on S^{d-1}: the Lagrangian (measure-valued) solution of the same equation.

mu = sum_i w_i delta_{x_i} solves the continuity equation exactly when every token moves with
the attention field of mu (docs/theory.md).  With H heads, each with matrices (Q_h, K_h, V_h):

    SA:   dx_i/dt = P_{x_i} sum_h  sum_j w_j e^{beta <Q_h x_i, K_h x_j>} V_h x_j / sum_j w_j e^{beta <Q_h x_i, K_h x_j>}
    USA:  dx_i/dt = P_{x_i} sum_h  sum_j w_j e^{beta <Q_h x_i, K_h x_j>} V_h x_j

with j restricted to j <= i under a causal mask, and P_x = I - x x^T.  Causal: token i sits at
position s_i = (i + 1) / n and weighs token j <= i by w_j e^{-alibi (s_i - s_j)} (ALiBi; alibi = 0: by
w_j); USA then attends to the row's probability measure (those weights divided by their sum), the
token form of the causal density's kernel (docs/causal.md).  The n x n interaction
is computed in cache-sized tiles (512 kB per thread), each row's exponents shifted so that nothing
overflows or underflows (``TokenModel.velocity``).  Noise of strength nu
(Brownian motion on the sphere, generator nu Lap) is added by a projected Euler–Maruyama step.

Integrators keep every token on the sphere exactly by renormalising after each step:
``rk4`` (classical RK4 in R^d, then x / |x|: order 4, the exact flow stays on the sphere so the
projection error is O(h^5)), ``euler`` (order 1), ``dopri5`` and ``dop853`` (Dormand–Prince 5(4) and 8(5,3): fixed
steps, or adaptive with error control).  With noise, the deterministic step is followed by the
noise step (weak order 1).  ``TokenSolver`` advances tokens and merges those that meet;
``RingModel`` is the field of zonal measures made of rings.  A run of tokens is a
``simulation.Simulation`` of a particles config.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..errors import ConfigError
from ..stepping import DormandPrince, DormandPrince853, EmbeddedStep, FixedStep, Scheme, State

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


def attention_matrices(spec, d: int, heads: int, rng: np.random.Generator, name: str) -> list[np.ndarray]:
    """Q, K or V for every head from the config: "identity", "random" (N(0, 1/d) entries, drawn
    independently per head), a d x d matrix (list of rows), or a list of ``heads`` of those."""
    if isinstance(spec, str) or _is_matrix(spec):
        per_head = [spec] * heads
    elif isinstance(spec, (list, tuple)) and len(spec) == heads and heads > 1:
        per_head = list(spec)
    else:
        per_head = [None]
    out = []
    for h, s in enumerate(per_head):
        where = f"attention.{name}" + (f"[{h}]" if s is not None and len(per_head) > 1 and not isinstance(spec, str)
                                       and not _is_matrix(spec) else "")
        if isinstance(s, str) and s == "identity":
            out.append(np.eye(d))
        elif isinstance(s, str) and s == "random":
            out.append(rng.standard_normal((d, d)) / math.sqrt(d))
        elif _is_matrix(s) and np.asarray(s, dtype=float).shape == (d, d) and np.all(np.isfinite(np.asarray(s, float))):
            out.append(np.asarray(s, dtype=float))
        else:
            shown = spec if s is None else s
            raise ConfigError(f"{where}: got {_short(shown)}, allowed: 'identity' | 'random' | a finite {d} x {d} "
                              "matrix (list of rows)" + (f", or a list of {heads} of those" if heads > 1 else ""))
    return out


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_matrix(s) -> bool:
    """A non-empty rectangular list of rows of numbers."""
    return isinstance(s, (list, tuple)) and len(s) > 0 and all(
        isinstance(r, (list, tuple)) and len(r) == len(s[0]) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r) for r in s)


class TokenModel:
    """The attention field of a weighted token measure on S^{d-1}.

    For a head with V = I the token's own term w_i e^{beta} x_i is left out of the numerator: it is
    parallel to x_i, so the projection removes it exactly, but in floating point it would swamp the
    e^{-beta (1 - cos D)}-sized pull of distant clusters (plateaus) in round-off.  It stays in the
    SA denominator.
    """

    def __init__(self, weights: np.ndarray, beta: float, variant: str = "sa", dim: int = 3, Q=None, K=None,
                 V=None, causal: bool = False, tile_bytes: int = TILE_BYTES, field: str = "direct",
                 threads: int = 1, backend: str = "numpy", device: str = "cpu", alibi: float = 0.0):
        self.beta = float(beta)
        self.variant = variant
        self.dim = int(dim)
        self.Q = Q or [np.eye(dim)]  # one head by default; Q = K = V = I
        self.K = K or [np.eye(dim)] * len(self.Q)
        self.V = V or [np.eye(dim)] * len(self.Q)
        self.causal = causal
        self.alibi = float(alibi) if causal else 0.0
        self.tile_bytes = int(tile_bytes)
        self.threads = max(1, int(threads))
        self._self_free = [bool(np.array_equal(V_h, np.eye(dim))) for V_h in self.V]
        self._pool = None
        self.funk_hecke = self.torch = None
        if backend == "torch":  # the direct field on torch
            from .torch_field import TorchField

            self.torch = TorchField(self, device, threads)
        elif pick_field(field, dim, len(self.Q), causal, is_identity(dim, self.Q, self.K, self.V),
                        np.size(weights), self.beta) == "funk_hecke":
            from .funk_hecke import FunkHeckeField

            self.funk_hecke = FunkHeckeField(self.beta, variant, self.dim, threads=threads)
        self.set_weights(weights)

    def set_heads(self, Q: list, K: list, V: list) -> None:
        """Use these heads' matrices from now on (random heads drawn afresh every layer)."""
        self.Q, self.K, self.V = list(Q), list(K), list(V)
        self._self_free = [bool(np.array_equal(V_h, np.eye(self.dim))) for V_h in self.V]

    def set_weights(self, weights: np.ndarray) -> None:
        """Use these token weights (after tokens merged, their number changes)."""
        self.w = np.asarray(weights, dtype=float)
        self.n = n = self.w.size
        with np.errstate(divide="ignore"):
            self._log_w = np.log(self.w)  # a zero weight: exp(-inf) = 0
        self._row_scale = None
        if self.causal:  # token i (position s_i = (i + 1) / n) weighs token j <= i by w_j e^{-alibi (s_i - s_j)}
            s = np.arange(1, n + 1) / max(n, 1)
            self._log_w = self._log_w + self.alibi * (s - 1.0)  # the row's e^{-alibi (s_i - 1)} cancels below
            # USA attends to the probability measure of the row (its weights normalised, as in the density)
            self._row_scale = 1.0 / np.cumsum(np.exp(self._log_w))
        self.rows = max(1, min(n, TILE_ROWS))
        self.cols = max(1, min(n, max(16, self.tile_bytes // (8 * self.rows))))
        self.block = max(1, int(BLOCK_BYTES // (8 * 3 * max(n, 1))))
        self._bufs = {}

    def _buffer(self, rows: int, cols: int) -> np.ndarray:
        """A C-contiguous (rows, cols) work array, this thread's own, reused from call to call: fresh
        multi-MB temporaries are returned to the system and page-faulted in again on every evaluation."""
        key = threading.get_ident()
        buf = self._bufs.get(key)
        if buf is None or buf.size < rows * cols:
            buf = self._bufs[key] = np.empty(rows * cols)
        return buf[:rows * cols].reshape(rows, cols)

    def project(self, x: np.ndarray) -> np.ndarray:
        """Back onto the sphere: x / |x| row by row."""
        return _normalise(x)

    def velocity(self, x: np.ndarray) -> np.ndarray:
        """dx_i/dt for every token (n, d), tangent to the sphere at x_i.

        Per head, on tiles of the n x n interaction that stay in cache, three passes: one product
        builds the exponent beta <Q x_i, K x_j> - s_i + log w_j, one exp, one product with [V x_j, 1]
        adds numerator and denominator together.  The shift s_i is b_i = beta |Q x_i| max_j |K x_j|,
        which bounds the first term (nothing overflows), or, where that could let a whole row
        underflow, the row's exact maximum.  Row blocks run on ``threads`` threads (BLAS on one each);
        each is computed the same way whatever the thread count: the field is bitwise independent of it."""
        if self.funk_hecke is not None:
            return self.funk_hecke.velocity(x, self.w)
        if self.torch is not None:
            return self.torch.velocity(x)
        out = np.zeros_like(x)
        starts = range(0, self.n, self.rows)
        for h in range(len(self.Q)):
            ops = self._operands(x, h)
            if ops[-1]:
                ops = self._shift_by_row_max(ops, self._row_max(ops[0], ops[1]))
            if self.threads > 1 and len(starts) > 1:
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="meanfield-field")
                list(self._pool.map(lambda i0: self._rows(ops, i0, out), starts))
            else:
                for i0 in starts:
                    self._rows(ops, i0, out)
        return out - np.sum(out * x, axis=1, keepdims=True) * x

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
        e = self._buffer(i1 - i0, c1 - c0)
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
            e = self._buffer(i1 - i0, self.n)
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


#: particles.field = "auto" takes the Funk–Hecke path from ``funk_hecke_from`` tokens on.  Measured against
#: the tiled direct sum (one thread, SA, equal weights): on S^1 (ducc0.nufft, cost nearly independent of
#: beta) the two break even at 250-350 tokens for beta 25 and 100; on S^2 the transforms' fixed cost grows
#: like L^2 with the degree L(beta), and they break even at about 600-800 tokens for beta 25 (L = 48) and
#: 1000-1100 for beta 100 (L = 90): 16 L is at or just past the break-even point.
FUNK_HECKE_FROM_CIRCLE = 300
FUNK_HECKE_FROM_PER_DEGREE = 16
FIELDS = ("auto", "direct", "funk_hecke")


def is_identity(dim: int, *matrices) -> bool:
    """Whether every matrix of every list (Q, K, V per head) is the d x d identity."""
    return all(np.array_equal(A, np.eye(dim)) for mats in matrices for A in mats)


def funk_hecke_from(dim: int, beta: float) -> int:
    """The number of tokens from which the Funk–Hecke field is the faster (S^1: dim 2, S^2: dim 3)."""
    if dim == 2:
        return FUNK_HECKE_FROM_CIRCLE
    from .funk_hecke import degree

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


class RingModel:
    """Zonal token measures on S^{d-1}: each token is a ring {cos(theta) e + sin(theta) u : u in S^{d-2}}
    (a point on the axis when sin(theta) = 0) carrying weight w, the exact measure-valued solutions of
    the zonal (axisymmetric) equation.  A ring is held as the unit vector p = (sin theta, cos theta) of
    the meridian plane (axis last, sin theta >= 0), and moves in theta only.

    Averaging the kernel over the ring of y (v uniform on S^{d-2}, a = beta sin(theta_x) sin(theta_y)):
        avg e^{beta <x, y>}     = e^{beta cos cos} A(a),               A(a) = 0F1(; (d-1)/2; a^2/4)
        avg e^{beta <x, y>} y   = e^{beta cos cos} (sin_y A'(a) u + cos_y A(a) e),
    and A'/A = I_{(d-1)/2}(a) / I_{(d-3)/2}(a): the token field with these kernels in the plane.

    A ring within ``pole_tol`` of a pole is the pole point (its points are closer than 2 pole_tol
    to each other, as tokens about to merge): ``project`` puts it there, where it is at rest.
    Without this a ring at sin(theta) ~ 1e-16 keeps a stiff radial mode (rate ~1) for ever.
    """

    def __init__(self, weights: np.ndarray, beta: float, variant: str = "sa", dim: int = 3, pole_tol: float = 0.0):
        self.beta, self.variant, self.dim = float(beta), variant, int(dim)
        self.nu = (self.dim - 3) / 2  # order of the Bessel function of the ring average
        self.pole_sin = math.sin(min(max(pole_tol, 0.0), math.pi / 2))
        self.set_weights(weights)

    def set_heads(self, Q: list, K: list, V: list) -> None:
        """Use these heads' matrices from now on (random heads drawn afresh every layer)."""
        self.Q, self.K, self.V = list(Q), list(K), list(V)
        self._self_free = [bool(np.array_equal(V_h, np.eye(self.dim))) for V_h in self.V]

    def set_weights(self, weights: np.ndarray) -> None:
        """Use these ring weights."""
        self.w = np.asarray(weights, dtype=float)
        self.n = self.w.size

    def project(self, p: np.ndarray) -> np.ndarray:
        """Back onto the unit circle of the meridian plane, on the side sin(theta) >= 0 (the ring at
        -theta is the ring at theta)."""
        p = _normalise(p)
        p[:, 0] = np.abs(p[:, 0])
        pole = p[:, 0] < self.pole_sin
        p[pole, 0], p[pole, 1] = 0.0, np.where(p[pole, 1] < 0, -1.0, 1.0)
        return p

    def ring_average_exact(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log(A(a) e^{-a}), A'(a)/A(a)) for a >= 0, without overflow: the series 0F1 below a = 1,
        scaled Bessel functions above (~1 us per value: ``ring_average`` interpolates it)."""
        from scipy.special import gammaln, hyp0f1, ive

        nu = self.nu
        a = np.asarray(a, dtype=float)
        log_a, ratio = np.empty_like(a), np.empty_like(a)
        small = a < 1.0
        z = a[small]
        s0 = hyp0f1(nu + 1, z * z / 4)
        log_a[small] = np.log(s0) - z
        ratio[small] = z / (2 * (nu + 1)) * hyp0f1(nu + 2, z * z / 4) / s0
        z = a[~small]
        i0 = ive(nu, z)
        log_a[~small] = gammaln(nu + 1) + nu * np.log(2 / z) + np.log(i0)
        ratio[~small] = ive(nu + 1, z) / i0
        return log_a, ratio

    def ring_average(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``ring_average_exact`` by piecewise Chebyshev interpolation on [0, beta] (pieces [0, 1/2],
        [1/2, 1], [1, 2], [2, 4], ...), built once and checked to 1e-13 against the exact values."""
        if not hasattr(self, "_pieces"):
            self._pieces = _interpolants(self.ring_average_exact, max(self.beta, 1.0))
        edges, fits = self._pieces
        a = np.asarray(a, dtype=float)
        flat = a.ravel()
        piece = np.clip(np.searchsorted(edges, flat, side="right") - 1, 0, len(fits) - 1)
        log_a, ratio = np.empty_like(flat), np.empty_like(flat)
        for k in np.unique(piece):
            sel = piece == k
            log_a[sel], ratio[sel] = fits[k][0](flat[sel]), fits[k][1](flat[sel])
        return log_a.reshape(a.shape), ratio.reshape(a.shape)

    def _kernel(self, p: np.ndarray):
        """log of the ring-averaged kernel (n, n) and A'/A (n, n)."""
        s, c = p[:, 0], p[:, 1]
        a = self.beta * np.abs(np.outer(s, s))
        log_a, ratio = self.ring_average(a)
        return self.beta * np.outer(c, c) + a + log_a, ratio

    def _numerator(self, p, e, ratio):
        """sum_j e_ij (sign(s_i) |s_j| A'/A(a_ij), c_j): the ring-averaged sum of e^{beta <x, y>} y."""
        s, c = np.abs(p[:, 0]), p[:, 1]
        side = np.where(p[:, 0] < 0, -1.0, 1.0)  # a stage point may sit on the other side of the axis
        return np.stack([side * ((e * ratio) @ s), e @ c], axis=1)

    def velocity(self, p: np.ndarray) -> np.ndarray:
        """d p_i / dt for every ring (n, 2), tangent to the unit circle at p_i."""
        logk, ratio = self._kernel(p)
        top = logk.max(axis=1, keepdims=True)
        e = np.exp(logk - top) * self.w
        num = self._numerator(p, e, ratio)
        if self.variant == "sa":
            num /= e.sum(axis=1, keepdims=True)
        else:
            num *= np.exp(top)
        return num - np.sum(num * p, axis=1, keepdims=True) * p

    def energy_scaled(self, p: np.ndarray) -> float:
        """e^{-beta} (1/(2 beta)) sum_ij w_i w_j avg e^{beta <x, y>} over rings i and j."""
        logk, _ = self._kernel(p)
        return float(self.w @ np.exp(logk - self.beta) @ self.w) / (2 * self.beta)

    def energy_rate_scaled(self, p: np.ndarray, v: np.ndarray | None = None) -> float:
        """e^{-beta} dE/dt = e^{-beta} sum_i w_i <dp_i/dt, N_i>, N_i the ring-averaged numerator."""
        v = self.velocity(p) if v is None else v
        logk, ratio = self._kernel(p)
        num = self._numerator(p, np.exp(logk - self.beta) * self.w, ratio)
        return float(np.sum(self.w * np.sum(v * num, axis=1)))


def _interpolants(f, top: float, tol: float = 1e-13):
    """Piecewise Chebyshev interpolants of the two outputs of f on [0, top]: (edges, [(c1, c2), ...])."""
    from numpy.polynomial import Chebyshev

    edges = [0.0, 0.5]
    while edges[-1] < top:
        edges.append(edges[-1] * 2)
    fits = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        for deg in (16, 24, 32, 48, 64):
            pair = [Chebyshev.interpolate(lambda z, i=i: f(z)[i], deg, domain=[lo, hi]) for i in range(2)]
            z = np.linspace(lo, hi, 257)
            exact = f(z)
            err = max(float(np.max(np.abs(p(z) - e) / np.maximum(1.0, np.abs(e)))) for p, e in zip(pair, exact))
            if err <= tol:
                break
        fits.append(pair)
    return np.array(edges), fits


def _normalise(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class ProjectedRK4(Scheme):
    """Classical RK4 in R^d followed by the projection back onto the sphere (order 4).

    The field is evaluated at x / |x| (extended off the sphere along rays): the sphere is then
    invariant under the exact flow in R^d and the radial direction carries no dynamics, so explicit
    steps are not limited by a stiff pull back onto the sphere."""

    name = "rk4"
    order = 4

    def __init__(self, velocity, noise: float = 0.0, rng=None, project=_normalise):
        super().__init__(np.zeros(1), velocity)
        self.noise, self.rng, self.project = noise, rng, project

    def f(self, x):
        """The field at x / |x|."""
        return self.N(_normalise(x))

    def _drift(self, x, h):
        f = self.f
        k1 = f(x)
        k2 = f(x + h / 2 * k1)
        k3 = f(x + h / 2 * k2)
        k4 = f(x + h * k3)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    def step(self, state: State, h: float) -> State:
        """One projected step (then the noise step when nu > 0)."""
        x = self.project(self._drift(state.u, h))
        if self.noise:
            xi = self.rng.standard_normal(x.shape)
            xi -= np.sum(xi * x, axis=1, keepdims=True) * x
            x = self.project(x + math.sqrt(2 * self.noise * h) * xi)
        return State(x)


class ProjectedEuler(ProjectedRK4):
    """Explicit Euler followed by the projection (order 1; with noise: projected Euler–Maruyama)."""

    name = "euler"
    order = 1

    def _drift(self, x, h):
        return x + h * self.f(x)


class _ProjectedPair:
    """An explicit embedded pair in R^d with the projection onto the sphere after each step: fixed
    steps, or adaptive with ``EmbeddedStep`` (deterministic runs only)."""

    def __init__(self, velocity, noise: float = 0.0, rng=None, project=_normalise):
        if noise:
            raise ConfigError(f"particles.integrator: got {self.name!r} with model.viscosity > 0, allowed: "
                              f"{self.name!r} for deterministic runs; use 'euler' or 'rk4' with noise")
        super().__init__(lambda x: velocity(_normalise(x)), project)


class ProjectedDP5(_ProjectedPair, DormandPrince):
    """Dormand–Prince 5(4), projected (order 5, embedded estimate of order 4)."""


class ProjectedDP853(_ProjectedPair, DormandPrince853):
    """Dormand–Prince 8(5,3), projected: fewer steps at tight tolerances (long runs)."""


class RandomLayers(Scheme):
    """Random heads per layer (docs/general.md): one step of size h is one layer,

        x <- normalise(x + (eta / H) sum_h field_h(x)),   eta = sqrt(H h / variance),

    with the H heads' Q_h, K_h, V_h drawn afresh, entries N(0, variance / d), every layer.  The field
    has mean zero over the draw, so the layers are a random walk whose increments have variance
    eta^2 variance / H = h per unit of the projected field: t = layers x h is the time of the
    diffusive (homogenized) limit.  ``rng`` is the scheme's, so checkpoints carry it."""

    name = "layers"
    order = 1

    def __init__(self, model, heads: int, variance: float, rng, project=_normalise):
        super().__init__(np.zeros(1), model.velocity)
        self.model, self.heads, self.variance, self.rng, self.project = model, int(heads), float(variance), rng, project

    def step(self, state: State, h: float) -> State:
        """One layer: fresh heads, then the residual update and the normalisation."""
        d, H = self.model.dim, self.heads
        draws = self.rng.standard_normal((3, H, d, d)) * math.sqrt(self.variance / d)
        self.model.set_heads(list(draws[0]), list(draws[1]), list(draws[2]))
        eta = math.sqrt(H * h / self.variance)
        return State(self.project(state.u + (eta / H) * self.model.velocity(state.u)))


INTEGRATORS = {cls.name: cls for cls in (ProjectedRK4, ProjectedEuler, ProjectedDP5, ProjectedDP853)}
#: integrators with an embedded error estimate (time.adaptive = true allowed)
EMBEDDED = tuple(name for name, cls in INTEGRATORS.items() if getattr(cls, "embedded_order", 0))


def merge_groups(x: np.ndarray, tol: float) -> np.ndarray:
    """Labels 0..G-1 of the groups of tokens linked by angular distances below ``tol`` (radians)
    (single linkage: a chain of close tokens is one group)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = x.shape[0]
    chord = 2 * math.sin(min(tol, math.pi) / 2)
    if x.shape[1] <= 16:
        from scipy.spatial import cKDTree

        pairs = cKDTree(x).query_pairs(chord, output_type="ndarray")
    else:  # k-d trees lose their edge in high dimension: blocks of the distance matrix
        found = []
        for i0 in range(0, n, 1024):
            d2 = np.sum((x[i0:i0 + 1024, None, :] - x[None, :, :]) ** 2, axis=2)
            i, j = np.nonzero(d2 < chord * chord)
            keep = i + i0 < j
            found.append(np.stack([i[keep] + i0, j[keep]], axis=1))
        pairs = np.concatenate(found) if found else np.zeros((0, 2), int)
    if pairs.shape[0] == 0:
        return np.arange(n)
    graph = coo_matrix((np.ones(pairs.shape[0]), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


class TokenSolver:
    """Weighted tokens (or zonal rings) advanced in time and merged when they meet.

    ``x`` (n, k) the live tokens' positions, ``w`` their weights, ``ids`` their rows in the output
    (a token keeps its row for the whole run; a merged token keeps the smallest row of its group).
    After every accepted step, tokens closer than ``merge_tol`` radians become one token carrying
    the summed weight at the normalised weighted mean (mass exact, the first moment's direction
    kept, the energy changed by O(distance^2)).  ``merge_tol = 0``: never.
    """

    def __init__(self, model, x: np.ndarray, ids: np.ndarray, n_rows: int, integrator: str, dt: float,
                 adaptive: bool = False, rtol: float = 1e-9, atol: float = 1e-12, dt_min: float = 0.0,
                 dt_max: float = math.inf, merge_tol: float = 0.0, noise: float = 0.0, rng=None):
        self.model = model
        self.ids = np.asarray(ids, dtype=np.int64)
        self.n_rows = int(n_rows)
        self.scheme = INTEGRATORS[integrator](model.velocity, noise=noise, rng=rng, project=model.project)
        self.controller = EmbeddedStep(dt, rtol, atol, dt_min, dt_max) if adaptive else FixedStep(dt)
        self.merge_tol = float(merge_tol)
        self.state = self.scheme.start(model.project(np.asarray(x, dtype=float)))
        # per merged group: (row kept, tokens merged, total weight, two largest weights, largest distance
        # of a member to the merged position); the run loop stamps the time and empties the list
        self.merges = []

    @property
    def x(self) -> np.ndarray:
        """Positions of the live tokens."""
        return self.state.u

    @property
    def w(self) -> np.ndarray:
        """Weights of the live tokens."""
        return self.model.w

    def advance(self, h: float) -> tuple[float, float]:
        """One accepted step of size <= h, then merging; returns (h_taken, next_h)."""
        self.state, taken, proposed = self.controller.advance(self.scheme, self.state, h)
        if self.merge_tol > 0 and self.model.n > 1:
            self.merge()
        return taken, proposed

    def merge(self) -> int:
        """Merge tokens closer than merge_tol; returns the number of tokens removed."""
        labels = merge_groups(self.x, self.merge_tol)
        groups = int(labels.max()) + 1 if labels.size else 0
        if groups == labels.size:
            return 0
        x, w, ids = self.x, self.w, self.ids
        total = np.bincount(labels, w, minlength=groups)
        mean = np.stack([np.bincount(labels, w * x[:, k], minlength=groups) for k in range(x.shape[1])], axis=1)
        new_x = mean / np.linalg.norm(mean, axis=1, keepdims=True)
        new_ids = np.full(groups, np.iinfo(np.int64).max)
        np.minimum.at(new_ids, labels, ids)
        size = np.bincount(labels, minlength=groups)
        for g in np.flatnonzero(size > 1):
            members = np.flatnonzero(labels == g)
            top2 = np.sort(w[members])[-2:][::-1]
            reach = max(_angle(x[i], new_x[g]) for i in members)
            self.merges.append((int(new_ids[g]), int(members.size), float(total[g]), float(top2[0]),
                                float(top2[1]), reach))
        self.model.set_weights(total)
        self.ids = new_ids
        self.state = self.scheme.start(self.model.project(new_x))  # the carried derivative is stale
        return labels.size - groups

    def full_positions(self) -> np.ndarray:
        """Positions on all rows (n_rows, k): NaN on rows whose token merged away or never was."""
        out = np.full((self.n_rows, self.x.shape[1]), np.nan)
        out[self.ids] = self.x
        return out

    def full_weights(self) -> np.ndarray:
        """Weights on all rows: 0 on rows whose token merged away or never was."""
        out = np.zeros(self.n_rows)
        out[self.ids] = self.w
        return out

    def resume_point(self) -> dict:
        """What a checkpoint needs to continue bit for bit."""
        return {"state": self.state, "w": self.w.copy(), "ids": self.ids.copy(),
                "rejected": getattr(self.controller, "rejected", 0), "accepted": getattr(self.controller, "accepted", 0)}

    def restore(self, point: dict) -> None:
        """Continue from ``resume_point()`` (or its checkpoint copy)."""
        self.model.set_weights(np.asarray(point["w"], dtype=float))
        self.ids = np.asarray(point["ids"], dtype=np.int64)
        self.state = point["state"]
        if isinstance(self.controller, EmbeddedStep):
            self.controller.rejected = int(point.get("rejected", 0))
            self.controller.accepted = int(point.get("accepted", 0))


def _angle(a, b) -> float:
    """Angle between unit vectors, accurate for tiny angles."""
    return float(2 * math.atan2(np.linalg.norm(a - b), np.linalg.norm(a + b)))


def sample_tokens(cfg, geometry, n: int, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors in R^d drawn from the [initial] density on ``geometry`` (reproducible with rng).

    von_mises: exact draws from the von Mises(–Fisher) mixture (scipy.stats); every other kind:
    rejection sampling of uniform proposals against the density's coefficients.
    """
    from ..physics.initial import initial_coefficients

    d = geometry.dim
    ini = cfg.initial
    if ini.kind == "von_mises":
        from scipy.stats import vonmises_fisher

        w = np.asarray(ini.weights or [1.0] * len(ini.centers), dtype=float)
        comp = rng.choice(len(ini.centers), size=n, p=w / w.sum())
        x = np.empty((n, d))
        for j, (mu, kappa) in enumerate(zip(ini.centers, ini.concentrations)):
            sel = comp == j
            x[sel] = vonmises_fisher(_center_vector(geometry, mu), kappa).rvs(int(sel.sum()), random_state=rng)
        return _normalise(x)
    c = initial_coefficients(cfg, geometry)
    top = 1.05 * float(np.max(geometry.to_grid(c)))
    out, have = [], 0
    while have < n:
        prop = _normalise(rng.standard_normal((max(2 * (n - have), 64), d)))
        keep = prop[rng.uniform(0, top, prop.shape[0]) < geometry.evaluate(c, prop)]
        out.append(keep)
        have += keep.shape[0]
    return np.concatenate(out)[:n]


def _center_vector(geometry, mu) -> np.ndarray:
    if geometry.name == "circle":
        return np.array([math.cos(mu), math.sin(mu)])
    if geometry.name == "sphere":
        v = np.asarray(mu, dtype=float)
        return v / np.linalg.norm(v)
    e = np.zeros(geometry.dim)
    e[-1] = 1.0 if mu == 0 else -1.0
    return e


def smoothed_density(geometry, x, w, bandwidth: float) -> np.ndarray:
    """Coefficients of the token measure smoothed by the heat kernel at time bandwidth^2 / 2
    (a positive density: the measure's coefficients times e^{-l(l+d-2) bandwidth^2 / 2})."""
    return geometry.measure_coefficients(x, w) * np.exp(geometry.laplacian() * bandwidth**2 / 2)


def default_bandwidth(n: int, d: int) -> float:
    """The kernel-density rate on the (d-1)-dimensional sphere: n^{-1/(d+3)}."""
    return n ** (-1.0 / (d + 3))


def max_distance_to_mean(x, w) -> float:
    """max_i |x_i - m| with m the normalised weighted mean: 0 when all tokens coincide.  Rows that
    are NaN or carry no weight (merged away) are left out."""
    live = np.all(np.isfinite(x), axis=1) & (np.asarray(w) > 0)
    x, w = x[live], np.asarray(w)[live]
    m = w @ x
    norm = np.linalg.norm(m)
    if norm == 0:
        return 2.0
    return float(np.max(np.linalg.norm(x - m / norm, axis=1)))


def particle_geometry_name(dim: int) -> str:
    """The grid that carries the initial density and the density estimate for tokens in R^dim."""
    return {2: "circle", 3: "sphere"}.get(dim, "zonal")
