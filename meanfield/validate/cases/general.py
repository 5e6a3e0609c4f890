"""General attention in the density solver: Q, K, V not the identity, the causal density over prompt positions."""

from __future__ import annotations

import math

import numpy as np

from ...analysis.diagnostics import crossing_time
from ...io import geometry_of
from ...physics import theory
from ...physics.general import quadrature_dealias
from ..harness import AtLeast, AtMost, Outcome, Within, case

SOURCE = "general attention (docs/general.md): Q, K, V matrices, several heads, the causal density"
#: Q^T K = V for the selection run on S^2: symmetric positive definite, a simple top eigenvalue
V_SELECT = [[1.0, 0.3, 0.0], [0.3, 0.6, 0.0], [0.0, 0.0, 0.2]]


def hemisphere_mass(geometry, c, v, n: int = 64) -> float:
    """The mass of the density with coefficients c on {x: <x, v> > 0} of S^2, by Gauss–Legendre in t = <x, v> and
    the trapezoid rule around v (exact for band-limited rho with n > degree)."""
    t, wt = np.polynomial.legendre.leggauss(n)
    t, wt = (t + 1) / 2, wt / 2
    e2, e3 = np.linalg.svd(np.asarray(v, dtype=float)[None])[2][1:]  # an orthonormal frame of v's complement
    phi = 2 * np.pi * np.arange(2 * n) / (2 * n)
    s = np.sqrt(1 - t**2)
    x = t[:, None, None] * v + s[:, None, None] * (np.cos(phi)[None, :, None] * e2 + np.sin(phi)[None, :, None] * e3)
    return float(np.sum(wt[:, None] * (np.pi / n) * geometry.evaluate(c, x.reshape(-1, 3)).reshape(n, 2 * n)))


@case("selection-sphere", "Spectral selection on S^2 (Q^T K = V symmetric positive definite, inviscid): the mass at "
      "+v_1 tends to the initial mass of the hemisphere <x, v_1> > 0", "Kuehn–Yoon (spectral selection); the leading "
      "order (beta -> oo) derived in docs/general.md")
def selection_sphere(ctx) -> Outcome:
    beta, modes = 32.0, 24
    heads = [(np.array(V_SELECT), np.eye(3), np.array(V_SELECT))]
    h = ctx.run(dict(model=dict(geometry="sphere", beta=beta),
                     grid=dict(modes=modes, dealias=quadrature_dealias("sphere", modes, beta, heads)),
                     attention=dict(Q=V_SELECT, V=V_SELECT),
                     initial=dict(kind="von_mises", centers=[[0.3, 0.2, 1.0], [-0.5, -0.4, -0.2]],
                                  concentrations=[1.0, 1.5], weights=[0.55, 0.45]),
                     time=dict(t_end=4.0, dt=0.01), output=dict(interval=0.5), longtime=dict(handoff="tokens")), "run")
    v1 = theory.top_eigenvector(V_SELECT)
    h0 = hemisphere_mass(geometry_of(h), h["rho_hat"][0], v1)
    x, w = h["positions"][-1], h["token_weights"][-1]
    live = np.isfinite(x[:, 0]) & (w > 0)
    c, cap = x[live] @ v1, math.cos(math.radians(30))
    plus, caps = float(w[live][c > 0].sum()), float(w[live][np.abs(c) > cap].sum())
    body = (f"S^2, SA, beta = {beta:g}, Q^T K = V = {V_SELECT} (K = I), viscosity 0, L = {modes} (grid.dealias set so "
            "that the quadrature integrates the kernel), two von Mises bumps; handed off to tokens when the grid stops "
            f"resolving the density ({float(h['attrs'].get('handoff_time', math.nan)):.3g}), to t = 4. The initial mass of "
            f"<x, v_1> > 0 is H_0 = {h0:.6f}; the tokens' mass there at t = 4: {plus:.6f} ({caps:.4f} of the mass within "
            "30 degrees of +-v_1). At leading order nothing crosses the equator <x, v_1> = 0 (docs/general.md); the "
            "correction is O(1/beta), not derived on S^2, so the tolerance is 1 %.")
    return Outcome(plus, h0, Within(rel=0.01), {"most of the mass within 30 degrees of +-v_1 (> 0.9)": caps > 0.9},
                   body=body, numbers={"H_0": h0, "H_end": plus, "within_30_degrees": caps})


@case("synchronisation-general-heads", "A density with V = I and Q^T K positive definite (not a multiple of I) gathers "
      "into one bump: |first moment| -> 1 up to the width the viscosity keeps", SOURCE, quick=True)
