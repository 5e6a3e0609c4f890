"""Integrators that keep every token on the sphere exactly by renormalising after each step.

``rk4`` (classical RK4 in R^d, then x / |x|: order 4, the exact flow stays on the sphere so the
projection error is O(h^5)), ``euler`` (order 1), ``dopri5`` and ``dop853`` (Dormand–Prince 5(4) and
8(5,3): fixed steps, or adaptive with error control).  Noise of strength nu (Brownian motion on the
sphere, generator nu Lap) is added by a projected Euler–Maruyama step after the deterministic one (weak
order 1).  ``RandomLayers`` draws fresh random heads every step (random heads per layer).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..stepping import DormandPrince, DormandPrince853, Scheme, State


def normalise(x):
    """x / |x| row by row."""
    if x.ndim == 2:  # the common case, without linalg.norm's general reduction (2x faster at 65,536 x 2)
        return x / np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class ProjectedRK4(Scheme):
    """Classical RK4 in R^d followed by the projection back onto the sphere (order 4).

    The field is evaluated at x / |x| (extended off the sphere along rays): the sphere is then
    invariant under the exact flow in R^d and the radial direction carries no dynamics, so explicit
    steps are not limited by a stiff pull back onto the sphere."""

    name = "rk4"
    order = 4

    def __init__(self, velocity, noise: float = 0.0, rng=None, project=normalise):
        super().__init__(np.zeros(1), velocity)
        self.noise, self.rng, self.project = noise, rng, project

    def f(self, x):
        """The field at x / |x|."""
        return self.N(normalise(x))

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

    def __init__(self, velocity, noise: float = 0.0, rng=None, project=normalise):
        if noise:
            raise ConfigError(f"particles.integrator: got {self.name!r} with model.viscosity > 0, allowed: "
                              f"{self.name!r} for deterministic runs; use 'euler' or 'rk4' with noise")
        super().__init__(lambda x: velocity(normalise(x)), project)


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

    def __init__(self, model, heads: int, variance: float, rng, project=normalise):
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
