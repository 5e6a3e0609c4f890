"""Causal attention: the linearised causal density against its Volterra solution."""

from __future__ import annotations

import math

import numpy as np

from ...physics import theory
from ...domains.positions import position_nodes
from ..harness import AtLeast, AtMost, Outcome, Within, case


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
    return Outcome(worst, 0.0, AtMost(2e-3), {"observed order > 1.7 at every refinement": min(orders) > 1.7},
                   body=body, numbers={"orders": orders})


def profile_weights(modes, M: float = 4.0) -> np.ndarray:
    """e^{-pi^2 n^2 / (2 M^2)}: the weights of the modes n in the retrieval profile (a Gaussian window of width
    pi / M in angle)."""
    n = np.asarray(modes, dtype=float)
    return np.exp(-math.pi**2 * n * n / (2 * M * M))


def retrieval_profile(t: float, s0, beta: float, alibi: float, M: float = 4.0, modes: int = 40) -> np.ndarray:
    """sum_n e^{-pi^2 n^2 / (2 M^2)} G_n(t, 1; s0): how much the last token retrieves of position s0 (USA circle,
    G_n = theory.retrieval_kernel with the mode-n rate n^2 I_n(beta) / beta)."""
    n = np.arange(1, modes + 1)
    rates = theory.growth_rates(n, beta, "usa")
    return np.asarray(sum(w * theory.retrieval_kernel(t, s0, float(a), alibi)
                          for w, a in zip(profile_weights(n, M), rates)))


def _is_u_shaped(p: np.ndarray) -> bool:
    """Falls, then rises: exactly one interior local minimum, no interior maximum."""
    d = np.diff(p)
    return bool(np.sum((d[:-1] < 0) & (d[1:] >= 0)) == 1 and np.sum((d[:-1] > 0) & (d[1:] <= 0)) == 0)


@case("lost-in-the-middle", "The last token's retrieval of prompt position s0 is U-shaped in s0 while t sup_n a_n <= "
      "min(3 - sqrt 3, 2 (1 - e^{-lambda})); the causal density solver follows the closed-form kernel",
      "Duerinckx–Geshkovski–Rossi (2026), 'lost in the middle' (the closed form and the condition); the kernel as the "
      "resolvent of docs/causal.md's Volterra equation", quick=True)
