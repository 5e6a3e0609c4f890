"""Token-level claims: the equiangular configuration and its overlap ODE."""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp

from ...analysis import diagnostics
from ...physics import theory
from ..harness import AtMost, Outcome, case


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
    return Outcome(worst, 0.0, AtMost(1e-9), {"the overlaps stay equal (spread <= 1e-9)": spread <= 1e-9},
                   body=body, numbers={"max_difference": worst, "max_spread": spread})


@case("random-heads-logistic", "Random heads drawn afresh every layer, beta -> 0: the tokens' mean overlap follows the "
      "logistic-type law of finite n and d (the logistic law as n, d -> oo)", "Koubbi–Geshkovski–Rigollet, 'homogenized transformers' (2026); the finite-n, finite-d ODE and "
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
        curves.append([diagnostics.mean_overlap(x) for x in h["positions"]])
    t = h["time"]
    c = np.array(curves)
    mean, se = c.mean(0), c.std(0, ddof=1) / math.sqrt(seeds)
    ode = theory.mean_overlap_ode(t, float(mean[0]), n, d)
    z = float(np.max(np.abs(mean - ode) / np.maximum(se, 1e-3)))
    ax = ctx.figure().add_subplot()
    ax.errorbar(t, mean, 2 * se, fmt="o", mfc="none", label=f"tokens, mean over {seeds} seeds (2 SE)")
    ax.plot(t, ode, "k-", label=f"the law at n = {n}, d = {d} (the claim)")
    ax.set(xlabel="t = layers x dt", ylabel="mean overlap", title=f"n = {n}, d = {d}, H = {heads}, dt = {dt:g}")
    ax.legend(fontsize=7)
    body = (f"n = {n} tokens on S^{d - 1}, H = {heads} heads with N(0, 1/d) entries drawn afresh every layer, beta = 1e-6 "
            f"(beta -> 0), dt = {dt:g} per layer (eta = sqrt(H dt)), {seeds} seeds. The mean overlap against "
            "rho' = (1/n + (1 - 1/n) rho)(1 - rho)(1 - (2 + rho)/d) from the same start (the logistic law "
            f"rho' = rho (1 - rho) as n, d -> oo): at t = {t[-1]:g} the tokens give {mean[-1]:.4f} +- {se[-1]:.4f}, the "
            f"ODE {ode[-1]:.4f}. z = max over times of |mean - ODE| / standard error (at least 1e-3).")
    return Outcome(z, 0.0, AtMost(4.0), {"the tokens gather (the mean overlap rises by more than 0.1)":
                                         bool(mean[-1] > mean[0] + 0.1)}, body=body,
                   numbers={"t": t.tolist(), "mean": mean.tolist(), "se": se.tolist(), "ode": ode.tolist()})


def _rotation(seed: int, d: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


#: Q^T K = V = R diag(1.0, 0.6, 0.3) R^T (R a fixed rotation): symmetric positive definite, simple top eigenvalue
SELECTION_V = (_rotation(11, 3) @ np.diag([1.0, 0.6, 0.3]) @ _rotation(11, 3).T).round(12)


@case("selection-tokens", "Tokens with Q^T K = V symmetric positive definite align with the dominant eigendirection "
      "+-v_1 (over many seeds)", "Kuehn–Yoon (2026), spectral selection; SA, Q = I, K = V", quick=True)
def selection_tokens(ctx) -> Outcome:
    V = SELECTION_V.tolist()
    v1 = np.linalg.eigh(SELECTION_V)[1][:, -1]
    seeds = 4 if ctx.quick else 16
    n, beta, t_end = 32, 1.0, 120.0
    worst, split, curves = 0.0, [], []
    for seed in range(seeds):
        h = ctx.run(dict(model=dict(method="particles", geometry="sphere", beta=beta), grid=dict(modes=8),
                         particles=dict(n=n, dim=3, integrator="dop853"), attention=dict(K=V, V=V),
                         initial=dict(kind="random", amplitude=0.0, seed=seed),
                         time=dict(t_end=t_end, dt=0.01, adaptive=True, rtol=1e-10, atol=1e-13),
                         output=dict(interval=t_end / 60), longtime=dict(merge_tol=0.0)), f"seed{seed}")
        align = np.abs(h["positions"] @ v1)  # (snapshots, tokens)
        worst = max(worst, float(1 - align[-1].min()))
        split.append(float(np.mean(h["positions"][-1] @ v1 > 0)))
        curves.append(1 - align.min(axis=1))
    t = h["time"]
    ax = ctx.figure().add_subplot()
    for c in curves:
        ax.semilogy(t, np.maximum(c, 1e-18), lw=0.7)
    ax.set(xlabel="t", ylabel="1 - min_i |<x_i, v_1>|", title=f"{n} tokens on S^2, V eigenvalues 1, 0.6, 0.3, {seeds} seeds")
    body = (f"{n} tokens drawn uniformly on S^2 ({seeds} seeds), SA, beta = {beta:g}, Q = I, K = V = R diag(1, 0.6, 0.3) "
            "R^T (a fixed rotation R), adaptive DOP853 (rtol 1e-10), no merging, to t = 120. Spectral selection: every "
            "token ends at +v_1 or -v_1. Largest 1 - |<x_i, v_1>| over tokens and seeds at t = 120: "
            f"{worst:.1e}. Fraction of tokens at +v_1 per seed: " + ", ".join(f"{s:.2f}" for s in split) + ".")
    return Outcome(worst, 0.0, AtMost(1e-8), body=body, numbers={"split": split})


@case("polarisation-tokens", "Tokens with Q^T K = V symmetric negative definite polarise: they split into two "
      "antipodal groups at +-u, u the eigenvector of V's most negative eigenvalue", "Kuehn–Yoon (2026), sign-split "
      "polarisation; SA, Q = I, K = V; the split derived in docs/validation.md", quick=False)
def polarisation_tokens(ctx) -> Outcome:
    V = -SELECTION_V
    u = np.linalg.eigh(V)[1][:, 0]  # most negative eigenvalue
    seeds, n, beta, t_end = 16, 32, 1.0, 200.0
    worst, splits = 0.0, []
    for seed in range(seeds):
        h = ctx.run(dict(model=dict(method="particles", geometry="sphere", beta=beta), grid=dict(modes=8),
                         particles=dict(n=n, dim=3, integrator="dop853"), attention=dict(K=V.tolist(), V=V.tolist()),
                         initial=dict(kind="random", amplitude=0.0, seed=seed),
                         time=dict(t_end=t_end, dt=0.01, adaptive=True, rtol=1e-10, atol=1e-13),
                         output=dict(interval=t_end / 40), longtime=dict(merge_tol=0.0)), f"seed{seed}")
        proj = h["positions"][-1] @ u
        worst = max(worst, float(1 - np.abs(proj).min()))
        splits.append(int(np.sum(proj > 0)))
    both = all(0 < k < n for k in splits)
    ax = ctx.figure().add_subplot()
    ax.hist(splits, bins=np.arange(-0.5, n + 1.5), label="tokens at +u (per seed)")
    ax.axvline(n / 2, color="k", ls="--", label="balanced")
    ax.set(xlabel=f"tokens at +u (of {n})", ylabel="seeds", title="V = -R diag(1, 0.6, 0.3) R^T, SA, beta = 1")
    ax.legend(fontsize=7)
    body = (f"{n} tokens uniform on S^2 ({seeds} seeds), SA, beta = {beta:g}, Q = I, K = V = -R diag(1, 0.6, 0.3) R^T (the "
            "matrix of selection-tokens, negated), adaptive DOP853 (rtol 1e-10), to t = 200. Every token ends at +u or -u, "
            f"u the eigenvector of V's most negative eigenvalue: largest 1 - |<x_i, u>| = {worst:.1e}. Tokens at +u per "
            "seed: " + ", ".join(str(k) for k in splits) + f" (of {n}). Why (docs/validation.md): tokens at +-u with u "
            "any eigenvector are equilibria; for USA, a gradient flow of E = (1 / 2 beta) sum_ij e^{-beta <x_i, A x_j>} "
            "(A = -V), a pair of opposite tokens along the top eigenvector of A contributes the most, so the maximisers "
            "are antipodal groups along it, as balanced as possible; SA ends in the same states here.")
    return Outcome(worst, 0.0, AtMost(1e-8), {"tokens at both +u and -u in every seed": bool(both)}, body=body,
                   numbers={"split": splits})


def multihead_energy(x: np.ndarray, w: np.ndarray, scores, beta: float) -> float:
    """E = sum_h (1 / 2 beta) sum_ij w_i w_j e^{beta <x_i, A_h x_j>}: the USA flow's energy when V_h = A_h = Q_h^T K_h."""
    return float(sum(w @ np.exp(beta * (x @ A @ x.T)) @ w for A in scores) / (2 * beta))


@case("multihead-energy", "Several USA heads with symmetric positive score matrices V_h = Q_h^T K_h: the summed energy "
      "never decreases", "Pendharkar et al. (multi-head attention as a gradient flow); the energy in docs/validation.md",
      quick=True)
def multihead_energy_case(ctx) -> Outcome:
    d, n, beta, heads = 4, 24, 1.0, 3
    rng = np.random.default_rng(5)
    scores = []
    for _ in range(heads):
        b = rng.standard_normal((d, d)) / math.sqrt(d)
        scores.append((b @ b.T + 0.1 * np.eye(d)).round(12))  # symmetric positive definite
    seeds = 2 if ctx.quick else 10
    worst, rises, ax = 0.0, [], ctx.figure().add_subplot()
    for seed in range(seeds):
        h = ctx.run(dict(model=dict(method="particles", geometry="zonal", dim=d, variant="usa", beta=beta),
                         grid=dict(modes=8), particles=dict(n=n, dim=d, integrator="dop853"),
                         attention=dict(heads=heads, Q="identity", K=[A.tolist() for A in scores],
                                        V=[A.tolist() for A in scores]),
                         initial=dict(kind="random", amplitude=0.0, seed=seed),
                         time=dict(t_end=10.0, dt=0.01, adaptive=True, rtol=1e-11, atol=1e-14),
                         output=dict(interval=0.05), longtime=dict(merge_tol=0.0)), f"seed{seed}")
        E = np.array([multihead_energy(x, w, scores, beta) for x, w in zip(h["positions"], h["token_weights"])])
        drop = float(np.max(-np.diff(E) / np.abs(E[1:])))
        worst = max(worst, drop)
        rises.append(float(E[-1] / E[0]))
        ax.plot(h["time"], E / E[0], lw=0.8)
    ax.set(xlabel="t", ylabel="E(t) / E(0)", title=f"{heads} USA heads, {n} tokens on S^{d - 1}, {seeds} seeds")
    body = (f"{n} tokens uniform on S^{d - 1} ({seeds} seeds), USA, beta = {beta:g}, {heads} heads with Q_h = I and "
            "K_h = V_h = A_h, A_h = B B^T + 0.1 I (random B, fixed): x_i' = P_{x_i} sum_h sum_j w_j e^{beta <x_i, A_h x_j>} "
            "A_h x_j is the projected gradient of E = sum_h (1 / 2 beta) sum_ij w_i w_j e^{beta <x_i, A_h x_j>} "
            "(divided by w_i), so dE/dt = sum_i w_i |x_i'|^2 >= 0. Adaptive DOP853 (rtol 1e-11). Largest relative "
            f"decrease between snapshots (every 0.05): {worst:.1e} (negative: E only rose); E(10) / E(0) = "
            + ", ".join(f"{r:.4f}" for r in rises) + ".")
    return Outcome(worst, 0.0, AtMost(1e-10), body=body)
