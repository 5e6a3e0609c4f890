"""Cost of one right-hand side on S^2 against the bare transforms it calls.

    python benchmarks/bench_sphere.py [--degrees 63 127 255] [--backend auto|ducc0|shtns]

For each degree L (default dealias 2 grid): the time of one scalar synthesis + analysis pair
(the baseline, measured in the same process), of the gradient synthesis and of the spin-1
analysis, and of model.rhs for SA and USA, each as a multiple of the baseline.  An SA
right-hand side is 2 scalar syntheses (rho, psi) + 1 gradient synthesis + 1 spin-1 analysis.
"""

import argparse
import timeit

import numpy as np

from meanfield.domains import Sphere
from meanfield.physics.model import AttentionModel


def best(fn, number):
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--degrees", type=int, nargs="+", default=[63, 127, 255])
    p.add_argument("--backend", default="auto")
    args = p.parse_args(argv)
    print(f"{'L':>5} {'grid':>11} {'backend':>8} {'pair':>9} | {'grad':>6} {'div':>6} {'rhs sa':>7} {'rhs usa':>7}  (x scalar pair)")
    for L in args.degrees:
        g = Sphere(L, backend=args.backend)
        rng = np.random.default_rng(0)
        c = g.uniform() + 1e-3 * g.uniform()[0] * g.random_perturbation(rng) / (1 + g.l) ** 2
        f = g.to_grid(c)
        v = g.grad(c)
        number = max(2, int(2e6 // (L + 1) ** 3))
        base = best(lambda: g.to_spectral(g.to_grid(c)), number)
        ratios = [best(lambda: g.grad(c), number) / base, best(lambda: g.div(v), number) / base]
        for variant in ("sa", "usa"):
            m = AttentionModel(g, variant, 9.0)
            ratios.append(best(lambda: m.rhs(c), number) / base)
        del f
        print(f"{L:>5} {g.ntheta:>4}x{g.nphi:<6} {g.backend.name:>8} {base * 1e3:>7.2f}ms | "
              + " ".join(f"{r:>6.2f}" for r in ratios))


if __name__ == "__main__":
    main()
