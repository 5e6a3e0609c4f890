"""The cost of a gradient against one forward solve, and its memory against sqrt(steps) states.

    python benchmarks/bench_gradients.py [--quick]

Each row: the same problem (SA, beta = 4, viscosity 0.01, a tanh perceptron of 4 units, an MMD loss) solved
by the fixed-step Lawson RK4 that meanfield.gradients differentiates; "forward" is one solve with its loss,
"gradient" the loss and its exact gradient (a forward pass with checkpoints, one recomputation per segment,
the transposed steps).  Best of 3 wall times, one thread (BLAS and transforms), in one process.  Peak memory
(tracemalloc) of the gradient, in units of one state (the coefficients) times sqrt(steps).
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

from meanfield.domains.circle import Circle
from meanfield.domains.sphere import Sphere
from meanfield.gradients import MMD, DensityDynamics, Problem, ParameterSchedule, SlicedWasserstein, TokenDynamics

#: the issue's target: one gradient costs at most this many forward solves
TARGET = 4.0


def _best(fn, repeat=3) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def density_row(geo, t_end, dt):
    rng = np.random.default_rng(0)
    d, m = geo.dim, 4
    c0 = geo.uniform() + 0.1 * geo.uniform()[0].real * geo.random_perturbation(rng, 3) / 3
    values = {"beta": 4.0, "viscosity": 0.01, "W": 0.1 * rng.standard_normal((d, m)),
              "A": rng.standard_normal((m, d)), "b": rng.standard_normal(m)}
    problem = Problem(DensityDynamics(geo, "sa", perceptron="tanh"), ParameterSchedule([0, t_end], values), c0, dt,
                      MMD(geo.uniform()))
    return _row(f"{geo.name} {'K' if geo.name == 'circle' else 'L'} = {geo.modes}", problem, c0.nbytes)


def token_row(n, d, t_end, dt):
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((n, d))
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    y = rng.standard_normal((n, d))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    w = np.full(n, 1 / n)
    values = {"beta": 4.0, **{k: np.stack([np.eye(d)]) for k in "QKV"}}
    problem = Problem(TokenDynamics(w, "sa"), ParameterSchedule([0, t_end], values), x0, dt, SlicedWasserstein((y, w)))
    return _row(f"tokens n = {n}, d = {d}", problem, x0.nbytes)


def _row(name, problem, state_bytes):
    problem.value()
    forward = _best(problem.value)
    gradient = _best(problem.value_and_gradient)
    steps = len(problem.last.plan.steps)
    tracemalloc.start()
    problem.value_and_gradient()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"problem": name, "steps": steps, "forward": forward, "gradient": gradient, "ratio": gradient / forward,
            "peak_mb": peak / 1e6, "states": peak / state_bytes / math.sqrt(steps)}


def rows(quick: bool = False) -> list[dict]:
    """The measured rows (``quick``: the small ones)."""
    with threadpool_limits(1):
        out = [density_row(Circle(128), 5.0, 0.005), token_row(64, 3, 5.0, 0.05)]
        if not quick:
            out += [density_row(Circle(512), 2.0, 0.002), density_row(Sphere(32, backend="ducc0"), 2.0, 0.01),
                    density_row(Sphere(64, backend="ducc0"), 1.0, 0.01), token_row(512, 3, 5.0, 0.05)]
    return out


def table(rs) -> str:
    """A markdown table of the rows."""
    lines = ["| problem | steps | forward (s) | gradient (s) | gradient / forward | peak memory (MB) | "
             "peak / (sqrt(steps) states) |", "|---|---|---|---|---|---|---|"]
    for r in rs:
        lines.append(f"| {r['problem']} | {r['steps']} | {r['forward']:.3f} | {r['gradient']:.3f} | "
                     f"{r['ratio']:.2f} {'(met)' if r['ratio'] <= TARGET else '(missed)'} | {r['peak_mb']:.1f} | "
                     f"{r['states']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    print(table(rows(p.parse_args().quick)))
