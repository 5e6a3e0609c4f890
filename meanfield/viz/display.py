"""What the figures draw of a density: after a hand-off the stored coefficients are the tokens' own
(a sum of Dirac masses cut at the grid's degree, which rings); figures draw them smoothed by the heat
kernel at the grid's resolution, and say so."""

from __future__ import annotations

import math

import numpy as np

from ..io import density_snapshots, geometry_of, grid_density
from ..tokens import heat_kernel

#: Figure label of densities smoothed for display.
SMOOTHED = "tokens smoothed at the grid's resolution"


def resolution_bandwidth(geometry) -> float:
    """The heat-kernel bandwidth b at which a token measure's smoothed density is resolved by the grid:
    exp(-L (L + d - 2) b^2 / 2) = 1e-16 at the top degree L."""
    L, d = geometry.modes, geometry.dim
    return math.sqrt(2 * math.log(1e16) / (L * (L + d - 2)))


def smoothed_rows(h: dict) -> np.ndarray:
    """Which snapshots of history ``h`` a figure draws smoothed: those of the token phase of a run whose
    stored coefficients are the tokens' exact ones (``token_coefficients = "exact"``)."""
    t = np.asarray(h["time"])
    out = np.zeros(t.shape, dtype=bool)
    if str(h["attrs"].get("token_coefficients", "")) == "exact":
        out[density_snapshots(h):] = True
    return out


def display_density(h: dict, rows=slice(None)) -> np.ndarray:
    """rho on the grid at snapshots ``rows`` as figures draw it (``smoothed_rows`` smoothed)."""
    rho = np.array(grid_density(h, rows), dtype=float)
    smooth = smoothed_rows(h)[rows]
    if not np.any(smooth):
        return rho
    g = geometry_of(h)
    damp = heat_kernel(g, resolution_bandwidth(g))
    c = np.asarray(h["rho_hat"][rows])
    if np.ndim(smooth) == 0:
        return g.to_grid(c * damp)
    for i in np.flatnonzero(smooth):
        rho[i] = g.to_grid(c[i] * damp)
    return rho
