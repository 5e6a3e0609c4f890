"""Spectral selection (Q^T K = V symmetric positive definite): where the mass of the density goes."""

from __future__ import annotations

import numpy as np

from ...physics import theory
from ..harness import AtMost, Outcome, Within, case

V = [[1.2, 0.3], [0.3, 0.5]]
INITIAL = dict(kind="von_mises", centers=[0.5, 2.8], concentrations=[1.0, 2.0], weights=[0.55, 0.45])


@case("selection-mass-split", "Spectral selection on S^1: the mass at +v_1 is the initial half-circle mass plus a derived "
      "O(1/beta) correction", "Kuehn–Yoon (spectral selection, Q^T K = V = V^T); the split and its correction derived in "
      "docs/general.md", quick=True)
def selection_mass_split(ctx) -> Outcome:
    betas = [1024.0] if ctx.quick else [32.0, 128.0, 512.0, 1024.0, 2048.0]
    rows, measured, settled = [], [], True
    for beta in betas:
        h = ctx.run(dict(model=dict(geometry="circle", beta=beta), grid=dict(modes=256), attention=dict(Q=V, V=V),
                         initial=INITIAL, time=dict(t_end=1.5, dt=0.002), output=dict(interval=0.1)), f"beta{beta:g}")
        v1, h0, dh = theory.selection_split_circle(V, beta, h["rho_hat"][0])
        half = np.array([theory.half_circle_mass(c, v1) for c in h["rho_hat"]])
        measured.append(beta * (half[-1] - h0))
        settled &= bool(abs(half[-1] - half[-3]) < 1e-3 * abs(dh))  # the flux through the ends has died out
        rows.append(f"| {beta:g} | {half[-1]:.9f} | {beta * (half[-1] - h0):.5f} | {beta * dh:.5f} |")
    predicted = betas[-1] * dh
    ax = ctx.figure().add_subplot()
    ax.semilogx(betas, measured, "o-", label="density: beta (H(oo) - H(0))")
    ax.axhline(predicted, color="k", ls="--", label="first-order theory")
    ax.set(xlabel="beta", ylabel="beta x (mass at +v_1 - H(0))", title="spectral selection on S^1")
    ax.legend()
    body = (f"V = Q^T K = {V} (K = I), SA, viscosity 0, K = 256 modes, dt = 0.002, to t = 1.5 (the flux through the "
            f"half-circle's ends has decayed like e^(-2 sigma t), sigma = 4.0). H(0) = {h0:.6f} is the leading-order "
            "prediction (beta -> oo); the correction is lambda_1 (rho_0'(a_-) - rho_0'(a_+)) / (2 beta (lambda_1^2 - "
            "lambda_2^2)) + O(beta^-2):\n\n| beta | H(oo) | beta (H(oo) - H(0)) | predicted |\n|---|---|---|---|\n"
            + "\n".join(rows))
    return Outcome(measured[-1], predicted, Within(rel=0.02),
                   {"settled: H changes by < 1e-3 of the correction over the last 0.2": settled},
                   body=body, numbers={"beta": betas, "beta_dH": measured})


def _rotated(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """V = R diag(1.5, 0.7, -0.4) R^T with a random rotation R, and its top eigenvector v_1 = R e_1."""
    R, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    return R @ np.diag([1.5, 0.7, -0.4]) @ R.T, R[:, 0]


@case("selection-tokens-symmetric-V", "Q = K = I and a symmetric V whose top eigenvalue is positive and simple (V "
      "indefinite): every token ends on +-v_1", "Geshkovski–Letrouit–Polyanskiy–Rigollet (2025), §5 (V symmetric, "
      "top eigenvalue simple and positive); docs/particles.md", quick=True)
def selection_tokens_symmetric_v(ctx) -> Outcome:
    V, v1 = _rotated()
    n, t_end = (100, 40.0) if ctx.quick else (200, 30.0)
    h = ctx.run(dict(model=dict(method="particles", geometry="sphere", beta=1.0), grid=dict(modes=8),
                     initial=dict(kind="random", amplitude=0.0, seed=0), particles=dict(n=n, dim=3),
                     attention=dict(V=V.tolist()), time=dict(t_end=t_end, dt=0.05), output=dict(interval=0.5)), "run")
    t, x, w = h["time"], h["positions"], h["token_weights"]
    align = np.array([np.nanmin(np.abs(xi @ v1)) for xi in x])  # merged rows are NaN
    live = (w[-1] > 0) & np.isfinite(x[-1][:, 0])
    plus = float(np.sum(w[-1][live][x[-1][live] @ v1 > 0]))
    ax = ctx.figure().add_subplot()
    ax.semilogy(t, np.maximum(1 - align, 1e-16), label="1 - min_i |<x_i, v_1>|")
    ax.set(xlabel="t", title="V = R diag(1.5, 0.7, -0.4) R^T, SA, beta = 1")
    ax.legend()
    half = len(align) // 2
    body = (f"{n} tokens uniform on S^2, SA, beta = 1, Q = K = I, V = R diag(1.5, 0.7, -0.4) R^T (a fixed random "
            f"rotation R, so v_1 is no coordinate axis), RK4 dt = 0.05, to t = {t_end:g}. min_i |<x_i, v_1>|: "
            f"{align[0]:.3f} at t = 0, {align[-1]:.9f} at the end; mass at +v_1: {plus:.3f}.")
    return Outcome(float(1 - align[-1]), 0.0, AtMost(1e-4),
                   {"scattered at the start (min |<x_i, v_1>| < 0.5)": bool(align[0] < 0.5),
                    "still closing in over the second half": bool(np.all(np.diff(align[half:]) >= -1e-12))},
                   body=body, numbers={"final_min_alignment": float(align[-1]), "fraction_at_plus_v1": plus})

