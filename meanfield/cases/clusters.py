"""Cluster formation from small random perturbations (Bruno–Pasqualotto–Agazzi)."""

from __future__ import annotations

import math

import numpy as np

from .. import theory
from ..validate import Outcome, case, verdict

SOURCE = ("Bruno–Pasqualotto–Agazzi, 'Emergence of meta-stable clustering in mean-field transformer models' (2025): "
          "k*(beta) clusters after the linear phase (their Fig. 4: beta = 5, noise 0.01, 3 clusters), the linear "
          "phase lasting ~ log(1/eps) / lambda*; the expected count by Rice's formula, derived in docs/validation.md")


def upcrossings(c, n=4096) -> int:
    """How many times rho = sum_k c_k e^{ik theta} crosses its mean upwards on the circle (the clusters being born)."""
    th = 2 * np.pi * np.arange(n) / n
    k = np.arange(1, len(c))
    f = 2 * np.real(np.exp(1j * np.outer(th, k)) @ c[1:])  # rho - rho_bar
    s = f > 0
    return int(np.sum(s & ~np.roll(s, 1)))


def rice_count(beta: float, t: float, modes: int) -> float:
    """E[up-crossings] of white noise after growing for time t: sqrt(m2 / m0), m_j = sum_k k^j e^{2 lambda_k t}."""
    k = np.arange(1, modes + 1)
    lam = theory.growth_rates(k, beta)
    w = np.exp(2 * (lam - lam.max()) * t)
    return float(math.sqrt(np.sum(k**2 * w) / np.sum(w)))


def _run(ctx, beta, eps, seed, level, label, modes=None):
    """The first snapshot where max |rho / rho_bar - 1| >= level: (the time of the crossing, log-interpolated,
    the snapshot's coefficients, the grid's modes, the snapshot's time), or None."""
    kstar = theory.most_unstable_mode(beta)
    modes = modes or max(64, 4 * kstar + 16)
    lam = float(theory.growth_rates([kstar], beta)[0])
    t_end = (math.log(1.0 / eps) + 3.0) / lam
    h = ctx.run(dict(model=dict(geometry="circle", beta=beta), grid=dict(modes=modes),
                     initial=dict(kind="random", amplitude=eps, seed=seed),
                     time=dict(t_end=t_end, dt=t_end / 2000), output=dict(interval=t_end / 400),
                     longtime=dict(handoff="tokens")), label)  # the clusters outgrow any grid: tokens carry on
    density = h["time"] <= float(h["attrs"].get("handoff_time", np.inf))
    c = h["rho_hat"][density]
    rho_bar = c[:, 0].real
    th = 2 * np.pi * np.arange(1024) / 1024
    k = np.arange(1, c.shape[1])
    dev = np.max(np.abs(2 * np.real(c[:, 1:] @ np.exp(1j * np.outer(k, th)))), axis=1) / rho_bar
    hit = np.flatnonzero(dev >= level)
    if hit.size == 0 or hit[0] == 0:
        return None
    t, i = h["time"][density], hit[0]
    # the crossing time, log(dev) interpolated between the snapshots around it (it grows exponentially)
    t_cross = float(t[i - 1] + (t[i] - t[i - 1]) * math.log(level / dev[i - 1]) / math.log(dev[i] / dev[i - 1]))
    return t_cross, c[i], modes, float(t[i])


@case("cluster-count", "From white noise, the number of clusters being born is Rice's count of the grown spectrum, "
      "close to k*(beta)", SOURCE, quick=True)
