"""Many independent systems of tokens advanced as one (``BatchedTokenModel``), and the peers' statistics of
such ensembles (``gram_statistics``: clustered pairs, the cluster count).

Monte Carlo over prompts and phase diagrams need thousands of small systems (n ~ 16 .. 128 tokens each); one
``TokenSolver`` per system would spend its time in Python.  Stacked as the rows of one (systems x n, d) array,
the systems go through the package's integrators and ``TokenSolver`` unchanged (one step size for all of them,
the error measured per system), while the field of each system sees only its own tokens: the n x n
interactions of a block of systems are batched matrix products, blocks spread over threads.
"""

from __future__ import annotations

import numpy as np

from ..config.schema import UPDATES
from .field import causal_weights
from .integrators import normalise
from .updates import NGPT_ALPHA, apply_update, on_sphere
from .work import Blocks

#: a block of systems holds about this many bytes of n x n exponents (a few blocks stay in the caches of the
#: cores; measured at n = 32: fresh 64 MB work arrays cost 7x the product itself in page faults)
BLOCK_BYTES = 4 * 2**20
#: a row's exponent is shifted by its exact maximum where the bound could let every term underflow (as TokenModel)
SAFE_EXPONENT = 600.0
#: the peers' statistics work on blocks of Gram matrices of about this many bytes: the time is flat from 256 KB to
#: 32 MB (9.3-9.8 ms for 2048 systems of 32 tokens, one core), and small blocks keep the work array small
GRAM_BYTES = 2**19


