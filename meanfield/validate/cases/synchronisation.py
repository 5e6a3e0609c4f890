"""Synchronisation: near one point, tokens contract at the rate the linearised field predicts."""

from __future__ import annotations

import math

import numpy as np

from ...tokens import max_distance_to_mean
from ..harness import AtMost, Outcome, Within, case

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
    return Outcome(worst, 0.0, AtMost(1e-3), body=body)


def _grid_points(h) -> np.ndarray:
    if "theta" in h:
        return np.stack([np.cos(h["theta"]), np.sin(h["theta"])], -1)
    col, lon = np.meshgrid(h["colatitude"], h["longitude"], indexing="ij")
    return np.stack([np.sin(col) * np.cos(lon), np.sin(col) * np.sin(lon), np.cos(col)], -1)


def mean_vector(h) -> np.ndarray:
    """m = int x d mu per snapshot: from the density on the grid before a hand-off, from the tokens after it."""
    t, handoff = h["time"], float(h["attrs"].get("handoff_time", np.inf))
    points = _grid_points(h)
    axes = tuple(range(points.ndim - 1))
    out = np.empty((t.size, points.shape[-1]))
    for i in range(t.size):
        if t[i] <= handoff:
            out[i] = np.tensordot(h["weights"] * h["rho"][i], points, axes=(axes, axes))
        else:
            x, w = h["positions"][i], h["token_weights"][i]
            ok = np.isfinite(x[:, 0]) & (w > 0)
            out[i] = (w[ok] / w[ok].sum()) @ x[ok]
    return out


def variance(h) -> np.ndarray:
    """int |x - m|^2 d mu per snapshot: 1 - |m|^2 for the density, sum_i w_i |x_i - m|^2 for tokens (exact near a
    Dirac mass, where 1 - |m|^2 would lose every digit)."""
    t, handoff = h["time"], float(h["attrs"].get("handoff_time", np.inf))
    m = mean_vector(h)
    out = 1.0 - np.sum(m**2, axis=1)
    after = t > handoff
    if after.any():
        out[after] = spread(h["positions"][after], h["token_weights"][after])
    return out


@case("synchronisation-regular", "From a regular density with nonzero mean the density collapses to one Dirac mass, "
      "its variance finally decaying at the near-Dirac rate", SOURCE)
def synchronisation_regular(ctx) -> Outcome:
    runs = [("circle", "sa", 64, [0.5]), ("circle", "usa", 64, [0.5]), ("sphere", "sa", 24, [[0.3, 0.2, 1.0]])]
    ax = ctx.figure().add_subplot()
    rows, worst = [], 0.0
    for geometry, variant, modes, center in runs:
        beta = 1.0
        h = ctx.run(dict(model=dict(geometry=geometry, variant=variant, beta=beta), grid=dict(modes=modes),
                         initial=dict(kind="von_mises", centers=center, concentrations=[1.0]),
                         time=dict(t_end=30.0, dt=0.01), output=dict(interval=0.25),
                         longtime=dict(handoff="tokens")), f"{geometry}_{variant}")
        t, v = h["time"], variance(h)
        keep = (v < 1e-5) & (v > 1e-13)  # near the Dirac, above the round-off of positions
        slope = float(np.polyfit(t[keep], np.log(v[keep]), 1)[0]) if keep.sum() > 3 else math.nan
        want = -2.0 if variant == "sa" else -2.0 * math.exp(beta)
        err = abs(slope / want - 1) if math.isfinite(slope) else math.inf
        worst = max(worst, err)
        reach = t[np.argmax(v < 1e-6)] if (v < 1e-6).any() else math.nan
        rows.append(f"| {geometry} | {variant.upper()} | {h['attrs'].get('handoff_time', math.nan):.3g} | {reach:.3g} | "
                    f"{slope:.5f} | {want:.5f} | {err:.1e} |")
        ax.semilogy(t, np.maximum(v, 1e-30), label=f"{geometry}, {variant.upper()}")
    ax.set(xlabel="t", ylabel="variance int |x - m|^2 d mu", title="beta = 1, von Mises (kappa = 1) initial density",
           ylim=(1e-20, 2))
    ax.legend()
    body = ("A von Mises density (kappa = 1, so every direction carries mass and the mean is nonzero), beta = 1, "
            "viscosity 0, handed off to tokens when the collapsing density leaves the grid (circle K = 64, sphere "
            "L = 24). The variance int |x - m|^2 d mu (from the density, then from the tokens) falls to round-off: the "
            "whole measure synchronises to one Dirac mass, exponentially. Slope of log(variance) where it lies in "
            "(1e-13, 1e-5), against the near-Dirac rates (synchronisation-rate):\n\n"
            "| geometry | variant | hand-off | variance < 1e-6 from | slope | predicted | relative error |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
            "\n\nFor the *continuum* the last rate is not always this one: mass near the antipode of the cluster leaves "
            "it like e^{r t}, r = 1 (SA) or e^{-beta} (USA), so a density that is positive there keeps a variance "
            "~ e^{-(d - 1) r t} on S^{d-1} (docs/validation.md). Tokens, as here after the hand-off, each leave that "
            "region in finite time; the USA run shows the slow escape (r = e^{-1}) before its final e^{-2e t} decay.")
    return Outcome(worst, 0.0, AtMost(1e-3), body=body)


