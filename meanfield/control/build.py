"""From a control file to a differentiable problem: the geometry or the tokens, the initial and target measures,
the loss, the schedule with its starting values, and the map between the optimiser's vector and the
parameters."""

from __future__ import annotations


import numpy as np

from ..domains.circle import Circle
from ..domains.sphere import Sphere
from ..domains.zonal import Zonal
from ..errors import ConfigError
from ..gradients import (KL, MMD, DensityDynamics, Energy, Problem, ParameterSchedule, SlicedWasserstein,
                         Squared, Systems, TokenDynamics, Wasserstein)


def geometry_of(spec):
    """The density's geometry."""
    if spec.geometry == "circle":
        return Circle(spec.modes, spec.dealias)
    if spec.geometry == "sphere":
        return Sphere(spec.modes, spec.dealias, backend="ducc0")  # the adjoints are checked with ducc0's transforms
    return Zonal(spec.modes, spec.dim, spec.dealias)


def density_of(geo, m, where: str) -> np.ndarray:
    """Coefficients of [initial] or [target] on the geometry."""
    if m.kind == "uniform":
        return geo.uniform()
    total = sum(m.weights)
    c = np.zeros(geo.spectral_shape, dtype=complex)
    for center, kappa, w in zip(m.centers, m.concentrations, m.weights):
        if geo.name == "sphere" and (not isinstance(center, tuple) or len(center) != 3):
            raise ConfigError(f"{where}.centers: got {center!r}, allowed: unit vectors [x, y, z] on the sphere")
        if geo.name != "sphere" and isinstance(center, tuple):
            raise ConfigError(f"{where}.centers: got {list(center)!r}, allowed: angles (radians) on the "
                              f"{geo.name}" + (" (0: north pole, pi: south pole)" if geo.name == "zonal" else ""))
        c += (w / total) * geo.von_mises(center, kappa)
    return c


def tokens_of(m, d: int, where: str) -> np.ndarray:
    """Unit vectors (n, d) of [initial] or [target]: the given positions, or n drawn uniformly (seed); with
    ``systems``, (systems, n, d)."""
    if m.systems:
        xs = [tokens_of(type(m)(kind="tokens", positions=ps), d, f"{where}.systems[{i}]")
              for i, ps in enumerate(m.systems)]
        if len({x.shape for x in xs}) > 1:
            raise ConfigError(f"{where}.systems: got systems of {sorted({len(x) for x in xs})} tokens, allowed: "
                              "equal numbers")
        return np.array(xs)
    if m.positions:
        x = np.asarray(m.positions, dtype=float)
        if x.ndim == 1 and d == 2:  # angles on the circle
            x = np.stack([np.cos(x), np.sin(x)], axis=1)
        if x.ndim != 2 or x.shape[1] != d or not np.all(np.isfinite(x)) or np.any(np.linalg.norm(x, axis=1) == 0):
            raise ConfigError(f"{where}.positions: got an array of shape {x.shape}, allowed: nonzero points in R^{d} "
                              "(or angles on the circle)")
    else:
        x = np.random.default_rng(m.seed).standard_normal((m.n, d))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def start_values(spec, rng) -> tuple[dict, list]:
    """The schedule's starting values and which of them are scheduled (one per layer)."""
    d, J = spec.d, spec.layers
    values = {}
    if spec.attention:
        values["beta"] = spec.beta
    if spec.method == "density" and (spec.viscosity > 0 or "viscosity" in spec.parameters):
        values["viscosity"] = spec.viscosity
    if spec.method == "tokens" and spec.attention:
        for name in "QKV":
            values[name] = np.stack([np.eye(d)] * spec.heads)
    if spec.perceptron != "none":
        values["W"] = spec.scale * rng.standard_normal((d, spec.units))
        values["A"] = rng.standard_normal((spec.units, d))
        values["b"] = spec.scale * rng.standard_normal(spec.units)
    scheduled = list(spec.scheduled)
    for name in scheduled:  # a scheduled value: the same start on every layer, but for the perceptron's draws
        v = np.asarray(values[name], dtype=float)
        values[name] = np.stack([v] * J) if name not in "WAb" else np.stack(
            [v] + [np.asarray(_redraw(name, v, rng, spec)) for _ in range(J - 1)])
    return values, scheduled


def _redraw(name, v, rng, spec):
    scale = 1.0 if name == "A" else spec.scale
    return scale * rng.standard_normal(v.shape)


