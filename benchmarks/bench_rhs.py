"""Cost of the circle solver's right-hand side and steps, as ratios to a bare real-FFT pair.

    python benchmarks/bench_rhs.py [--modes 64 256 1024 4096]

For each K: the time of one irfft + rfft on the solver's grid (the baseline, measured in the
same process), then model.rhs (SA and USA), one SBDF2 step and one ETDRK4 step, each as a
multiple of the baseline.  Ratios, not seconds, are the result: these machines are noisy.
An SA right-hand side needs 3 inverse + 1 forward transforms, USA 2 + 1.
"""

import argparse
import timeit

import numpy as np

from meanfield.domains import Circle
from meanfield.physics.model import AttentionModel
from meanfield.stepping import make_scheme


def best(fn, number):
    return min(timeit.repeat(fn, number=number, repeat=7)) / number


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    args = p.parse_args(argv)
    print(f"{'K':>6} {'M':>6} {'fft pair':>10} | {'rhs sa':>7} {'rhs usa':>7} {'sbdf2':>7} {'etdrk4':>7}  (x fft pair)")
    for K in args.modes:
        g = Circle(K)
        rng = np.random.default_rng(0)
        c = g.uniform() * (1 + 0.1 * g.random_perturbation(rng) / np.sqrt(K))
        number = max(10, 200_000 // K)
        base = best(lambda: g.to_spectral(g.to_grid(c)), number)
        ratios = []
        for variant in ("sa", "usa"):
            m = AttentionModel(g, variant, 9.0)
            ratios.append(best(lambda: m.rhs(c), number) / base)
        m = AttentionModel(g, "sa", 9.0)
        for name in ("sbdf2", "etdrk4"):
            s = make_scheme(name, m.L, m.nonlinear)
            st = s.step(s.start(c), 0.01)  # past start-up and coefficient set-up
            ratios.append(best(lambda: s.step(st, 0.01), number) / base)
        print(f"{K:>6} {g.npoints:>6} {base * 1e6:>8.1f}us | " + " ".join(f"{r:>7.2f}" for r in ratios))


if __name__ == "__main__":
    main()
