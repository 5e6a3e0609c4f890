"""With noise (viscosity nu > 0) on the circle: the threshold, the Landau amplitude, hysteresis above beta_*."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ive

from ...physics import theory
from ...analysis.diagnostics import fit_rate
from ..harness import AtLeast, AtMost, Outcome, case

SOURCE = ("Mun–Rosenzweig (noisy mean-field attention on the circle: the threshold viscosity, the bifurcation and "
          "its type); the stationary states, the Landau expansion and beta_* derived in docs/validation.md")


def _run(ctx, beta, nu, variant, initial, t_end, dt, label, modes=32, stepper=None):
    time = dict(t_end=t_end, dt=dt) if stepper is None else dict(t_end=t_end, dt=dt, stepper=stepper, adaptive=True,
                                                                 rtol=1e-11, atol=1e-22)
    return ctx.run(dict(model=dict(geometry="circle", variant=variant, beta=beta, viscosity=nu), grid=dict(modes=modes),
                        initial=initial, time=time, output=dict(interval=t_end / 200)), label)


def amplitude(h) -> np.ndarray:
    """a_1 = |rho_1| / rho_0 per snapshot."""
    c = h["rho_hat"]
    return np.abs(c[:, 1]) / np.real(c[:, 0])


def _von_mises_for(a: float) -> dict:
    """A von Mises density at angle 0 whose a_1 = I_1(kappa) / I_0(kappa) is ``a``."""
    return dict(kind="von_mises", centers=[0.0], concentrations=[theory.von_mises_concentration(a)])


@case("noise-threshold", "The uniform density is unstable exactly below nu_c = I_1(beta) / (beta I_0(beta)) (SA), "
      "I_1(beta) / beta (USA): mode 1 grows at 0.95 nu_c and decays at 1.05 nu_c at the predicted rates", SOURCE, quick=True)
def noise_threshold(ctx) -> Outcome:
    rows, worst, signs = [], 0.0, True
    for variant, beta in (("sa", 4.0), ("usa", 2.0)):
        nc = theory.critical_viscosity(beta, variant)
        for f in (0.95, 1.05):
            nu = f * nc
            # an explicit pair on the full right-hand side: the rate comes out of the flux -div(rho X[rho]) on the
            # grid, not out of a linear operator built from the predicted rates (which ETDRK4 integrates exactly)
            h = _run(ctx, beta, nu, variant, dict(kind="random", amplitude=1e-8, seed=1), 100.0, 0.01,
                     f"{variant}_{f:g}", stepper="dopri5")
            rate = fit_rate(h["time"], np.abs(h["rho_hat"][:, 1]))[0]
            want = float(theory.growth_rates([1], beta, variant, nu)[0])
            err = abs(rate - want) / abs(want)
            worst = max(worst, err)
            signs &= (rate > 0) == (f < 1)
            rows.append(f"| {variant.upper()} | {beta:g} | {nc:.8f} | {f:g} | {rate:.8f} | {want:.8f} | {err:.1e} |")
    body = ("Circle, K = 32, white noise of amplitude 1e-8, to t = 100 by the explicit Dormand–Prince pair on the full "
            "right-hand side (rtol 1e-11): the fitted rate of mode 1 (log |rho_1| "
            "against t) at 5 % below and above the threshold. lambda_k + nu k^2 = k^2 I_k / (beta I_0) (SA) or "
            "k^2 I_k / beta (USA), and I_k decreases in k, so the first mode to destabilise is k = 1 and nu_c is its "
            "lambda_1 + nu.\n\n| variant | beta | nu_c | nu / nu_c | measured lambda_1 | predicted | relative error |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    return Outcome(worst, 0.0, AtMost(1e-8), {"mode 1 grows below nu_c and decays above, in every run": bool(signs)},
                   body=body)


@case("landau-amplitude", "Just below nu_c (beta < beta_*) the density settles to a stationary state whose first-mode "
      "amplitude is the Landau prediction, up to O(nu_c - nu)", SOURCE, quick=True)
def landau_amplitude(ctx) -> Outcome:
    deltas = [0.02] if ctx.quick else [0.04, 0.02, 0.01]
    beta = 1.0
    rows, worst_exact, worst_landau = [], 0.0, 0.0
    ax = ctx.figure().add_subplot()
    for variant in ("sa", "usa"):
        nc = theory.critical_viscosity(beta, variant)
        got, want = [], []
        for d in deltas:
            nu = nc * (1 - d)
            landau = theory.landau_amplitude(beta, nu, variant)
            exact = float(theory.stationary_circle(beta, nu, variant, landau)[0])
            lam = nc * d  # lambda_1 = nu_c - nu; the amplitude relaxes at 2 lambda_1
            t_end = 10.0 * math.ceil(14.0 / (2 * lam) / 10.0)  # a multiple of the output interval (200 x dt)
            h = _run(ctx, beta, nu, variant, _von_mises_for(0.8 * exact), t_end, 0.05, f"{variant}_{d:g}")
            a = amplitude(h)
            drift = abs(a[-1] / a[-20] - 1)  # still moving over the last 10 %?
            e_exact, e_landau = abs(a[-1] / exact - 1), abs(landau / exact - 1)
            worst_exact = max(worst_exact, e_exact, drift)
            worst_landau = max(worst_landau, e_landau / d)
            got.append(a[-1])
            want.append(landau)
            rows.append(f"| {variant.upper()} | {d:g} | {a[-1]:.9f} | {exact:.9f} | {e_exact:.1e} | {landau:.9f} | "
                        f"{e_landau:.2e} | {e_landau / d:.3f} |")
        ax.plot(np.sqrt(deltas), got, "o", label=f"{variant.upper()}: run")
        curve = np.linspace(0.0025, 0.05, 24)  # the Landau law over a range, whatever deltas ran
        ax.plot(np.sqrt(curve), [theory.landau_amplitude(beta, nc * (1 - c), variant) for c in curve], "k-", lw=0.8)
    ax.set(xlabel="sqrt(1 - nu / nu_c)", ylabel="a_1 = |rho_1| / rho_0", title="beta = 1 (lines: Landau)")
    ax.legend()
    body = ("Circle, beta = 1 (below beta_*: the bifurcation is supercritical for both variants), K = 32, dt = 0.05, "
            "nu = nu_c (1 - delta), from a von Mises density near the stationary amplitude, run for 14 / (2 lambda_1). "
            "Three numbers per run: the run's final a_1; the exact stationary state (`theory.stationary_circle`: the "
            "zero-flux condition makes rho proportional to exp(psi / (beta nu)) for USA and to psi^{1 / (beta nu)} for "
            "SA, solved for 48 cosine modes); the cubic Landau truncation (`theory.landau_amplitude`, derived in "
            "docs/validation.md). Landau's error is O(delta) relative: its last column must stay bounded (<= 1) and the "
            "error halve with delta.\n\n"
            "| variant | delta | run | exact stationary | run vs exact | Landau | Landau vs exact | (Landau error) / delta |\n"
            "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    return Outcome(worst_landau, 0.0, AtMost(1.0), {"run = exact stationary state to 1e-6": worst_exact <= 1e-6},
                   body=body, numbers={"run_vs_exact": worst_exact, "landau_error_over_delta": worst_landau})


def free_energy(a: np.ndarray, beta: float, nu: float, nodes: int = 1024) -> float:
    """e^{-beta} F, F = E - nu int rho log rho, of rho = rho_bar (1 + 2 sum a_k cos k theta) (USA, circle):
    E = (1 / 2 beta) int psi rho = (I_0 + 2 sum_k I_k a_k^2) / (2 beta)."""
    k = np.arange(1, a.size + 1)
    theta = 2 * np.pi * np.arange(nodes) / nodes
    rho = (1 + 2 * np.cos(np.outer(theta, k)) @ a) / (2 * np.pi)
    energy = (float(ive(0, beta)) + 2 * float(np.sum(ive(k, beta) * a**2))) / (2 * beta)
    entropy = float(np.mean(rho * np.log(rho)) * 2 * np.pi)
    return energy - nu * math.exp(-beta) * entropy


def _fold(beta, variant, nc, lo, hi, state) -> float:
    """The fold of the clustered branch (nu / nu_c) by bisection between the last scan point on the branch (lo) and
    the first past it (hi): Newton continued from the nearest branch state converges to a clustered state below the
    fold and to none (or the uniform state) above it; 50 halvings of the 0.0025 scan step."""
    for _ in range(50):
        mid = (lo + hi) / 2
        try:
            s = theory.stationary_circle(beta, mid * nc, variant, state)
            good = s[0] > 1e-6 and abs(s[0] - state[0]) < 0.2  # still on the branch, not jumped off it
        except RuntimeError:
            good = False
        lo, hi, state = (mid, hi, s) if good else (lo, mid, state)
    return lo


@case("hysteresis", "Above beta_* (USA) the bifurcation is subcritical: a clustered state survives above nu_c, and "
      "the free energies of the clustered and the uniform state cross above nu_c", SOURCE)
def hysteresis(ctx) -> Outcome:
    from scipy.optimize import brentq

    variant, beta = "usa", 4.0
    beta_star = brentq(lambda b: theory.landau_cubic(b, variant), 0.5, 10.0)
    nc = theory.critical_viscosity(beta, variant)
    # the clustered branch, continued in nu from below nu_c until it folds back
    nus, branch, a = [], [], None
    for f in np.arange(0.9, 1.6, 0.0025):
        try:
            a = theory.stationary_circle(beta, f * nc, variant, 0.9 if a is None else a)
        except RuntimeError:  # Newton lost near the fold
            break
        if a[0] < 1e-6:  # past the fold: only the uniform state is left
            break
        nus.append(f * nc)
        branch.append(a)
    fold = _fold(beta, variant, nc, nus[-1] / nc, nus[-1] / nc + 0.0025, branch[-1])
    dF = [free_energy(s, beta, nu) - free_energy(np.zeros_like(s), beta, nu) for nu, s in zip(nus, branch)]
    i = int(np.flatnonzero(np.diff(np.sign(dF)))[0])
    cross = (nus[i] - dF[i] * (nus[i + 1] - nus[i]) / (dF[i + 1] - dF[i])) / nc
    # runs at 1.05 nu_c: a small perturbation decays, a cluster stays (on the branch)
    nu = 1.05 * nc
    h_small = _run(ctx, beta, nu, variant, dict(kind="random", amplitude=1e-4, seed=2), 60.0, 0.005, "small")
    h_big = _run(ctx, beta, nu, variant, _von_mises_for(0.7), 60.0, 0.005, "cluster")
    target = theory.stationary_circle(beta, nu, variant, 0.9)
    a_small, a_big = amplitude(h_small), amplitude(h_big)
    err = abs(a_big[-1] / target[0] - 1)
    F_run = float(h_big["diagnostics"]["free_energy"][-1])
    F_branch = free_energy(target, beta, nu)
    ax = ctx.figure().add_subplot()
    ax.plot(np.array(nus) / nc, [s[0] for s in branch], "k-", label="stationary clustered branch")
    ax.plot([0.9, fold], [0, 0], "k:", label="uniform state")
    ax.plot([1.05], [a_big[-1]], "o", label="run from a cluster, t = 60")
    ax.plot([1.05], [a_small[-1]], "s", label="run from noise 1e-4, t = 60")
    ax.axvline(1.0, color="gray", lw=0.6)
    ax.axvline(cross, color="r", lw=0.6, ls="--", label="free energies cross")
    ax.set(xlabel="nu / nu_c", ylabel="a_1", title=f"S^1, USA, beta = {beta:g} (beta_* = {beta_star:.4f})")
    ax.legend(fontsize=7)
    body = (f"Circle, USA, beta = {beta:g} > beta_* = {beta_star:.6f} (the zero of the cubic Landau coefficient, "
            "kappa_2 = I_2 / I_1 = 1/2 at the threshold: docs/validation.md), nu_c = I_1(beta) / beta = "
            f"{nc:.8f}. The stationary clustered branch (`theory.stationary_circle`, continued in nu) exists up to the "
            f"fold at nu = {fold:.7f} nu_c (bisection: 50 halvings of the scan step 0.0025); its free energy F = E - nu int rho log rho (the USA flow's Lyapunov "
            f"function, non-decreasing) equals the uniform state's at nu = {cross:.4f} nu_c. Runs at nu = 1.05 nu_c "
            "(K = 32, dt = 0.005, t = 60): from white noise 1e-4 the amplitude a_1 falls from "
            f"{a_small[0]:.2e} to {a_small[-1]:.2e} (the uniform state is stable); from a von Mises density (a_1 = "
            f"{a_big[0]:.3f}) it settles at {a_big[-1]:.9f}, the branch's {target[0]:.9f} (relative {err:.1e}); the "
            f"run's e^{{-beta}} F = {F_run:.12f}, the branch's {F_branch:.12f}.")
    conditions = {"beta above beta_*": beta > beta_star, "the fold beyond the crossing": fold > cross,
                  "the clustered state survives at 1.05 nu_c (run = branch to 1e-6)": err <= 1e-6,
                  "white noise decays at 1.05 nu_c (100-fold)": bool(a_small[-1] < 1e-2 * a_small[0])}
    return Outcome(cross, 1.0, AtLeast(1.0), conditions,
                   body=body, numbers={"beta_star": beta_star, "fold": fold, "crossing": cross, "a_run": a_big[-1],
                                       "a_branch": target[0]})
