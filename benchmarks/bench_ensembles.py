"""Ensembles and the field of many tokens: the measurements behind benchmarks/results.md's section 4.

    python benchmarks/bench_ensembles.py [--diagram] [--tokens N]
    python benchmarks/bench_ensembles.py --torch cuda [--betas 90]      (the GPU check: benchmarks/device_rotf.sh)

1. The batched field (``BatchedTokenModel``, rotf's settings: 2048 systems of 32 tokens on the circle, SA,
   beta 4) against the peers' algorithm written with numpy alone (the baseline, same process): per system the
   logits by one batched product, a softmax with its row maximum subtracted, one more batched product.  CPU
   time of one evaluation, one thread.
2. One run of the shipped rotf_base example (one beta, 2048 systems, 300 Euler steps, 151 snapshots of the
   peers' statistics), wall time, one core.
3. ``--diagram``: the whole rotf phase diagram (``meanfield sweep`` of the shipped rotf_phase, 90 runs, a local
   cluster of one worker per core), wall time, against the 5-minute target.
4. The field of N tokens (default 10^7) on S^2 and S^1, Q = K = V = I, SA, beta = 25 (the Funk–Hecke path),
   one evaluation on 2 threads, wall time, against the 3.5 s target.
5. ``--torch DEVICE``: the batched field with particles.backend = "torch" on DEVICE against the numpy field (the
   CPU baseline, same process, same numbers to 1e-12), one rotf_base run on each, and the diagram's runs (``--betas``
   values of beta from 0.1 to 9) with torch on DEVICE one after the other in this process, against 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits


def peers_field(X: np.ndarray, beta: float) -> np.ndarray:
    """rotf's attention step (softmax of beta <x_i, x_j>, then the weighted sum), numpy alone, projected."""
    S = beta * (X @ X.transpose(0, 2, 1))
    S -= S.max(axis=2, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=2, keepdims=True)
    A = S @ X
    return A - np.sum(A * X, axis=2, keepdims=True) * X


def batched_field():
    from meanfield.tokens import BatchedTokenModel

    B, n, d, beta = 2048, 32, 2, 4.0
    rng = np.random.default_rng(0)
    X = rng.standard_normal((B, n, d))
    X /= np.linalg.norm(X, axis=2, keepdims=True)
    model = BatchedTokenModel(B, np.full(n, 1.0 / n), beta, "sa", d)
    x = X.reshape(B * n, d)
    from run import cpu  # benchmarks/run.py's CPU-time minimum

    ours, base = cpu(lambda: model.velocity(x), 5)[0], cpu(lambda: peers_field(X, beta), 5)[0]
    diff = float(np.max(np.abs(model.velocity(x).reshape(X.shape) - peers_field(X, beta))))
    return ours, base, diff


def example_run():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "meanfield", "run", os.path.join(root, "meanfield", "examples",
                        "rotf_base.toml"), "-o", os.path.join(tmp, "r.h5")], check=True, capture_output=True)
        return time.perf_counter() - t0


def diagram():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "meanfield", "example", "rotf_phase"], cwd=tmp, check=True,
                       capture_output=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "meanfield", "sweep", "rotf_phase.toml", "-o", "rotf.parquet"], cwd=tmp,
                       check=True, capture_output=True)
        return time.perf_counter() - t0


