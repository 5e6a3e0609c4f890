"""Particles against the PDE: the token measure converges to the PDE density like n^{-1/2}.

n tokens are drawn from a smooth initial density (a two-bump von Mises(–Fisher) mixture), evolved
with the weighted-token method to t = 1 (SA, beta = 4, RK4, dt = 0.1), and compared with the
spectral solution at t = 1: on S^1 by the Wasserstein-1 distance, on S^2 by the kernel (MMD)
distance with kernel e^{<x, y>}.  The fitted slope of log(distance) against log(n) should be
close to -1/2 (the sampling error; the time-stepping errors are far below it).  The same on S^1 for
general attention: two heads of random Q, K, V (``HEADS``), the density by the grid's quadrature.

    python -m meanfield.validation.cross_check [-o REPORT_DIR]   (default REPORT_DIR: validation-out)
"""

import numpy as np

from ._common import figure, report_dir, save
from .. import config
from ..analysis.diagnostics import kernel_distance, wasserstein1_circle
from ..simulation.simulation import Simulation


#: Two heads of random Q, K, V (N(0, 1/2) entries, drawn with attention.seed = 3): general attention.
HEADS = dict(heads=2, Q="random", K="random", V="random", seed=3)


def sections(dim, n=1, seed=0, method="particles", attention=None):
    """The run: tokens (``method = "particles"``, n of them drawn with ``seed``) or the density; ``attention``:
    an [attention] section (default Q = K = V = I)."""
    centers = [0.5, 2.8] if dim == 2 else [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    return dict(model=dict(method=method, geometry="circle" if dim == 2 else "sphere", beta=4.0),
                grid=dict(modes=64 if dim == 2 else 48),
                initial=dict(kind="von_mises", centers=centers, concentrations=[2.0, 3.0], weights=[0.6, 0.4],
                             seed=seed),
                particles=dict(n=n, dim=dim),
                time=dict(t_end=1.0, dt=0.1 if method == "particles" else 0.02, stepper="etdrk4"),
                output=dict(interval=1.0), **({"attention": attention} if attention else {}))


def distances(dim, ns, seeds, attention=None):
    """Mean distance between tokens and PDE at t = 1 for each n (averaged over seeds)."""
    pde = Simulation(config.from_dict(sections(dim, method="spectral", attention=attention)))
    pde.run([])
    out = []
    for n, k in zip(ns, seeds):
        d = []
        for s in range(k):
            sim = Simulation(config.from_dict(sections(dim, n, s, attention=attention)))
            sim.run([])
            if dim == 2:
                d.append(wasserstein1_circle(pde.geometry, pde.c, sim.x, sim.weights))
            else:
                d.append(kernel_distance(pde.geometry, pde.c, sim.x, sim.weights))
        out.append(float(np.mean(d)))
    return out


def slope(ns, errs):
    """Least-squares slope of log(err) against log(n)."""
    return float(np.polyfit(np.log(ns), np.log(errs), 1)[0])


if __name__ == "__main__":
    out = report_dir(__doc__.splitlines()[0])
    runs = {(2, False): ([10, 100, 1000, 10000], [4, 4, 4, 2]), (3, False): ([10, 100, 1000, 5000], [3, 3, 3, 1]),
            (2, True): ([10, 100, 1000, 10000], [4, 4, 4, 2])}
    fig = figure()
    ax = fig.add_subplot()
    numbers = {}
    for (dim, attention), (ns, seeds) in runs.items():
        errs = distances(dim, ns, seeds, HEADS if attention else None)
        name = ("W1 on S^1" if dim == 2 else "MMD on S^2") + (", two random heads" if attention else "")
        numbers[name] = {"n": ns, "distance": errs, "slope": slope(ns, errs)}
        ax.loglog(ns, errs, "o-", label=f"{name}: slope {slope(ns, errs):.3f}")
    ax.loglog([10, 10000], [0.5, 0.5 / 31.6], "k--", lw=0.8, label="n^{-1/2}")
    ax.set_xlabel("tokens n")
    ax.set_ylabel("distance to the PDE at t = 1")
    ax.legend()
    save(out, "cross_check", numbers, fig)
