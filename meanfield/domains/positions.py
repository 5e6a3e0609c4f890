"""The causal density's domain: a position axis s in [0, 1] times a circle or sphere geometry.

f(s, x) is carried as one set of coefficients per position node s_j = j / (S - 1), j = 0..S-1, so
coefficient arrays have shape (S, *base.spectral_shape) and grid arrays (S, *base.grid_shape).  Every
f(s, .) is a probability density: the mass, energy and entropy of a run are averages over positions
with the trapezoid weights of [0, 1] (``position_weights``).  The physics across positions (who
attends to whom) is the model's (``causal.CausalModel``); this class only broadcasts the geometry.
"""

from __future__ import annotations

import numpy as np


def position_nodes(count: int) -> np.ndarray:
    """s_j = j / (count - 1), j = 0..count-1 (position 0: the prompt's first token)."""
    return np.linspace(0.0, 1.0, int(count))


def position_weights(count: int) -> np.ndarray:
    """Trapezoid weights of [0, 1] on ``position_nodes(count)`` (they sum to 1)."""
    s = position_nodes(count)
    w = np.zeros(count)
    h = np.diff(s)
    w[:-1] += h / 2
    w[1:] += h / 2
    return w


class Positions:
    """``count`` positions times the geometry ``base`` (same interface as the geometries)."""

    def __init__(self, base, count: int):
        self.base = base
        self.count = int(count)
        self.s = position_nodes(self.count)
        self.s_weights = position_weights(self.count)
        self.name, self.dim, self.measure = base.name, base.dim, base.measure
        self.modes, self.dealias, self.spacing = base.modes, base.dealias, base.spacing
        self.threads = base.threads
        self.weights = self._across(self.s_weights, np.broadcast_to(base.weights, base.grid_shape))

    def _across(self, per_position, a):
        return per_position.reshape((-1,) + (1,) * np.ndim(a)) * a[None]

    def _tile(self, a) -> np.ndarray:
        return np.repeat(np.asarray(a)[None], self.count, axis=0)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """(positions, *base grid)."""
        return (self.count, *self.base.grid_shape)

    @property
    def spectral_shape(self) -> tuple[int, ...]:
        """(positions, *base coefficients)."""
        return (self.count, *self.base.spectral_shape)

    def grid_coords(self) -> dict[str, np.ndarray]:
        """``position`` first, then the base grid's coordinates."""
        return {"position": self.s, **self.base.grid_coords()}

    def spectral_coords(self) -> dict[str, np.ndarray]:
        """The base geometry's coefficient labels (the position axis is ``position``)."""
        return self.base.spectral_coords()

    def degrees(self) -> np.ndarray:
        """Degree of each coefficient, per position."""
        return self._tile(self.base.degrees())

    def mode_labels(self) -> list[tuple]:
        """(degree[, order]) of the base coefficients (the same at every position)."""
        return self.base.mode_labels()

    # --- transforms, position by position -----------------------------------------------
    def to_grid(self, c):
        """Coefficients (S, ...) -> grid values (S, ...)."""
        return np.stack([self.base.to_grid(row) for row in np.asarray(c)])

    def to_spectral(self, f):
        """Grid values (S, ...) -> coefficients (S, ...)."""
        return np.stack([self.base.to_spectral(row) for row in np.asarray(f)])

    def laplacian(self):
        """Eigenvalues of the Laplacian per coefficient (S, ...)."""
        return self._tile(self.base.laplacian())

    def funk_hecke(self, beta: float):
        """The Q = K = V = I kernel's scaled multipliers, per position (for the energy diagnostics)."""
        return self._tile(self.base.funk_hecke(beta))

    def integrate(self, f) -> float:
        """Average over positions of the integrals over the sphere: sum(weights * f)."""
        return float(np.sum(self.weights * f))

    def inner(self, a, b) -> float:
        """Average over positions of the integral of f g."""
        return float(sum(w * self.base.inner(x, y) for w, x, y in zip(self.s_weights, a, b)))

    def tail(self, c) -> float:
        """The largest spectral tail over positions."""
        return max(self.base.tail(row) for row in c)

    def coefficient_ratio(self, c) -> float:
        """The largest over positions."""
        return max(self.base.coefficient_ratio(row) for row in c)

    def resample(self, c, modes: int):
        """Each position's coefficients truncated or zero-padded to this resolution (one position's
        coefficients, from a run without positions: the same at every position)."""
        from ..errors import ConfigError

        c = np.asarray(c)
        if c.ndim == len(self.base.spectral_shape):
            return self._tile(self.base.resample(c, modes))
        if c.shape[0] != self.count:
            raise ConfigError(f"grid.positions: got {self.count}, allowed with this initial.path: {c.shape[0]} "
                              "(the snapshot's number of positions)")
        return np.stack([self.base.resample(row, modes) for row in c])

    # --- initial data ---------------------------------------------------------------
    def uniform(self):
        """The uniform density at every position."""
        return self._tile(self.base.uniform())

    def random_perturbation(self, rng, max_mode: int = 0):
        """Independent draws at every position (as for iid prompts), position 0 first."""
        return np.stack([self.base.random_perturbation(rng, max_mode) for _ in range(self.count)])

    def mode_function(self, spec):
        """The base mode function at every position."""
        return self._tile(self.base.mode_function(spec))

    def von_mises(self, center, concentration: float):
        """The same bump at every position."""
        return self._tile(self.base.von_mises(center, concentration))
