"""General attention: the density solver with Q, K, V, heads, causal positions, and random heads per layer.

Five measurements (docs/general.md derives what each is compared with):

* selection: symmetric positive definite V = Q^T K, inviscid density: the mass ends at +-v_1; on S^1 the
  mass at +v_1 against the initial mass of the half-circle <x, v_1> > 0 plus the first correction in
  1/beta (theory.selection_split_circle), beta from 2 to 2048; on S^2 (handed to tokens when the grid
  stops resolving it) against the initial hemisphere mass;
* synchronisation: V = I, Q^T K positive definite (not a multiple of I), density on the circle with
  a little viscosity: the density gathers into one bump (|first moment| -> 1);
* heads: two heads sharing Q, K against one head with V_1 + V_2 (equal to round-off for SA);
* causal: independent random data at every position: the early positions leave the linear phase first;
* random heads per layer, beta -> 0: the mean overlap of the tokens over seeds against the ODE
  rho' = (1/n + (1 - 1/n) rho)(1 - rho)(1 - (2 + rho)/d), the logistic law rho' = rho (1 - rho) as n, d -> oo.

    python -m meanfield.validation.general_attention [-o REPORT_DIR]   (default REPORT_DIR: validation-out)
"""

import numpy as np

from ._common import figure, report_dir, save
from .. import config
from ..analysis import diagnostics
from ..physics import theory
from ..validate.cases.selection import INITIAL as INITIAL_CIRCLE, V as V_CIRCLE  # the catalogue's setting
from ..physics.general import quadrature_dealias
from ..simulation.simulation import Simulation
from ..simulation.trackers import BlowUpGuard, Recorder

V_SELECT = [[1.0, 0.3, 0.0], [0.3, 0.6, 0.0], [0.0, 0.0, 0.2]]


def _run(sections):
    sim = Simulation(config.from_dict(sections))
    rec = Recorder()
    sim.run([BlowUpGuard(), rec])  # a blow-up raises NumericalError: never a wrong number in silence
    return sim, np.asarray(rec.times), rec


def selection_circle(beta, modes=512, dt=0.002, t_end=2.0):
    """One inviscid density run on S^1 with Q^T K = V = V_CIRCLE: (H_0, the half-mass at t_end, the
    predicted first correction dH, the half-mass over time).  The flux through the half-circle's ends
    has decayed like e^{-2 sigma t}, sigma = (lambda_1^2 - lambda_2^2) / lambda_2 ~ 4, by t_end."""
    sim, t, rec = _run(dict(model=dict(geometry="circle", beta=beta), grid=dict(modes=modes),
                            attention=dict(Q=V_CIRCLE, V=V_CIRCLE), initial=INITIAL_CIRCLE,
                            time=dict(t_end=t_end, dt=dt), output=dict(interval=0.1)))
    v1, h0, dh = theory.selection_split_circle(V_CIRCLE, beta, rec.states[0])
    h = np.array([theory.half_circle_mass(c, v1) for c in rec.states])
    return h0, float(h[-1]), dh, t, h


def hemisphere_mass(geometry, c, v, n=64) -> float:
    """The mass of the density with coefficients c on {x: <x, v> > 0} of S^2, by Gauss–Legendre in
    t = <x, v> and the trapezoid rule around v (exact for band-limited rho with n > degree)."""
    t, wt = np.polynomial.legendre.leggauss(n)
    t, wt = (t + 1) / 2, wt / 2
    e2, e3 = np.linalg.svd(np.asarray(v, dtype=float)[None])[2][1:]  # an orthonormal frame of v's complement
    phi = 2 * np.pi * np.arange(2 * n) / (2 * n)
    s = np.sqrt(1 - t**2)
    x = (t[:, None, None] * v + s[:, None, None] * (np.cos(phi)[None, :, None] * e2 + np.sin(phi)[None, :, None] * e3))
    return float(np.sum(wt[:, None] * (np.pi / n) * geometry.evaluate(c, x.reshape(-1, 3)).reshape(n, 2 * n)))


def selection_sphere(beta, modes=24, t_end=4.0):
    """Inviscid density on S^2 with Q^T K = V = V_SELECT, handed to tokens when the grid no longer resolves
    it: (H_0 the initial mass of <x, v_1> > 0, the tokens' mass there at t_end, the mass within 30 degrees
    of +v_1 and -v_1 at t_end)."""
    common = dict(model=dict(geometry="sphere", beta=beta), grid=dict(modes=modes, dealias=2.0),
                  attention=dict(Q=V_SELECT, V=V_SELECT),
                  initial=dict(kind="von_mises", centers=[[0.3, 0.2, 1.0], [-0.5, -0.4, -0.2]],
                               concentrations=[1.0, 1.5], weights=[0.55, 0.45]),
                  time=dict(t_end=t_end, dt=0.01), longtime=dict(handoff="tokens"))
    heads = [(np.array(V_SELECT), np.eye(3), np.array(V_SELECT))]
    common["grid"]["dealias"] = quadrature_dealias("sphere", modes, beta, heads)
    sim = Simulation(config.from_dict(common))
    v1 = theory.top_eigenvector(V_SELECT)
    h0 = hemisphere_mass(sim.geometry, sim.c, v1)
    sim.run([BlowUpGuard()])
    c, cap = sim.x @ v1, np.cos(np.radians(30))
    w = sim.weights
    return h0, float(w[c > 0].sum()), (float(w[c > cap].sum()), float(w[c < -cap].sum()))


