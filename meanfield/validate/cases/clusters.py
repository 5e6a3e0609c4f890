"""Cluster formation from small random perturbations (Bruno–Pasqualotto–Agazzi)."""

from __future__ import annotations

import math

import numpy as np

from ...physics import theory
from ...analysis.diagnostics import circle_values, crossing_time
from ..harness import AtMost, Exactly, Outcome, Sigmas, Within, case

SOURCE = ("Bruno–Pasqualotto–Agazzi, 'Emergence of meta-stable clustering in mean-field transformer models' (2025): "
          "k*(beta) clusters after the linear phase (their Fig. 4: beta = 5, noise 0.01, 3 clusters), the linear "
          "phase lasting ~ log(1/eps) / lambda*; the expected count by Rice's formula, derived in docs/validation.md")


def upcrossings(c, n=4096):
    """How many times rho = sum_k c_k e^{ik theta} crosses its mean upwards on the circle (the clusters being born);
    c of shape (..., K + 1): one count per leading index."""
    s = circle_values(np.asarray(c)[..., 1:], n) > 0  # rho - rho_bar > 0
    return np.sum(s & ~np.roll(s, 1, axis=-1), axis=-1)


def rice_count(beta: float, t: float, modes: int) -> float:
    """E[up-crossings] of white noise after growing for time t: sqrt(m2 / m0), m_j = sum_k k^j e^{2 lambda_k t}."""
    k = np.arange(1, modes + 1)
    lam = theory.growth_rates(k, beta)
    w = np.exp(2 * (lam - lam.max()) * t)
    return float(math.sqrt(np.sum(k**2 * w) / np.sum(w)))


def _run(ctx, beta, eps, seed, level, label, modes=None):
    """The first snapshot where max |rho / rho_bar - 1| >= level: (the time of the crossing, log-interpolated,
    the snapshot's coefficients, the grid's modes, the snapshot's time, the initial coefficients, the most clusters
    the run's cluster diagnostics count while they form), or None."""
    kstar = theory.most_unstable_mode(beta)
    modes = modes or max(64, 4 * kstar + 16)
    lam = float(theory.growth_rates([kstar], beta)[0])
    t_end = (math.log(1.0 / eps) + 3.0) / lam + 10.0  # + 10: the clusters form and contract (like e^{-t})
    h = ctx.run(dict(model=dict(geometry="circle", beta=beta), grid=dict(modes=modes),
                     initial=dict(kind="random", amplitude=eps, seed=seed),
                     time=dict(t_end=t_end, dt=t_end / 2000), output=dict(interval=t_end / 400),
                     longtime=dict(handoff="tokens")), label)  # the clusters outgrow any grid: tokens carry on
    density = h["time"] <= float(h["attrs"].get("handoff_time", np.inf))
    c = h["rho_hat"][density]
    dev = np.max(np.abs(circle_values(c[:, 1:], 1024)), axis=1) / c[:, 0].real
    t = h["time"][density]
    t_cross = crossing_time(t, dev, level)  # log(dev) interpolated: it grows exponentially
    if math.isnan(t_cross):
        return None
    i = int(np.argmax(dev >= level))
    return t_cross, c[i], modes, float(t[i]), c[0], int(np.max(h["diagnostics"]["n_clusters"]))


def linear_count(c0: np.ndarray, beta: float, t: float) -> int:
    """Up-crossings of the initial perturbation c0 evolved by the linear theory alone for time t."""
    k = np.arange(1, c0.size)
    c = c0.copy()
    c[1:] = c0[1:] * np.exp(theory.growth_rates(k, beta) * t)
    return int(upcrossings(c))


def white_noise_counts(beta: float, t: float, modes: int, draws: int, seed: int = 12345) -> np.ndarray:
    """Up-crossings of ``draws`` fresh white-noise draws grown linearly for time t, in batches: Rice's expectation,
    sampled."""
    k = np.arange(1, modes + 1)
    lam = theory.growth_rates(k, beta)
    scale = np.exp((lam - lam.max()) * t)
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, draws, 250):
        g = rng.standard_normal((min(250, draws - start), modes, 2)) * scale[None, :, None]
        c = np.zeros((g.shape[0], modes + 1), complex)
        c[:, 0], c[:, 1:] = 1.0, (g[..., 0] - 1j * g[..., 1]) / 2
        out.append(upcrossings(c))
    return np.concatenate(out).astype(float)


