"""Linear theory and the numerics behind it: rates of every mode, stepper orders, mass, tokens vs PDE."""

from __future__ import annotations

import math

import numpy as np

from ...physics import theory
from ...analysis.diagnostics import measure_growth_rates
from ...analysis import model_of
from ..harness import AtMost, Outcome, Within, case

LINEAR = ("Geshkovski–Letrouit–Polyanskiy–Rigollet, 'A mathematical perspective on Transformers' (2023), §6 "
          "and Bruno–Pasqualotto–Agazzi (2025), Prop. 3.1: lambda_k = (k^2 / beta) I_k(beta) / I_0(beta) (SA on S^1)"
          ", Funk–Hecke on S^{d-1}; docs/theory.md")


def rate_errors(h) -> tuple[float, set, list]:
    """(largest relative error over the modes whose linear window was found, their set, rows
    (mode, theory, measured)) of a history."""
    model = model_of(h)
    dim = model.geometry.dim
    worst, seen, rows = 0.0, set(), []
    for f in measure_growth_rates(h["time"], h["rho_hat"], model):
        if f.status != "ok":
            continue
        lam = float(theory.growth_rates([f.mode[0]], model.beta, model.variant, model.viscosity, dim,
                                        update=model.update, alpha=model.alpha)[0])
        worst = max(worst, abs(f.measured - lam) / abs(lam))
        seen.add(f.mode)
        rows.append((f.mode, lam, f.measured))
    return worst, seen, rows


#: every (dimension, beta) at which a linear-* case reads rates (both variants): theory-quadrature covers them all
QUADRATURE_POINTS = [(d, beta) for d in (2, 3, 4, 8, 16, 64) for beta in (0.5, 2.0, 4.0, 9.0, 20.0, 32.0, 400.0)]


def funk_hecke_quadrature(l: int, beta: float, d: int) -> tuple[float, float]:
    """(e^{-beta} int_0^pi e^{beta cos th} P_l(cos th) sin^{d-2} th d th, log |S^{d-2}|) by adaptive quadrature, with
    P_l the degree-l Legendre polynomial of S^{d-1} (cos(l th) on the circle, C_l^nu / C_l^nu(1) otherwise): the
    Funk–Hecke eigenvalue of e^{beta <x, y>} on degree l is |S^{d-2}| e^beta times the first number."""
    from scipy.integrate import quad
    from scipy.special import eval_gegenbauer, gammaln

    nu = d / 2 - 1
    if d == 2:
        def p(th):
            return math.cos(l * th)
    else:
        c1 = eval_gegenbauer(l, nu, 1.0)

        def p(th):
            return eval_gegenbauer(l, nu, math.cos(th)) / c1
    width = 8 / math.sqrt(beta)  # the integrand lives within ~ 1 / sqrt(beta) of th = 0
    val = quad(lambda th: math.exp(beta * (math.cos(th) - 1)) * p(th) * math.sin(th) ** (d - 2), 0, math.pi,
               points=[min(math.pi, width / 8), min(math.pi, width)], epsabs=0, epsrel=1e-13, limit=1000)[0]
    return val, math.log(2) + (d - 1) / 2 * math.log(math.pi) - gammaln((d - 1) / 2)


def quadrature_rate(l: int, beta: float, variant: str, d: int) -> float:
    """The linear rate of degree l (viscosity 0) from the quadrature of the kernel: SA lap g_l / (beta g_0), USA
    lap rho_bar g_l / beta (docs/theory.md), lap = l (l + d - 2)."""
    from scipy.special import gammaln

    val, log_area = funk_hecke_quadrature(l, beta, d)
    lap = l * (l + d - 2)
    if variant == "sa":
        return lap * val / (beta * funk_hecke_quadrature(0, beta, d)[0])
    log_rho_bar = gammaln(d / 2) - math.log(2) - d / 2 * math.log(math.pi)
    return lap * val * math.exp(log_area + log_rho_bar + beta) / beta