def synchronisation_general_heads(ctx) -> Outcome:
    t_end = 20.0 if ctx.quick else 40.0
    h = ctx.run(dict(model=dict(geometry="circle", beta=3.0, viscosity=0.01), grid=dict(modes=96),
                     attention=dict(Q=[[1.0, 0.4], [0.0, 0.6]]),
                     initial=dict(kind="von_mises", centers=[1.0], concentrations=[4.0]),
                     time=dict(t_end=t_end, dt=0.02), output=dict(interval=1.0)), "run")
    m = np.abs(2 * np.pi * h["rho_hat"][:, 1])  # |int e^{i theta} rho| = 2 pi |c_1|
    ax = ctx.figure().add_subplot()
    ax.semilogy(h["time"], 1 - m)
    ax.set(xlabel="t", ylabel="1 - |first moment|", title="V = I, Q^T K positive definite, viscosity 0.01")
    body = ("Circle, SA, beta = 3, viscosity 0.01, Q = [[1, 0.4], [0, 0.6]], K = V = I (Q^T K positive definite, not "
            "a multiple of I: the field by the grid's quadrature), from one von Mises bump (kappa = 4). 1 - |first "
            f"moment| falls from {1 - m[0]:.3f} to {1 - m[-1]:.2e} at t = {t_end:g}: one bump, whose width the viscosity "
            "sets (a stationary bump of width ~ sqrt(viscosity): 1 - |m| ~ 0.01).")
    return Outcome(float(1 - m[-1]), 0.0, AtMost(0.01), {"spread out at the start (|m| < 0.9)": bool(m[0] < 0.9)},
                   body=body, numbers={"first_moment_start": float(m[0]), "first_moment_final": float(m[-1])})


@case("causal-density-lead", "The causal density from independent random data at every position: the early positions "
      "leave the linear phase first", SOURCE + "; Karagodin–Polyanskiy–Rigollet (2024)", quick=True)
def causal_density_lead(ctx) -> Outcome:
    from scipy.stats import spearmanr

    positions, level = (17 if ctx.quick else 33), 1e-2
    times = []
    for seed in range(4):
        h = ctx.run(dict(model=dict(geometry="circle", beta=5.0), grid=dict(modes=32, positions=positions),
                         attention=dict(causal=True), initial=dict(kind="random", amplitude=1e-4, seed=seed),
                         time=dict(t_end=11.0, dt=0.02), output=dict(interval=0.1)), f"seed_{seed}")
        amp = np.max(np.abs(h["rho_hat"][:, :, 1:]), axis=2) * 2 * np.pi  # (T, S): the largest mode, relative
        times.append([crossing_time(h["time"], a, level) for a in amp.T])
    times, s = np.array(times), h["position"]
    finite = bool(np.all(np.isfinite(times)))
    mean = times.mean(axis=0)
    rho = float(spearmanr(s, mean)[0]) if finite else float("nan")
    each = [float(spearmanr(s, x)[0]) if finite else float("nan") for x in times]
    ax = ctx.figure().add_subplot()
    ax.plot(s, times.T, color="0.7", lw=0.8)
    ax.plot(s, mean, "k.-", label="mean over 4 draws")
    ax.set(xlabel="position s", ylabel=f"time to leave the linear phase ({level:g})", title="causal density, beta = 5")
    ax.legend()
    body = (f"Circle, SA, beta = 5, K = 32, {positions} positions, plain causal attention (ALiBi 0), white noise 1e-4 "
            "drawn independently at every position (4 draws). A position attends to the positions before it: the first "
            "ones see little but themselves, later ones average over more independent noise. Time at which a "
            f"position's largest mode first exceeds {level:g} of the mean (log-linear between snapshots 0.1 apart), "
            f"mean over the draws: {mean[0]:.3f} at s = 0, {mean[-1]:.3f} at s = 1 (a rise of {mean[-1] - mean[0]:.3f}); "
            f"Spearman correlation of the mean with the position {rho:.4f}; of each draw: "
            + ", ".join(f"{r:.3f}" for r in each) + " (a single draw need not be monotone).")
    return Outcome(rho, 1.0, AtLeast(0.9), {"every position leaves the linear phase by t = 11": finite,
                                             "the first position leads in every draw":
                                                 bool(np.all(times[:, 0] < times[:, -1]))},
                   body=body, numbers={"s": s.tolist(), "times": mean.tolist(), "spearman": rho,
                                       "spearman_each": each})