@case("cluster-count", "From white noise, the clusters that form are the up-crossings of the noise grown by the "
      "linear theory (seed by seed, within one; on average within 0.5), whose mean is Rice's count sqrt(m_2 / m_0), "
      "close to k*(beta)", SOURCE, quick=True)
def cluster_count(ctx) -> Outcome:
    betas = [16.0] if ctx.quick else [4.0, 16.0, 64.0, 256.0, 400.0]
    seeds = 8 if ctx.quick else 12
    draws = 20000
    rows, counts_all, worst_z, unequal, diffs, worst_seed = [], {}, 0.0, 0, [], 0
    for beta in betas:
        got, paired, formed, times, modes = [], [], [], [], 0
        for seed in range(seeds):
            r = _run(ctx, beta, 1e-4, seed, 0.1, f"beta{beta:g}_seed{seed}")
            if r is None:
                raise RuntimeError(f"beta = {beta:g}, seed {seed}: the perturbation never reached 0.1")
            _, c, modes, t, c0, most = r  # the snapshot counted, at its own time
            got.append(upcrossings(c))
            paired.append(linear_count(c0, beta, t))
            formed.append(most)
            times.append(t)
        got, paired, formed = np.array(got, float), np.array(paired, float), np.array(formed, float)
        unequal += int(np.sum(got != paired))
        diffs.append(float(np.mean(formed - paired)))
        worst_seed = max(worst_seed, int(np.max(np.abs(formed - paired))))
        t_mean = float(np.mean(times))
        rice = rice_count(beta, t_mean, modes)
        sample = white_noise_counts(beta, t_mean, modes, draws)
        z = abs(sample.mean() - rice) / (sample.std(ddof=1) / math.sqrt(draws))
        worst_z = max(worst_z, z)
        se = formed.std(ddof=1) / math.sqrt(seeds)
        counts_all[beta] = formed.tolist()
        rows.append(f"| {beta:g} | {theory.most_unstable_mode(beta)} | {rice:.3f} | {sample.mean():.3f} +- "
                    f"{sample.std(ddof=1) / math.sqrt(draws):.3f} | {paired.mean():.3f} | {formed.mean():.3f} +- {se:.3f} "
                    f"| {' '.join(str(int(g)) for g in paired)} | {' '.join(str(int(g)) for g in formed)} |")
    worst = max(abs(d) for d in diffs)
    ax = ctx.figure().add_subplot()
    for beta, got in counts_all.items():
        ax.plot([beta] * len(got), got, "o", mfc="none", alpha=0.5)
    b = np.geomspace(min(betas) / 2, max(betas) * 2, 50)  # the law around the betas run (one in quick mode)
    ax.plot(b, [theory.most_unstable_mode(x) for x in b], "k-", label="k*(beta)")
    ax.set(xscale="log", xlabel="beta", ylabel="clusters formed", title="S^1, SA, white noise 1e-4")
    ax.legend()
    body = ("Circle, SA, viscosity 0, white noise of amplitude 1e-4 (every Fourier coefficient N(0, 1) x 1e-4), "
            f"{seeds} seeds per beta, run through the formation of the clusters (hand-off to tokens) to 10 time units "
            "past the end of the linear phase. Prediction: the initial draw evolved by the linear theory alone to the "
            "first snapshot where max |rho / rho_bar - 1| >= 0.1; its up-crossings of rho_bar are the clusters being "
            "born. Measured: the most clusters the run's cluster diagnostics count while they form (the same criterion "
            "for density and tokens, docs/longtime.md). Two clusters born closer than the cluster radius, or meeting "
            "while they contract, count as one, so a seed may be one short (or one long, while a cluster splits off). "
            "The theory of the mean: the grown noise is a stationary Gaussian process with spectrum "
            "S_k = e^{2 lambda_k t}, whose expected number of up-crossings per period is sqrt(m_2 / m_0), "
            "m_j = sum_k k^j S_k (Rice's formula), tending to k* as t grows; checked against "
            f"{draws} fresh draws at the seeds' mean time (z = |sample mean - Rice| / standard error). Also checked: "
            "at that snapshot the run's own up-crossings equal the linear evolution's (seed by seed).\n\n"
            "| beta | k* | Rice | fresh draws | predicted (mean) | formed (mean) | predicted | formed |\n"
            "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    return Outcome(worst, 0.0, AtMost(0.5),
                   {"every seed: formed = predicted within one": worst_seed <= 1,
                    "the run's up-crossings = the linear evolution's (at most one seed off per beta)": unequal <= len(betas),
                    "fresh draws = Rice's formula (z <= 3)": worst_z <= 3.0},
                   body=body,
                   numbers={"formed": {str(k): v for k, v in counts_all.items()}, "rice_z": worst_z,
                            "mean_formed_minus_predicted": diffs})


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
    body = (f"Circle, SA, beta = {beta:g} (k* = {kstar}, lambda* = {lam:.6f}, 1 / lambda* = {1 / lam:.5f}), white noise "
            "of amplitude eps, one seed (the same draw scaled): the time the density first departs by 0.5 from uniform "
            "(log-interpolated between snapshots).\n\n"
            "| eps | " + " | ".join(f"{e:g}" for e in epss) + " |\n|---|" + "---|" * len(epss) + "\n| measured | "
            + " | ".join(f"{t:.4f}" for t in times) + " |\n| predicted | " + " | ".join(f"{t:.4f}" for t in pred)
            + " |\n\nThe duration is log(1/eps) / lambda* only asymptotically: white noise's RMS grows like "
            "(sum_k e^{2 lambda_k t})^{1/2} ~ e^{lambda* t} t^{-1/4}, so the slope is 1 / lambda_eff(T) with lambda_eff "
            "the spectrum-weighted mean rate, above 1 / lambda* at finite T. Predicted: from the first measured time, "
            "the times at which the RMS has grown by eps_0 / eps more; slope of those against log(1/eps).")
    return Outcome(slope, want, Within(rel=0.01), body=body, numbers={"eps": epss, "times": times})