def lost_in_the_middle(ctx) -> Outcome:
    from scipy.integrate import quad

    beta, alibi = 1.0, 1.0
    amax = float(np.max(theory.growth_rates(np.arange(1, 40), beta, "usa")))  # n^2 I_n / beta
    bound = min(3 - math.sqrt(3), 2 * (1 - math.exp(-alibi)))
    s0 = np.linspace(1e-4, 1.0 - 1e-4, 4000)
    fracs = [0.25, 0.5, 0.75, 1.0]
    ax = ctx.figure(ncols=2).subplots(1, 2)
    shapes = {}
    for f in fracs:
        p = retrieval_profile(f * bound / amax, s0, beta, alibi)
        shapes[f] = (_is_u_shaped(p), float(s0[np.argmin(p)]))
        ax[0].plot(s0, p / p[-1], label=f"t sup a_n = {f:g} x bound")
    # where the U is lost (bisection on the multiple of the bound)
    lo, hi = 1.0, 4.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _is_u_shaped(retrieval_profile(mid * bound / amax, s0, beta, alibi)) else (lo, mid)
    lost = lo
    ax[0].set(xlabel="source position s0", ylabel="retrieval / retrieval of s0 = 1", ylim=(0, 3),
              title=f"USA, beta = {beta:g}, ALiBi {alibi:g} (closed form, M = 4)")
    ax[0].legend(fontsize=7)
    # the causal density solver against the kernel: the response at s = 1 to a mode-1 profile s^p is
    # s^p at 1 plus int_0^1 G(t, 1; s') s'^p ds'
    t, amp, S = bound / amax, 1e-7, 65
    a1 = float(theory.growth_rates([1], beta, "usa")[0])
    rows, worst = [], 0.0
    for p_ in (0.0, 1.0, 3.0):
        h = ctx.run(dict(model=dict(geometry="circle", beta=beta, variant="usa"), grid=dict(modes=8, positions=S),
                         attention=dict(causal=True, alibi=alibi),
                         initial=dict(kind="modes", modes=[[1, amp]], position_power=p_),
                         time=dict(t_end=round(t, 2), dt=0.01, stepper="etdrk4"), output=dict(interval=round(t, 2))),
                    f"p{p_:g}")
        got = h["rho_hat"][-1][-1, 1].real / (amp / (4 * math.pi))
        tt = float(h["time"][-1])
        want = 1.0 + quad(lambda x: float(theory.retrieval_kernel(tt, x, a1, alibi)) * x**p_, 0, 1, limit=200)[0]
        err = abs(got / want - 1)
        worst = max(worst, err)
        rows.append(f"| {p_:g} | {got:.7f} | {want:.7f} | {err:.1e} |")
    ax[1].plot(fracs, [shapes[f][1] for f in fracs], "o-")
    ax[1].set(xlabel="t sup_n a_n / bound", ylabel="position of the minimum", title=f"U lost at {lost:.3f} x bound")
    u_all = all(shapes[f][0] for f in fracs)
    body = (f"Circle, USA, beta = {beta:g}, ALiBi slope lambda = {alibi:g}; in our time the mode-n rate is a_n = n^2 "
            f"I_n(beta) / beta (sup = {amax:.6f}) and the condition reads t sup_n a_n <= min(3 - sqrt 3, 2 (1 - "
            f"e^{{-lambda}})) = {bound:.6f}. The retrieval profile P(s0) = sum_n e^{{-pi^2 n^2 / (2 M^2)}} G_n(t, 1; s0), "
            "M = 4, with G_n the regular part of the Volterra resolvent (`theory.retrieval_kernel`; Duerinckx–Geshkovski–Rossi's closed form, "
            "confirmed by docs/causal.md's derivation), on 4000 points in (0, 1). U-shaped (one interior minimum, no "
            "interior maximum) at t sup a_n = " + ", ".join(f"{f:g}: {'yes' if shapes[f][0] else 'NO'} (min at "
            f"{shapes[f][1]:.3f})" for f in fracs) + f" x the bound; the U is lost at {lost:.3f} x the bound (the "
            "minimum reaches s0 = 1; beyond it the retrieval only falls with s0: primacy): the condition is "
            "sufficient and, here, nearly sharp. The causal density solver (S = 65 positions, mode 1, amplitude 1e-7 s^p) "
            "against the kernel: response at s = 1 over the initial one, against 1 + int_0^1 G_1(t, 1; s') s'^p ds':\n\n"
            "| p | solver | kernel | relative difference |\n|---|---|---|---|\n" + "\n".join(rows) +
            "\n\nThe Monte Carlo over token prompts is the case lost-in-the-middle-tokens.")
    return Outcome(lost, 1.0, AtLeast(1.0), {"U-shaped at every fraction of the bound": u_all,
                                             "solver = kernel to 1e-3": worst <= 1e-3},
                   body=body, numbers={"lost_at": lost, "solver_vs_kernel": worst})


def _prompt_weights(n: int, alibi: float) -> np.ndarray:
    """The token solver's causal weights: token i (position s_i = (i + 1) / n) attends to j <= i with
    e^{-alibi (s_i - s_j)}, normalised over the row (its own term moves nothing: sin 0 = 0)."""
    s = np.arange(1, n + 1) / n
    L = np.tril(np.exp(-alibi * (s[:, None] - s[None, :])))
    return L / L.sum(axis=1, keepdims=True)


