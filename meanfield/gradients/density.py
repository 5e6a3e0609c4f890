"""The density's right-hand side with its transpose, for every geometry.

    d_t rho = -div(rho (X_att[rho] + X_mlp)) + nu Lap rho,
    X_att = s grad psi / psi (SA, s = 1/beta)  or  s grad psi (USA, s = e^beta / beta),  psi = k(beta) * rho,

with k(beta) the geometry's Funk–Hecke multipliers scaled by e^{-beta} (as meanfield.physics.model) and X_mlp
the perceptron term (``perceptron.py``) on the grid.  Viscosity is the linear part (integrated exactly by
the stepper), the rest is N.  Parameters: ``beta``, ``viscosity`` and, with a perceptron, ``W``, ``A``, ``b``.

dk/dbeta is exact: with p = d/2 - 1, k_l = (2 pi)^{d/2} beta^{-p} ive(l + p, beta) on S^{d-1}, and
I'_nu = I_{nu+1} + (nu / beta) I_nu gives dk_l/dbeta = (2 pi)^{d/2} beta^{-p} ive(l + p + 1) + (l / beta - 1) k_l.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ive

from ..physics.general import tangent_frame
from .adjoints import div_T, grad_T, to_grid_T
from .perceptron import Perceptron


class DensityDynamics:
    """-div(rho X) + nu Lap rho on a geometry, with X = attention (``attention=True``) + perceptron (if given)."""

    def __init__(self, geometry, variant: str = "sa", attention: bool = True, perceptron: str | None = None):
        if variant not in ("sa", "usa"):
            raise ValueError(f"variant: got {variant!r}, allowed: sa | usa")
        if perceptron is not None and geometry.name == "zonal":
            raise ValueError("perceptron: a perceptron field is not zonal; allowed on the circle and the sphere")
        self.geometry, self.variant, self.attention = geometry, variant, attention
        self.lap = geometry.laplacian()
        self.mlp = Perceptron(perceptron) if perceptron else None
        self.components = geometry.grad(geometry.uniform()).shape[0]  # of a grid vector
        if self.mlp is not None:
            self.points = geometry.points()  # (N, d) in the grid's order
            self.frame = tangent_frame(geometry)  # (components, N, d)
        self._beta = None

    # --- the kernel and its derivative in beta, for the last beta asked ---------------------------
    def kernel(self, beta: float):
        """(k, dk/dbeta, s, ds/dbeta) at beta."""
        if self._beta != beta:
            g = self.geometry
            d = g.dim
            p = d / 2 - 1
            k = g.funk_hecke(beta)
            dk = (2 * math.pi) ** (d / 2) * beta ** (-p) * ive(g.degrees() + p + 1, beta) + (g.degrees() / beta - 1) * k
            if self.variant == "usa":
                s = math.exp(beta) / beta
                ds = s * (1 - 1 / beta)
            else:
                s, ds = 1 / beta, -1 / beta**2
            self._kernel, self._beta = (k, dk, s, ds), beta
        return self._kernel

    # --- the contract of the stepper ---------------------------------------------------------------
    def linear(self, p: dict):
        """The diagonal linear part: nu Lap (None without viscosity)."""
        nu = float(p.get("viscosity", 0.0))
        return nu * self.lap if "viscosity" in p else None

    def linear_T(self, lb: np.ndarray, p: dict, pbar: dict) -> None:
        """Cotangent of the linear part's entries -> that of the viscosity."""
        pbar["viscosity"] = pbar.get("viscosity", 0.0) + float(np.sum(lb * self.lap))

    def project(self, c):
        """No projection after a step (mass is conserved by the divergence form)."""
        return c, None

    def project_T(self, cache, g):
        """Transpose of ``project``."""
        return g

    def velocity(self, c: np.ndarray, p: dict):
        """(X on the grid (components, *grid), cache)."""
        g = self.geometry
        X = np.zeros((self.components, *g.grid_shape))
        cache = {}
        if self.attention:
            k, dk, s, ds = self.kernel(float(p["beta"]))
            kc = k * c
            grad = g.grad(kc)
            if self.variant == "sa":
                psi = g.to_grid(kc)
                Xa = s * grad / psi
            else:
                psi, Xa = None, s * grad
            X += Xa
            cache.update(grad=grad, psi=psi, Xa=Xa)
        if self.mlp is not None:
            u, mc = self.mlp.field(self.points, p)
            X += np.einsum("cnd,nd->cn", self.frame, u).reshape(X.shape)
            cache["mlp"] = mc
        return X, cache

    def rhs(self, c: np.ndarray, p: dict):
        """N(c) = -div(rho X) and the cache its transpose needs."""
        g = self.geometry
        X, cache = self.velocity(c, p)
        rho = g.to_grid(c)
        cache.update(c=c, rho=rho, X=X)
        return -g.div(rho * X), cache

    def rhs_T(self, cache, y: np.ndarray, p: dict, pbar: dict) -> np.ndarray:
        """Cotangent of c given that of N(c); parameter cotangents are added into pbar."""
        g = self.geometry
        z = div_T(g, y)  # N = -div(rho X): the cotangent of rho X is -z
        rho_b = -np.sum(z * cache["X"], axis=0)
        Xb = -z * cache["rho"]
        out = to_grid_T(g, rho_b)
        if self.attention:
            k, dk, s, ds = self.kernel(float(p["beta"]))
            Xa = cache["Xa"]
            if self.variant == "sa":
                psi = cache["psi"]
                grad_b = s * Xb / psi
                psi_b = -np.sum(Xb * Xa, axis=0) / psi
                kc_b = grad_T(g, grad_b) + to_grid_T(g, psi_b)
            else:
                kc_b = grad_T(g, s * Xb)
            s_b = float(np.sum(Xb * Xa)) / s
            out += k * kc_b
            k_b = (kc_b * np.conj(cache["c"])).real
            pbar["beta"] = pbar.get("beta", 0.0) + float(np.sum(k_b * dk)) + s_b * ds
        if self.mlp is not None:
            ub = np.einsum("cn,cnd->nd", Xb.reshape(Xb.shape[0], -1), self.frame)
            self.mlp.field_T(cache["mlp"], ub, p, pbar)
        return out
