"""Transformers as controlled continuity equations: a perceptron block's stationary states, and the control
examples' losses (meanfield.gradients, meanfield.control)."""

from __future__ import annotations

import numpy as np

from ...gradients import KL, DensityDynamics, Problem, ParameterSchedule, TokenDynamics
from ...gradients.stepper import _step
from ..harness import AtMost, Outcome, case


def _atoms(x: np.ndarray, gap: float = 1e-3):
    """(angles of the atoms, largest spread within an atom, tokens per atom) of points on the circle."""
    a = np.sort(np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * np.pi))
    gaps = np.diff(np.concatenate([a, [a[0] + 2 * np.pi]]))
    cut = np.nonzero(gaps > gap)[0]
    if cut.size == 0:
        return np.array([a[0]]), float(a[-1] - a[0]), [len(a)]
    groups = np.split(np.roll(a, -(cut[0] + 1)), np.cumsum(np.diff(np.concatenate([cut, [cut[0] + len(a)]]))))[:-1]
    groups = [np.unwrap(g) for g in groups if g.size]
    return (np.array([g.mean() for g in groups]), max(float(g.max() - g.min()) for g in groups),
            [g.size for g in groups])


@case("perceptron-atoms", "with a perceptron block beside attention, tokens on the circle come to rest on finitely "
      "many points (an atomic measure), each a stable zero of the field", "the perceptron (MLP) block of the "
      "transformer; its critical points are generically atomic (docs/gradients.md)", quick=True)
