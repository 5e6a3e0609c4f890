"""General attention: the density solver with Q, K, V, heads, causal positions, and random heads per layer.

Five measurements (docs/general.md derives what each is compared with):

* selection: symmetric V = Q^T K with a simple top eigenvalue, density on S^2: the mass ends at
  +-v_1; the mass at each pole against the same run done with tokens drawn from the same density;
* synchronisation: V = I, Q^T K positive definite (not a multiple of I), density on the circle with
  a little viscosity: the density gathers into one bump (|first moment| -> 1);
* heads: two heads sharing Q, K against one head with V_1 + V_2 (equal to round-off for SA);
* causal: independent random data at every position: the early positions leave the linear phase first;
* random heads per layer, beta -> 0: the mean overlap of the tokens over seeds against the ODE
  rho' = (1/n + (1 - 1/n) rho)(1 - rho)(1 - (2 + rho)/d), the logistic law rho' = rho (1 - rho) as n, d -> oo.

    python -m meanfield.validation.general_attention [-o REPORT_DIR]   (default REPORT_DIR: validation-out)
"""

import numpy as np
from scipy.integrate import solve_ivp

from ._common import figure, report_dir, save
from meanfield import config
from meanfield.simulation import Simulation
from meanfield.trackers import BlowUpGuard, Recorder

V_SELECT = [[1.0, 0.3, 0.0], [0.3, 0.6, 0.0], [0.0, 0.0, 0.2]]


def _run(sections):
    sim = Simulation(config.from_dict(sections))
    rec = Recorder()
    sim.run([BlowUpGuard(), rec])  # a blow-up raises NumericalError: never a wrong number in silence
    return sim, np.asarray(rec.times), rec


def selection(beta=2.0, modes=24, t_end=8.0, n=2000):
    """(v_1, mass of the density within 30 degrees of +v_1 and -v_1, the same fractions of n tokens drawn
    from the same initial density: the second method is the prediction)."""
    common = dict(model=dict(geometry="sphere", beta=beta), grid=dict(modes=modes),
                  attention=dict(Q=V_SELECT, V=V_SELECT),
                  initial=dict(kind="von_mises", centers=[[0.3, 0.2, 1.0], [-0.5, -0.4, -0.2]],
                               concentrations=[1.0, 1.5], weights=[0.55, 0.45]),
                  time=dict(t_end=t_end, dt=0.02), output=dict(interval=t_end / 10))
    sim, t, _ = _run(common)
    w, vecs = np.linalg.eigh(np.asarray(V_SELECT))
    v1 = vecs[:, -1] * (1.0 if vecs[0, -1] > 0 else -1.0)
    x = sim.geometry.points()
    mass = np.ravel(sim.geometry.weights * sim.rho())
    cos = x @ v1
    cap = np.cos(np.radians(30))
    dens = (float(mass[cos > cap].sum()), float(mass[cos < -cap].sum()))
    tok, _, _ = _run({**common, "model": {**common["model"], "method": "particles"},
                      "particles": dict(n=n, dim=3), "time": dict(t_end=t_end, dt=0.05)})
    c = tok.x @ v1
    toks = (float(np.mean(c > cap)), float(np.mean(c < -cap)))
    return v1, dens, toks


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


def overlap_ode(t, rho0, n, d):
    """The mean overlap's ODE (docs/general.md)."""
    f = lambda _, r: (1 / n + (1 - 1 / n) * r) * (1 - r) * (1 - (2 + r) / d)
    return solve_ivp(f, (0, t[-1]), [rho0], t_eval=t, rtol=1e-11, atol=1e-13).y[0]


def random_heads(n=16, d=64, heads=4, dt=0.0025, t_end=3.0, seeds=32):
    """(times, mean overlap over seeds, its standard error, the ODE from the same start)."""
    curves = []
    for seed in range(seeds):
        sim, t, rec = _run(dict(model=dict(method="particles", geometry="zonal", beta=1e-6), grid=dict(modes=4),
                                particles=dict(n=n, dim=d),
                                attention=dict(heads=heads, Q="random", K="random", V="random", resample=True, seed=seed),
                                initial=dict(kind="random", amplitude=0.0, seed=seed),
                                time=dict(t_end=t_end, dt=dt), output=dict(interval=t_end / 12)))
        curves.append([(np.sum(x @ x.T) - n) / (n * (n - 1)) for x in rec.states])
    c = np.array(curves)
    mean, se = c.mean(0), c.std(0, ddof=1) / np.sqrt(len(c))
    return t, mean, se, overlap_ode(t, float(mean[0]), n, d)


if __name__ == "__main__":
    out = report_dir(__doc__.splitlines()[0])
    numbers = {}
    fig = figure(4)
    v1, dens, toks = selection()
    numbers["selection"] = {"v1": v1.tolist(), "density_mass_near_+v1_-v1": dens, "tokens_fraction_near_+v1_-v1": toks}
    t, m = synchronisation()
    ax = fig.add_subplot(1, 4, 1)
    ax.plot(t, 1 - m)
    ax.set_yscale("log")
    ax.set(xlabel="t", ylabel="1 - |first moment|", title="V = I, Q^T K pos. def.")
    numbers["synchronisation"] = {"first_moment_final": float(m[-1]), "first_moment_start": float(m[0])}
    s, times = causal_lead()
    ax = fig.add_subplot(1, 4, 2)
    ax.plot(s, times, ".-")
    ax.set(xlabel="position s", ylabel="time to leave the linear phase", title="causal: first positions lead")
    from scipy.stats import spearmanr

    numbers["causal"] = {"spearman_time_vs_position": float(spearmanr(s, times)[0]), "first": float(times[0]),
                         "last": float(times[-1])}
    for k, dt in enumerate((0.01, 0.0025)):
        t, mean, se, ode = random_heads(dt=dt)
        ax = fig.add_subplot(1, 4, 3 + k)
        ax.errorbar(t, mean, 2 * se, fmt=".", label="tokens, mean over seeds")
        ax.plot(t, ode, "k-", label="ODE")
        ax.set(xlabel="t = layers x dt", ylabel="mean overlap", title=f"random heads, dt = {dt:g}")
        ax.legend()
        numbers[f"random_heads_dt{dt:g}"] = {"max_abs_diff": float(np.max(np.abs(mean - ode))),
                                             "max_se": float(np.max(se)), "final_mean": float(mean[-1]),
                                             "final_ode": float(ode[-1])}
    save(out, "general_attention", numbers, fig)
