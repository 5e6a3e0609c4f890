"""`meanfield validate`: run the solver against the theory and write a report.

Every check measures a number, compares it with an independent expectation (the linear theory, docs/theory.md
rates, a quadrature, a convergence order, the particle/PDE sampling rate) and passes or fails.
``--quick`` uses small sizes (well under a minute); the default is larger (a few minutes).
The report: REPORT_DIR/report.md (a table), report.json (the numbers), rates.png.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import config, theory
from .diagnostics import measure_growth_rates, wasserstein1_circle
from .simulation import Simulation
from .trackers import Recorder


@dataclass
class Check:
    """One validation check: what was measured against what, and whether it passed."""

    name: str
    measured: float
    expected: str
    passed: bool
    seconds: float = 0.0


def _solve(sections: dict, record: bool = True):
    sim = Simulation(config.from_dict(sections))
    rec = Recorder()
    sim.run([rec] if record else [])
    return sim, rec.times, rec.states


def _rates_error(sim, t, c):
    """(largest relative error over measured modes, measured (mode,) set)."""
    fits = [f for f in measure_growth_rates(t, c, sim.model) if f.status == "ok"]
    dim = sim.geometry.dim
    worst, seen = 0.0, set()
    for f in fits:
        lam = float(theory.growth_rates([f.mode[0]], sim.model.beta, sim.model.variant, sim.model.viscosity, dim)[0])
        worst = max(worst, abs(f.measured - lam) / abs(lam))
        seen.add(f.mode)
    return worst, seen


def check_theory() -> Check:
    """Circle rates against an adaptive quadrature of the kernel's Fourier coefficients."""
    import warnings

    from scipy.integrate import IntegrationWarning, quad

    warnings.simplefilter("ignore", IntegrationWarning)  # quad's round-off notes at 1e-13: expected
    beta, worst = 9.0, 0.0
    for k in range(1, 10):
        ik = quad(lambda th: math.exp(beta * (math.cos(th) - 1)), 0, math.pi, weight="cos", wvar=k,
                  epsabs=0, epsrel=1e-13)[0] / math.pi
        i0 = quad(lambda th: math.exp(beta * (math.cos(th) - 1)), 0, math.pi, epsabs=0, epsrel=1e-13)[0] / math.pi
        want = k * k * ik / (beta * i0)
        worst = max(worst, abs(theory.growth_rates([k], beta)[0] - want) / want)
    return Check("theory: circle SA rates vs quadrature, beta 9, k = 1..9", worst, "<= 1e-10", worst <= 1e-10)


def check_circle_rates(quick: bool):
    """Every mode of the linear example (beta 9, viscosity 0.02) against the linear theory."""
    K = 32
    sim, t, c = _solve(dict(model=dict(beta=9.0, viscosity=0.02), grid=dict(modes=K),
                            initial=dict(amplitude=1e-7, seed=1),
                            time=dict(t_end=15.0, dt=0.01, stepper="etdrk4"), output=dict(interval=0.1)))
    worst, seen = _rates_error(sim, t, c)
    ok = worst <= 1e-4 and len(seen) == K
    return Check(f"circle SA beta 9, nu 0.02: {len(seen)}/{K} modes measured, max rel. error", worst,
                 "all 32 modes, <= 1e-4", ok), {"time": t, "rho_hat": c, "model": sim.model,
                                                "attrs": dict(geometry=sim.geometry.name, variant=sim.model.variant,
                                                              beta=sim.model.beta, viscosity=sim.model.viscosity,
                                                              modes=K, dim=sim.geometry.dim)}


def check_sphere_rates(quick: bool) -> Check:
    """Every (l, m) of every growing degree on S^2 (beta 20, viscosity 0.01) against the linear theory."""
    L = 16 if quick else 32
    sim, t, c = _solve(dict(model=dict(geometry="sphere", beta=20.0, viscosity=0.01), grid=dict(modes=L),
                            initial=dict(amplitude=1e-9, seed=2),
                            time=dict(t_end=20.0, dt=0.02, stepper="etdrk4"), output=dict(interval=0.5)))
    worst, seen = _rates_error(sim, t, c)
    lam = theory.growth_rates(np.arange(L + 1), 20.0, "sa", 0.01, 3)
    need = {(l, m) for l in range(1, L + 1) if lam[l] > 0 for m in range(l + 1)}
    ok = worst <= 1e-4 and need <= seen
    return Check(f"sphere SA beta 20, nu 0.01, L = {L}: every (l, m) of the {len({l for l, _ in need})} growing "
                 f"degrees measured ({len(need & seen)}/{len(need)}), max rel. error", worst, "<= 1e-4", ok)


def check_zonal_rates(quick: bool) -> Check:
    """Zonal densities on S^{d-1}, d = 8, USA: measured degrees against the linear theory."""
    sim, t, c = _solve(dict(model=dict(geometry="zonal", dim=8, variant="usa", beta=2.0), grid=dict(modes=16),
                            initial=dict(amplitude=1e-8, seed=1),
                            time=dict(t_end=2.0, dt=0.002, stepper="etdrk4"), output=dict(interval=0.04)))
    worst, seen = _rates_error(sim, t, c)
    lstar = theory.most_unstable_mode(2.0, "usa", 0.0, 8)
    return Check(f"zonal S^7 USA beta 2: {len(seen)} degrees measured (l* = {lstar} among them), max rel. error",
                 worst, "<= 1e-4", worst <= 1e-4 and (lstar,) in seen)