def _prompt_flow(theta0: np.ndarray, beta: float, alibi: float, t: float, h: float) -> np.ndarray:
    """Angles of many prompts (rows of ``theta0``) after time t of causal USA tokens on the circle (ALiBi
    ``alibi``), advanced together by the package's ``TokenSolver`` on a ``BatchedTokenModel`` with fixed steps
    <= h: d theta_i / dt = sum_j W_ij e^{beta cos(theta_j - theta_i)} sin(theta_j - theta_i)."""
    from ...tokens import BatchedTokenModel, TokenSolver

    m, n = theta0.shape
    model = BatchedTokenModel(m, np.full(n, 1.0 / n), beta, "usa", dim=2, causal=True, alibi=alibi)
    x = np.stack([np.cos(theta0), np.sin(theta0)], axis=-1).reshape(m * n, 2)
    solver = TokenSolver(model, x, np.arange(m * n), m * n, "rk4", h)
    steps = max(1, math.ceil(t / h))
    for _ in range(steps):
        solver.advance(t / steps)
    x = solver.x.reshape(m, n, 2)
    return np.arctan2(x[..., 1], x[..., 0])


def prompt_correlations(n: int, prompts: int, beta: float, alibi: float, t: float, modes, seed: int = 0,
                        chunk: int = 1024, h: float = 0.05):
    """Monte Carlo over prompts of n iid uniform tokens on the circle (causal USA, ALiBi ``alibi``): for each mode
    k and source token j, the mean and standard error of n E[cos k (theta_last(t) - theta_j(0))], and the same
    estimate from each chunk of prompts (batch means: the standard error of any sum over sources and modes, whose
    terms are correlated through the shared prompts, is the spread of its chunk values over sqrt(chunks)).

    The estimator subtracts cos k (theta_last(0) - theta_j(0)) (mean 0, j independent of the last token at t = 0)
    and uses as control variate F_j sin k (theta_last(0) - theta_j(0)), F_j the push of the other tokens on the
    last one at t = 0 (mean 0 as well, theta_j being independent of F_j): the leading fluctuation, which the
    regression removes (variance 10x smaller at n = 32).  Each chunk of prompts is one batch of the package's
    token solver (``_prompt_flow``), classical RK4 with steps <= h."""
    modes = np.asarray(modes)
    W = _prompt_weights(n, alibi)
    rng = np.random.default_rng(seed)
    sums = np.zeros((5, modes.size, n))  # X, X^2, Y, Y^2, X Y
    parts = []  # per chunk: its size and its own sums of X and Y
    for c0 in range(0, prompts, chunk):
        th0 = rng.uniform(0, 2 * np.pi, (min(chunk, prompts - c0), n))
        th = _prompt_flow(th0, beta, alibi, t, h)
        d0 = th0[:, -1:] - th0
        push = np.exp(beta * np.cos(d0)) * np.sin(-d0) * W[-1]
        F = push.sum(axis=1, keepdims=True) - push
        part = np.zeros_like(sums)
        for a, k in enumerate(modes):
            X = np.cos(k * (th[:, -1:] - th0)) - np.cos(k * d0)
            Y = F * np.sin(k * d0)
            for i, v in enumerate((X, X * X, Y, Y * Y, X * Y)):
                part[i, a] = v.sum(axis=0)
        sums += part
        parts.append((th0.shape[0], part[0], part[2]))
    mx, mxx, my, myy, mxy = sums / prompts
    cov, vy = mxy - mx * my, np.maximum(myy - my * my, 1e-300)
    b = cov / vy
    mean = mx - b * my
    var = np.maximum(mxx - mx * mx - b * cov, 0.0)
    batches = np.array([n * (sx - b * sy) / size for size, sx, sy in parts])
    return n * mean, n * np.sqrt(var / prompts), batches


@case("lost-in-the-middle-tokens", "Monte Carlo over token prompts: the last token's correlation with the token at "
      "position s0, times n, tends to the closed-form retrieval kernel and is U-shaped in s0",
      "Duerinckx–Geshkovski–Rossi (2026), 'lost in the middle' (iid uniform prompts, next order in 1 / n); the "
      "first-order expansion derived in docs/validation.md")