#: The linear-* runs step the full right-hand side with an explicit pair: an exponential or IMEX scheme would
#: integrate the linear operator, built from the rate formula, exactly, and the measured rate would be the prediction.
EXPLICIT = dict(stepper="dopri5", adaptive=True, rtol=1e-10, atol=1e-22)
EXPLAINED = ("the explicit Dormand–Prince pair on the full right-hand side (rtol 1e-10), so each rate comes out of "
             "the flux on the grid, not out of the linear operator")


@case("theory-quadrature", "The Bessel-ratio rates equal an adaptive quadrature of the kernel's Funk–Hecke integral, at "
      "every (dimension, variant, beta) the linear-* cases read, on every mode of their bands",
      "docs/theory.md (Funk–Hecke: the eigenvalue of e^{beta <x, y>} on degree l is |S^{d-2}| int e^{beta t} P_l(t) "
      "(1 - t^2)^{(d-3)/2} dt)", quick=True)
def theory_quadrature(ctx) -> Outcome:
    import warnings

    from scipy.integrate import IntegrationWarning

    warnings.simplefilter("ignore", IntegrationWarning)  # quad's round-off notes at 1e-13: expected
    worst, count, where = 0.0, 0, ""
    for d, beta in QUADRATURE_POINTS:
        for variant in ("sa", "usa"):
            top = theory.most_unstable_mode(beta, variant, 0.0, d)
            lam = theory.growth_rates(np.arange(1, 2 * top + 5), beta, variant, 0.0, d)
            for l in range(1, 2 * top + 5):
                if lam[l - 1] < 0.1 * lam.max():  # the band the linear-* cases read
                    continue
                err = abs(quadrature_rate(l, beta, variant, d) - lam[l - 1]) / abs(lam[l - 1])
                count += 1
                if err > worst:
                    worst, where = err, f"d = {d}, {variant.upper()}, beta = {beta:g}, l = {l}"
    return Outcome(worst, 0.0, AtMost(1e-11),
                   body=f"{count} rates: d = 2, 3, 4, 8, 16, 64; SA and USA; beta = 0.5, 2, 4, 9, 20, 32, 400 (every "
                        "combination a linear-* case uses); every mode whose rate is at least 0.1 of the top one, up to "
                        f"2 l* + 4. The largest relative difference, {worst:.1e}, at {where}. The two are independent "
                        "codes: scaled Bessel functions I_{l + d/2 - 1} (theory.growth_rates) against scipy's adaptive "
                        "quadrature of the Gegenbauer integral.",
                   numbers={"rates": count, "worst": worst})


@case("linear-circle-all-modes", "Every Fourier mode of a 1e-7 perturbation grows or decays at its linear rate (S^1, SA)",
      LINEAR, quick=True)
def linear_circle(ctx) -> Outcome:
    K = 32
    h = ctx.run(dict(model=dict(beta=9.0, viscosity=0.02), grid=dict(modes=K), initial=dict(amplitude=1e-7, seed=1),
                     time=EXPLICIT | dict(t_end=15.0, dt=0.01), output=dict(interval=0.1)), "circle")
    worst, seen, rows = rate_errors(h)
    ax = ctx.figure().add_subplot()
    ks = [m[0] for m, _, _ in rows]
    ax.plot(ks, [r[1] for r in rows], "k-", label="theory")
    ax.plot(ks, [r[2] for r in rows], "o", mfc="none", label="measured")
    ax.set(xlabel="k", ylabel="rate", title="S^1, SA, beta = 9, viscosity 0.02")
    ax.legend()
    return Outcome(worst, 0.0, AtMost(1e-4), {f"all {K} modes measured": len(seen) == K},
                   body=f"beta = 9, viscosity 0.02, K = {K}, {EXPLAINED}: {len(seen)}/{K} modes measured; the "
                        "largest relative error of a rate.",
                   numbers={"modes_measured": len(seen)})