def many_tokens(n: int):
    from meanfield.tokens import TokenModel

    rows = []
    rng = np.random.default_rng(0)
    for d in (3, 2):
        x = rng.standard_normal((n, d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        model = TokenModel(np.full(n, 1.0 / n), 25.0, "sa", d, field="funk_hecke", threads=2)
        model.velocity(x)
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            model.velocity(x)
            walls.append(time.perf_counter() - t0)
        rows.append((d, min(walls)))
    return rows


def torch_check(device: str, betas: int) -> None:
    """Section 5: the batched field and the rotf runs with torch on ``device``, the numpy path beside them."""
    import meanfield
    from meanfield.tokens import BatchedTokenModel

    B, n, d, beta = 2048, 32, 2, 4.0
    rng = np.random.default_rng(0)
    X = rng.standard_normal((B * n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    cpu_model = BatchedTokenModel(B, np.full(n, 1.0 / n), beta, "sa", d)
    dev_model = BatchedTokenModel(B, np.full(n, 1.0 / n), beta, "sa", d, backend="torch", device=device)

    def wall(fn, repeat=5):
        fn()
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    with threadpool_limits(limits=1, user_api="blas"):
        t_cpu = wall(lambda: cpu_model.velocity(X))
    t_dev = wall(lambda: dev_model.velocity(X))  # returns numpy: the device has finished
    diff = float(np.max(np.abs(dev_model.velocity(X) - cpu_model.velocity(X))))
    print(f"batched field 2048 x 32 on S^1: numpy (1 thread) {1e3 * t_cpu:.2f} ms, torch on {device} "
          f"{1e3 * t_dev:.2f} ms ({t_cpu / t_dev:.1f}x), max difference {diff:.1e}", flush=True)
    base = meanfield.example("rotf_base")
    with tempfile.TemporaryDirectory() as tmp:
        def one(b, backend, name):
            sets = [f"model.beta={b}", f"particles.backend=\"{backend}\"", f"particles.device=\"{device}\""]
            t0 = time.perf_counter()
            meanfield.run(base, os.path.join(tmp, name), progress=False,
                          overrides=sets if backend == "torch" else [f"model.beta={b}", "time.threads=1"])
            return time.perf_counter() - t0

        print(f"rotf_base at beta 4: numpy, one thread {one(4.0, 'numpy', 'cpu.h5'):.1f} s; torch on {device} "
              f"{one(4.0, 'torch', 'dev.h5'):.1f} s wall", flush=True)
        t0 = time.perf_counter()
        for i, b in enumerate(np.linspace(0.1, 9.0, 90)[:: max(1, 90 // betas)][:betas]):
            one(float(b), "torch", f"b{i}.h5")
        total = time.perf_counter() - t0
    verdict = (f"{'met' if total <= 300 else 'missed'}: <= 300 s" if betas >= 90
               else f"90 runs at this pace: {90 * total / betas:.0f} s against 300 s")
    print(f"rotf diagram with torch on {device}: {betas} runs in {total:.0f} s wall, one process ({verdict})", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--diagram", action="store_true", help="also time the whole rotf phase diagram (minutes)")
    p.add_argument("--tokens", type=int, default=10_000_000, help="tokens of the many-token field")
    p.add_argument("--torch", metavar="DEVICE", choices=("cpu", "cuda"), help="section 5 alone, torch on DEVICE")
    p.add_argument("--betas", type=int, default=90, help="--torch: runs of the diagram to time (of 90)")
    args = p.parse_args(argv)
    if args.torch:
        torch_check(args.torch, args.betas)
        return 0
    with threadpool_limits(limits=1, user_api="blas"):
        ours, base, diff = batched_field()
    print(f"batched field, 2048 x 32 tokens on S^1: {1e3 * ours:.1f} ms CPU; numpy baseline {1e3 * base:.1f} ms; "
          f"baseline / ours {base / ours:.2f}; max difference {diff:.1e}")
    print(f"rotf_base (one beta, 2048 systems): {example_run():.1f} s wall")
    if args.diagram:
        wall = diagram()
        print(f"rotf phase diagram (90 runs, {os.cpu_count()} workers): {wall:.0f} s wall "
              f"({'met' if wall <= 300 else 'missed'}: <= 300 s)")
    for d, wall in many_tokens(args.tokens):
        print(f"{args.tokens:.0e} tokens on S^{d - 1}, one field, 2 threads: {wall:.2f} s wall "
              f"({'met' if wall <= 3.5 else 'missed'}: <= 3.5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
