"""Token-level claims: the equiangular configuration and its overlap ODE."""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp

from ..validate import Outcome, case, verdict


def overlap_rate(rho: float, n: int, beta: float, variant: str) -> float:
    """d rho / dt for n tokens with every pairwise overlap rho (Q = K = V = I, equal weights; docs/validation.md)."""
    core = 2 * (1 - rho) * (1 + (n - 1) * rho) * math.exp(beta * (rho - 1))
    if variant == "sa":
        return core / (1 + (n - 1) * math.exp(beta * (rho - 1)))
    return core * math.exp(beta) / n


def equiangular(n: int, rho0: float) -> np.ndarray:
    """n unit vectors of R^n with every pairwise overlap rho0 (the rows of the Cholesky factor of the Gram matrix)."""
    gram = (1 - rho0) * np.eye(n) + rho0 * np.ones((n, n))
    return np.linalg.cholesky(gram)


@case("equiangular-overlap", "n tokens with equal pairwise overlaps stay equiangular, and the overlap follows the "
      "scalar ODE derived from the field", "Geshkovski–Letrouit–Polyanskiy–Rigollet (2025), §1 (the field); "
      "the ODE derived in docs/validation.md", quick=True)
def equiangular_overlap(ctx) -> Outcome:
    n, rho0 = 6, 0.1
    x0 = equiangular(n, rho0)
    ax = ctx.figure().add_subplot()
    rows, worst, spread = [], 0.0, 0.0
    for variant, beta in (("sa", 1.0), ("sa", 6.0), ("usa", 1.0), ("usa", 4.0)):
        t_end = 4.0 if variant == "sa" else 4.0 * n / math.exp(beta)
        h = ctx.run(dict(model=dict(method="particles", geometry="zonal", dim=n, variant=variant, beta=beta),
                         grid=dict(modes=8), particles=dict(n=n, dim=n, integrator="dop853"),
                         initial=dict(kind="tokens", positions=x0.tolist()),
                         time=dict(t_end=t_end, dt=1e-3, adaptive=True, rtol=1e-12, atol=1e-14),
                         output=dict(interval=t_end / 40), longtime=dict(merge_tol=0.0)), f"{variant}_beta{beta:g}")
        t = h["time"]
        iu = np.triu_indices(n, 1)
        overlaps = np.array([(x @ x.T)[iu] for x in h["positions"]])
        mean = overlaps.mean(axis=1)
        ode = solve_ivp(lambda _, r: [overlap_rate(r[0], n, beta, variant)], (0, t[-1]), [rho0], t_eval=t,
                        rtol=1e-12, atol=1e-14, method="DOP853").y[0]
        err, dev = float(np.max(np.abs(mean - ode))), float(np.max(np.ptp(overlaps, axis=1)))
        worst, spread = max(worst, err), max(spread, dev)
        rows.append(f"| {variant.upper()} | {beta:g} | {t[-1]:.4g} | {mean[-1]:.10f} | {ode[-1]:.10f} | {err:.1e} | {dev:.1e} |")
        ax.plot(t / t[-1], mean, "o", mfc="none", ms=4, label=f"tokens, {variant.upper()} beta = {beta:g}")
        ax.plot(t / t[-1], ode, "k-", lw=0.8)
    ax.set(xlabel="t / t_end", ylabel="mean pairwise overlap", title=f"{n} equiangular tokens on S^{n - 1} (lines: ODE)")
    ax.legend(fontsize=7)
    body = (f"{n} tokens on S^{n - 1} with every pairwise overlap {rho0} (Q = K = V = I, equal weights, DOP853 at rtol "
            "1e-12). By symmetry the configuration stays equiangular; with overlap rho, sum_j e^{beta <x_i, x_j>} P_{x_i} "
            "x_j = e^{beta rho} sum_{j != i} (x_j - rho x_i), so\n\n"
            "    SA:  rho' = 2 (1 - rho)(1 + (n - 1) rho) e^{beta rho} / (e^beta + (n - 1) e^{beta rho})\n"
            "    USA: rho' = (2 / n) (1 - rho)(1 + (n - 1) rho) e^{beta rho}\n\n"
            "(the regular simplex rho = -1/(n - 1) is an equilibrium). Mean overlap of the run against the ODE "
            "(solve_ivp, rtol 1e-12), and the largest spread of the overlaps:\n\n"
            "| variant | beta | t_end | tokens | ODE | max difference | max spread |\n|---|---|---|---|---|---|---|\n"
            + "\n".join(rows))
    return Outcome(worst, 0.0, "max |tokens - ODE| <= 1e-9 and spread <= 1e-9", verdict(worst <= 1e-9 and spread <= 1e-9),
                   body=body, numbers={"max_difference": worst, "max_spread": spread})