def _gap_deficit(h) -> np.ndarray:
    """pi minus the angle between the two clusters, per snapshot (NaN unless there are exactly two)."""
    out = np.full(h["time"].size, np.nan)
    for i, (p, m) in enumerate(zip(h["cluster_position"], h["cluster_mass"])):
        ok = np.isfinite(m)
        if ok.sum() == 2:
            a, b = p[ok]
            out[i] = math.pi - math.acos(float(np.clip(a @ b, -1, 1)))
    return out


def two_dirac_gap_rate(beta: float, m1: float, m2: float) -> float:
    """Rate of eps = pi - gap for two Dirac masses near antipodal (circle, SA): the two-Dirac gap equation
    dD/dt = -sin D e^{beta cos D} (m2 / (m1 e^beta + m2 e^{beta cos D}) + m1 / (m2 e^beta + m1 e^{beta cos D}))
    linearised at D = pi."""
    e, f = math.exp(beta), math.exp(-beta)
    return f * (m2 / (m1 * e + m2 * f) + m1 / (m2 * e + m1 * f))


@case("synchronisation-blocked", "A density with zero mean and antipodal symmetry never synchronises: its first moment "
      "stays 0 and it ends as two antipodal clusters; broken by 1e-5 rad, the two clusters leave the antipodal "
      "position at the two-Dirac rate and synchronise", SOURCE, quick=True)
