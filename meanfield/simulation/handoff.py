"""Long runs with viscosity 0: the hand-off from the spectral density to weighted tokens.

Once clusters form, their width shrinks like e^{-t} and the density leaves every fixed grid.  A
weighted token measure is an exact (measure-valued) solution of the same equation, so the run
continues as tokens: the density becomes the tokens (x_j, w_j rho_j) at the nodes of a quadrature
rule that is exact for the products rho f the grid carries (the run's own grid, refined by
``longtime.oversample``), so the tokens reproduce every coefficient of rho, their field equals the
density's up to the kernel's quadrature error, and their energy its energy.  Zonal densities on
S^{d-1} become rings (``particles.RingModel``).

Round-off leaves a few nodes with rho_j slightly below 0 (and some at exactly 0): those nodes carry
no token.  Dropping their negative weights adds |sum of negatives| to the total; the positive
weights are then divided by their sum, so the tokens carry mass 1 exactly.  Both numbers are
reported (``HandOff``), never hidden.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

@dataclass
class HandOff:
    """What the hand-off did: when, why, how many tokens, and every bit of mass it touched."""

    time: float
    reason: str  # "tail" | "negative" | "initial tokens"
    nodes: int  # quadrature nodes (rows of the token output)
    tokens: int  # tokens kept (nodes with rho_j > 0)
    dropped: int  # nodes with rho_j <= 0
    negative_mass: float  # sum of the dropped negative weights (<= 0): round-off
    renormalised_by: float  # the positive weights were divided by this (1 - negative_mass)
    tail: float  # spectral tail at the hand-off
    min_density_ratio: float  # min rho / max rho on the grid at the hand-off
    departure: float = math.nan  # max |rho / rho_bar - 1| at the hand-off (>= longtime.departure unless forced)
    energy_density: float = math.nan  # e^{-beta} E of the density just before
    energy_tokens: float = math.nan  # ... and of the tokens just after

    @property
    def energy_jump(self) -> float:
        """Relative change of the energy at the hand-off."""
        return (self.energy_tokens - self.energy_density) / abs(self.energy_density)

    def attrs(self) -> dict:
        """The report as root attributes (``handoff_*``) of a history."""
        out = {"handoff_time": self.time}
        out.update({f"handoff_{k}": v for k, v in asdict(self).items() if k != "time"})
        out["handoff_energy_jump"] = self.energy_jump
        return out


def density_to_tokens(geometry, c: np.ndarray, oversample: int = 1):
    """Tokens (nodes, weights, rows) reproducing the density with coefficients c, and the report's
    mass numbers (dropped nodes, negative mass, renormalisation)."""
    nodes, w, rho = geometry.quadrature(c, oversample)
    mass = w * rho
    keep = mass > 0
    negative = float(np.sum(mass[mass < 0]))
    total = float(np.sum(mass[keep]))
    rows = np.flatnonzero(keep)
    return nodes[keep], mass[keep] / total, rows, {
        "nodes": int(mass.size), "tokens": int(rows.size), "dropped": int(mass.size - rows.size),
        "negative_mass": negative, "renormalised_by": total}

