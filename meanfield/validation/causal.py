"""Causal attention: the first tokens lead.

With a causal mask token i attends only to tokens j <= i (order = index).  Token 0 sees only
itself and never moves (V = I); every later token is pulled towards the tokens before it, so
the whole sequence collapses onto token 0.  The retrieval profile is the distance of token i to
token 0 at a fixed time, as a function of its position i; we also report the time each token
needs to come within 1e-3 of token 0.

    python -m meanfield.validation.causal [-o REPORT_DIR]   (default REPORT_DIR: validation-out)
"""

import numpy as np
from scipy.stats import spearmanr

from ._common import figure, report_dir, run_tokens, save


def measure(n=64, beta=1.0, t_end=30.0, seed=0):
    """Run and return (times, distances to token 0 per snapshot (T, n), token 0's displacement)."""
    sim, t, xs, _ = run_tokens(dict(
        model=dict(method="particles", geometry="sphere", beta=beta), grid=dict(modes=8),
        initial=dict(kind="random", amplitude=0.0, seed=seed), particles=dict(n=n, dim=3, causal=True),
        time=dict(t_end=t_end, dt=0.05), output=dict(interval=0.05)))
    dist = np.linalg.norm(xs - xs[:, :1], axis=2)
    return t, dist, float(np.linalg.norm(xs[-1, 0] - xs[0, 0]))


def capture_times(t, dist, tol=1e-3):
    """First time each token is within tol of token 0 (inf if never)."""
    hit = dist < tol
    return np.where(hit.any(axis=0), t[np.argmax(hit, axis=0)], np.inf)


if __name__ == "__main__":
    out = report_dir(__doc__.splitlines()[0])
    t, dist, moved = measure()
    cap = capture_times(t, dist)
    fig = figure(2)
    ax = fig.add_subplot(1, 2, 1)
    for T in (1.0, 3.0, 10.0):
        ax.semilogy(np.arange(1, dist.shape[1]), dist[np.searchsorted(t, T), 1:], ".-", label=f"t = {T:g}")
    ax.set_xlabel("token position i")
    ax.set_ylabel("|x_i - x_0|")
    ax.legend()
    ax.set_title("retrieval profile")
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(np.arange(1, dist.shape[1]), cap[1:], ".")
    ax.set_xlabel("token position i")
    ax.set_ylabel("time to reach token 0 (1e-3)")
    save(out, "causal", {"n": 64, "beta": 1.0, "token0_displacement": moved,
                         "final_max_distance_to_token0": float(dist[-1].max()),
                         "capture_time_median": float(np.median(cap[1:])),
                         "capture_time_spearman_vs_position": float(spearmanr(cap[1:], np.arange(1, dist.shape[1]))[0])},
         fig)