def cluster_count(ctx) -> Outcome:
    betas = [16.0] if ctx.quick else [4.0, 16.0, 64.0, 256.0]
    seeds = 6 if ctx.quick else 12
    rows, worst_z, counts_all = [], 0.0, {}
    for beta in betas:
        got, want = [], []
        for seed in range(seeds):
            r = _run(ctx, beta, 1e-4, seed, 0.1, f"beta{beta:g}_seed{seed}")
            if r is None:
                raise RuntimeError(f"beta = {beta:g}, seed {seed}: the perturbation never reached 0.1")
            _, c, modes, t = r  # the snapshot counted, at its own time
            got.append(upcrossings(c))
            want.append(rice_count(beta, t, modes))
        got, want = np.array(got, float), np.array(want)
        se = got.std(ddof=1) / math.sqrt(seeds) if seeds > 1 else float("nan")
        z = abs(got.mean() - want.mean()) / max(se, 0.5 / math.sqrt(seeds))  # counts are integers: SE >= 0.5/sqrt(n)
        worst_z = max(worst_z, z)
        counts_all[beta] = got.tolist()
        rows.append(f"| {beta:g} | {theory.most_unstable_mode(beta)} | {want.mean():.3f} | {got.mean():.3f} +- {se:.3f} | "
                    f"{z:.2f} | {' '.join(str(int(g)) for g in got)} |")
    ax = ctx.figure().add_subplot()
    for beta, got in counts_all.items():
        ax.plot([beta] * len(got), got, "o", mfc="none", alpha=0.5)
    b = np.geomspace(min(betas), max(betas), 50)
    ax.plot(b, [theory.most_unstable_mode(x) for x in b], "k-", label="k*(beta)")
    ax.set(xscale="log", xlabel="beta", ylabel="clusters being born (up-crossings)", title="S^1, SA, white noise 1e-4")
    ax.legend()
    body = ("Circle, SA, viscosity 0, white noise of amplitude 1e-4 (every Fourier coefficient N(0, 1) x 1e-4), "
            f"{seeds} seeds per beta. At the first snapshot where max |rho / rho_bar - 1| >= 0.1 (still linear: the "
            "quadratic terms are 1 % of it) the clusters being born are the up-crossings of rho_bar. The perturbation "
            "is then a stationary Gaussian process with spectrum S_k = e^{2 lambda_k t}, whose expected number of "
            "up-crossings per period is sqrt(m_2 / m_0), m_j = sum_k k^j S_k (Rice's formula) — which tends to k* as "
            "t grows. z = |mean - Rice| / standard error (at least 0.5 / sqrt(seeds): counts are integers).\n\n"
            "| beta | k* | Rice | measured | z | counts |\n|---|---|---|---|---|---|\n" + "\n".join(rows))
    return Outcome(worst_z, 0.0, "z <= 3 at every beta", verdict(worst_z <= 3.0), body=body,
                   numbers={"counts": {str(k): v for k, v in counts_all.items()}})


@case("linear-phase-duration", "The linear phase lasts log(1/eps) / lambda* (plus a constant): slope of its duration "
      "against log(1/eps)", SOURCE, quick=True)
def linear_phase_duration(ctx) -> Outcome:
    beta = 9.0
    epss = [1e-2, 1e-4, 1e-6, 1e-8, 1e-10]
    times = []
    for eps in epss:
        r = _run(ctx, beta, eps, 0, 0.5, f"eps{eps:g}")
        times.append(r[0])
    x = np.log(1.0 / np.array(epss))
    slope = float(np.polyfit(x, times, 1)[0])
    kstar = theory.most_unstable_mode(beta)
    modes = max(64, 4 * kstar + 16)
    lam_k = theory.growth_rates(np.arange(1, modes + 1), beta)
    lam = float(lam_k.max())

    def log_rms(t):  # log of the RMS of white noise grown for time t (each mode by e^{lambda_k t})
        return 0.5 * math.log(np.sum(np.exp(2 * (lam_k - lam) * t))) + lam * t

    from scipy.optimize import brentq

    # from the first measured time on, the perturbation must grow by eps_0 / eps more: the RMS law
    pred = [times[0]] + [brentq(lambda t: log_rms(t) - log_rms(times[0]) - math.log(epss[0] / e), times[0], 10 * times[-1])
                         for e in epss[1:]]
    want = float(np.polyfit(x, pred, 1)[0])
    ax = ctx.figure().add_subplot()
    ax.plot(x, times, "o", label="measured: max |rho / rho_bar - 1| reaches 0.5")
    ax.plot(x, pred, "k-", label="growth of the white noise's RMS")
    ax.plot(x, times[0] + (x - x[0]) / lam, "k:", label="slope 1 / lambda*")
    ax.set(xlabel="log(1 / eps)", ylabel="end of the linear phase", title=f"S^1, SA, beta = {beta:g}, seed 0")
    ax.legend()
    err = abs(slope / want - 1)
    body = (f"Circle, SA, beta = {beta:g} (k* = {kstar}, lambda* = {lam:.6f}, 1 / lambda* = {1 / lam:.5f}), white noise "
            "of amplitude eps, one seed (the same draw scaled): the time the density first departs by 0.5 from uniform "
            "(log-interpolated between snapshots).\n\n"
            "| eps | " + " | ".join(f"{e:g}" for e in epss) + " |\n|---|" + "---|" * len(epss) + "\n| measured | "
            + " | ".join(f"{t:.4f}" for t in times) + " |\n| predicted | " + " | ".join(f"{t:.4f}" for t in pred)
            + " |\n\nThe duration is log(1/eps) / lambda* only asymptotically: white noise's RMS grows like "
            "(sum_k e^{2 lambda_k t})^{1/2} ~ e^{lambda* t} t^{-1/4}, so the slope is 1 / lambda_eff(T) with lambda_eff "
            "the spectrum-weighted mean rate, above 1 / lambda* at finite T. Predicted: from the first measured time, "
            "the times at which the RMS has grown by eps_0 / eps more; slope of those against log(1/eps).")
    return Outcome(slope, want, "relative difference <= 1 %", verdict(err <= 0.01), body=body,
                   numbers={"eps": epss, "times": times})
