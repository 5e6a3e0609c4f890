"""Causal attention: the linearised causal density against its Volterra solution."""

from __future__ import annotations

import math

import numpy as np

from .. import theory
from ..domains.positions import position_nodes
from ..validate import Outcome, case, verdict


@case("causal-volterra", "The linearised causal density is a Volterra equation in the prompt position; runs match its "
      "closed-form solution at second order in the number of positions", "Karagodin–Polyanskiy–Rigollet (2024), "
      "Duerinckx–Geshkovski–Rossi (lost in the middle): the causal field; the Volterra solution derived in docs/causal.md",
      quick=True)
def causal_volterra(ctx) -> Outcome:
    beta, t_end, amp = 2.0, 3.0, 1e-7
    rows, worst, orders = [], 0.0, []
    ax = ctx.figure().add_subplot()
    for variant, alibi in (("sa", 0.0), ("usa", 2.0)):
        a = float(theory.growth_rates([1], beta, variant)[0])
        errs = []
        for S in (9, 17, 33):
            h = ctx.run(dict(model=dict(geometry="circle", beta=beta, variant=variant), grid=dict(modes=8, positions=S),
                             attention=dict(causal=True, alibi=alibi),
                             initial=dict(kind="modes", modes=[[1, amp]], position_power=2.0),
                             time=dict(t_end=t_end, dt=0.01, stepper="etdrk4"), output=dict(interval=t_end)),
                        f"{variant}_alibi{alibi:g}_S{S}")
            s = position_nodes(S)
            got = h["rho_hat"][-1][:, 1].real / (amp / (4 * math.pi))  # c_1 = rho_bar amp g / 2, rho_bar = 1 / (2 pi)
            want = np.array([theory.causal_linear_mode(t_end, x, a, alibi, lambda u: u * u) for x in s])
            errs.append(float(np.max(np.abs(got - want)) / np.max(want)))
        if variant == "sa":
            ax.plot(s, want, "k-", label="Volterra solution")
        ax.plot(s, got, "o", mfc="none", label=f"density, {variant.upper()}, ALiBi {alibi:g}, S = 33")
        order = [math.log2(errs[0] / errs[1]), math.log2(errs[1] / errs[2])]
        worst, orders = max(worst, errs[-1]), orders + order
        rows.append(f"| {variant.upper()} | {alibi:g} | {a:.5f} | " + " | ".join(f"{e:.2e}" for e in errs)
                    + f" | {order[0]:.2f}, {order[1]:.2f} |")
    ax.set(xlabel="position s", ylabel="mode-1 amplitude at t = 3 / initial scale", title="causal density, beta = 2")
    ax.legend(fontsize=7)
    body = ("Circle, beta = 2, mode 1 with initial amplitude 1e-7 s^2 at prompt position s, the causal field over "
            "positions s' < s with the ALiBi kernel k_lambda (lambda = 0: plain causal attention), to t = 3. Linearised, "
            "each mode solves g_t = a int_0^s k_lambda(s, s') g ds' (a the mode's rate), solved in closed form with a "
            "Bessel kernel (theory.causal_linear_mode). Relative error at S = 9, 17, 33 positions and its observed "
            "order (the product trapezoid rule in s: 2):\n\n| variant | ALiBi | a | S = 9 | 17 | 33 | order |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    ok = worst < 2e-3 and min(orders) > 1.7
    return Outcome(worst, 0.0, "error < 2e-3 at S = 33, observed order > 1.7", verdict(ok), body=body,
                   numbers={"orders": orders})