def lost_in_the_middle_tokens(ctx) -> Outcome:
    from scipy.linalg import expm

    beta, alibi = 1.0, 1.0
    prompts = {16: 40960, 32: 40960, 64: 40960, 128: 16384}  # the standard error ~ sqrt(n / prompts)
    amax = float(np.max(theory.growth_rates(np.arange(1, 40), beta, "usa")))
    t = 0.5 * min(3 - math.sqrt(3), 2 * (1 - math.exp(-alibi))) / amax
    modes = np.arange(1, 5)  # e^{-pi^2 k^2 / 32} < 1e-3 beyond
    omega = profile_weights(modes)
    rates = theory.growth_rates(modes, beta, "usa")
    # the batch (TokenSolver on a BatchedTokenModel, RK4) against single runs of the package (a particles config,
    # TokenModel's field, adaptive DOP853) on two prompts
    n0, gap = 16, 0.0
    for seed in (0, 1):
        th0 = np.random.default_rng(100 + seed).uniform(0, 2 * np.pi, n0)
        h = ctx.run(dict(model=dict(method="particles", geometry="circle", variant="usa", beta=beta),
                         grid=dict(modes=8), particles=dict(n=n0, dim=2, integrator="dop853"),
                         attention=dict(causal=True, alibi=alibi), longtime=dict(merge_tol=0.0),
                         initial=dict(kind="tokens", positions=np.stack([np.cos(th0), np.sin(th0)], 1).tolist()),
                         time=dict(t_end=round(t, 6), dt=1e-3, adaptive=True, rtol=1e-11, atol=1e-13),
                         output=dict(interval=round(t, 6))), f"solver_prompt{seed}")
        x = h["positions"][-1]
        batch = _prompt_flow(th0[None], beta, alibi, float(h["time"][-1]), 0.002)[0]
        gap = max(gap, float(np.max(np.abs(np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - batch)))))))
    rows, bias, bias_se, lin_gap, ax = [], {}, {}, {}, ctx.figure(ncols=2).subplots(1, 2)
    u_shaped = True
    for n, m in prompts.items():
        mean, se, batches = prompt_correlations(n, m, beta, alibi, t, modes, seed=n)
        s = np.arange(1, n + 1) / n
        P, Pse = omega @ mean, np.sqrt(omega**2 @ se**2)
        W = _prompt_weights(n, alibi)
        linear = sum(w * n * expm(t * a * (W - np.diag(np.diag(W))))[-1] for w, a in zip(omega, rates))
        closed = retrieval_profile(t, s, beta, alibi, modes=modes.size)
        src = slice(0, n - 1)  # the sources: every token but the last
        bias[n] = float(np.sum(P[src] - closed[src]) / np.sum(closed[src]))
        per_batch = np.einsum("k,bkj->bj", omega, batches)[:, src].sum(axis=1) / np.sum(closed[src])
        bias_se[n] = float(np.std(per_batch, ddof=1) / math.sqrt(per_batch.size))  # batch means
        lin_gap[n] = float(np.sum(linear[src] - closed[src]) / np.sum(closed[src]))
        # U: the first and last eighths of the sources above the eighth around the closed form's minimum
        q = max(2, n // 8)
        jm = int(np.argmin(closed[src]))
        parts = [slice(0, q), slice(max(0, jm - q // 2), max(0, jm - q // 2) + q), slice(n - 1 - q, n - 1)]
        lvl = [float(np.mean(P[p])) for p in parts]
        err = [float(np.sqrt(np.sum(Pse[p] ** 2)) / q) for p in parts]
        z = min((lvl[0] - lvl[1]) / math.hypot(err[0], err[1]), (lvl[2] - lvl[1]) / math.hypot(err[2], err[1]))
        u_shaped &= z >= 4
        rows.append(f"| {n} | {m} | {lvl[0]:.4f} / {lvl[1]:.4f} / {lvl[2]:.4f} | {z:.1f} | {float(np.median(Pse[src])):.4f} | "
                    f"{lin_gap[n]:+.4f} | {bias[n]:+.4f} +- {bias_se[n]:.4f} |")
        ax[0].errorbar(s[src], P[src], yerr=Pse[src], fmt="o", ms=3, label=f"Monte Carlo, n = {n}")
    sf = np.linspace(1e-3, 1 - 1e-3, 400)
    ax[0].plot(sf, retrieval_profile(t, sf, beta, alibi, modes=modes.size), "k-", label="closed form")
    ax[0].set(xlabel="source position s0", ylabel="n x correlation with the last token", ylim=(0, None),
              title=f"USA, beta = {beta:g}, ALiBi {alibi:g}")
    ax[0].legend(fontsize=7)
    nn = np.array(sorted(prompts))
    ax[1].errorbar(nn, [abs(bias[k]) for k in nn], yerr=[bias_se[k] for k in nn], fmt="o-",
                   label="|Monte Carlo - closed form|")
    ax[1].plot(nn, [abs(lin_gap[k]) for k in nn], "s-", label="|linear column - closed form|")
    ax[1].plot(nn, abs(bias[16]) * 16 / nn, "k--", label="1 / n")
    ax[1].set(xscale="log", yscale="log")
    ax[1].set(xlabel="tokens n", ylabel="relative deviation")
    ax[1].legend(fontsize=7)
    ns = sorted(prompts)
    orders = [math.log2(bias[a] / bias[b]) for a, b in zip(ns, ns[1:])]
    lin_orders = [math.log2(lin_gap[a] / lin_gap[b]) for a, b in zip(ns, ns[1:])]
    # each doubling of n brings the Monte Carlo closer to the closed form, by more than 3 standard errors
    falls = [(abs(bias[a]) - abs(bias[b])) / math.hypot(bias_se[a], bias_se[b]) for a, b in zip(ns, ns[1:])]
    # the limit, by Richardson-type extrapolation: bias(n) = c + a n^{-p} fitted to the four n (weighted by their
    # standard errors); the closed form is the limit iff c = 0
    from scipy.optimize import curve_fit

    y, sy = np.array([bias[k] for k in ns]), np.array([bias_se[k] for k in ns])
    (c_lim, a_fit, p_fit), cov = curve_fit(lambda n, c, a, p: c + a * n ** (-p), np.array(ns, float), y,
                                           p0=(0.0, y[0] * ns[0] ** 0.7, 0.7), sigma=sy, absolute_sigma=True,
                                           maxfev=20000)
    c_se = float(math.sqrt(cov[0, 0])) if np.isfinite(cov[0, 0]) else math.inf
    body = (f"Prompts of n iid uniform tokens on the circle, causal USA with ALiBi slope {alibi:g}, beta = {beta:g}, "
            f"run to t = {t:.6f}, half the smallness bound: t sup_n a_n = 0.5 min(3 - sqrt 3, 2 (1 - e^{{-lambda}})). "
            "The prompts of each n are integrated "
            "together by the package's token solver on a batch of systems (`tokens.BatchedTokenModel`, RK4, h <= 0.05; "
            "at h = 0.002 the batch equals single runs of a particles config, adaptive DOP853 at rtol 1e-11, "
            f"to {gap:.1e} rad on two prompts of 16 tokens). Measured: n E[cos k (theta_n(t) - theta_j(0))] for every "
            "source j < n and k = 1..4, with the control variate of `prompt_correlations`; the profile P(s0) = "
            "sum_k e^{-pi^2 k^2 / 32} (that), M = 4. Predicted (derived in docs/validation.md): to first order in "
            "1 / n, n E[...] = n [exp(t a_k W)]_{n j} with W the prompt's causal weights (the linear column), whose "
            "limit is the closed form G_k(t, 1; s0) of `theory.retrieval_kernel`. Deviations are relative, summed over "
            "the sources; their standard errors by batch means over chunks of 1024 prompts.\n\n| n | prompts | P: first / middle / last "
            "eighth | U: z | median SE | linear - closed | Monte Carlo - closed |\n|---|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n\nThe deviation from the closed form falls at every doubling of n, by " +
            ", ".join(f"{z:.1f}" for z in falls) + " standard errors, at observed orders " +
            ", ".join(f"{o:.2f}" for o in orders) + " — slower than the first order in 1 / n the expansion suggests. "
            "Of it, the linear column (the discrete positions and weights) falls at orders " +
            ", ".join(f"{o:.2f}" for o in lin_orders) + "; the rest, the nonlinear correction, more slowly still "
            "(the first tokens of a prompt attend to few others, where the mean-field expansion does not hold). "
            f"Fitted bias(n) = c + a n^(-p): p = {p_fit:.2f}, and the limit c = {c_lim:+.4f} +- {c_se:.4f}: the "
            "Monte Carlo tends to the closed form if c = 0 (judged: |c| <= min(3 standard errors, 0.06), so that a "
            "loose fit cannot pass by its error bar alone). "
            "Judged: the Monte Carlo profile is U-shaped at every n (both ends above the middle by at least 4 standard "
            "errors) and comes closer to the closed form at every doubling of n (by more than 3 standard errors). "
            "The rate is reported, not judged: the claim is the limit.")
    return Outcome(c_lim, 0.0, Within(abs=min(3 * c_se, 0.06)), {"U-shaped at every n": u_shaped,
                                                    "the deviation falls at every doubling (> 3 SE)": min(falls) > 3,
                                                    "batch = single runs of the token solver to 1e-9": gap < 1e-9},
                   body=body, numbers={"bias": {str(k): v for k, v in bias.items()}, "orders": orders,
                                       "falls_se": falls, "solver_gap": gap, "limit": c_lim, "limit_se": c_se,
                                       "order_fit": p_fit})


@case("causal-first-token-leads", "Causal mask, V = I: token 0 sees only itself and never moves; every later token "
      "collapses onto it, the earlier ones first", "Karagodin–Polyanskiy–Rigollet (2024): causal attention, the first "
      "token leads; docs/particles.md", quick=True)
def causal_first_token_leads(ctx) -> Outcome:
    from scipy.stats import spearmanr

    n, t_end = (32, 30.0) if ctx.quick else (64, 30.0)
    h = ctx.run(dict(model=dict(method="particles", geometry="sphere", beta=1.0), grid=dict(modes=8),
                     initial=dict(kind="random", amplitude=0.0, seed=0), particles=dict(n=n, dim=3),
                     attention=dict(causal=True), time=dict(t_end=t_end, dt=0.05), output=dict(interval=0.05)), "run")
    t, x = h["time"], h["positions"]
    dist = np.linalg.norm(x - x[:, :1], axis=2)
    hit = dist < 1e-3
    capture = np.where(hit.any(axis=0), t[np.argmax(hit, axis=0)], np.inf)
    moved = float(np.linalg.norm(x[-1, 0] - x[0, 0]))
    rho = float(spearmanr(capture[1:], np.arange(1, n))[0])
    ax = ctx.figure(2).subplots(1, 2)
    for T in (1.0, 3.0, 10.0):
        ax[0].semilogy(np.arange(1, n), dist[np.searchsorted(t, T), 1:], ".-", label=f"t = {T:g}")
    ax[0].set(xlabel="token position i", ylabel="|x_i - x_0|", title="retrieval profile")
    ax[0].legend()
    ax[1].plot(np.arange(1, n), capture[1:], ".")
    ax[1].set(xlabel="token position i", ylabel="time to reach token 0 (1e-3)")
    body = (f"{n} tokens uniform on S^2, SA, beta = 1, Q = K = V = I under a causal mask (token i attends to j <= i), "
            f"RK4 dt = 0.05 to t = {t_end:g}. Token 0 attends to itself alone and its field P_x x vanishes: it moves by "
            f"{moved:.1e}. Every token comes within 1e-3 of it by t = {np.max(capture):.2f}; the time to do so rises "
            f"with the position (Spearman correlation {rho:.3f}).")
    return Outcome(moved, 0.0, AtMost(0.0), {"every token within 1e-3 of token 0 at the end": bool(dist[-1].max() < 1e-3),
                                             "the earlier tokens first (Spearman > 0.9)": rho > 0.9},
                   body=body, numbers={"token0_displacement": moved, "spearman": rho,
                                       "capture_median": float(np.median(capture[1:]))})
