"""Spectral selection (Q^T K = V symmetric positive definite): where the mass of the density goes."""

from __future__ import annotations

import numpy as np

from ...physics import theory
from .. import Outcome, case, verdict

V = [[1.2, 0.3], [0.3, 0.5]]
INITIAL = dict(kind="von_mises", centers=[0.5, 2.8], concentrations=[1.0, 2.0], weights=[0.55, 0.45])


@case("selection-mass-split", "Spectral selection on S^1: the mass at +v_1 is the initial half-circle mass plus a derived "
      "O(1/beta) correction", "Kuehn–Yoon (spectral selection, Q^T K = V = V^T); the split and its correction derived in "
      "docs/general.md", quick=True)
def selection_mass_split(ctx) -> Outcome:
    betas = [1024.0] if ctx.quick else [32.0, 128.0, 512.0, 1024.0, 2048.0]
    rows, measured = [], []
    for beta in betas:
        h = ctx.run(dict(model=dict(geometry="circle", beta=beta), grid=dict(modes=256), attention=dict(Q=V, V=V),
                         initial=INITIAL, time=dict(t_end=1.5, dt=0.002), output=dict(interval=0.1)), f"beta{beta:g}")
        v1, h0, dh = theory.selection_split_circle(V, beta, h["rho_hat"][0])
        half = np.array([theory.half_circle_mass(c, v1) for c in h["rho_hat"]])
        measured.append(beta * (half[-1] - h0))
        rows.append(f"| {beta:g} | {half[-1]:.9f} | {beta * (half[-1] - h0):.5f} | {beta * dh:.5f} |")
    predicted = betas[-1] * dh
    err = abs(measured[-1] / predicted - 1)
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
    return Outcome(measured[-1], predicted, f"relative difference <= 2 % at beta = {betas[-1]:g}", verdict(err <= 0.02),
                   body=body, numbers={"beta": betas, "beta_dH": measured})