class BatchedTokenModel:
    """``systems`` independent systems of n weighted tokens each, on S^{d-1} (or, for pre-LN and peri-LN,
    residual streams in R^d whose directions are the tokens).

    Rows s n .. s n + n - 1 of the state are system s.  Within a system, token i (position s_i = (i + 1) / n
    under a causal mask) has the attention output

        SA:   A_i = sum_h sum_j w_ij e^{beta <Q_h x_i, K_h x_j>} V_h x_j / sum_j w_ij e^{beta <Q_h x_i, K_h x_j>}
        USA:  A_i = sum_h sum_j w_ij e^{beta <Q_h x_i, K_h x_j>} V_h x_j

    with w_ij = w_j (no mask) or, causal, w_j e^{-alibi (s_i - s_j)} for j <= i, normalised over the row for
    USA (``TokenModel``'s field, docs/theory.md, docs/causal.md), and moves by ``apply_update``.  ``beta`` is one
    number or one per system; each head's Q, K, V one (d, d) matrix for every system or one per system
    (systems, d, d); weights one (n,) vector or one per system.  With post-LN and V = I a token's own term is
    left out of the numerator (it is parallel to x_i, the projection removes it, and in floating point it would
    swamp the pull of distant tokens) and kept in the SA denominator.  Each row's exponents are shifted by a
    bound on their maximum (or the exact maximum where the bound could let a whole row underflow).
    """

    def __init__(self, systems: int, weights: np.ndarray, beta, variant: str = "sa", dim: int = 3,
                 causal: bool = False, alibi: float = 0.0, block_bytes: int = BLOCK_BYTES, heads=None,
                 update: str = "post-ln", alpha: float = NGPT_ALPHA, threads: int = 1, backend: str = "numpy",
                 device: str = "cpu"):
        if variant not in ("sa", "usa"):
            raise ValueError(f"variant: got {variant!r}, allowed: 'sa' or 'usa'")
        if update not in UPDATES:
            raise ValueError(f"update: got {update!r}, allowed: " + " | ".join(UPDATES))
        weights = np.asarray(weights, dtype=float)
        if weights.ndim == 1:
            weights = np.broadcast_to(weights, (int(systems), weights.size))
        if systems < 1 or weights.shape[0] != systems or weights.shape[1] < 1 or not np.all(weights > 0):
            raise ValueError(f"systems: got {systems} systems of weights of shape {weights.shape}, allowed: at least "
                             "one system of at least one token, every weight > 0")
        self.systems, self.size = int(systems), weights.shape[1]
        self.beta = np.broadcast_to(np.asarray(beta, dtype=float), (self.systems,)).copy()
        self.variant, self.dim, self.update, self.alpha = variant, int(dim), update, float(alpha)
        self.causal, self.alibi = bool(causal), float(alibi) if causal else 0.0
        eye = np.eye(self.dim)
        self.heads = [tuple(np.asarray(m, dtype=float) for m in h) for h in (heads or [(eye, eye, eye)])]
        for h in self.heads:
            for m in h:
                if m.shape[-2:] != (self.dim, self.dim) or m.ndim not in (2, 3) or (m.ndim == 3 and m.shape[0] != systems):
                    raise ValueError(f"heads: a matrix of shape {m.shape}, allowed: ({dim}, {dim}) or "
                                     f"({systems}, {dim}, {dim})")
        self._identity_qk = [all(m.ndim == 2 and np.array_equal(m, eye) for m in h[:2]) for h in self.heads]
        self._self_free = [update == "post-ln" and h[2].ndim == 2 and np.array_equal(h[2], eye) for h in self.heads]
        self.n = weights.size
        self._row_scale = None
        self.set_merged(weights.reshape(-1), np.arange(self.n))
        self._mask = None
        if self.causal:
            self._mask = np.zeros((self.size, self.size))
            self._mask[np.triu_indices(self.size, 1)] = -np.inf
        self._block = max(1, int(block_bytes) // (8 * self.size * self.size))
        self._blocks = Blocks(threads, "meanfield-batch")
        self._torch = None
        if backend == "torch":  # the n x n work of every block on torch (CPU or a GPU), the rest in numpy
            from .torch_field import CPU_BLOCK_BYTES, CUDA_BLOCK_BYTES, load_torch

            self._torch = load_torch(device)
            self._device = self._torch.device(device)
            if self._device.type == "cpu":
                self._torch.set_num_threads(self.threads)
            block = CPU_BLOCK_BYTES if self._device.type == "cpu" else CUDA_BLOCK_BYTES
            self._torch_block = max(1, block // (8 * self.size * self.size))
        elif backend != "numpy":
            raise ValueError(f"backend: got {backend!r}, allowed: 'numpy' | 'torch'")

    @property
    def threads(self) -> int:
        """Threads over the blocks of systems (BLAS on one each)."""
        return self._blocks.threads

    def project(self, x: np.ndarray) -> np.ndarray:
        """Back onto the sphere (x / |x| row by row) for post-LN and nGPT; pre-LN and peri-LN keep the stream."""
        return normalise(x) if on_sphere(self.update) else x

    def set_weights(self, weights: np.ndarray) -> None:
        """A batch keeps n rows per system: refuse a change of weights that removes rows (``TokenSolver``'s
        merging); ``BatchTokenSolver`` merges a batch by ``set_merged``."""
        if not np.array_equal(np.asarray(weights, dtype=float), self.w):
            raise ValueError("BatchedTokenModel: tokens of a batch merge by weight transfer: advance it with "
                             "BatchTokenSolver (TokenSolver with merge_tol = 0 never merges)")

    def set_merged(self, weights: np.ndarray, leader: np.ndarray) -> None:
        """Tokens merged by weight transfer (``BatchTokenSolver``): row i with ``leader[i] != i`` has weight 0, sits
        where its leader (a live row of its system) sits and moves with it; ``weights`` (one per row) >= 0.

        A merged-away row keeps its place in the stacked state (the systems stay n rows each, one product for
        all): log w = -inf takes it out of every sum, and ``velocity`` gives it its leader's velocity, so it
        stays on its leader bit for bit through the integrators' stages."""
        w = np.asarray(weights, dtype=float).reshape(self.n)
        leader = np.asarray(leader, dtype=np.int64).reshape(self.n)
        rows = np.arange(self.n)
        live = leader == rows
        if (np.any(w[~live] != 0) or not np.all(w[live] > 0) or np.any(leader // self.size != rows // self.size)
                or not np.all(live[leader])):
            raise ValueError("weights and leaders: every live row (its own leader) needs a weight > 0, every other "
                             "row weight 0 and a live leader in its system")
        self.w, self.leader = w.copy(), leader.copy()
        self._followers = np.flatnonzero(~live)
        with np.errstate(divide="ignore"):  # merged-away rows: log 0 = -inf, out of every sum
            log_w = np.log(w.reshape(self.systems, self.size))
        if self.causal:  # TokenModel's causal weights, system by system (causal runs never merge)
            pairs = [causal_weights(row, self.alibi) for row in log_w]
            log_w, self._row_scale = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        self._log_w = log_w
        self._top_w = log_w.max(axis=1)
        self._low_w = np.where(np.isfinite(log_w), log_w, np.inf).min(axis=1)

    def velocity(self, x: np.ndarray) -> np.ndarray:
        """The velocity of every row of ``x`` (systems x n, d), the rows unit vectors (the integrators evaluate the
        field at x / |x|): ``apply_update`` of the attention output."""
        X = x.reshape(self.systems, self.size, x.shape[1])
        out = np.empty_like(X)
        if self._torch is not None:
            for b0 in range(0, self.systems, self._torch_block):
                self._torch_systems(X, b0, out)
        else:
            self._blocks.run(lambda b0: self._systems(X, b0, out), range(0, self.systems, self._block))
        return self._follow(out.reshape(x.shape))

    def _follow(self, v: np.ndarray) -> np.ndarray:
        """``v`` with every merged-away row given its leader's velocity (``set_merged``)."""
        if self._followers.size:
            v[self._followers] = v[self.leader[self._followers]]
        return v

    def _systems(self, X, b0: int, out) -> None:
        """Systems b0 .. b0 + block: their velocities into ``out``."""
        b1 = min(self.systems, b0 + self._block)
        Xb, n, d = X[b0:b1], self.size, X.shape[2]
        A = np.zeros_like(Xb)
        for h in range(len(self.heads)):
            left, right, V1, s, exact = self._operands(Xb, b0, b1, h)
            e = self._blocks.array(name="exponents", shape=(b1 - b0, n, n))
            np.matmul(left, right, out=e)
            if self._mask is not None:
                e += self._mask
            if exact:
                s = e.max(axis=2)
                e -= s[:, :, None]
            np.exp(e, out=e)
            if self._self_free[h]:  # V = I, post-LN: the own term out of the numerator (class doc)
                diagonal = e.reshape(b1 - b0, n * n)[:, ::n + 1]  # a view of e's diagonals
                own = diagonal.copy()
                diagonal[...] = 0.0
                acc = e @ V1
                acc[..., d] += own
            else:
                acc = e @ V1
            if self.variant == "sa" and len(self.heads) == 1:
                np.divide(acc[..., :d], acc[..., d:], out=A)
            elif self.variant == "sa":
                A += acc[..., :d] / acc[..., d:]
            else:
                scale = np.exp(s)
                if self._row_scale is not None:
                    scale = scale * self._row_scale[b0:b1]
                A += acc[..., :d] * scale[:, :, None]
        out[b0:b1] = apply_update(self.update, Xb, A, self.alpha)

    def _torch_systems(self, X, b0: int, out) -> None:
        """``_systems`` with the n x n work (exponents, exp, the products) on torch's device."""
        torch, dev = self._torch, self._device
        b1 = min(self.systems, b0 + self._torch_block)
        Xb, d = X[b0:b1], X.shape[2]
        tensor = (lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev))
        A = None
        for h in range(len(self.heads)):
            left, right, V1, s, exact = self._operands(Xb, b0, b1, h)
            e = torch.bmm(tensor(left), tensor(right))
            if self._mask is not None:
                e += tensor(self._mask)
            if exact:
                s = e.amax(dim=2)
                e -= s[:, :, None]
            else:
                s = tensor(s)
            e.exp_()
            if self._self_free[h]:  # V = I, post-LN: the own term out of the numerator (class doc)
                diagonal = torch.diagonal(e, dim1=1, dim2=2)
                own = diagonal.clone()
                diagonal.zero_()
            acc = torch.bmm(e, tensor(V1))
            if self._self_free[h]:
                acc[..., d] += own
            if self.variant == "sa":
                part = acc[..., :d] / acc[..., d:]
            else:
                scale = torch.exp(s)
                if self._row_scale is not None:
                    scale = scale * tensor(self._row_scale[b0:b1])
                part = acc[..., :d] * scale[:, :, None]
            A = part if A is None else A + part
        out[b0:b1] = apply_update(self.update, Xb, A.cpu().numpy(), self.alpha)

    def _operands(self, Xb, b0: int, b1: int, h: int) -> tuple:
        """(left, right, [V x, 1], s, exact) of head h for systems b0 .. b1: left @ right is beta <Q x_i, K x_j>
        - s_i + log w_j (s_i bounds row i's maximum; ``exact``: the bound could let a whole row underflow, then
        left's s column is 0 and the caller shifts each row by its exact maximum)."""
        Q, K, V = self.heads[h]
        n, d = self.size, Xb.shape[2]
        beta = self.beta[b0:b1, None, None]
        sl = (lambda m: m if m.ndim == 2 else m[b0:b1])  # a head's matrix for these systems
        if self._identity_qk[h]:
            q, k = Xb, Xb
            s = np.broadcast_to(beta[:, :, 0] + self._top_w[b0:b1, None], (b1 - b0, n))  # bounds each row
        else:
            q, k = Xb @ np.swapaxes(sl(Q), -1, -2), Xb @ np.swapaxes(sl(K), -1, -2)
            s = (beta[:, :, 0] * np.linalg.norm(q, axis=2) * np.linalg.norm(k, axis=2).max(axis=1, keepdims=True)
                 + self._top_w[b0:b1, None])
        exact = bool(np.any(2 * s - self._low_w[b0:b1, None] > SAFE_EXPONENT))  # the bound could underflow a row
        # one product makes beta <q_i, k_j> - s_i + log w_j: [beta q, -s, 1] against [k, 1, log w]
        left = self._blocks.array(name=f"rows{h}", shape=(b1 - b0, n, k.shape[2] + 2))
        np.multiply(q, beta, out=left[..., :-2])
        left[..., -1] = 1.0
        if exact:
            left[..., -2] = 0.0
        else:
            np.negative(s, out=left[..., -2])
        right = self._blocks.array(name=f"columns{h}", shape=(b1 - b0, k.shape[2] + 2, n))
        right[:, :-2], right[:, -2], right[:, -1] = np.swapaxes(k, 1, 2), 1.0, self._log_w[b0:b1]
        V1 = self._blocks.array(name=f"values{h}", shape=(b1 - b0, n, d + 1))
        V1[..., d] = 1.0
        V1[..., :d] = Xb if (V.ndim == 2 and self._self_free[h]) else Xb @ np.swapaxes(sl(V), -1, -2)
        return left, right, V1, s, exact

    # --- the peers' diagnostics, system by system --------------------------------------------------------
    def unit(self, x: np.ndarray) -> np.ndarray:
        """The tokens as unit vectors, (systems, n, d)."""
        return normalise(x).reshape(self.systems, self.size, x.shape[1])

    def energy_scaled(self, x: np.ndarray) -> np.ndarray:
        """e^{-beta} (1/(2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>} of each system (Q = K = I kernel), (systems,)."""
        return gram_statistics(self.unit(x), self.w.reshape(self.systems, self.size), self.beta, counts=False)[2]


def pair_fraction(X: np.ndarray, delta: float = 1e-3) -> np.ndarray:
    """The fraction of pairs i != j of each system (X: (systems, n, d) unit vectors) with <x_i, x_j> > 1 - delta
    (Geshkovski et al.'s clustering probability; they take delta = 1e-3)."""
    return gram_statistics(X, pair_delta=delta)[0]


def cluster_count(X: np.ndarray, delta: float = 1e-4) -> np.ndarray:
    """The number of clusters of each system: the rank of its thresholded Gram matrix 1[<x_i, x_j> > 1 - delta]
    (Geshkovski et al.; delta = 1e-4).  Where "close" is an equivalence (tokens in tight clusters) the rank is the
    number of distinct rows, counted exactly without a factorisation; other systems get numpy's matrix_rank."""
    return gram_statistics(X, rank_delta=delta)[1]


def gram_statistics(X: np.ndarray, w: np.ndarray | None = None, beta=None, pair_delta: float = 1e-3,
                    rank_delta: float = 1e-4, block_bytes: int = GRAM_BYTES, counts: bool = True) -> tuple:
    """(pair_fraction, cluster_count, energy or None) of each system from one Gram matrix per block of systems;
    the energy e^{-beta} (1 / (2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>} when weights w (systems, n) and beta
    (systems,) are given.  ``counts = False``: the energy alone (the rank is the costly part).  The thresholded
    matrices of all blocks are kept as packed rows (``_row_keys``) for one rank computation at the end."""
    B, n, _ = X.shape
    pairs = np.ones(B)
    keys = np.zeros((B, n, -(-n // 64)), dtype=np.uint64) if counts else None
    diagonal = np.ones(B, dtype=bool)
    energy = None if w is None else np.empty(B)
    block = max(1, int(block_bytes) // (8 * n * n))
    work = np.empty((min(block, B), n, n))
    for b0 in range(0, B, block):
        Xb = X[b0:b0 + block]
        G = work[:Xb.shape[0]]
        np.matmul(Xb, np.swapaxes(Xb, 1, 2), out=G)
        flat = G.reshape(G.shape[0], n * n)  # (long inner loops: a (systems, 1) factor broadcasts cheaply)
        if counts and n > 1:
            close = flat > 1.0 - pair_delta
            pairs[b0:b0 + block] = ((np.bitwise_count(np.packbits(close, axis=1)).sum(axis=1, dtype=np.int64)
                                     - np.count_nonzero(close[:, ::n + 1], axis=1)) / (n * (n - 1)))
        if counts:
            T = G > 1.0 - rank_delta
            keys[b0:b0 + block] = _row_keys(T)
            diagonal[b0:b0 + block] = np.all(T.reshape(-1, n * n)[:, ::n + 1], axis=1)
        if w is not None:
            bb = np.asarray(beta, dtype=float)[b0:b0 + block, None]
            shift = np.all(bb < SAFE_EXPONENT)  # e^{beta G} cannot overflow: e^{-beta} after the sum, a pass fewer
            if not shift:
                flat -= 1.0
            flat *= bb
            np.exp(flat, out=flat)
            wb = w[b0:b0 + block]
            e = np.sum(wb * (G @ wb[:, :, None])[..., 0], axis=1) / (2 * bb[:, 0])
            energy[b0:b0 + block] = e * np.exp(-bb[:, 0]) if shift else e
    count = _rank_of_rows(keys, n, diagonal) if counts else np.ones(B, dtype=np.int64)
    return pairs, count, energy


def _rank(T: np.ndarray) -> np.ndarray:
    """The rank of each boolean matrix T[b] (B, n, n), as numpy's matrix_rank gives it (``_rank_of_rows``)."""
    n = T.shape[1]
    return _rank_of_rows(_row_keys(T), n, np.all(T.reshape(-1, n * n)[:, ::n + 1], axis=1))


def _rank_of_rows(keys: np.ndarray, n: int, diagonal: np.ndarray) -> np.ndarray:
    """The rank of each boolean matrix T[b] (a thresholded Gram matrix: true on the diagonal) given as its packed
    rows (``_row_keys``; ``diagonal``: whether T[b]'s diagonal is all true), as numpy's matrix_rank would give it,
    without factorising most of it.

    Let S_i be row i's set and C_i the rows equal to row i; C_i is inside S_i (the diagonal), so |S_i| = |C_i|
    says every neighbour of i has i's row: a run of equal rows whose rows have as many ones as the run has members
    is a cluster, a block of ones that meets nothing else (T symmetric), and adds exactly 1 to the rank.  The rest
    of the matrix (chains, where "close" is not an equivalence) is a separate block whose rank is the eigenvalue
    rank of one row and column of each kind (duplicates add nothing), systems with as many such rows together.
    A system with such rows whose matrix is not exactly symmetric, or one with a false diagonal entry, gets numpy's
    matrix_rank whole."""
    B = keys.shape[0]
    order = np.argsort(keys[..., 0], axis=1) if keys.shape[2] == 1 else np.lexsort(keys.transpose(2, 0, 1)[::-1])
    srt = np.take_along_axis(keys, order[..., None], axis=1)
    start = np.ones((B, n), dtype=bool)  # where a run of equal rows starts, in sorted order
    start[:, 1:] = np.any(srt[:, 1:] != srt[:, :-1], axis=2)
    run = np.cumsum(start, axis=1) - 1 + n * np.arange(B)[:, None]  # each sorted row's run, numbered globally
    members = np.bincount(run.ravel(), minlength=B * n).reshape(B, n)  # run r's length at [b, r mod n]
    ones = np.bitwise_count(srt).sum(axis=2, dtype=np.int64)
    block = ones == np.take_along_axis(members, run - n * np.arange(B)[:, None], axis=1)
    out = np.count_nonzero(start & block, axis=1)
    rest = start & ~block
    size = np.count_nonzero(rest, axis=1)
    size[~diagonal] = 0
    whole = list(np.flatnonzero(~diagonal))  # a row without its own one: the argument fails
    chains = np.flatnonzero(size)
    if chains.size:
        Tc = _unpack_rows(keys[chains], n)
        symmetric = np.all(Tc == np.swapaxes(Tc, 1, 2), axis=(1, 2))
        whole += list(chains[~symmetric])
        Tc, chains = Tc[symmetric], chains[symmetric]
        for m in np.unique(size[chains]):
            pick = np.flatnonzero(size[chains] == m)
            group = chains[pick]
            rows = np.sort(np.where(rest[group], order[group], n), axis=1)[:, :m]  # one row of each kind
            sub = Tc[pick[:, None, None], rows[:, :, None], rows[:, None, :]]
            out[group] += np.linalg.matrix_rank(sub.astype(float), hermitian=True)
    for b in whole:
        out[b] = np.linalg.matrix_rank(_unpack_rows(keys[b:b + 1], n)[0].astype(float))
    return out


def _row_keys(T: np.ndarray) -> np.ndarray:
    """Each row of the boolean matrices T (B, n, n) packed into 64-bit words, (B, n, words)."""
    B, n, _ = T.shape
    packed = np.packbits(T, axis=2)
    words = -(-packed.shape[2] // 8)
    keys = np.zeros((B, n, 8 * words), dtype=np.uint8)
    keys[..., :packed.shape[2]] = packed
    return keys.view(np.uint64)


def _unpack_rows(keys: np.ndarray, n: int) -> np.ndarray:
    """The boolean matrices (B, n, n) whose packed rows are ``keys`` (``_row_keys``'s inverse)."""
    return np.unpackbits(keys.view(np.uint8), axis=2, count=n).astype(bool)