def perceptron_atoms(ctx) -> Outcome:
    n, beta, units, t_end, dt = 200, 4.0, 4, 60.0, 0.05
    w = np.full(n, 1 / n)
    dyn = TokenDynamics(w, "sa", perceptron="tanh")
    rows, spread_worst, speed_worst, slope_worst, counts = [], 0.0, 0.0, -np.inf, []
    ax = ctx.figure().add_subplot()
    for seed in range(4 if ctx.quick else 8):
        rng = np.random.default_rng(seed)
        theta = 2 * np.pi * (np.arange(n) + 0.5 * rng.random(n)) / n
        x = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        p = {"beta": beta, "Q": np.eye(2)[None], "K": np.eye(2)[None], "V": np.eye(2)[None],
             "W": rng.standard_normal((2, units)), "A": 3 * rng.standard_normal((units, 2)),
             "b": rng.standard_normal(units)}
        for _ in range(int(round(t_end / dt))):
            x, _ = _step(dyn, x, p, dt, keep=False)
        centers, spread, sizes = _atoms(x)
        # the field of the final measure at the atoms, and its slope along the circle (stability)
        v_atoms = []
        slopes = []
        for c in centers:
            def tangential(phi):
                y = np.array([[np.cos(phi), np.sin(phi)]])
                probe = np.concatenate([x, y])
                d = TokenDynamics(np.concatenate([w, [0.0]]), "sa", perceptron="tanh")
                v, _ = d.rhs(probe, p)
                return float(v[-1] @ np.array([-np.sin(phi), np.cos(phi)]))
            v_atoms.append(abs(tangential(c)))
            slopes.append((tangential(c + 1e-5) - tangential(c - 1e-5)) / 2e-5)
        spread_worst = max(spread_worst, spread)
        speed_worst = max(speed_worst, max(v_atoms))
        slope_worst = max(slope_worst, max(slopes))
        counts.append(len(centers))
        rows.append(f"| {seed} | {len(centers)} | {', '.join(map(str, sizes))} | {spread:.1e} | {max(v_atoms):.1e} | "
                    f"{max(slopes):.3g} |")
        ax.plot(np.cos(centers) * (1 + 0.05 * seed), np.sin(centers) * (1 + 0.05 * seed), "o", label=f"seed {seed}")
    ax.set(aspect="equal", title=f"atoms of {n} tokens at t = {t_end:g} (one ring per seed)")
    ax.legend(fontsize=7)
    body = (f"{n} tokens spread evenly on the circle move with SA attention (beta = {beta:g}, Q = K = V = I) plus a "
            f"perceptron P_x W tanh(A x + b) of {units} units (W, b ~ N(0, 1), A ~ 3 N(0, 1), one draw per seed), "
            f"fixed-step RK4 (dt = {dt:g}) to t = {t_end:g}. An atom is a group of tokens with gaps below 1e-3; its "
            "spread is the largest angle within it; the field of the final measure is evaluated at each atom (a probe "
            "token of weight 0) with its slope along the circle (negative: stable).\n\n"
            "| seed | atoms | tokens per atom | largest spread (rad) | largest speed at an atom | largest slope |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows))
    return Outcome(measured=spread_worst, predicted=0.0, tolerance=AtMost(1e-8),
                   conditions={"every atom is a zero of the field (speed <= 1e-10)": speed_worst <= 1e-10,
                               "every atom is stable (slope < 0)": slope_worst < 0,
                               f"finitely many atoms (at most n / 10 = {n // 10} per seed)": max(counts) <= n // 10},
                   body=body, numbers={"atoms": counts, "speed": speed_worst, "slope": slope_worst})


@case("control-two-bumps", "ten layers of a perceptron field send the uniform density on the circle to two von "
      "Mises bumps with relative entropy below 1e-3 (nine switches)", "normalising-flow control of the continuity "
      "equation (docs/control.md)", quick=False)
def control_two_bumps(ctx) -> Outcome:
    from scipy.optimize import minimize

    from ...domains.circle import Circle

    geo = Circle(64)
    rng = np.random.default_rng(0)
    J, m, d = 10, 6, 2
    values = {"W": 0.1 * rng.standard_normal((J, d, m)), "A": rng.standard_normal((J, m, d)),
              "b": 0.1 * rng.standard_normal((J, m))}
    target = geo.to_grid(0.5 * geo.von_mises(1.0, 3.0) + 0.5 * geo.von_mises(4.0, 3.0))
    schedule = ParameterSchedule(np.linspace(0, 4, J + 1), values, scheduled=list(values))
    problem = Problem(DensityDynamics(geo, attention=False, perceptron="tanh"), schedule, geo.uniform(), 0.02,
                      KL(target))
    names, step = list(values), 0.01

    def unpack(z):
        z, out, i = z * step, {}, 0
        for k in names:
            out[k] = z[i:i + values[k].size].reshape(values[k].shape)
            i += values[k].size
        return schedule.replace(**out)

    def f(z):
        try:
            v, g = problem.value_and_gradient(unpack(z))
        except FloatingPointError:  # a trial step too far (the density not positive): a steep bowl back
            v0, z0 = f.good
            return v0 + 1e3 * (1 + v0) * float(np.sum((z - z0) ** 2)), 2e3 * (1 + v0) * (z - z0)
        f.good = (v, z.copy())
        return v, np.concatenate([g[k].ravel() for k in names]) * step

    z0 = np.concatenate([values[k].ravel() for k in names]) / step
    history = []
    res = minimize(f, z0, jac=True, method="L-BFGS-B", options={"maxiter": 150, "gtol": 1e-9, "ftol": 0.0},
                   callback=lambda intermediate_result: history.append(intermediate_result.fun))
    ax = ctx.figure().add_subplot()
    ax.semilogy(history)
    ax.set(xlabel="L-BFGS iteration", ylabel="KL(rho(T) | target)", title="uniform -> two bumps, 10 layers")
    body = ("The shipped example control_two_bumps (docs/control.md) optimised here: 6 tanh units, (W, A, b) per "
            f"layer, 10 layers of [0, 4], K = 64, dt = 0.02, L-BFGS-B, 150 iterations. KL at the start "
            f"{f(z0)[0]:.3g}; after 10 iterations {history[9]:.3g}; after 50 {history[49]:.3g}; final {res.fun:.3g}.")
    return Outcome(measured=float(res.fun), predicted=0.0, tolerance=AtMost(1e-3), body=body,
                   numbers={"history": history})
