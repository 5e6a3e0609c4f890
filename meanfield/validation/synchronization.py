"""Synchronisation (Geshkovski et al.) and its exponential rate (Chen et al.).

With Q = K = V = I, SA, tokens on S^2 from a uniform random start all converge to one point.
Once they are close, every token sees (almost) the same average and moves towards it at rate 1:
the spread max_i |x_i - m| decays like e^{-t}.  We fit the rate of log(spread) over the last
phase (1e-12 < spread < 1e-2) and compare it with 1.  (Tokens closer than longtime.merge_tol = 1e-9
merge, so the spread drops to 0 once they are all one token.)

    python -m meanfield.validation.synchronization [-o REPORT_DIR]   (default REPORT_DIR: validation-out)
"""

import numpy as np

from ._common import figure, report_dir, run_tokens, save
from ..tokens import max_distance_to_mean


def measure(n=64, beta=1.0, t_end=40.0, seed=0):
    """Run and return (times, spread, fitted late rate)."""
    sim, t, xs, ws = run_tokens(dict(
        model=dict(method="particles", geometry="sphere", beta=beta), grid=dict(modes=8),
        initial=dict(kind="random", amplitude=0.0, seed=seed), particles=dict(n=n, dim=3),
        time=dict(t_end=t_end, dt=0.05), output=dict(interval=0.5)))
    spread = np.array([max_distance_to_mean(x, w) for x, w in zip(xs, ws)])
    late = (spread < 1e-2) & (spread > 1e-8)  # tokens within 1e-9 merge: stay clear of that
    rate = -np.polyfit(t[late], np.log(spread[late]), 1)[0] if late.sum() >= 3 else float("nan")
    return t, spread, float(rate)


if __name__ == "__main__":
    out = report_dir(__doc__.splitlines()[0])
    t, spread, rate = measure()
    fig = figure()
    ax = fig.add_subplot()
    ax.semilogy(t, spread, label="max_i |x_i - m|")
    ax.semilogy(t, spread[-1] * np.exp(-(t - t[-1])), "--", label="e^{-t}")
    ax.set_xlabel("t")
    ax.legend()
    ax.set_title(f"synchronisation on S^2, n = 64, beta = 1: rate {rate:.4f}")
    save(out, "synchronization", {"n": 64, "beta": 1.0, "final_spread": float(spread[-1]),
                                  "fitted_rate": rate, "predicted_rate": 1.0}, fig)
