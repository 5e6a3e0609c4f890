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
        self.gram = geometry.gram()
        self._ik = 1j * geometry.degrees()  # the circle's d/dtheta
        if self.mlp is not None:
            self.points = geometry.points()  # (N, d) in the grid's order
            self.frame = geometry.tangent_frame()  # (components, N, d)
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

    def _grids(self, kc, c):
        """(grad psi, psi, rho) on the grid; the circle's three transforms in one batched call."""
        g = self.geometry
        if g.name == "circle":
            rows = np.empty((3, kc.size), dtype=complex)  # (np.stack's own checks cost as much at K ~ 100)
            np.multiply(self._ik, kc, out=rows[0])
            rows[1], rows[2] = kc, c
            rows = g.to_grid(rows)
            return rows[:1], rows[1], rows[2]
        return g.grad(kc), g.to_grid(kc), g.to_grid(c)

    def _grids_T(self, rho_b, grad_b, psi_b):
        """(to_grid^T rho_b, grad^T grad_b + to_grid^T psi_b): the transposes of ``_grids``' maps, in one call
        on the circle (where grad = to_grid after multiplying by ik)."""
        g = self.geometry
        if g.name == "circle":
            rows = np.empty((2 if psi_b is None else 3, rho_b.size))
            rows[0], rows[1] = rho_b, grad_b[0]
            if psi_b is not None:
                rows[2] = psi_b
            rows /= g.weights
            h = self.gram * g.to_spectral(rows)
            kc_b = -self._ik * h[1] + (0 if psi_b is None else h[2])
            return h[0], kc_b
        kc_b = grad_T(g, grad_b, self.gram)
        if psi_b is not None:
            kc_b += to_grid_T(g, psi_b, self.gram)
        return to_grid_T(g, rho_b, self.gram), kc_b

    def velocity(self, c: np.ndarray, p: dict) -> np.ndarray:
        """X = X_att + X_mlp on the grid (components, *grid)."""
        return self.rhs(c, p)[1]["X"]

    def _mlp_grid(self, p: dict) -> np.ndarray:
        """The perceptron's grid field: a function of the parameters alone, so computed once per interval's
        values (the key is their bytes) rather than at every stage."""
        key = tuple(np.asarray(p[n]).tobytes() for n in ("W", "A", "b"))
        if getattr(self, "_mlp_key", None) != key:
            u, self._mlp_cache = self.mlp.field(self.points, p)
            self._mlp_value = np.einsum("cnd,nd->cn", self.frame, u).reshape((self.components, *self.geometry.grid_shape))
            self._mlp_key = key
        return self._mlp_value

    def rhs(self, c: np.ndarray, p: dict):
        """N(c) = -div(rho X) and the cache its transpose needs (kept small: the backward pass holds a
        segment's worth of them)."""
        g = self.geometry
        psi = Xa = None
        if self.attention:
            k, dk, s, ds = self.kernel(float(p["beta"]))
            grad, psi, rho = self._grids(k * c, c)
            if self.variant == "sa":
                Xa = grad
                Xa *= s / psi
            else:
                Xa, psi = s * grad, None
            X = Xa if self.mlp is None else Xa + self._mlp_grid(p)
        else:
            rho = g.to_grid(c)
            X = self._mlp_grid(p) if self.mlp is not None else np.zeros((self.components, *g.grid_shape))
        return -g.div(rho * X), {"c": c, "rho": rho, "psi": psi, "Xa": Xa, "X": X}

    def rhs_T(self, cache, y: np.ndarray, p: dict, pbar: dict) -> np.ndarray:
        """Cotangent of c given that of N(c); parameter cotangents are added into pbar."""
        g = self.geometry
        z = div_T(g, y, self.gram)  # N = -div(rho X): the cotangent of rho X is -z
        rho_b = (z * cache["X"]).sum(axis=0)  # (the method: np.sum's wrapper costs as much at K ~ 100)
        rho_b *= -1
        Xb = z
        Xb *= -cache["rho"]
        if self.attention:
            k, dk, s, ds = self.kernel(float(p["beta"]))
            Xa, psi = cache["Xa"], cache["psi"]
            XbXa = (Xb * Xa).sum(axis=0)
            if self.variant == "sa":
                inv = 1 / psi
                out, kc_b = self._grids_T(rho_b, Xb * (s * inv), XbXa * -inv)
            else:
                out, kc_b = self._grids_T(rho_b, s * Xb, None)
            out += k * kc_b
            # sum dk Re(kc_b conj(c)) = Re <c, dk kc_b>
            pbar["beta"] = (pbar.get("beta", 0.0) + float(np.vdot(cache["c"], dk * kc_b).real)
                            + float(XbXa.sum()) / s * ds)
        else:
            out = to_grid_T(g, rho_b, self.gram)
        if self.mlp is not None:  # summed over the interval first (finish_T)
            if "_mlp" in pbar:
                pbar["_mlp"] += Xb
            else:
                pbar["_mlp"] = Xb.copy()
        return out

    def finish_T(self, p: dict, pbar: dict) -> None:
        """After an interval's transpose: the perceptron's grid cotangent, summed over its steps and stages,
        -> W, A, b (the field is a linear function of its grid values)."""
        if "_mlp" in pbar:
            Xb = pbar.pop("_mlp")
            self._mlp_grid(p)
            ub = np.einsum("cn,cnd->nd", Xb.reshape(Xb.shape[0], -1), self.frame)
            self.mlp.field_T(self._mlp_cache, ub, p, pbar)
