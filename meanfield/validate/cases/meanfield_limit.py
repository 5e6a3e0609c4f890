"""The mean-field limit: tokens drawn from a density follow the density's equation, at the sampling rate n^{-1/2}."""

from __future__ import annotations

import numpy as np

from ...analysis.diagnostics import kernel_distance, wasserstein1_circle
from ...io import geometry_of
from ..harness import Between, Outcome, case

SOURCE = "mean-field limit (Dobrushin; Geshkovski et al. 2023 §3); docs/particles.md"
#: Two heads of random Q, K, V (N(0, 1/2) entries, drawn with attention.seed = 3): general attention.
HEADS = dict(heads=2, Q="random", K="random", V="random", seed=3)


def sections(dim: int, n: int = 1, seed: int = 0, method: str = "particles", attention: dict | None = None) -> dict:
    """The run: tokens (n of them, drawn with ``seed`` from a two-bump von Mises(–Fisher) mixture) or the density,
    SA, beta = 4, to t = 1 (tokens: RK4, dt = 0.1; density: ETDRK4, dt = 0.02); ``attention``: an [attention]
    section (default Q = K = V = I).  The grid resolves the density at t = 1 (spectral tail below 1e-4: under two
    random heads that takes K = 128, K = 64 leaves 2.5e-3)."""
    centers = [0.5, 2.8] if dim == 2 else [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    modes = (128 if attention else 64) if dim == 2 else 48
    return dict(model=dict(method=method, geometry="circle" if dim == 2 else "sphere", beta=4.0),
                grid=dict(modes=modes),
                initial=dict(kind="von_mises", centers=centers, concentrations=[2.0, 3.0], weights=[0.6, 0.4],
                             seed=seed),
                particles=dict(n=n, dim=dim),
                time=dict(t_end=1.0, dt=0.1 if method == "particles" else 0.02, stepper="etdrk4"),
                output=dict(interval=1.0), **({"attention": attention} if attention else {}))


def _low(g, c: np.ndarray, degree: int = 4) -> np.ndarray:
    """The coefficients of degree 1..``degree`` (the moments the dynamics moves most) of coefficients c."""
    modes = np.abs(np.asarray(g.l if hasattr(g, "l") else np.arange(c.shape[-1])))
    return c[(modes >= 1) & (modes <= degree)]


def distances(ctx, dim: int, ns, seeds, attention: dict | None = None) -> tuple[list[float], list[float]]:
    """For each n, over seeds: (the root mean square of |change of the tokens' low moments from t = 0 to 1 - the
    density's| / |the density's change|, the mean distance at t = 1: W1 on S^1, the MMD with kernel e^{<x, y>} on
    S^2).  The first sees the dynamics: the sampling error of the initial draw cancels in the change, and a token
    flow off by a relative error e leaves a bias e that no n removes."""
    pde = ctx.run(sections(dim, method="spectral", attention=attention), "pde")
    g, c = geometry_of(pde), pde["rho_hat"][-1]
    moved = _low(g, pde["rho_hat"][-1]) - _low(g, pde["rho_hat"][0])
    changes, dist = [], []
    for n, k in zip(ns, seeds):
        e, d = [], []
        for s in range(k):
            tok = ctx.run(sections(dim, n, s, attention=attention), f"tokens_{n}_{s}")
            ends = []
            for row in (0, -1):
                x, w = tok["positions"][row], tok["token_weights"][row]
                live = np.isfinite(x[:, 0]) & (w > 0)  # rows of tokens that merged away are NaN
                ends.append((x[live], w[live]))
            tok_moved = _low(g, g.measure_coefficients(*ends[1])) - _low(g, g.measure_coefficients(*ends[0]))
            e.append(float(np.linalg.norm(tok_moved - moved) / np.linalg.norm(moved)))
            x, w = ends[1]
            d.append(wasserstein1_circle(g, c, x, w) if dim == 2 else kernel_distance(g, c, x, w))
        changes.append(float(np.sqrt(np.mean(np.square(e)))))
        dist.append(float(np.mean(d)))
    return changes, dist


def _limit(ctx, dim: int, ns, seeds, attention, what: str) -> Outcome:
    errs, dist = distances(ctx, dim, ns, seeds, attention)
    slope = float(np.polyfit(np.log(ns), np.log(errs), 1)[0])
    slope_d = float(np.polyfit(np.log(ns), np.log(dist), 1)[0])
    ax = ctx.figure().add_subplot()
    ax.loglog(ns, errs, "o-", label="relative error of the low moments' change (RMS over seeds)")
    ax.loglog(ns, dist, "s-", label=f"mean {what} at t = 1")
    ax.loglog(ns, errs[0] * (np.array(ns) / ns[0]) ** -0.5, "k--", label="n^{-1/2}")
    ax.set(xlabel="tokens n", ylabel="tokens against the density",
           title=("S^1" if dim == 2 else "S^2") + ", SA, beta = 4" + (", two random heads" if attention else ""))
    ax.legend(fontsize=7)
    body = (f"n tokens drawn from two von Mises bumps (seeds {', '.join(map(str, seeds))}), evolved to t = 1 (RK4, "
            f"dt = 0.1), against the density at t = 1 (ETDRK4, dt = 0.02): n = {list(ns)}. Judged: the change of the "
            "coefficients of degree 1..4 from t = 0 to t = 1, tokens' against the density's, relative to the "
            "density's (RMS over seeds): " + ", ".join(f"{e:.3g}" for e in errs) + f"; slope {slope:.3f} against log n. "
            "The initial draw's sampling error cancels in the change (it is the same draw at both ends), so what is "
            "left is the mean-field fluctuation of the field the tokens feel, ~ n^{-1/2}; a flow that were off by a "
            "relative e (a wrong field, a wrong time scale) would leave e at every n and flatten the slope. "
            f"Reported: the mean {what} at t = 1, " + ", ".join(f"{e:.3g}" for e in dist) + f", slope {slope_d:.3f} "
            "(mostly the initial draw's own sampling error: it would fall like n^{-1/2} even for frozen tokens).")
    return Outcome(slope, -0.5, Between(-0.6, -0.4), body=body,
                   numbers={"n": list(ns), "change_error": errs, "distance": dist, "slope": slope,
                            "distance_slope": slope_d})


def characteristics(h, theta0: np.ndarray, beta: float) -> np.ndarray:
    """Angles at the last snapshot of the points theta0 carried by the density's own field (SA on S^1,
    X = psi' / (beta psi), psi = e^{beta cos} * rho, summed directly at each point), RK4 with steps of two snapshot
    intervals (the stages at the snapshots): the mean-field characteristics the tokens should follow."""
    from numpy.polynomial.polynomial import polyval

    c, t = np.asarray(h["rho_hat"]), np.asarray(h["time"])
    k = np.arange(c.shape[1])
    a = c * geometry_of(h).funk_hecke(beta)  # psi's coefficients (scaled by e^{-beta}: psi' / psi is not)

    def field(i, th):  # Horner in z = e^{i theta}: sum_k a_k z^k and its derivative
        z = np.exp(1j * th)
        psi = 2 * np.real(polyval(z, a[i])) - a[i, 0].real
        dpsi = 2 * np.real(polyval(z, 1j * k * a[i]))
        return dpsi / (beta * psi)

    th = np.array(theta0, dtype=float)
    for i in range(0, t.size - 2, 2):
        h2 = t[i + 2] - t[i]
        k1 = field(i, th)
        k2 = field(i + 1, th + h2 / 2 * k1)
        k3 = field(i + 1, th + h2 / 2 * k2)
        k4 = field(i + 2, th + h2 * k3)
        th = th + h2 / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return th


@case("tokens-vs-pde", "Tokens drawn from a density follow the PDE's characteristics: each token's distance to the "
      "point its initial position is carried to by the density's field falls like n^{-1/2}", SOURCE, quick=True)
def tokens_vs_pde(ctx) -> Outcome:
    ns, seeds = ([30, 300, 3000], [8, 8, 4]) if ctx.quick else ([10, 100, 1000, 10000], [8, 8, 4, 2])
    beta = 4.0
    fine = sections(2, method="spectral")
    fine["time"].update(dt=0.005)
    fine["output"] = dict(interval=0.005)
    pde = ctx.run(fine, "pde")
    errs, moved = [], []
    for n, reps in zip(ns, seeds):
        e, m = [], []
        for s in range(reps):
            run = sections(2, n, s)
            run["time"].update(dt=0.05)  # the tokens' RK4 error (~1e-6) far below the coupling's (~1e-2)
            tok = ctx.run(run, f"tokens_{n}_{s}")
            x0, x1 = tok["positions"][0], tok["positions"][-1]
            live = np.isfinite(x1[:, 0])  # a token merged into another keeps its row NaN: left out
            th0, th1 = np.arctan2(x0[live, 1], x0[live, 0]), np.arctan2(x1[live, 1], x1[live, 0])
            carried = characteristics(pde, th0, beta)
            e.append(float(np.sqrt(np.mean(np.angle(np.exp(1j * (th1 - carried))) ** 2))))
            m.append(float(np.sqrt(np.mean(np.angle(np.exp(1j * (carried - th0))) ** 2))))
        errs.append(float(np.sqrt(np.mean(np.square(e)))))
        moved.append(float(np.mean(m)))
    slope = float(np.polyfit(np.log(ns), np.log(errs), 1)[0])
    ax = ctx.figure().add_subplot()
    ax.loglog(ns, errs, "o-", label="RMS |token - characteristic| at t = 1")
    ax.loglog(ns, errs[0] * (np.array(ns) / ns[0]) ** -0.5, "k--", label="n^{-1/2}")
    ax.set(xlabel="tokens n", ylabel="angle", title="S^1, SA, beta = 4: tokens against the density's flow")
    ax.legend(fontsize=7)
    body = (f"n tokens drawn from two von Mises bumps (seeds: {', '.join(map(str, seeds))}), evolved to t = 1 (RK4, "
            "dt = 0.05), each against the characteristic of the density's own field from the same initial angle (the "
            "density by ETDRK4, dt = 0.005; the field psi' / (beta psi) summed at each point, RK4 over the snapshots). "
            "This is the coupling of the mean-field limit: the initial draw is the same for both, so its sampling "
            "error does not enter; what is left is the fluctuation of the empirical field, ~ n^{-1/2}. A token flow "
            "or a density flow that were wrong (a wrong field, a wrong time scale) would leave a distance no n "
            f"removes. n = {list(ns)}: RMS distance " + ", ".join(f"{e:.3g}" for e in errs) + ", against an RMS "
            "displacement of " + ", ".join(f"{x:.3g}" for x in moved) + f"; slope {slope:.3f} against log n.")
    return Outcome(slope, -0.5, Between(-0.6, -0.4), {"the distance at the largest n below 10 % of the displacement":
                                                      errs[-1] < 0.1 * moved[-1]},
                   body=body, numbers={"n": list(ns), "distance": errs, "displacement": moved, "slope": slope})


@case("tokens-vs-pde-sphere", "On S^2 tokens follow the density: the error of the change of their low moments falls "
      "like n^{-1/2}", SOURCE)
def tokens_vs_pde_sphere(ctx) -> Outcome:
    return _limit(ctx, 3, [10, 100, 1000, 5000], [3, 3, 3, 1], None, "MMD")


@case("tokens-vs-pde-heads", "Two heads of random Q, K, V on S^1: tokens follow the density (its field by the grid's "
      "quadrature): the error of the change of their low moments falls like n^{-1/2}", SOURCE + "; general attention in docs/general.md")
def tokens_vs_pde_heads(ctx) -> Outcome:
    return _limit(ctx, 2, [10, 100, 1000, 10000], [4, 4, 4, 2], HEADS, "W1")
