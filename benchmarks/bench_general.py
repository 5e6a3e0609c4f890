"""Cost of general attention's quadrature path against the Funk–Hecke path, and its kernel memory.

    python benchmarks/bench_general.py [--circle 128 256 512 1024] [--sphere 16 32 48 64]

For each resolution: one right-hand side of the Q = K = V = I model by Funk–Hecke multipliers (the
baseline, measured in the same process), and of the same field by the kernel-matrix quadrature (one
head, SA), as a ratio; the time to build the kernel; its memory (N^2 doubles per head, N the grid's
points).  CPU-time minima over repeats, BLAS pinned to one thread (threadpoolctl).
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from meanfield.domains import make_geometry
from meanfield.physics.general import GeneralModel
from meanfield.physics.model import AttentionModel


def best(fn, repeat=5):
    out = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return min(out)


def row(name, modes):
    g = make_geometry(name, modes)
    c = g.uniform() + 0.05 * g.random_perturbation(np.random.default_rng(0), 8) / g.measure
    I = np.eye(g.dim)
    fh = AttentionModel(g, "sa", 9.0)
    t = time.process_time()
    q = GeneralModel(g, "sa", 9.0, 0.0, [(I, I, I)], "quadrature")
    build = time.process_time() - t
    base = best(lambda: fh.rhs(c))
    quad = best(lambda: q.rhs(c), 3)
    n = int(np.prod(g.grid_shape))
    err = float(np.max(np.abs(q.rhs(c) - fh.rhs(c))) / np.max(np.abs(fh.rhs(c))))
    return (f"| {name} | {modes} | {n} | {8 * n * n / 2**20:,.0f} MiB | {build:.2f} s | {base * 1e3:.3f} ms | "
            f"{quad * 1e3:.1f} ms | {quad / base:,.0f} | {err:.1e} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--circle", type=int, nargs="*", default=[128, 256, 512, 1024])
    p.add_argument("--sphere", type=int, nargs="*", default=[16, 32, 48, 64])
    args = p.parse_args(argv)
    print("| geometry | K or L | grid points N | kernel (1 head) | build | Funk–Hecke rhs | quadrature rhs | ratio | "
          "difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for name, sizes in (("circle", args.circle), ("sphere", args.sphere)):
            for modes in sizes:
                print(row(name, modes), flush=True)


if __name__ == "__main__":
    main()