@case("linear-sphere-all-modes", "Every (l, m) of every growing degree grows at its linear rate (S^2, SA)", LINEAR, quick=True)
def linear_sphere(ctx) -> Outcome:
    L = 16 if ctx.quick else 32
    h = ctx.run(dict(model=dict(geometry="sphere", beta=20.0, viscosity=0.01), grid=dict(modes=L),
                     initial=dict(amplitude=1e-9, seed=2), time=EXPLICIT | dict(t_end=20.0, dt=0.02),
                     output=dict(interval=0.5)), "sphere")
    worst, seen, _ = rate_errors(h)
    lam = theory.growth_rates(np.arange(L + 1), 20.0, "sa", 0.01, 3)
    need = {(l, m) for l in range(1, L + 1) if lam[l] > 0 for m in range(l + 1)}
    return Outcome(worst, 0.0, AtMost(1e-4), {"every growing (l, m) measured": need <= seen},
                   body=f"beta = 20, viscosity 0.01, L = {L}, {EXPLAINED}: {len(need & seen)}/{len(need)} growing (l, m) "
                        "measured.")


@case("linear-zonal-usa", "Zonal modes on S^7 grow at the USA rates, the most unstable degree among them", LINEAR, quick=True)
def linear_zonal(ctx) -> Outcome:
    h = ctx.run(dict(model=dict(geometry="zonal", dim=8, variant="usa", beta=2.0), grid=dict(modes=16),
                     initial=dict(amplitude=1e-8, seed=1), time=EXPLICIT | dict(t_end=2.0, dt=0.002),
                     output=dict(interval=0.04)), "zonal")
    worst, seen, _ = rate_errors(h)
    lstar = theory.most_unstable_mode(2.0, "usa", 0.0, 8)
    return Outcome(worst, 0.0, AtMost(1e-4), {"the most unstable degree l* measured": (lstar,) in seen},
                   body=f"S^7, USA, beta = 2, {EXPLAINED}: {len(seen)} degrees measured, l* = {lstar} among them: "
                        f"{(lstar,) in seen}.")


def _order(ctx, name: str, order: int) -> Outcome:
    base = dict(model=dict(beta=9.0, viscosity=0.02), grid=dict(modes=24),
                initial=dict(kind="von_mises", centers=[0.5, 2.9], concentrations=[2.0, 3.0], weights=[0.6, 0.4]),
                time=dict(t_end=1.0, stepper=name), output=dict(interval=1.0))
    n0 = {2: 40, 4: 10}[order]
    res = {}
    for n in (n0, 2 * n0, 16 * n0):
        base["time"]["dt"] = 1.0 / n
        res[n] = ctx.run(base, f"{name}_{n}")["rho_hat"][-1]
    e1 = np.max(np.abs(res[n0] - res[16 * n0]))
    e2 = np.max(np.abs(res[2 * n0] - res[16 * n0]))
    slope = math.log2(e1 / e2)
    return Outcome(slope, float(order), Within(abs=0.3),
                   body=f"Nonlinear run (two bumps, beta = 9) to t = 1 with dt = 1/{n0}, 1/{2 * n0} against 1/{16 * n0}: "
                        f"errors {e1:.3g}, {e2:.3g}.")


@case("order-sbdf2", "SBDF2 converges at second order on a nonlinear run",
      "Ascher–Ruuth–Wetton 1995; docs/numerics.md", quick=True)
def order_sbdf2(ctx) -> Outcome:
    return _order(ctx, "sbdf2", 2)


@case("order-etdrk4", "ETDRK4 converges at fourth order on a nonlinear run", "Cox–Matthews 2002, "
      "Kassam–Trefethen 2005; docs/numerics.md", quick=True)
def order_etdrk4(ctx) -> Outcome:
    return _order(ctx, "etdrk4", 4)


@case("mass", "The tokens of a hand-off carry the density's mass, and merging keeps it: the raw quadrature mass "
      "sum_j w_j rho(x_j) at the hand-off nodes equals 2 pi c_0, and the surviving weights sum to 1 after every merge",
      "the continuity equation; docs/longtime.md", quick=True)