def check_order(name: str, order: int) -> Check:
    """Observed order of a stepper on a nonlinear run, against a run with 8x smaller steps."""
    base = dict(model=dict(beta=9.0, viscosity=0.02), grid=dict(modes=24),
                initial=dict(kind="von_mises", centers=[0.5, 2.9], concentrations=[2.0, 3.0], weights=[0.6, 0.4]),
                time=dict(t_end=1.0, stepper=name), output=dict(interval=1.0))
    n0 = {2: 40, 4: 10}[order]
    res = {}
    for n in (n0, 2 * n0, 16 * n0):
        base["time"]["dt"] = 1.0 / n
        res[n] = _solve(base, record=False)[0].c
    e1 = np.max(np.abs(res[n0] - res[16 * n0]))
    e2 = np.max(np.abs(res[2 * n0] - res[16 * n0]))
    slope = math.log2(e1 / e2)
    return Check(f"{name}: observed order when halving dt", slope, f"{order} +- 0.3", abs(slope - order) <= 0.3)


def check_mass() -> Check:
    """Mass through cluster formation (beta 25, viscosity 1e-3)."""
    sim, t, c = _solve(dict(model=dict(beta=25.0, viscosity=1e-3), grid=dict(modes=128),
                            initial=dict(amplitude=1e-4, seed=1),
                            time=dict(t_end=20.0, dt=0.01, stepper="etdrk4"), output=dict(interval=1.0)))
    g = sim.geometry
    err = max(abs(g.integrate(g.to_grid(ci)) - 1) for ci in c)
    return Check("mass through cluster formation (beta 25), max |mass - 1|", float(err), "<= 1e-12", err <= 1e-12)


def check_particles(quick: bool) -> Check:
    """Tokens against the PDE on S^1: W1 falls like n^{-1/2}."""
    sections = dict(model=dict(beta=4.0), grid=dict(modes=64),
                    initial=dict(kind="von_mises", centers=[0.5, 2.8], concentrations=[2.0, 3.0], weights=[0.6, 0.4]),
                    time=dict(t_end=1.0, dt=0.02, stepper="etdrk4"), output=dict(interval=1.0))
    pde = _solve(sections, record=False)[0]
    ns = [30, 300, 3000] if quick else [10, 100, 1000, 10000]
    errs = []
    for n in ns:
        e = []
        for seed in range(8 if n < 1000 else (4 if n < 5000 else 2)):
            s = {**sections, "model": {**sections["model"], "method": "particles"}, "particles": dict(n=n, dim=2),
                 "initial": {**sections["initial"], "seed": seed}, "time": dict(t_end=1.0, dt=0.1)}
            p = Simulation(config.from_dict(s))
            p.run([])
            e.append(wasserstein1_circle(pde.geometry, pde.c, p.x, p.weights))
        errs.append(float(np.mean(e)))
    slope = float(np.polyfit(np.log(ns), np.log(errs), 1)[0])
    return Check(f"particles vs PDE on S^1: slope of W1 against n = {ns[0]}..{ns[-1]}", slope,
                 "in [-0.6, -0.4]", -0.6 <= slope <= -0.4)


def _cell(text: str) -> str:
    """Text for a markdown table cell: a | inside (|mass - 1|) would end the cell."""
    return str(text).replace("|", "\\|")


def run(quick: bool = False, out: str | Path = "validation-report", progress=print) -> list[Check]:
    """Run every check, write the report into ``out``, return the checks."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checks, rates_plot = [], None
    steps = [check_theory, lambda: check_circle_rates(quick), lambda: check_sphere_rates(quick),
             lambda: check_zonal_rates(quick), lambda: check_order("sbdf2", 2), lambda: check_order("etdrk4", 4),
             check_mass, lambda: check_particles(quick)]
    for fn in steps:
        t0 = time.monotonic()
        result = fn()
        if isinstance(result, tuple):
            result, rates_plot = result
        result.seconds = time.monotonic() - t0
        result.measured, result.passed = float(result.measured), bool(result.passed)
        checks.append(result)
        progress(f"{'ok    ' if result.passed else 'FAILED'}  {result.name}: {result.measured:.4g} "
                 f"(expected {result.expected}; {result.seconds:.1f} s)")
    (out / "report.json").write_text(json.dumps([asdict(c) for c in checks], indent=2))
    lines = ["# meanfield validation" + (" (quick)" if quick else ""), "",
             "| check | measured | expected | result |", "|---|---|---|---|"]
    lines += [f"| {_cell(c.name)} | {c.measured:.4g} | {_cell(c.expected)} | {'ok' if c.passed else 'FAILED'} |"
              for c in checks]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    if rates_plot is not None:
        from . import plot

        plot.save(rates_plot, "rates", out / "rates.png", rates_plot["model"])
    return checks