def synchronisation(beta=3.0, modes=64, t_end=40.0):
    """(times, |first moment| of the density) for V = I and Q^T K = A positive definite."""
    sim, t, rec = _run(dict(model=dict(geometry="circle", beta=beta, viscosity=0.01), grid=dict(modes=modes),
                            attention=dict(Q=[[1.0, 0.4], [0.0, 0.6]]),
                            initial=dict(kind="von_mises", centers=[1.0], concentrations=[4.0]),
                            time=dict(t_end=t_end, dt=0.02), output=dict(interval=1.0)))
    m = [abs(2 * np.pi * c[1]) for c in rec.states]  # |int e^{i theta} rho| = 2 pi |c_1|
    return t, np.array(m)


def causal_lead(beta=5.0, modes=16, positions=33, alibi=0.0, t_end=12.0, level=1e-2):
    """(positions s, the time each position's largest mode first exceeds ``level`` x rho_bar)."""
    sim, t, rec = _run(dict(model=dict(geometry="circle", beta=beta), grid=dict(modes=modes, positions=positions),
                            attention=dict(causal=True, alibi=alibi), initial=dict(kind="random", amplitude=1e-4, seed=0),
                            time=dict(t_end=t_end, dt=0.02), output=dict(interval=0.2)))
    amp = np.array([np.max(np.abs(c[:, 1:]), axis=1) * 2 * np.pi for c in rec.states])  # (T, S) relative size
    hit = amp > level
    times = np.where(hit.any(0), t[np.argmax(hit, axis=0)], np.inf)
    return sim.geometry.s, times


def random_heads(n=16, d=64, heads=4, dt=0.0025, t_end=3.0, seeds=32):
    """(times, mean overlap over seeds, its standard error, the ODE from the same start)."""
    curves = []
    for seed in range(seeds):
        sim, t, rec = _run(dict(model=dict(method="particles", geometry="zonal", beta=1e-6), grid=dict(modes=4),
                                particles=dict(n=n, dim=d),
                                attention=dict(heads=heads, Q="random", K="random", V="random", resample=True, seed=seed),
                                initial=dict(kind="random", amplitude=0.0, seed=seed),
                                time=dict(t_end=t_end, dt=dt), output=dict(interval=t_end / 12)))
        curves.append([diagnostics.mean_overlap(x) for x in rec.states])
    c = np.array(curves)
    mean, se = c.mean(0), c.std(0, ddof=1) / np.sqrt(len(c))
    return t, mean, se, theory.mean_overlap_ode(t, float(mean[0]), n, d)


if __name__ == "__main__":
    out = report_dir(__doc__.splitlines()[0])
    numbers = {}
    fig = figure(5)
    ax = fig.add_subplot(1, 5, 1)
    betas = [2.0, 8.0, 32.0, 128.0, 512.0, 2048.0]
    rows = [selection_circle(b) for b in betas]
    measured = [b * (h - h0) for b, (h0, h, _, _, _) in zip(betas, rows)]
    predicted = betas[0] * rows[0][2]
    ax.semilogx(betas, measured, "o-", label="density, beta (H_oo - H_0)")
    ax.axhline(predicted, color="k", ls="--", label="first-order theory")
    ax.set(xlabel="beta", ylabel="beta x (mass at +v_1 - H_0)", title="spectral selection on S^1")
    ax.legend()
    numbers["selection_circle"] = {"H_0": rows[0][0], "beta": betas, "H_inf": [r[1] for r in rows],
                                   "beta_dH_measured": measured, "beta_dH_predicted": predicted}
    sphere = {b: selection_sphere(b) for b in (2.0, 8.0, 32.0)}
    numbers["selection_sphere"] = {str(b): {"H_0": h0, "H_inf": h, "caps_+v1_-v1": caps}
                                   for b, (h0, h, caps) in sphere.items()}
    t, m = synchronisation()
    ax = fig.add_subplot(1, 5, 2)
    ax.plot(t, 1 - m)
    ax.set_yscale("log")
    ax.set(xlabel="t", ylabel="1 - |first moment|", title="V = I, Q^T K pos. def.")
    numbers["synchronisation"] = {"first_moment_final": float(m[-1]), "first_moment_start": float(m[0])}
    s, times = causal_lead()
    ax = fig.add_subplot(1, 5, 3)
    ax.plot(s, times, ".-")
    ax.set(xlabel="position s", ylabel="time to leave the linear phase", title="causal: first positions lead")
    from scipy.stats import spearmanr

    numbers["causal"] = {"spearman_time_vs_position": float(spearmanr(s, times)[0]), "first": float(times[0]),
                         "last": float(times[-1])}
    for k, dt in enumerate((0.01, 0.0025)):
        t, mean, se, ode = random_heads(dt=dt)
        ax = fig.add_subplot(1, 5, 4 + k)
        ax.errorbar(t, mean, 2 * se, fmt=".", label="tokens, mean over seeds")
        ax.plot(t, ode, "k-", label="ODE")
        ax.set(xlabel="t = layers x dt", ylabel="mean overlap", title=f"random heads, dt = {dt:g}")
        ax.legend()
        numbers[f"random_heads_dt{dt:g}"] = {"max_abs_diff": float(np.max(np.abs(mean - ode))),
                                             "max_se": float(np.max(se)), "final_mean": float(mean[-1]),
                                             "final_ode": float(ode[-1])}
    save(out, "general_attention", numbers, fig)
