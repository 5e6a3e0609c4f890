"""The attention physics in spectral space, written once for every geometry.

    d_t rho = -div(rho X[rho]) + nu Lap rho,    psi = G_beta rho,
    USA: X = (1/beta) grad psi,    SA: X = (1/beta) grad log psi = (1/beta) grad psi / psi,
    nGPT (SA or USA alike): X = alpha grad psi / sqrt(|grad psi|^2 + (beta d_beta psi)^2)   (docs/variants.md).

The right-hand side is split for semi-implicit steppers as  F(c) = L c + N(c):
L is diagonal, the linearisation about the uniform state plus viscosity (its entries
are the linear growth rates (docs/theory.md), built here from the geometry's own
multipliers), and N(c) = F(c) - L c is O(|c - c_bar|^2).

G_beta is applied with multipliers scaled by e^{-beta} (psi_s = e^{-beta} psi): SA is
invariant under that scaling and USA takes the factor e^beta / beta once, as a scalar.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import NGPT_ALPHA
from ..errors import ConfigError
from .theory import check_parameters, kernel_ratio

#: A density more negative than this (relative to max rho) is beyond round-off: resolved only to that
#: level (a warning; with longtime.handoff = "tokens" the run continues as tokens).
NEGATIVE_TOL = 1e-10
#: ... and beyond this it is not a density any more: the run stops (the blow-up guard).
NEGATIVE_STOP = 1e-6


class AttentionModel:
    """SA or USA attention flow with viscosity on a geometry (Q = K = V = I), tokens moved by post-LN (the
    projection of the attention output A) or nGPT (alpha P_x A / |A|, ``update = "ngpt"``)."""

    #: the residual update (``particles.update``): "post-ln", or "ngpt" where this class implements it
    update = "post-ln"
    alpha = NGPT_ALPHA

    def __init__(self, geometry, variant: str, beta: float, viscosity: float = 0.0, update: str = "post-ln",
                 alpha: float = NGPT_ALPHA):
        check_parameters(beta, variant, viscosity, geometry.dim)
        if update not in ("post-ln", "ngpt"):
            raise ConfigError(f"particles.update: got {update!r} for a density, allowed: 'post-ln' | 'ngpt' (pre-LN "
                              "and peri-LN move residual streams off the sphere: tokens only)")
        self.update, self.alpha = update, float(alpha)
        self.geometry = geometry
        self.variant = variant
        self.beta = float(beta)
        self.viscosity = float(viscosity)
        self.kernel = geometry.funk_hecke(self.beta)  # scaled by e^{-beta}
        self.lap = geometry.laplacian()
        rho_bar = 1.0 / geometry.measure
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # checked just below
            if variant == "usa":
                # X = scale * grad psi_s, scale = e^beta / beta
                self.scale = math.exp(self.beta) / self.beta
                attention = rho_bar * self.scale * self.kernel
            else:
                # X = (1/beta) grad psi_s / psi_s; psi_s_bar = kernel_0 * rho_bar
                self.scale = 1.0 / self.beta
                attention = self.kernel / (self.beta * self.kernel.flat[0])
            if update == "ngpt":
                # X = alpha grad psi_s / |(grad psi_s, beta psi_s')|, about the uniform state alpha grad psi_s /
                # (beta psi_s'_bar): SA's rates times alpha / (I_{d/2} / I_{d/2-1}), |A| of the uniform state
                self.radial = geometry.funk_hecke_radial(self.beta)
                attention = self.alpha * self.kernel / (self.beta * self.kernel.flat[0]
                                                        * float(kernel_ratio(1, self.beta, geometry.dim)))
            # -div(rho_bar grad(a u)) = -a rho_bar Lap u  ->  L = -Lap * attention + nu Lap
            self.L = (-self.lap * attention + self.viscosity * self.lap).astype(float)
        if not (np.all(np.isfinite(self.L)) and math.isfinite(self.scale)):  # e.g. beta 1e-320, viscosity 1e308
            raise ConfigError(f"model.beta, model.viscosity: got beta = {self.beta:g}, viscosity = {self.viscosity:g}: "
                              f"the linear rates overflow float64 at {geometry.modes} modes; allowed: values whose "
                              "rates (about viscosity * modes^2 and 1 / beta) stay below 1e300")

    #: The perceptron term's grid field, or None for attention alone (set by ``add_perceptron``).
    mlp = None
    #: Its potential Phi on the grid when it is a gradient term (W = A^T diag(c)), else None.
    mlp_potential = None

    def add_perceptron(self, field) -> None:
        """Add the perceptron term P_x W sigma(A x + b) (a ``PerceptronField``) to the velocity.  With it the
        interaction energy is no longer monotone in time; when the term is a gradient, grad Phi (W = A^T diag(c)),
        USA's free energy gains int Phi rho and stays non-decreasing (``free_energy_scaled``)."""
        self.mlp = field.on_grid(self.geometry)
        if field.gradient_weights() is not None:
            self.mlp_potential = field.potential(self.geometry.points()).reshape(self.geometry.grid_shape)

    def _with_mlp(self, v: np.ndarray) -> np.ndarray:
        return v if self.mlp is None else v + self.mlp

    def _mlp_transport(self, c: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out - div(rho X_mlp): the perceptron's share of the right-hand side."""
        return out if self.mlp is None else out - self.geometry.div(self.geometry.to_grid(c) * self.mlp)

    def velocity(self, c: np.ndarray) -> np.ndarray:
        """The velocity field X[rho] (attention, and the perceptron term if any) on the grid (a grid vector)."""
        if self.update == "ngpt":
            return self._with_mlp(self._ngpt_field(c))
        return self._with_mlp(self.geometry.gradient_field(self.kernel * c, self.variant == "sa", self.scale))

    def _ngpt_field(self, mu: np.ndarray) -> np.ndarray:
        """nGPT's X = alpha P_x A / |A| of the measure mu on the grid.  A = (grad psi / beta + x d_beta psi) [/ psi
        for SA]: its tangent part is grad psi / beta, its radial part <x, A> = d_beta psi (the kernel <x, y>
        e^{beta <x, y>}); the factor 1 / psi of SA and the scale e^beta cancel in A / |A|."""
        v = self.geometry.grad(self.kernel * mu)
        norm = self.geometry.to_grid(self.radial * mu)
        norm *= self.beta
        norm **= 2
        norm += np.sum(v * v, axis=0)
        np.sqrt(norm, out=norm)
        with np.errstate(divide="ignore", invalid="ignore"):  # A = 0: nan, which the guard reports
            v *= self.alpha / norm
        return v

    def psi_range(self, c: np.ndarray) -> float:
        """min psi / max psi on the grid.  SA divides by psi, whose spectral evaluation is
        accurate to ~1e-16 max psi: the field loses digits where this ratio is small."""
        psi = self.geometry.to_grid(self.kernel * c)
        return float(np.min(psi) / np.max(psi))

    def transport(self, mu: np.ndarray, f: np.ndarray) -> np.ndarray:
        """-div(f X[mu]) in spectral space: the density f carried by the field of the measure mu
        (mu = f but for the causal density, where a position attends to the positions before it)."""
        if self.update == "ngpt":
            v = self._ngpt_field(mu)
            v *= self.geometry.to_grid(f)
            return -self.geometry.div(v)
        return self.geometry.flux_divergence(self.kernel * mu, f, self.variant == "sa", -self.scale)

    def rhs(self, c: np.ndarray) -> np.ndarray:
        """The full right-hand side F(c) = -div(rho X) + nu Lap rho, in spectral space."""
        out = self._mlp_transport(c, self.transport(c, c))
        if self.viscosity:
            out += self.viscosity * self.lap * c
        return out

    def nonlinear(self, c: np.ndarray) -> np.ndarray:
        """N(c) = F(c) - L c: the part an IMEX / exponential stepper treats explicitly."""
        out = self.rhs(c) - self.L * c
        out.flat[0] = 0.0  # mass: the divergence has no mean, exactly
        return out

    def max_speed(self, c: np.ndarray) -> float:
        """max |X| on the grid (for the CFL condition)."""
        v = self.velocity(c)
        return float(np.sqrt(np.max(np.sum(np.abs(v) ** 2, axis=0))))

    def energy_scaled(self, c: np.ndarray) -> float:
        """e^{-beta} E, with E = (1/(2 beta)) int psi rho (docs/theory.md); scaled so it never overflows."""
        return self.geometry.inner(self.kernel * c, c) / (2 * self.beta)

    def entropy_integral(self, c: np.ndarray) -> float:
        """int rho log rho on the grid.  Values within round-off of 0 (> -1e-8 max rho) count as 0;
        nan if rho is genuinely negative somewhere (under-resolved)."""
        rho = self.geometry.to_grid(c)
        if np.min(rho) < -1e-8 * np.max(rho):
            return math.nan
        pos = np.where(rho > 0, rho, 1.0)  # log(1) = 0 where rho <= 0
        return self.geometry.integrate(np.where(rho > 0, rho * np.log(pos), 0.0))

    def free_energy_scaled(self, c: np.ndarray) -> float:
        """e^{-beta} F for USA, F = E + int Phi rho - nu int rho log rho (non-decreasing in time; Phi the potential
        of a gradient perceptron term, 0 without one; nan with a perceptron that is not a gradient)."""
        e = self.energy_scaled(c)
        if self.mlp is not None:
            if self.mlp_potential is None:
                return math.nan
            e += math.exp(-self.beta) * self.geometry.integrate(self.mlp_potential * self.geometry.to_grid(c))
        if not self.viscosity:
            return e
        return e - self.viscosity * math.exp(-self.beta) * self.entropy_integral(c)
