"""Cost of the token phase's fields, as ratios to a baseline measured in the same process.

    python benchmarks/bench_tokens.py [--n 540 2888] [--rings 258]

1. The point-token field (``TokenModel.velocity``), which works in place in one reused array,
   against the previous implementation (kept below as the baseline), which made three or four
   fresh n x n temporaries per block: multi-MB arrays go back to the system when freed and are
   page-faulted in again at the next evaluation.
2. The ring field (``RingModel.velocity``) with the ring averages interpolated (Chebyshev, built
   once), against the same with ``ring_average_exact`` (scaled Bessel functions per pair).

CPU-time minima over repeats (these machines are noisy); BLAS pinned to one thread, as in a run.
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from meanfield.tokens import RingModel, TokenModel


def best(fn, repeat=5, number=10):
    """Smallest CPU time of one call over ``repeat`` batches of ``number`` calls."""
    fn()
    out = []
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(number):
            fn()
        out.append((time.process_time() - t0) / number)
    return min(out)


class FreshArrays(TokenModel):
    """The previous field evaluation (the baseline): new temporaries at every operation."""

    def velocity(self, x):
        out = np.zeros_like(x)
        for Q, K, V, self_free in zip(self.Q, self.K, self.V, self._self_free):
            q, k, v = x @ Q.T, x @ K.T, x @ V.T
            for i0 in range(0, self.n, self.block):
                i1 = min(self.n, i0 + self.block)
                s = self.beta * (q[i0:i1] @ k.T)
                top = s.max(axis=1, keepdims=True)
                e = np.exp(s - top) * self.w
                norm = e.sum(axis=1, keepdims=True)
                if self_free:
                    e[np.arange(i1 - i0), np.arange(i0, i1)] = 0.0
                out[i0:i1] += (e @ v) / norm
        return out - np.sum(out * x, axis=1, keepdims=True) * x


class ExactRings(RingModel):
    """The ring field with the Bessel functions evaluated for every pair (the baseline)."""

    def ring_average(self, a):
        return self.ring_average_exact(a)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[540, 2888])
    p.add_argument("--rings", type=int, nargs="+", default=[258])
    args = p.parse_args()
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=1, user_api="blas"):
        print(f"{'field':<8} {'n':>6} {'baseline ms':>12} {'meanfield ms':>13} {'speed-up':>9}")
        for n in args.n:
            x = rng.standard_normal((n, 3))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            w = np.full(n, 1 / n)
            old, model = FreshArrays(w, 25.0, "sa", 3), TokenModel(w, 25.0, "sa", 3)
            assert np.allclose(old.velocity(x), model.velocity(x), rtol=0, atol=1e-14)
            base = best(lambda: old.velocity(x), number=3)
            ours = best(lambda: model.velocity(x), number=3)
            print(f"{'points':<8} {n:>6} {1e3 * base:>12.2f} {1e3 * ours:>13.2f} {base / ours:>8.2f}x")
        for n in args.rings:
            theta = np.sort(rng.uniform(0, np.pi, n))
            pts = np.stack([np.sin(theta), np.cos(theta)], axis=1)
            w = np.full(n, 1 / n)
            exact, fast = ExactRings(w, 25.0, "sa", 8), RingModel(w, 25.0, "sa", 8)
            assert np.allclose(exact.velocity(pts), fast.velocity(pts), rtol=0, atol=1e-12)  # builds them too
            base, ours = best(lambda: exact.velocity(pts), number=3), best(lambda: fast.velocity(pts), number=3)
            print(f"{'rings':<8} {n:>6} {1e3 * base:>12.2f} {1e3 * ours:>13.2f} {base / ours:>8.2f}x")


if __name__ == "__main__":
    main()