def synchronisation_blocked(ctx) -> Outcome:
    beta = 2.0

    def run(offset, label, t_end):
        return ctx.run(dict(model=dict(geometry="circle", beta=beta), grid=dict(modes=64),
                            initial=dict(kind="von_mises", centers=[0.5, 0.5 + math.pi - offset],
                                         concentrations=[2.0, 2.0], weights=[0.5, 0.5]),
                            time=dict(t_end=t_end, dt=0.01), output=dict(interval=t_end / 200),
                            longtime=dict(handoff="tokens")), label)

    h = run(0.0, "symmetric", 40.0)
    m = np.linalg.norm(mean_vector(h), axis=1)
    last = h["cluster_mass"][-1]
    masses = np.sort(last[np.isfinite(last)])
    pos = h["cluster_position"][-1][np.isfinite(h["cluster_position"][-1][:, 0])]
    apart = float(np.degrees(np.arccos(np.clip(pos[0] @ pos[1], -1, 1)))) if len(pos) == 2 else math.nan
    worst = float(np.max(m))
    # broken: the clusters contract like e^{-t} (done by t ~ 40), then eps = pi - gap grows at the linearised
    # two-Dirac rate until the nonlinear term (relative eps^2 / 6) matters (eps < 1e-2 read)
    p = run(1e-5, "broken", 400.0)
    eps, t = _gap_deficit(p), p["time"]
    read = (t >= 40) & np.isfinite(eps) & (eps < 1e-2)
    rate = float(np.polyfit(t[read], np.log(eps[read]), 1)[0]) if read.sum() >= 5 else math.nan
    j = int(np.flatnonzero(read)[0]) if read.any() else -1
    pm = p["cluster_mass"][j][np.isfinite(p["cluster_mass"][j])]
    want = two_dirac_gap_rate(beta, *pm[:2]) if pm.size == 2 else math.nan
    err = abs(rate - want) / want
    final = p["cluster_mass"][-1]
    one = int(np.isfinite(final).sum()) == 1
    ax = ctx.figure().add_subplot()
    ax.semilogy(h["time"], np.maximum(m, 1e-18), label="symmetric: |first moment|")
    ax.semilogy(t, eps, label="broken by 1e-5: pi - gap")
    ax.semilogy(t[read], eps[j] * np.exp(want * (t[read] - t[j])), "k--", lw=0.8, label="two-Dirac rate")
    ax.set(xlabel="t", title=f"S^1, SA, beta = {beta:g}: antipodal clusters")
    ax.legend(fontsize=7)
    body = (f"Circle, SA, beta = {beta:g}, viscosity 0, K = 64, hand-off to tokens: two von Mises bumps (kappa = 2) of "
            "equal weight. Antipodal, rho(theta + pi) = rho(theta) and the mean is 0; the flow commutes with the rotation "
            "by pi, so the symmetry and the zero mean persist (the scheme keeps them exactly: this part cannot fail by "
            f"itself). Max |first moment| to t = 40: {worst:.1e}; at the end {len(masses)} clusters, masses "
            f"{', '.join(f'{x:.12f}' for x in masses)}, {apart:.9f} degrees apart. What can fail: with the second bump "
            "1e-5 rad short of antipodal the two clusters form, contract, and then eps = pi - gap grows at the rate of "
            "the two-Dirac gap equation linearised at gap pi, e^{-beta} (m2 / (m1 e^beta + m2 e^{-beta}) + m1 / "
            f"(m2 e^beta + m1 e^{{-beta}})) = {want:.8g} for the measured masses; fitted over t >= 40 while eps < 1e-2 "
            f"({int(read.sum())} snapshots): {rate:.8g}, relative error {err:.1e}. The broken run ends as "
            f"{int(np.isfinite(final).sum())} cluster(s).")
    return Outcome(err, 0.0, AtMost(1e-4), {
        "symmetric: |first moment| <= 1e-12": worst <= 1e-12,
        "symmetric: two clusters at the end, 180 degrees apart (to 1e-6)": len(masses) == 2 and abs(apart - 180) < 1e-6,
        "broken: one cluster at the end": one},
        body=body, numbers={"max_first_moment": worst, "masses": masses.tolist(), "gap_rate": rate,
                            "gap_rate_predicted": want})


@case("synchronisation-from-uniform", "Tokens drawn uniformly on S^2 all meet, and at the end their spread decays "
      "like e^{-t}", SOURCE, quick=True)
def synchronisation_from_uniform(ctx) -> Outcome:
    n, t_end = (48, 35.0) if ctx.quick else (64, 40.0)
    h = ctx.run(dict(model=dict(method="particles", geometry="sphere", beta=1.0), grid=dict(modes=8),
                     initial=dict(kind="random", amplitude=0.0, seed=0), particles=dict(n=n, dim=3),
                     time=dict(t_end=t_end, dt=0.05), output=dict(interval=0.5)), "run")
    t = h["time"]
    s = np.array([max_distance_to_mean(x, w) for x, w in zip(h["positions"], h["token_weights"])])
    late = (s < 1e-2) & (s > 1e-8)  # tokens within 1e-9 merge: stay clear of that
    rate = float(-np.polyfit(t[late], np.log(s[late]), 1)[0]) if late.sum() >= 3 else float("nan")
    ax = ctx.figure().add_subplot()
    ax.semilogy(t, np.maximum(s, 1e-18), label="max_i |x_i - m|")
    ax.semilogy(t, s[-1] * np.exp(-(t - t[-1])) + 1e-18, "k--", label="e^{-t}")
    ax.set(xlabel="t", title=f"{n} tokens from uniform on S^2, SA, beta = 1")
    ax.legend()
    body = (f"{n} tokens drawn uniformly on S^2, Q = K = V = I, SA, beta = 1, RK4 with dt = 0.05, to t = {t_end:g}; "
            "tokens closer than 1e-9 rad merge. Once all are close, every token sees (almost) the same average and "
            "moves towards it at rate 1: the spread max_i |x_i - m| (m the normalised weighted mean) decays like "
            f"e^{{-t}}. Fitted rate where 1e-8 < spread < 1e-2: {rate:.6f}; spread at t = {t_end:g}: {s[-1]:.1e}.")
    return Outcome(rate, 1.0, Within(abs=1e-3), {"all tokens met (spread < 1e-9 at the end)": bool(s[-1] < 1e-9)},
                   body=body, numbers={"n": n, "final_spread": float(s[-1]), "fitted_rate": rate})
