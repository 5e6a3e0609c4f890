"""The token field for Q = K = V = I in O(n + L^2 log L): the kernel's Funk–Hecke expansion.

For mu = sum_j w_j delta_{x_j} on S^{d-1} (d = 2, 3) and psi(x) = sum_j w_j e^{beta <x, x_j>}:

    sum_j w_j e^{beta <x, x_j>} P_x x_j = grad_S psi(x) / beta,
    SA:  X(x) = grad_S psi / (beta psi),     USA:  X(x) = grad_S psi / beta,

and psi = G_beta mu is diagonal in harmonics (docs/theory.md): psi_lm = g_l mu_lm with
mu_lm = sum_j w_j conj(Y_lm(x_j)).  So one adjoint non-uniform transform (the tokens' coefficients),
a multiplication, and two non-uniform syntheses (psi, and its gradient as a spin-1 field) at the
tokens give the whole field: ducc0's ``adjoint_synthesis_general`` / ``synthesis_general`` on S^2,
``ducc0.nufft`` on the circle.  Everything is scaled by e^{-beta} (g_l through ive), never overflowing.

Degree, a priori.  With a_l the kernel's scaled Legendre (Fourier) weights, e^{beta (t - 1)} =
sum_l a_l P_l(t) (S^2: a_l = (2l + 1) sqrt(pi / (2 beta)) ive(l + 1/2, beta); circle: a_0 = ive(0, beta),
a_k = 2 ive(k, beta), P_k(t) = cos(k arccos t)), |P_l| <= 1 and |grad_S P_l(<x, y>)| <= l(l + 1)
bound what the degrees above L add to e^{-beta} psi and to e^{-beta} grad psi / beta by
tail(L) = sum_{l > L} a_l (1 + l (l + 1) / beta) (weights sum to 1).  Since e^{-beta} psi(x_i) >= w_i
(the token's own term), the field's error is at most about tail(L) / min_i w_i: L is the least degree
with tail(L) <= tol * min_i w_i.  The transforms themselves are accurate to ``epsilon`` (ducc0: 3e-13
at best) relative to the l2 size of what they transform.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ive

from ..physics.kernels import degree

#: ducc0's non-uniform transforms accept no tighter accuracy than this in double precision
EPSILON_FLOOR = 3e-13


class FunkHeckeField:
    """The SA / USA field of weighted tokens on S^1 or S^2 for Q = K = V = I, by harmonic transforms.

    ``tol``: the field's relative accuracy the degree is chosen for; ``threads``: ducc0's threads.
    """

    def __init__(self, beta: float, variant: str, dim: int, tol: float = 1e-12, threads: int = 1):
        if dim not in (2, 3):
            raise ValueError(f"the Funk-Hecke token field is for S^1 and S^2, not dim = {dim}")
        self.beta, self.variant, self.dim = float(beta), variant, int(dim)
        self.tol, self.threads = float(tol), int(threads)
        self._for = None  # (min weight, n) -> degree and multipliers

    def setup(self, w: np.ndarray) -> None:
        """Choose the degree for these weights (their smallest bounds psi from below)."""
        key = (float(np.min(w)), w.size)
        if self._for == key:
            return
        self._for = key
        self.L = degree(self.beta, self.dim, self.tol * key[0])
        self.epsilon = max(EPSILON_FLOOR, min(1e-3, self.tol * key[0]))
        if self.dim == 3:
            self._l = np.concatenate([np.arange(m, self.L + 1) for m in range(self.L + 1)]).astype(float)
            self._g = 4 * math.pi * math.sqrt(math.pi / (2 * self.beta)) * ive(self._l + 0.5, self.beta)
        else:
            self._k = np.arange(-self.L, self.L + 1)
            self._g = ive(np.abs(self._k), self.beta)  # psi_k = I_k mu_k (mu_k = sum_j w_j e^{-ik theta_j})

    def potential(self, x: np.ndarray, w: np.ndarray, grad: bool = True):
        """(e^{-beta} psi (n,), e^{-beta} grad_S psi (n, d), or None without ``grad``) at the tokens."""
        self.setup(w)
        return self._sphere(x, w, grad) if self.dim == 3 else self._circle(x, w, grad)

    def energy_scaled(self, x: np.ndarray, w: np.ndarray) -> float:
        """e^{-beta} (1/(2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>} = (1/(2 beta)) sum_i w_i e^{-beta} psi(x_i)."""
        psi, _ = self.potential(x, w, grad=False)
        return float(np.dot(w, psi)) / (2 * self.beta)

    def velocity(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """dx_i/dt (n, d) of the tokens x (n, d) with weights w, tangent to the sphere at x_i."""
        psi, grad = self.potential(x, w)
        if self.variant == "sa":
            return grad / (self.beta * psi)[:, None]
        return grad * (math.exp(self.beta) / self.beta)

    def _sphere(self, x, w, with_grad=True):
        import ducc0

        theta = np.arccos(np.clip(x[:, 2], -1.0, 1.0))
        phi = np.arctan2(x[:, 1], x[:, 0]) % (2 * math.pi)
        loc = np.stack([theta, phi], axis=1)
        kw = dict(lmax=self.L, loc=loc, epsilon=self.epsilon, nthreads=self.threads)
        mu = ducc0.sht.adjoint_synthesis_general(map=np.asarray(w, float)[None], spin=0, **kw)[0]
        psi_lm = self._g * mu
        psi = ducc0.sht.synthesis_general(alm=psi_lm[None], spin=0, **kw)[0]
        if not with_grad:
            return psi, None
        # (d/dtheta, 1/sin(theta) d/dphi) of psi at the tokens: the spin-1 gradient synthesis
        d_theta, d_phi = ducc0.sht.synthesis_general(alm=psi_lm[None], spin=1, mode="DERIV1", **kw)
        ct, st, cp, sp = np.cos(theta), np.sin(theta), np.cos(phi), np.sin(phi)
        grad = np.empty_like(x)
        grad[:, 0] = d_theta * ct * cp - d_phi * sp
        grad[:, 1] = d_theta * ct * sp + d_phi * cp
        grad[:, 2] = -d_theta * st
        return psi, grad

    def _circle(self, x, w, with_grad=True):
        import ducc0

        theta = np.arctan2(x[:, 1], x[:, 0])
        coord = theta[:, None]
        n_modes = 2 * self.L + 1
        kw = dict(coord=coord, epsilon=self.epsilon, nthreads=self.threads)
        # mu_k = sum_j w_j e^{-i k theta_j}, k = -L..L (type 1, forward sign)
        mu = ducc0.nufft.nu2u(points=np.asarray(w, complex), forward=True, out=np.empty(n_modes, complex), **kw)
        psi_k = self._g * mu
        psi = ducc0.nufft.u2nu(grid=psi_k, forward=False, **kw).real
        if not with_grad:
            return psi, None
        d_theta = ducc0.nufft.u2nu(grid=1j * self._k * psi_k, forward=False, **kw).real
        grad = np.stack([-np.sin(theta) * d_theta, np.cos(theta) * d_theta], axis=1)
        return psi, grad
