"""Transformers as controlled continuity equations: a perceptron block's stationary states, and the control
examples' losses (meanfield.gradients, meanfield.control)."""

from __future__ import annotations

import numpy as np

from ...gradients import (KL, DensityDynamics, Packing, ParameterSchedule, Problem, SlicedWasserstein, Systems,
                          TokenDynamics)
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


def _lbfgs(problem, names, maxiter: int, step: float):
    """L-BFGS-B on the problem's parameters ``names`` (in units of ``step``, as meanfield control packs them),
    with its own loop here (a second driver of the same gradients): (final loss, loss per iteration, loss at
    the start)."""
    from scipy.optimize import minimize

    packing = Packing(problem, names, step)

    def f(z):
        try:
            v, g = problem.value_and_gradient(packing.unpack(z)[0])
        except FloatingPointError:  # a trial step too far (the density not positive): a steep bowl back
            v0, z0 = f.good
            return v0 + 1e3 * (1 + v0) * float(np.sum((z - z0) ** 2)), 2e3 * (1 + v0) * (z - z0)
        f.good = (v, z.copy())
        return v, packing.gradient(z, g)

    z0 = packing.pack(problem.schedule, problem.initial)
    start = f(z0)[0]
    history = [start]
    res = minimize(f, z0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter, "gtol": 1e-9, "ftol": 0.0},
                   callback=lambda intermediate_result: history.append(intermediate_result.fun))
    return float(res.fun), history, start


@case("control-two-bumps", "ten layers of a perceptron field send the uniform density on the circle to two von "
      "Mises bumps with relative entropy below 1e-3 (nine switches)", "normalising-flow control of the continuity "
      "equation (docs/control.md)", quick=False)
def control_two_bumps(ctx) -> Outcome:
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
    final, history, start = _lbfgs(problem, list(values), 150, 0.01)
    ax = ctx.figure().add_subplot()
    ax.semilogy(history)
    ax.set(xlabel="L-BFGS iteration", ylabel="KL(rho(T) | target)", title="uniform -> two bumps, 10 layers")
    body = ("The shipped example control_two_bumps (docs/control.md) optimised here: 6 tanh units, (W, A, b) per "
            f"layer, 10 layers of [0, 4], K = 64, dt = 0.02, L-BFGS-B, 150 iterations. KL at the start "
            f"{start:.3g}; after 10 iterations {history[10]:.3g}; after 50 {history[50]:.3g}; final {final:.3g}.")
    return Outcome(measured=final, predicted=0.0, tolerance=AtMost(1e-3), body=body, numbers={"history": history})


def _arc(center, axis, half: float, n: int = 5) -> np.ndarray:
    """n points on the great circle through ``center`` along ``axis``, within ``half`` radians of the center."""
    c = np.asarray(center, float) / np.linalg.norm(center)
    a = np.asarray(axis, float) - np.dot(axis, c) * c
    a /= np.linalg.norm(a)
    t = np.linspace(-half, half, n)[:, None]
    return np.cos(t) * c + np.sin(t) * a


@case("control-three-measures", "one transformer, its parameters constant on each of 8 layers, sends three "
      "5-token measures to three targets: summed sliced Wasserstein below 1e-3, on S^1 with (Q, K, V) alone and "
      "on S^2 with (Q, K, V) and a perceptron", "measure-to-measure interpolation by transformers (docs/control.md)",
      quick=False)
def control_three_measures(ctx) -> Outcome:
    """The shipped examples control_three_measures (S^1) and control_three_measures_sphere (S^2), driven here."""
    def circle(angles):
        a = np.asarray(angles, float)
        return np.stack([np.cos(a), np.sin(a)], axis=-1)

    spread = np.linspace(-1, 1, 5)
    cases = {
        "S^1": (circle([0.3 * spread, 2.1 + 0.3 * spread, 4.2 + 0.3 * spread]),
                circle([1.0 + 0.15 * spread, 2.5 + 0.5 * spread, 5.0 + 0.25 * spread]), 0, 150),
        "S^2": (np.array([_arc([1, 0, 0.2], [0, 1, 0], 0.3), _arc([-0.5, 0.85, 0.2], [0, 0, 1], 0.3),
                          _arc([-0.5, -0.85, -0.2], [1, 0, 0], 0.3)]),
                np.array([_arc([0.6, 0.6, 0.5], [0, 0, 1], 0.15), _arc([-0.8, 0.2, 0.6], [0, 1, 0], 0.5),
                          _arc([0.0, -0.7, 0.7], [1, 0, 0], 0.25)]), 8, 450)}
    rows, worst, numbers = [], 0.0, {}
    ax = ctx.figure().add_subplot()
    for name, (x0, y, units, iterations) in cases.items():
        G, n, d = x0.shape
        J, rng = 8, np.random.default_rng(0)
        values = {k: np.tile(np.eye(d), (J, 1, 1, 1)) for k in "QKV"}
        if units:  # the perceptron's random start, drawn as meanfield control draws it (seed 0, scale 0.1)
            first = {"W": 0.1 * rng.standard_normal((d, units)), "A": rng.standard_normal((units, d)),
                     "b": 0.1 * rng.standard_normal(units)}
            for k, scale in (("W", 0.1), ("A", 1.0), ("b", 0.1)):
                values[k] = np.stack([first[k]] + [scale * rng.standard_normal(first[k].shape) for _ in range(J - 1)])
        w = np.full((G, n), 1 / n)
        loss = Systems([SlicedWasserstein((y[g], None), 64, g) for g in range(G)])
        schedule = ParameterSchedule(np.linspace(0, 2, J + 1), {"beta": 1.0, **values}, scheduled=list(values))
        problem = Problem(TokenDynamics(w, "sa", perceptron="tanh" if units else None), schedule, x0, 0.05, loss)
        final, history, start = _lbfgs(problem, list(values), iterations, 0.05)
        worst = max(worst, final)
        numbers[name] = history
        ax.semilogy(history, label=name)
        rows.append(f"| {name} | {', '.join(values)} | {iterations} | {start:.3g} | {history[min(50, len(history) - 1)]:.3g} "
                    f"| {final:.3g} |")
    ax.set(xlabel="L-BFGS iteration", ylabel="summed sliced W_2^2", title="three measures to three targets, 8 layers")
    ax.legend()
    body = ("Three input measures of 5 tokens on arcs move with the same parameters, constant on each of 8 layers "
            "of [0, 2] (SA, beta = 1, Q = K = V = I at the start, dt = 0.05, each measure attending to its own "
            "tokens); the loss sums the sliced W_2^2 (64 fixed directions) to each target arc; L-BFGS-B as in "
            "meanfield control (step 0.05).\n\n"
            "| sphere | optimised | iterations | loss at the start | after 50 | final |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows))
    return Outcome(measured=worst, predicted=0.0, tolerance=AtMost(1e-3), body=body, numbers=numbers)