def mass(ctx) -> Outcome:
    from ... import io

    h = ctx.run(dict(model=dict(beta=25.0, viscosity=0.0), grid=dict(modes=64 if ctx.quick else 128),
                     initial=dict(amplitude=1e-3, seed=1, max_mode=16), time=dict(t_end=200.0, dt=0.01, stepper="etdrk4"),
                     output=dict(interval=1.0, spacing="log"), longtime=dict(handoff="tokens")), "mass")
    a = h["attrs"]
    # the hand-off's sum before renormalising: the kept positive weights plus the dropped round-off negatives,
    # evaluated at nodes that are not the FFT grid (an independent quadrature of the stored density)
    raw = float(a["handoff_renormalised_by"]) + float(a["handoff_negative_mass"])
    first = io.density_snapshots(h)  # the first token row
    density = 2 * math.pi * float(h["rho_hat"][first - 1, 0].real)
    live = np.nansum(h["token_weights"][first:], axis=1)
    sums = float(np.max(np.abs(live - 1))) if live.size else math.nan
    merges = int(np.sum(np.isfinite(h["merges"]["time"]))) if "merges" in h else 0
    err = max(abs(raw - density), sums)
    return Outcome(err, 0.0, AtMost(1e-12), conditions={f"{merges} merges happened (>= 20)": merges >= 20},
                   body=f"S^1, SA, beta = 25, viscosity 0, hand-off to tokens at t = {float(a['handoff_time']):.4g} "
                        f"({int(a['handoff_tokens'])} tokens), {merges} merges up to t = 200.  |raw hand-off mass - "
                        f"2 pi c_0| = {abs(raw - density):.2g}; max over token snapshots |sum of weights - 1| = "
                        f"{sums:.2g}.  The density's own mass (its k = 0 coefficient) is not tested: a divergence "
                        "has none, so that would hold by construction.",
                   numbers=dict(raw_handoff_mass=raw, density_mass=density, weight_sum_error=sums, merges=merges))


def _linear_point(ctx, geometry: str, dim: int, variant: str, beta: float, nu: float):
    """One run from a small perturbation of the band of fast modes: (rows (mode, theory, measured) of the
    band's modes whose rate was read, how many modes the band has, worst relative error) — or None when no
    mode is unstable."""
    d = {"circle": 2, "sphere": 3}.get(geometry, dim)
    lstar = theory.most_unstable_mode(beta, variant, nu, d)
    modes = max(16, 2 * lstar + 4)
    lam = theory.growth_rates(np.arange(1, modes + 1), beta, variant, nu, d)
    if lam.max() <= 0:
        return None
    t_end = math.log(1e3) / lam.max()  # the fastest mode grows 1000-fold: linear throughout
    band = [l for l in range(1, modes + 1) if lam[l - 1] >= 0.1 * lam.max()]  # rates a 1000-fold run can measure
    # every term of the band at the same height at its peak (cos k theta, sqrt(4 pi) Y_lm <= sqrt(2 (2l + 1)), zonal
    # R_l(1) = 1), random signs: their grown sum stays near 3e-4 of the mean, so the density stays positive, and no
    # coefficient starts small by chance (a small one is overtaken by the quadratic forcing of the fast modes)
    terms = [(l, m) for l in band for m in range(-l, l + 1)] if geometry == "sphere" else [(l,) for l in band]
    sign = np.random.default_rng(1).choice([-1.0, 1.0], len(terms))
    peak = [math.sqrt(2 * (2 * t[0] + 1)) if geometry == "sphere" else 1.0 for t in terms]
    initial = dict(kind="modes", modes=[[*t, float(sg * 3e-7 / (math.sqrt(len(terms)) * pk))]
                                        for t, sg, pk in zip(terms, sign, peak)])
    model = dict(geometry=geometry, variant=variant, beta=beta, viscosity=nu)
    if geometry == "zonal":
        model["dim"] = dim
    h = ctx.run(dict(model=model, grid=dict(modes=modes), initial=initial,
                     # ETDRK4: at beta = 400 on S^63 an explicit pair stalls; the flux's own rates are what the three
                     # quick linear-* cases measure (explicitly), the formula's ties to quadrature theory-quadrature's
                     time=dict(t_end=t_end, dt=t_end / 400, dt_min=t_end / 4000, stepper="etdrk4"),
                     output=dict(interval=t_end / 100)),
                f"{geometry}{dim}_{variant}_beta{beta:g}_nu{nu:g}")
    worst, seen, rows = rate_errors(h)
    unstable = [(l,) for l in band]
    got = [r for r in rows if r[1] >= 0.1 * lam.max()]
    need = len(unstable) if geometry != "sphere" else sum(l + 1 for (l,) in unstable)  # (l, m), m >= 0: the fits' labels
    err = max((abs(m - t) / t for _, t, m in got), default=float("nan"))
    return got, need, err


