"""Synchronisation: near one point, tokens contract at the rate the linearised field predicts."""

from __future__ import annotations

import math

import numpy as np

from ..validate import Outcome, case, verdict

SOURCE = ("Geshkovski–Letrouit–Polyanskiy–Rigollet, 'A mathematical perspective on Transformers' (2025), "
          "§4 (synchronisation, exponential rate); Chen–Lin–Polyanskiy–Rigollet (2025); rate derived in docs/validation.md")


def spread(positions, weights) -> np.ndarray:
    """sum_i w_i |x_i - m|^2 per snapshot, m the weighted mean (rows without a token skipped)."""
    out = []
    for x, w in zip(positions, weights):
        ok = np.isfinite(x[:, 0]) & (w > 0)
        x, w = x[ok], w[ok] / w[ok].sum()
        m = w @ x
        out.append(float(w @ np.sum((x - m) ** 2, axis=1)))
    return np.array(out)


def _contraction(ctx, variant: str, beta: float):
    h = ctx.run(dict(model=dict(method="particles", geometry="sphere", variant=variant, beta=beta), grid=dict(modes=8),
                     particles=dict(n=40, dim=3, integrator="dop853"),
                     initial=dict(kind="von_mises", centers=[[0.2, -0.3, 1.0]], concentrations=[4e4], seed=3),
                     time=dict(t_end=6.0 / (1.0 if variant == "sa" else math.exp(beta)), adaptive=True, rtol=1e-11,
                               atol=1e-14, dt=1e-3),
                     output=dict(interval=0.25 / (1.0 if variant == "sa" else math.exp(beta))),
                     longtime=dict(merge_tol=0.0)), f"{variant}_beta{beta:g}")
    t, v = h["time"], spread(h["positions"], h["token_weights"])
    keep = v > 1e-22  # above round-off of positions ~1e-16 (variance ~1e-32) with room
    slope = float(np.polyfit(t[keep], np.log(v[keep]), 1)[0])
    return t, v, slope


@case("synchronisation-rate", "Near one cluster the tokens' variance decays like e^{-2t} (SA) and e^{-2 e^beta t} (USA)",
      SOURCE, quick=True)
def synchronisation_rate(ctx) -> Outcome:
    ax = ctx.figure().add_subplot()
    rows, worst = [], 0.0
    for variant, beta in (("sa", 1.0), ("sa", 8.0), ("usa", 1.0), ("usa", 3.0)):
        t, v, slope = _contraction(ctx, variant, beta)
        want = -2.0 if variant == "sa" else -2.0 * math.exp(beta)
        err = abs(slope / want - 1)
        worst = max(worst, err)
        rows.append(f"| {variant.upper()} | {beta:g} | {slope:.5g} | {want:.5g} | {err:.1e} |")
        scale = 1.0 if variant == "sa" else math.exp(beta)
        ax.semilogy(t * scale, v, label=f"{variant.upper()}, beta = {beta:g}")
    ax.semilogy(t * scale, v[0] * np.exp(-2 * t * scale), "k--", label="e^{-2 s}")
    ax.set(xlabel="s = t (SA) or e^beta t (USA)", ylabel="variance of the tokens", title="40 tokens on S^2, cap of 0.005 rad")
    ax.legend()
    body = ("40 tokens drawn in a cap of angular radius about 0.005 on S^2 (von Mises, kappa = 4e4), Q = K = V = I, "
            "viscosity 0, DOP853 at rtol 1e-11. To first order in the spread, x_i' = sum_j w_j (x_j - x_i) for SA "
            "(the weights e^{beta <x_i, x_j>} are e^beta (1 + O(eps^2)), cancelled by the normalisation) and "
            "e^beta times that for USA: deviations from the mean decay at rate 1 (SA) or e^beta (USA), the variance "
            "at twice that. Fitted slope of log(variance) against t:\n\n"
            "| variant | beta | measured | predicted | relative error |\n|---|---|---|---|---|\n" + "\n".join(rows))
    return Outcome(worst, 0.0, "relative error of every fitted rate <= 1e-3", verdict(worst <= 1e-3), body=body)
