"""The density equation for general attention: matrices Q_h, K_h, V_h, several heads (docs/general.md).

    X[mu](x) = P_x sum_h  int e^{beta <Q_h x, K_h y>} V_h y dmu(y)  [ / int e^{beta <Q_h x, K_h y>} dmu(y)  (SA) ]

is a Funk–Hecke multiplier only when a head is a scalar one, Q_h^T K_h = c_h I and V_h = v_h I: then the
head is v_h times the Q = K = V = I field at inverse temperature beta c_h, and the heads' fields add up
in spectral space (``integrals = "funk_hecke"``).  Any other head is evaluated by the grid's own
quadrature, {y_j, w_j} (``integrals = "quadrature"``):

    int e^{beta <Q x_i, K y>} g(y) rho(y) dy = sum_j w_j e^{beta <Q x_i, K y_j>} g(y_j) rho(y_j),

exact when the integrand's degree is within the rule's (``quadrature_degree``).  The kernel matrix
E_ij = w_j e^{beta <Q x_i, K y_j> - s_i}, s_i = max_j beta <Q x_i, K y_j>, is constant in time: it is
built once, scaled so that nothing overflows (SA does not see s_i; USA multiplies the row back by
e^{s_i}, which the config bounds), and each evaluation is one dense product E [rho V y, rho] per head.
The flux divergence stays spectral (the geometry's ``div``).
"""

from __future__ import annotations

import numpy as np

from ..config import plain_attention
from ..domains import exact_degree
from ..errors import ConfigError
from .causal import CausalModel
from .heads import attention_heads, funk_hecke_heads, scalar_head
from .kernels import kernel_degree, kernel_radius
from . import perceptron
from .model import AttentionModel


def required_degree(modes: int, beta: float, heads, dim: int) -> int:
    """The exact degree the quadrature needs: modes (rho) + 1 (V y) + the kernel's degree at the largest radius."""
    a = max(kernel_radius(beta, Q, K) for Q, K, _ in heads)
    return int(modes) + 1 + kernel_degree(a, dim)


def uses_quadrature(cfg) -> bool:
    """Whether a density run of this config builds kernel matrices."""
    a = cfg.attention
    if a.integrals != "auto":
        return a.integrals == "quadrature"
    heads = attention_heads(cfg, cfg.dim)
    return not funk_hecke_heads(heads)


def quadrature_dealias(name: str, modes: int, beta: float, heads) -> float | None:
    """The least grid.dealias (a multiple of 1/4 in [1, 4]) whose grid the quadrature path accepts, or
    None when even 4 is too coarse (raise grid.modes instead)."""
    need = required_degree(modes, beta, heads, 2 if name == "circle" else 3)
    for quarter in range(4, 17):
        if exact_degree(name, modes, quarter / 4) >= need:
            return quarter / 4
    return None


def check_quadrature(name: str, modes: int, dealias: float, beta: float, heads) -> None:
    """Refuse a grid whose quadrature would not integrate the field's integrands to QUADRATURE_TOL."""
    dim = 2 if name == "circle" else 3
    need, have = required_degree(modes, beta, heads, dim), exact_degree(name, modes, dealias)
    if need > have:
        a = max(kernel_radius(beta, Q, K) for Q, K, _ in heads)
        fix = quadrature_dealias(name, modes, beta, heads)
        fix = f"set grid.dealias = {fix:g}" if fix else "raise grid.modes (grid.dealias 4 is not enough)"
        raise ConfigError(f"grid.dealias: got {dealias:g}, allowed with attention.integrals = 'quadrature' at "
                          f"beta ||K^T Q|| = {a:.4g}: a grid exact to degree >= {need} (grid.modes {modes} + 1 + the "
                          f"kernel's degree {need - modes - 1}); this one is exact to {have}: {fix}")


class QuadratureField:
    """The attention field of densities on the grid, by the grid's quadrature (module docstring)."""

    def __init__(self, geometry, variant: str, beta: float, heads):
        self.geometry, self.variant = geometry, variant
        check_quadrature(geometry.name, geometry.modes, geometry.dealias, beta, heads)
        x = geometry.points()
        w = np.broadcast_to(geometry.weights, geometry.grid_shape).ravel()
        self.E, self.shift, self.Vy = [], [], []
        for Q, K, V in heads:
            E = (beta * (x @ Q.T)) @ (x @ K.T).T  # E_ij = beta <Q x_i, K y_j>, then scaled in place
            s = E.max(axis=1)
            E -= s[:, None]
            np.exp(E, out=E)
            E *= w[None, :]
            self.E.append(E)
            self.shift.append(np.exp(s) if variant == "usa" else None)
            self.Vy.append(x @ V.T)
        self.frame = geometry.tangent_frame()
        self.n, self.d = x.shape

    def ambient(self, mu: np.ndarray) -> np.ndarray:
        """sum_h of the heads' (unprojected) field at the grid points, (N, d), for the density values mu (N,)."""
        out = np.zeros((self.n, self.d))
        g = np.empty((self.n, self.d + 1))
        g[:, self.d] = mu
        for E, shift, Vy in zip(self.E, self.shift, self.Vy):
            np.multiply(Vy, mu[:, None], out=g[:, :self.d])
            acc = E @ g
            if shift is None:
                out += acc[:, :self.d] / acc[:, self.d:]
            else:
                out += acc[:, :self.d] * shift[:, None]
        return out

    def field(self, mu: np.ndarray) -> np.ndarray:
        """The tangent field X[mu] as a grid vector (the geometry's components), for grid values mu."""
        X = self.ambient(np.ravel(mu))
        return np.einsum("cnd,nd->cn", self.frame, X).reshape(self.frame.shape[0], *self.geometry.grid_shape)

    def denominator_range(self, mu: np.ndarray) -> float:
        """min / max over grid points and heads of the SA denominator: the digits its division keeps."""
        mu = np.ravel(mu)
        return min(float(np.min(d) / np.max(d)) for d in (E @ mu for E in self.E))