@case("fig4-three-clusters", "BPA's Fig. 4 setting (S^1, beta = 5, white noise 0.01): 3 = k*(5) clusters form",
      SOURCE)
def fig4_three_clusters(ctx) -> Outcome:
    beta, eps = 5.0, 1e-2
    seeds = 24
    kstar = theory.most_unstable_mode(beta)
    lam = float(theory.growth_rates([kstar], beta)[0])
    t_end = math.log(1 / eps) / lam + 25.0  # the linear phase, then the clusters contract (e^{-25}) onto tokens
    counts = []
    for seed in range(seeds):
        h = ctx.run(dict(model=dict(geometry="circle", beta=beta), grid=dict(modes=64),
                         initial=dict(kind="random", amplitude=eps, seed=seed),
                         time=dict(t_end=t_end, dt=0.01), output=dict(interval=0.25),
                         longtime=dict(handoff="tokens")), f"seed{seed}")
        counts.append(int(h["diagnostics"]["n_clusters"][-1]))
    values, freq = np.unique(counts, return_counts=True)
    mode = int(values[np.argmax(freq)])
    ax = ctx.figure().add_subplot()
    ax.hist(counts, bins=np.arange(0.5, max(counts) + 1.5), label=f"clusters at t = {t_end:.1f}")
    ax.axvline(kstar, color="k", ls="--", label="k*(5) = 3")
    ax.set(xlabel="number of clusters", ylabel="seeds", title=f"S^1, SA, beta = 5, white noise 0.01, {seeds} seeds")
    ax.legend(fontsize=7)
    dist = ", ".join(f"{v}: {f}" for v, f in zip(values, freq))
    body = (f"Circle, SA, beta = 5 (k* = {kstar}, lambda* = {lam:.5f}), viscosity 0, K = 64, white noise of amplitude "
            f"0.01 (every Fourier coefficient N(0, 1) x 0.01), {seeds} seeds; handed off to tokens when the clusters "
            f"outgrow the grid; clusters counted (the run's cluster diagnostic) at t = log(100) / lambda* + 25 = "
            f"{t_end:.2f}, on the first plateau (the next merger needs ~e^{{5 (1 - cos(2 pi / 3))}} = 1800 time units). "
            f"Distribution over seeds (clusters: seeds): {dist}. White noise of this size over 64 modes is already "
            "about 11 % from uniform (RMS 0.01 sqrt(2 x 64)), so counting the clusters being born (cluster-count) "
            "does not apply here.")
    return Outcome(float(mode), float(kstar), Exactly(), body=body, numbers={"counts": counts})


def degree_power(h, i) -> tuple[np.ndarray, np.ndarray]:
    """Degrees l and the power sum_m |c_lm|^2 of a real field (m > 0 stored once, counted twice) of snapshot i."""
    l, m, c = h["degree"], h["order"], h["rho_hat"][i]
    p = np.abs(c) ** 2 * np.where(m > 0, 2.0, 1.0)
    deg = np.arange(1, l.max() + 1)
    return deg, np.bincount(l, weights=p, minlength=l.max() + 1)[1:]


