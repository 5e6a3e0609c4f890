"""Which route to gradients: torch autograd through a torch right-hand side, or the hand-written discrete adjoint.

    python benchmarks/bench_gradient_routes.py

The same problem both ways: the circle, SA, beta = 4, K modes (grid 2K+2 points, dealias 2), classical RK4 with
fixed steps (no viscosity), loss = sum of squares of the final coefficients. The torch route writes the
right-hand side with torch.fft (float64, CPU, one thread) and differentiates the whole solve with autograd
(memory: every step's graph; torch.utils.checkpoint would trade it for a recomputation); ours is
meanfield.gradients (numpy/ducc0, sqrt(steps) checkpoints). Best of 3 wall times, in one process.
"""

from __future__ import annotations

import math
import time

import numpy as np


def best(fn, repeat=3):
    out = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t0)
    return out


def torch_route(K, steps, dt, beta=4.0):
    import torch
    from scipy.special import ive

    torch.set_num_threads(1)
    M = 4 * K + 4
    k = torch.arange(K + 1, dtype=torch.float64)
    mult = torch.tensor(2 * math.pi * ive(np.arange(K + 1), beta))
    ik = 1j * k

    def grid(c):
        full = torch.zeros(M // 2 + 1, dtype=torch.complex128)
        full = torch.cat([c, torch.zeros(M // 2 + 1 - (K + 1), dtype=torch.complex128)])
        return torch.fft.irfft(full, n=M, norm="forward")

    def rhs(c):
        psi = grid(mult * c)
        g = grid(ik * mult * c)
        rho = grid(c)
        flux = rho * g / (beta * psi)
        return -ik * torch.fft.rfft(flux, norm="forward")[: K + 1]

    rng = np.random.default_rng(0)
    c0 = np.zeros(K + 1, dtype=complex)
    c0[0] = 1 / (2 * math.pi)
    c0[1:4] = 0.01 * (rng.standard_normal(3) + 1j * rng.standard_normal(3))

    def solve(requires_grad):
        c = torch.tensor(c0, requires_grad=requires_grad)
        u = c
        for _ in range(steps):
            k1 = rhs(u)
            k2 = rhs(u + 0.5 * dt * k1)
            k3 = rhs(u + 0.5 * dt * k2)
            k4 = rhs(u + dt * k3)
            u = u + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        loss = (u.abs() ** 2).sum()
        if requires_grad:
            loss.backward()
        return loss

    with torch.no_grad():
        forward = best(lambda: solve(False))
    gradient = best(lambda: solve(True))
    return forward, gradient


def our_route(K, steps, dt, beta=4.0):
    from meanfield.domains.circle import Circle
    from meanfield.gradients import DensityDynamics, ParameterSchedule, Problem

    geo = Circle(K)
    rng = np.random.default_rng(0)
    c0 = geo.uniform()
    c0[1:4] = 0.01 * (rng.standard_normal(3) + 1j * rng.standard_normal(3))

    def loss(c, dyn):
        return float(np.sum(np.abs(c) ** 2)), 2 * c

    problem = Problem(DensityDynamics(geo, "sa"), ParameterSchedule([0, steps * dt], {"beta": beta}), c0, dt, loss)
    return best(problem.value), best(problem.value_and_gradient)


if __name__ == "__main__":
    from threadpoolctl import threadpool_limits

    print("| K | steps | torch forward (s) | torch gradient (s) | ratio | meanfield forward (s) | meanfield gradient (s) "
          "| ratio | torch gradient / meanfield gradient |")
    print("|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for K, steps in ((128, 500), (512, 500)):
            tf, tg = torch_route(K, steps, 0.005)
            mf, mg = our_route(K, steps, 0.005)
            print(f"| {K} | {steps} | {tf:.3f} | {tg:.3f} | {tg / tf:.2f} | {mf:.3f} | {mg:.3f} | {mg / mf:.2f} | "
                  f"{tg / mg:.2f} |")