class GeneralModel(AttentionModel):
    """SA or USA with heads (Q_h, K_h, V_h) and viscosity on a circle or sphere geometry.

    ``integrals``: "funk_hecke" (every head scalar with c_h > 0: a sum of Q = K = V = I fields, in
    spectral space; the linear part L is then the sum of the heads' rates), "quadrature" (the kernel
    matrices; L = viscosity only: the uniform state need not be stationary), or "auto" (the first where
    it applies).  Energy diagnostics stay those of the Q = K = V = I kernel (docs/theory.md).
    """

    def __init__(self, geometry, variant: str, beta: float, viscosity: float, heads, integrals: str = "auto"):
        super().__init__(geometry, variant, beta, viscosity)
        spectral = funk_hecke_heads(heads)
        if integrals == "funk_hecke" and not spectral:
            raise ConfigError("attention.integrals: got 'funk_hecke', allowed: 'auto' | 'quadrature' for these "
                              "heads (Funk–Hecke needs Q^T K = c I with c > 0 and V = v I in every head)")
        self.heads = [tuple(np.asarray(m, dtype=float) for m in h) for h in heads]
        self.integrals = "funk_hecke" if spectral and integrals != "quadrature" else "quadrature"
        if self.integrals == "funk_hecke":
            self.parts = [(AttentionModel(geometry, variant, beta * c, 0.0), v)
                          for c, v in (scalar_head(*h) for h in heads)]
            self.L = sum(v * part.L for part, v in self.parts) + self.viscosity * self.lap
            self.quadrature = None
        else:
            if geometry.name not in ("circle", "sphere"):
                raise ConfigError(f"attention.integrals: got 'quadrature' on geometry {geometry.name!r}, allowed: "
                                  "geometry 'circle' | 'sphere' (the zonal grid has no quadrature of non-zonal "
                                  "kernels); on 'zonal' every head must be scalar (Q^T K = c I, c > 0, V = v I)")
            self.parts = None
            self.quadrature = QuadratureField(geometry, variant, beta, self.heads)
            self.L = (self.viscosity * self.lap).astype(float)

    def transport(self, mu: np.ndarray, f: np.ndarray) -> np.ndarray:
        """-div(f X[mu]) in spectral space, for the coefficients mu (the attended measure) and f."""
        if self.parts is not None:
            return sum(v * part.transport(mu, f) for part, v in self.parts)
        v = self.quadrature.field(self.geometry.to_grid(mu))
        v *= self.geometry.to_grid(f)
        return -self.geometry.div(v)

    def velocity(self, c: np.ndarray) -> np.ndarray:
        """The velocity field X[rho] (attention, and the perceptron term if any) on the grid (a grid vector)."""
        if self.parts is not None:
            return self._with_mlp(sum(v * part.velocity(c) for part, v in self.parts))
        return self._with_mlp(self.quadrature.field(self.geometry.to_grid(c)))

    def psi_range(self, c: np.ndarray) -> float:
        """The smallest min / max of an SA denominator (the digits its division keeps)."""
        if self.parts is not None:
            return min(part.psi_range(c) for part, _ in self.parts)
        return self.quadrature.denominator_range(self.geometry.to_grid(c))

    def rhs(self, c: np.ndarray) -> np.ndarray:
        """F(c) = -div(rho X[rho]) + nu Lap rho."""
        out = self._mlp_transport(c, self.transport(c, c))
        if self.viscosity:
            out = out + self.viscosity * self.lap * c
        return out


def build_model(cfg, geometry):
    """The spectral model of a config on ``geometry`` (a ``Positions`` geometry when causal)."""
    model = _attention_model(cfg, geometry)
    mlp = perceptron.from_config(cfg)
    if mlp is not None:  # the rules keep it off causal and zonal densities
        model.add_perceptron(mlp)
    return model


def _attention_model(cfg, geometry):
    m, a = cfg.model, cfg.attention
    if plain_attention(cfg):
        return AttentionModel(geometry, m.variant, m.beta, m.viscosity, cfg.particles.update, cfg.particles.alpha)
    base_geometry = geometry.base if a.causal else geometry
    heads = attention_heads(cfg, base_geometry.dim)
    if len(heads) == 1 and scalar_head(*heads[0]) == (1.0, 1.0) and a.integrals != "quadrature":
        base = AttentionModel(base_geometry, m.variant, m.beta, m.viscosity)
    else:
        base = GeneralModel(base_geometry, m.variant, m.beta, m.viscosity, heads, a.integrals)
    return CausalModel(geometry, base, a.alibi) if a.causal else base
