"""Cost of the token attention field against n: one velocity evaluation (all heads) and one RK4 step.

    python benchmarks/bench_particles.py [--n 1000 2000 5000 10000 20000] [--dim 3]

Reported as ratios to the n = first-size evaluation measured in the same process (these machines are
noisy), next to (n / n0)^2, the quadratic scaling of the all-pairs interaction.  Memory stays
bounded: the interaction is processed in tiles of 512 kB per thread.  One thread (BLAS too).
"""

import argparse
import timeit

import numpy as np
from threadpoolctl import threadpool_limits

from meanfield.tokens import INTEGRATORS, TokenModel


def best(fn, number=1, repeat=3):
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 20000])
    p.add_argument("--dim", type=int, default=3)
    args = p.parse_args(argv)
    base = None
    print(f"{'n':>7} {'field':>10} {'ratio':>7} {'(n/n0)^2':>9} {'rk4 step':>10}")
    for n in args.n:
        x = np.random.default_rng(0).standard_normal((n, args.dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        m = TokenModel(np.full(n, 1 / n), 4.0, "sa", args.dim)
        t = best(lambda: m.velocity(x))
        base = base or (n, t)
        step = INTEGRATORS["rk4"](m.velocity)
        st = step.start(x)
        ts = best(lambda: step.step(st, 0.1), repeat=1)
        print(f"{n:>7} {t * 1e3:>8.1f}ms {t / base[1]:>7.1f} {(n / base[0]) ** 2:>9.1f} {ts:>9.2f}s")


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main()