def mean_overlap_ode(t, rho0: float, n: int, d: int) -> np.ndarray:
    """rho' = (1/n + (1 - 1/n) rho)(1 - rho)(1 - (2 + rho)/d): the mean overlap of n tokens under random heads
    resampled every layer, beta -> 0 (derived in docs/general.md)."""
    f = lambda _, r: (1 / n + (1 - 1 / n) * r) * (1 - r) * (1 - (2 + r) / d)
    return solve_ivp(f, (0, t[-1]), [rho0], t_eval=t, rtol=1e-11, atol=1e-13).y[0]


@case("random-heads-logistic", "Random heads drawn afresh every layer, beta -> 0: the tokens' mean overlap follows a "
      "logistic law", "Koubbi–Geshkovski–Rigollet, 'homogenized transformers' (2026); the finite-n, finite-d ODE and "
      "the time map derived in docs/general.md", quick=True)
def random_heads_logistic(ctx) -> Outcome:
    n, d, heads, dt = 16, (32 if ctx.quick else 128), 4, 0.0025
    t_end, seeds = (1.5, 24) if ctx.quick else (3.0, 32)
    curves = []
    for seed in range(seeds):
        h = ctx.run(dict(model=dict(method="particles", geometry="zonal", beta=1e-6), grid=dict(modes=4),
                         particles=dict(n=n, dim=d),
                         attention=dict(heads=heads, Q="random", K="random", V="random", resample=True, seed=seed),
                         initial=dict(kind="random", amplitude=0.0, seed=seed),
                         time=dict(t_end=t_end, dt=dt), output=dict(interval=t_end / 12)), f"seed{seed}")
        curves.append([(np.sum(x @ x.T) - n) / (n * (n - 1)) for x in h["positions"]])
    t = h["time"]
    c = np.array(curves)
    mean, se = c.mean(0), c.std(0, ddof=1) / math.sqrt(seeds)
    ode = mean_overlap_ode(t, float(mean[0]), n, d)
    z = float(np.max(np.abs(mean - ode) / np.maximum(se, 1e-3)))
    ax = ctx.figure().add_subplot()
    ax.errorbar(t, mean, 2 * se, fmt="o", mfc="none", label=f"tokens, mean over {seeds} seeds (2 SE)")
    ax.plot(t, ode, "k-", label="ODE")
    ax.plot(t, 1 / (1 + (1 / max(mean[0], 1e-3) - 1) * np.exp(-t)), "k:", label="logistic rho' = rho (1 - rho)")
    ax.set(xlabel="t = layers x dt", ylabel="mean overlap", title=f"n = {n}, d = {d}, H = {heads}, dt = {dt:g}")
    ax.legend(fontsize=7)
    body = (f"n = {n} tokens on S^{d - 1}, H = {heads} heads with N(0, 1/d) entries drawn afresh every layer, beta = 1e-6 "
            f"(beta -> 0), dt = {dt:g} per layer (eta = sqrt(H dt)), {seeds} seeds. The mean overlap against "
            "rho' = (1/n + (1 - 1/n) rho)(1 - rho)(1 - (2 + rho)/d) from the same start (the logistic law "
            f"rho' = rho (1 - rho) as n, d -> oo): at t = {t[-1]:g} the tokens give {mean[-1]:.4f} +- {se[-1]:.4f}, the "
            f"ODE {ode[-1]:.4f}. z = max over times of |mean - ODE| / standard error (at least 1e-3).")
    return Outcome(z, 0.0, "z <= 4", verdict(z <= 4.0), body=body,
                   numbers={"t": t.tolist(), "mean": mean.tolist(), "se": se.tolist(), "ode": ode.tolist()})