@case("linear-catalogue", "Every unstable mode grows at its Bessel-function rate: S^1, S^2, S^{d-1} (d to 64), SA and "
      "USA, viscosity 0 and > 0, beta 0.5 to 400", LINEAR)
def linear_catalogue(ctx) -> Outcome:
    points = []
    for geometry, dim in (("circle", 2), ("sphere", 3), ("zonal", 4), ("zonal", 16), ("zonal", 64)):
        for variant in ("sa", "usa"):
            for beta in (0.5, 4.0, 32.0, 400.0):
                d = {"circle": 2, "sphere": 3}.get(geometry, dim)
                top = theory.growth_rates([theory.most_unstable_mode(beta, variant, 0.0, d)], beta, variant, 0.0, d)[0]
                lstar = theory.most_unstable_mode(beta, variant, 0.0, d)
                for nu in (0.0, 0.5 * top / (lstar * (lstar + d - 2))):  # the viscosity that halves the top rate
                    points.append((geometry, dim, variant, beta, nu))
    rows, worst, missing, fig_pts = [], 0.0, 0, []
    for geometry, dim, variant, beta, nu in points:
        res = _linear_point(ctx, geometry, dim, variant, beta, nu)
        name = geometry if geometry != "zonal" else f"S^{dim - 1} (zonal)"
        if res is None:
            rows.append(f"| {name} | {variant.upper()} | {beta:g} | {nu:.3g} | 0 | - | - |")
            continue
        got, need, err = res
        worst = max(worst, err) if got else worst
        missing += max(0, need - len(got))
        fig_pts += [(t, m) for _, t, m in got]
        top = max((t for _, t, _ in got), default=float("nan"))
        rows.append(f"| {name} | {variant.upper()} | {beta:g} | {nu:.3g} | {len(got)}/{need} | {err:.1e} | {top:.4g} |")
    ax = ctx.figure().add_subplot()
    t, m = np.array(fig_pts).T
    ax.loglog(t, np.abs(m - t) / t, ".", ms=3)
    ax.axhline(1e-4, color="k", ls="--", label="tolerance 1e-4")
    ax.set(xlabel="theoretical rate", ylabel="relative error of the measured rate",
           title=f"{len(fig_pts)} unstable modes, {len(points)} runs")
    ax.legend()
    body = ("Each run perturbs every mode whose rate is at least a tenth of the top rate (a slower mode barely moves "
            "in the run: its rate cannot be read to 1e-4), each term at the same height at its peak with a random sign "
            "(sum about 3e-7 of the mean), and stops when the fastest mode has grown 1000-fold; each of those modes' "
            "rates is fitted over its linear window (docs/theory.md) and compared with the theory. On S^2 every "
            "order m of every unstable degree counts. The viscosity > 0 "
            "column halves the top rate.\n\n| geometry | variant | beta | viscosity | unstable modes measured | "
            "max rel. error | top rate |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    return Outcome(worst, 0.0, AtMost(1e-4), {"every unstable mode measured": missing == 0}, body=body,
                   numbers={"runs": len(points), "modes": len(fig_pts), "missing": missing})
