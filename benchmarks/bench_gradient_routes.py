"""Which route to gradients: torch autograd through a torch right-hand side, or the hand-written discrete adjoint.

    python benchmarks/bench_gradient_routes.py

The same problem both ways: the circle, SA, beta = 4, K modes on the circle's own grid, classical RK4 with
fixed steps (no viscosity), loss = sum of squares of the final coefficients. The torch route writes the
right-hand side with torch.fft (float64, CPU, one thread) and differentiates the whole solve with autograd
(memory: every step's graph; torch.utils.checkpoint would trade it for a recomputation); ours is
meanfield.gradients (numpy/ducc0, sqrt(steps) checkpoints). Best of 3 wall times, in one process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the torch route is the tests' solver
from bench_gradients import _best as best  # noqa: E402


def torch_route(K, steps, dt, beta=4.0):
    """(forward, gradient) wall times of the torch route (tests/test_torch.py's solver, on the circle's grid)."""
    import torch

    from meanfield.domains.circle import Circle
    from test_torch import torch_circle_solve

    torch.set_num_threads(1)
    geo = Circle(K)
    c0 = _start(geo)
    return (best(lambda: torch_circle_solve(geo, beta, dt, steps, c0, gradient=False)),
            best(lambda: torch_circle_solve(geo, beta, dt, steps, c0)))


def _start(geo):
    rng = np.random.default_rng(0)
    c0 = geo.uniform()
    c0[1:4] = 0.01 * (rng.standard_normal(3) + 1j * rng.standard_normal(3))
    return c0


def our_route(K, steps, dt, beta=4.0):
    from meanfield.domains.circle import Circle
    from meanfield.gradients import DensityDynamics, ParameterSchedule, Problem

    geo = Circle(K)
    c0 = _start(geo)

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
