"""The heads of the attention: Q_h, K_h, V_h from the config's [attention] section, and what kind of head each is.

A head with Q^T K = c I (c > 0) and V = v I is a *scalar* head: v times the Q = K = V = I field at inverse
temperature beta c, a Funk–Hecke multiplier (docs/general.md).
"""

from __future__ import annotations

import math

import numpy as np

from ..config import MAX_BETA
from ..errors import ConfigError

#: attention.Q, K, V = "gpt2": entries N(0, GPT2_STD^2), GPT-2's initializer_range
GPT2_STD = 0.02


def attention_matrices(spec, d: int, heads: int, rng: np.random.Generator, name: str,
                       variance: float = 1.0) -> list[np.ndarray]:
    """Q, K or V for every head from the config: "identity", "random" (N(0, variance/d) entries, drawn
    independently per head), "gpt2" (N(0, 0.02^2) entries: GPT-2's initialisation of its attention weights),
    a d x d matrix (list of rows), or a list of ``heads`` of those."""
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
            out.append(rng.standard_normal((d, d)) * math.sqrt(variance / d))
        elif isinstance(s, str) and s == "gpt2":
            out.append(rng.standard_normal((d, d)) * GPT2_STD)
        elif _is_matrix(s) and _as_matrix(s) is not None and _as_matrix(s).shape == (d, d):
            out.append(_as_matrix(s))
        else:
            shown = spec if s is None else s
            raise ConfigError(f"{where}: got {_short(shown)}, allowed: 'identity' | 'random' | 'gpt2' | a finite {d} x {d} "
                              "matrix (list of rows)" + (f", or a list of {heads} of those" if heads > 1 else ""))
    return out


def _as_matrix(s) -> np.ndarray | None:
    """The float matrix of a list of rows, or None if an entry is not finite (or an integer beyond float range)."""
    try:
        a = np.asarray(s, dtype=float)
    except (OverflowError, ValueError):
        return None
    return a if np.all(np.isfinite(a)) else None


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_matrix(s) -> bool:
    """A non-empty rectangular list of rows of numbers."""
    return isinstance(s, (list, tuple)) and len(s) > 0 and all(
        isinstance(r, (list, tuple)) and len(r) == len(s[0]) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r) for r in s)


def scalar_head(Q: np.ndarray, K: np.ndarray, V: np.ndarray) -> tuple[float, float] | None:
    """(c, v) when Q^T K = c I and V = v I (to round-off), else None."""
    d = Q.shape[0]
    M = Q.T @ K
    c, v = float(np.trace(M)) / d, float(np.trace(V)) / d
    eye = np.eye(d)
    scale = max(1.0, float(np.max(np.abs(M))))
    if np.max(np.abs(M - c * eye)) > 1e-14 * scale or np.max(np.abs(V - v * eye)) > 1e-14 * max(1.0, abs(v)):
        return None
    return c, v


def funk_hecke_heads(heads) -> bool:
    """Whether every head is a Funk–Hecke multiplier: Q^T K = c I with c > 0 and V = v I."""
    return all(sc is not None and sc[0] > 0 for sc in (scalar_head(*h) for h in heads))


def is_identity(dim: int, *matrices) -> bool:
    """Whether every matrix of every list (Q, K, V per head) is the d x d identity."""
    return all(np.array_equal(A, np.eye(dim)) for mats in matrices for A in mats)


def attention_heads(cfg, dim: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """[(Q_h, K_h, V_h)] of the config's [attention] section (random matrices drawn with attention.seed)."""
    a = cfg.attention
    rng = np.random.default_rng(a.seed)
    mats = [attention_matrices(getattr(a, name), dim, a.heads, rng, name, a.variance) for name in ("Q", "K", "V")]
    for h, (Q, K, _) in enumerate(zip(*mats[:2], mats[2])):
        with np.errstate(over="ignore", invalid="ignore"):
            size = float(np.max(np.abs(Q.T @ K)))  # times beta: the scale of the logits <Q x, K y>
        tokens = cfg.model.method == "particles"  # tokens take any finite scale (a hard-max); a density's kernel
        if not (math.isfinite(size * cfg.model.beta) and (tokens or size * cfg.model.beta <= MAX_BETA)):
            raise ConfigError(f"attention.Q, attention.K{f' (head {h})' if a.heads > 1 else ''}: beta * Q^T K has "
                              f"entries up to {size * cfg.model.beta:.3g}, allowed: finite" + ("" if tokens else
                              f" and at most {MAX_BETA:g}") + " (the attention's inverse temperature; scale Q or K "
                              "down)")
    return list(zip(*mats))
