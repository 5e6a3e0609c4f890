"""Memory: what a run will hold, checked where the run allocates (never while parsing a config: the same
config is valid on a busy and an idle machine), and the allocator tuned for the token fields."""

from __future__ import annotations

import math
import os

from ..config import geometry_for_dim, plain_attention
from ..domains import grid_points
from ..errors import ConfigError
from ..physics.general import uses_quadrature


def memory_estimate(cfg) -> tuple[float, str]:
    """(bytes, key) a run will hold at its peak, roughly, and the key that sets it."""
    g, m = cfg.grid, cfg.model
    L = g.modes
    if m.method == "particles":
        n = len(cfg.initial.positions) if cfg.initial.kind == "tokens" else cfg.particles.n
        d = cfg.particles.dim
        return 64 * 2**20 + 40.0 * n * d * 8 + _grid_bytes(geometry_for_dim(d), L, g.dealias), "particles.n"
    need = _grid_bytes(m.geometry, L, g.dealias)
    a = cfg.attention
    if a.causal:
        need *= g.positions
    if not plain_attention(cfg) and uses_quadrature(cfg):  # the kernel matrices, heads x N^2 doubles, built once
        n = grid_points(m.geometry, L, g.dealias)
        return need + 8.0 * a.heads * n * n, "grid.modes"
    if cfg.longtime.handoff == "tokens":
        # tokens on the (oversampled) grid: blocked point fields (<= 64 MB), or zonal rings' dense n x n kernels
        n = cfg.longtime.oversample ** (2 if m.geometry == "sphere" else 1) * grid_points(m.geometry, L, g.dealias)
        need += 12 * 8.0 * n * n if m.geometry == "zonal" else 64 * 2**20 + 40.0 * n * cfg.dim * 8
    return need, "grid.modes"


def _grid_bytes(geometry: str, L: int, dealias: float) -> float:
    # ~20 grid-sized float arrays alive in a step (stages, temporaries), plus the transform tables
    if geometry == "circle":
        return 20 * 8.0 * dealias * (2 * L + 1)
    if geometry == "sphere":
        return 20 * 8.0 * dealias**2 * (L + 1) * (2 * L + 1) + 16.0 * (L + 1) ** 2
    return 3 * 8.0 * (L + 1) * dealias * (L + 1)  # zonal: R_l and R_l' tables, (L+1) x n


def available_memory() -> float:
    """Bytes of memory available to this process now (MemAvailable; total RAM where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def check_memory(cfg) -> None:
    """Refuse, before anything is allocated, a run whose estimated memory exceeds what is available."""
    need, key = memory_estimate(cfg)
    have = available_memory()
    if need > 0.8 * have:
        value = cfg.particles.n if key == "particles.n" else cfg.grid.modes
        raise ConfigError(f"{key}: got {value}, which needs about {need / 2**30:.3g} GiB of memory; "
                          f"{have / 2**30:.3g} GiB are available: lower {key}")


def keep_freed_memory() -> None:
    """glibc gives freed blocks over 128 KB back to the system, so each n x n temporary of the token
    and ring fields page-faults in again at the next evaluation (measured: a zonal long run 29 s ->
    20 s without that).  This process keeps blocks up to 32 MB instead (Linux / glibc; else nothing)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 * 2**20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass
