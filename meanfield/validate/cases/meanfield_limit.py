"""The mean-field limit: tokens drawn from a density follow the density's equation, at the sampling rate n^{-1/2}."""

from __future__ import annotations

import numpy as np

from ...analysis.diagnostics import kernel_distance, wasserstein1_circle
from ...io import geometry_of
from ..harness import Between, Outcome, case

SOURCE = "mean-field limit (Dobrushin; Geshkovski et al. 2023 §3); docs/particles.md"
#: Two heads of random Q, K, V (N(0, 1/2) entries, drawn with attention.seed = 3): general attention.
HEADS = dict(heads=2, Q="random", K="random", V="random", seed=3)


def sections(dim: int, n: int = 1, seed: int = 0, method: str = "particles", attention: dict | None = None) -> dict:
    """The run: tokens (n of them, drawn with ``seed`` from a two-bump von Mises(–Fisher) mixture) or the density,
    SA, beta = 4, to t = 1 (tokens: RK4, dt = 0.1; density: ETDRK4, dt = 0.02); ``attention``: an [attention]
    section (default Q = K = V = I).  The grid resolves the density at t = 1 (spectral tail below 1e-4: under two
    random heads that takes K = 128, K = 64 leaves 2.5e-3)."""
    centers = [0.5, 2.8] if dim == 2 else [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    modes = (128 if attention else 64) if dim == 2 else 48
    return dict(model=dict(method=method, geometry="circle" if dim == 2 else "sphere", beta=4.0),
                grid=dict(modes=modes),
                initial=dict(kind="von_mises", centers=centers, concentrations=[2.0, 3.0], weights=[0.6, 0.4],
                             seed=seed),
                particles=dict(n=n, dim=dim),
                time=dict(t_end=1.0, dt=0.1 if method == "particles" else 0.02, stepper="etdrk4"),
                output=dict(interval=1.0), **({"attention": attention} if attention else {}))


def distances(ctx, dim: int, ns, seeds, attention: dict | None = None) -> list[float]:
    """The mean over seeds of the distance between tokens and the density at t = 1, for each n: W1 on S^1, the
    MMD with kernel e^{<x, y>} on S^2."""
    pde = ctx.run(sections(dim, method="spectral", attention=attention), "pde")
    g, c = geometry_of(pde), pde["rho_hat"][-1]
    out = []
    for n, k in zip(ns, seeds):
        d = []
        for s in range(k):
            tok = ctx.run(sections(dim, n, s, attention=attention), f"tokens_{n}_{s}")
            x, w = tok["positions"][-1], tok["token_weights"][-1]
            live = np.isfinite(x[:, 0]) & (w > 0)  # rows of tokens that merged away are NaN
            x, w = x[live], w[live]
            d.append(wasserstein1_circle(g, c, x, w) if dim == 2 else kernel_distance(g, c, x, w))
        out.append(float(np.mean(d)))
    return out


def _limit(ctx, dim: int, ns, seeds, attention, what: str) -> Outcome:
    errs = distances(ctx, dim, ns, seeds, attention)
    slope = float(np.polyfit(np.log(ns), np.log(errs), 1)[0])
    ax = ctx.figure().add_subplot()
    ax.loglog(ns, errs, "o-", label=f"mean {what} over seeds")
    ax.loglog(ns, errs[0] * (np.array(ns) / ns[0]) ** -0.5, "k--", label="n^{-1/2}")
    ax.set(xlabel="tokens n", ylabel=f"{what}(tokens, density) at t = 1",
           title=("S^1" if dim == 2 else "S^2") + ", SA, beta = 4" + (", two random heads" if attention else ""))
    ax.legend()
    body = (f"n tokens drawn from two von Mises bumps (seeds {', '.join(map(str, seeds))}), evolved to t = 1 (RK4, "
            f"dt = 0.1), against the density at t = 1 (ETDRK4, dt = 0.02): n = {list(ns)}, {what} = "
            + ", ".join(f"{e:.3g}" for e in errs) + f"; slope of log {what} against log n: {slope:.3f} (the sampling "
            "error; the time-stepping errors are far below it).")
    return Outcome(slope, -0.5, Between(-0.6, -0.4), body=body, numbers={"n": list(ns), "distance": errs, "slope": slope})


@case("tokens-vs-pde", "Tokens drawn from a density follow the PDE: W1 falls like n^{-1/2}", SOURCE, quick=True)
def tokens_vs_pde(ctx) -> Outcome:
    ns, seeds = ([30, 300, 3000], [8, 8, 4]) if ctx.quick else ([10, 100, 1000, 10000], [8, 8, 4, 2])
    return _limit(ctx, 2, ns, seeds, None, "W1")


@case("tokens-vs-pde-sphere", "On S^2 the tokens' kernel (MMD) distance to the density falls like n^{-1/2}", SOURCE)
def tokens_vs_pde_sphere(ctx) -> Outcome:
    return _limit(ctx, 3, [10, 100, 1000, 5000], [3, 3, 3, 1], None, "MMD")


@case("tokens-vs-pde-heads", "Two heads of random Q, K, V on S^1: tokens follow the density (its field by the grid's "
      "quadrature), W1 ~ n^{-1/2}", SOURCE + "; general attention in docs/general.md")
def tokens_vs_pde_heads(ctx) -> Outcome:
    return _limit(ctx, 2, [10, 100, 1000, 10000], [4, 4, 4, 2], HEADS, "W1")