def build(spec) -> tuple[Problem, object]:
    """(problem, target) of a control file: the problem's schedule holds the starting values."""
    rng = np.random.default_rng(spec.seed)
    times = np.linspace(0.0, spec.t_end, spec.layers + 1)
    values, scheduled = start_values(spec, rng)
    schedule = ParameterSchedule(times, values, scheduled)
    perceptron = None if spec.perceptron == "none" else spec.perceptron
    if spec.method == "density":
        geo = geometry_of(spec)
        dyn = DensityDynamics(geo, spec.variant, attention=spec.attention, perceptron=perceptron)
        initial = density_of(geo, spec.initial, "initial")
        target = density_of(geo, spec.target, "target")
        target_grid = geo.to_grid(target)
        if spec.loss == "kl":
            if np.min(target_grid) <= 0:
                raise ConfigError(f"target: the target density is not positive on the grid (min "
                                  f"{np.min(target_grid):.3g}); allowed: smaller concentrations or more grid.modes")
            loss = KL(target_grid)
        elif spec.loss == "mmd":
            loss = MMD(target, spec.kappa)
        elif spec.loss in ("w1", "w2"):
            loss = Wasserstein(target_grid, int(spec.loss[1]))
        else:
            loss = Energy(spec.beta)
        shown = target_grid
    else:
        d = spec.d
        x0 = tokens_of(spec.initial, d, "initial")
        if spec.target.kind == "synthetic":
            return _inverse_problem(spec, schedule, x0, perceptron)
        y = tokens_of(spec.target, d, "target")
        w = np.full(x0.shape[:-1], 1 / x0.shape[-2])
        v = np.full(y.shape[:-1], 1 / y.shape[-2])
        dyn = TokenDynamics(w, spec.variant, attention=spec.attention, perceptron=perceptron)
        initial = x0
        if spec.loss == "sliced" and y.shape[-2] != x0.shape[-2]:
            raise ConfigError(f"target.n: got {y.shape[-2]} with {x0.shape[-2]} initial tokens, allowed: equal "
                              "numbers for the sliced Wasserstein loss")

        def one(y, v, g=0):
            return {"mmd": lambda: MMD((y, v), spec.kappa), "w1": lambda: Wasserstein((y, v), 1),
                    "w2": lambda: Wasserstein((y, v), 2), "energy": lambda: Energy(spec.beta),
                    "sliced": lambda: SlicedWasserstein((y, v), spec.projections, spec.loss_seed + g)}[spec.loss]()

        loss = Systems([one(y[g], v[g], g) for g in range(len(y))]) if x0.ndim == 3 else one(y, v)
        shown = y
    if spec.t_end / spec.dt > 1e7:
        raise ConfigError("time.dt: too many steps")
    return Problem(dyn, schedule, initial, spec.dt, loss), shown


def _inverse_problem(spec, schedule, x0, perceptron):
    """The observed trajectory of a synthetic target: the initial tokens run with the target's beta and V (the
    rest of the start schedule), observed at its times with noise, then a loss {t: mean |x(t) - observed|^2}."""
    m, d = spec.target, spec.d
    V = np.asarray(m.V, dtype=float)
    if V.shape != (d, d):
        raise ConfigError(f"target.V: got a {V.shape[0]} x {V.shape[1]} matrix, allowed: {d} x {d}")
    w = np.full(x0.shape[:-1], 1 / x0.shape[-2])
    dyn = TokenDynamics(w, spec.variant, attention=spec.attention, perceptron=perceptron)
    truth = schedule.replace(beta=m.beta, V=np.stack([V] * spec.heads))
    run = Problem(dyn, truth, x0, spec.dt, {t: Squared(x0) for t in m.times}).solve()
    rng = np.random.default_rng(m.seed)
    observed = {}
    for t in m.times:
        y = run.at(t) + m.noise * rng.standard_normal(x0.shape)
        observed[t] = y / np.linalg.norm(y, axis=-1, keepdims=True)
    loss = {t: Squared(y) for t, y in observed.items()}
    return Problem(dyn, schedule, x0, spec.dt, loss), np.array([observed[t] for t in m.times])


def switches(schedule, names) -> int:
    """How many times the scheduled parameters among ``names`` change value from one layer to the next."""
    count = 0
    for k in range(1, schedule.intervals):
        if any(n in schedule.scheduled and not np.array_equal(schedule.values[n][k], schedule.values[n][k - 1])
               for n in names):
            count += 1
    return count


__all__ = ["build", "switches"]