@case("dominant-degree-sphere", "On S^2 the degree that carries most of the perturbation at the end of the linear phase "
      "is the most unstable one weighted by its 2l + 1 harmonics", SOURCE, quick=False)
def dominant_degree_sphere(ctx) -> Outcome:
    beta, eps, seeds = 16.0, 1e-4, 12
    lstar = theory.most_unstable_mode(beta, dim=3)
    L = 4 * lstar + 8
    lam = float(theory.growth_rates([lstar], beta, dim=3)[0])
    # one coefficient grows to 0.1 by log(0.1 / eps) / lambda*; the sum of all of them reaches 0.1 well before
    # (t ~ 5.4 .. 6.1 here), and the grid stops resolving the clusters soon after: stop in between
    t_end = (math.log(0.1 / eps) - 2.0) / lam
    rows, dom, dom_want, mean_got, mean_want = [], [], [], [], []
    for seed in range(seeds):
        h = ctx.run(dict(model=dict(geometry="sphere", beta=beta), grid=dict(modes=L),
                         initial=dict(kind="random", amplitude=eps, seed=seed),
                         time=dict(t_end=t_end, dt=t_end / 1000), output=dict(interval=t_end / 50)), f"seed{seed}")
        dev = np.array([np.max(np.abs(r * 4 * np.pi - 1)) for r in h["rho"]])
        if not (dev >= 0.1).any():
            raise RuntimeError(f"seed {seed}: the perturbation never reached 0.1 (max {dev.max():.3g})")
        i = int(np.argmax(dev >= 0.1))
        deg, p = degree_power(h, i)
        t = float(h["time"][i])
        want = (2 * deg + 1) * np.exp(2 * theory.growth_rates(deg, beta, dim=3) * t)  # E[power]: white noise grown
        dom.append(int(deg[np.argmax(p)]))
        dom_want.append(int(deg[np.argmax(want)]))
        mean_got.append(float(np.sum(deg * p) / np.sum(p)))
        mean_want.append(float(np.sum(deg * want) / np.sum(want)))
        rows.append(f"| {seed} | {t:.3f} | {dom[-1]} | {dom_want[-1]} | {mean_got[-1]:.3f} | {mean_want[-1]:.3f} |")
    got, want = np.array(mean_got), np.array(mean_want)
    se = got.std(ddof=1) / math.sqrt(seeds)
    z = abs(got.mean() - want.mean()) / se
    values, freq = np.unique(dom, return_counts=True)
    expected_dom = int(np.bincount(dom_want).argmax())
    ax = ctx.figure().add_subplot()
    ax.hist(dom, bins=np.arange(0.5, L + 0.5), label="dominant degree (seeds)")
    ax.axvline(lstar, color="k", ls="--", label=f"l* = {lstar}")
    ax.set(xlim=(0.5, 3 * lstar), xlabel="degree", ylabel="seeds", title=f"S^2, SA, beta = {beta:g}, white noise 1e-4")
    ax.legend(fontsize=7)
    body = (f"Sphere, SA, beta = {beta:g} (l* = {lstar}, lambda* = {lam:.5f}), viscosity 0, L = {L}, white noise 1e-4 "
            f"({seeds} seeds). At the first snapshot where max |rho / rho_bar - 1| >= 0.1 the power per degree "
            "P_l = sum_m |c_lm|^2. White noise grown for time t has E[P_l] proportional to (2l + 1) e^{2 lambda_l t}: "
            "the multiplicity 2l + 1 favours degrees above l*, so the expected dominant degree is the argmax of that, "
            f"{expected_dom} here (l* = {lstar}). Dominant degree over seeds: "
            + ", ".join(f"{v}: {f}" for v, f in zip(values, freq)) +
            f". Power-weighted mean degree: {got.mean():.3f} +- {se:.3f} (measured) against {want.mean():.3f} "
            f"(expected spectrum), z = {z:.2f}.\n\n| seed | t | dominant | expected dominant | mean degree | expected |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows))
    return Outcome(float(got.mean()), float(want.mean()), Sigmas(3, se),
                   {"the most frequent dominant degree is the expected one": int(values[np.argmax(freq)]) == expected_dom},
                   body=body, numbers={"dominant": dom, "mean_degree": mean_got, "z": z})
