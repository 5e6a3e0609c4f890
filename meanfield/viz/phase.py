"""Phase diagrams of clustering from a sweep table (``meanfield plot TABLE --kind phase``).

The (t, beta) diagram: for every beta of the sweep, the number of clusters over time averaged over the
runs with that beta (seeds, typically), read from each run's history (/time, /diagnostics/n_clusters;
0 while no cluster is detected).  Overlaid: the end of the linear phase log(1/eps) / lambda*(beta) (eps
the initial perturbation: initial.amplitude for a density, n^{-1/2} for n iid tokens), and beside it the
number of clusters on the first plateau against k*(beta), the most unstable mode (on the circle the
predicted number of clusters).
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.ticker import NullLocator

from .. import config as _config
from ..physics import theory
from ..errors import ConfigError
from ..io import read_history, snapshot_before


def _beta_column(df) -> str:
    for name in ("model.beta", "beta"):
        if name in df.columns:
            return name
    raise ConfigError(f"TABLE: no model.beta column (got {', '.join(map(str, df.columns))}), allowed: a sweep "
                      "table over model.beta (meanfield sweep with model.beta among the axes)")


def _run(path: str):
    """(time, value, config) of one history, read and checked by the verified reader: its number of clusters, or
    for a batch (``particles.batch > 1``) the fraction of clustered pairs averaged over its systems, with the
    systems' median cluster count as a fourth entry."""
    try:
        h = read_history(path, key="TABLE")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; rerun the sweep (it reruns runs whose history is gone) or drop its row") from None
    d = h["diagnostics"]
    t, cfg = np.asarray(h["time"], dtype=float), _config.loads(str(h["attrs"]["config"]))
    if "pair_fraction" in d:
        return t, np.mean(d["pair_fraction"], axis=1), cfg, np.median(d["cluster_count"], axis=1)
    if "n_clusters" not in d:
        raise ConfigError(f"TABLE: the history {path!r} has no /diagnostics/n_clusters, allowed: a meanfield history")
    return t, np.asarray(d["n_clusters"], dtype=float), cfg, None


def _perturbation(cfg) -> float:
    """The initial departure from uniform that the linear phase amplifies."""
    if cfg.model.method == "particles":
        return 1.0 / math.sqrt(cfg.particles.n)
    return float(cfg.initial.amplitude) if cfg.initial.kind == "random" else math.nan


def phase_data(df, points: int = 240) -> dict:
    """The diagram's arrays from a sweep table (pandas DataFrame): betas, times, the mean number of clusters
    (beta x time), the runs per beta, the linear phase's end and k* per beta, and the plateau's clusters."""
    col = _beta_column(df)
    done = df[df["status"] == "done"]
    if done.empty:
        raise ConfigError("TABLE: no run with status 'done', allowed: a table with finished runs")
    pairs = dict.fromkeys(zip(done[col], done["path"]))  # seeds a sweep batched share one history: read it once
    runs = [(float(b), *_run(p)) for b, p in pairs]
    batched = {r[4] is not None for r in runs}
    if len(batched) > 1:
        raise ConfigError("TABLE: batched and single runs in one table, allowed: one kind (a sweep batches seeds "
                          "only where they are consecutive: sweep them as a range)")
    if batched == {True}:  # the peers' diagram: clustered pairs over (t, beta), the median cluster count at the end
        return _batch_data(runs)
    runs = [r[:4] for r in runs]
    t_end = min(float(r[1][-1]) for r in runs)
    first = min(float(r[1][r[1] > 0][0]) for r in runs if np.any(r[1] > 0))
    log = any(r[3].output.spacing == "log" for r in runs) and t_end / first > 1e3
    times = np.geomspace(first, t_end, points) if log else np.linspace(0.0, t_end, points)
    betas = np.array(sorted({r[0] for r in runs}))
    grid = np.zeros((betas.size, times.size))
    count = np.zeros(betas.size, dtype=int)
    t_lin, k_star, plateau, plateau_sd = (np.full(betas.size, math.nan) for _ in range(4))
    per_beta: dict[int, list] = {i: [] for i in range(betas.size)}
    for beta, t, nc, cfg in runs:
        i = int(np.searchsorted(betas, beta))
        k = np.clip(snapshot_before(t, times), 0, t.size - 1)
        grid[i] += nc[k]
        count[i] += 1
        per_beta[i].append((t, nc, cfg))
    grid /= count[:, None]
    for i, beta in enumerate(betas):
        cfg = per_beta[i][0][2]
        eps = _perturbation(cfg)
        variant, nu, dim = cfg.model.variant, cfg.model.viscosity, cfg.dim
        try:
            if 0 < eps < 1:
                t_lin[i] = theory.linear_phase_end(eps, beta, variant, nu, dim)
            k_star[i] = theory.most_unstable_mode(beta, variant, nu, dim)
        except ConfigError:
            pass
        if math.isfinite(t_lin[i]):  # the first plateau: half a linear phase after its end, or the last snapshot
            at = min(1.5 * t_lin[i], t_end)
            vals = [nc[max(0, int(snapshot_before(t, at)))] for t, nc, _ in per_beta[i]]
            plateau[i], plateau_sd[i] = float(np.mean(vals)), float(np.std(vals))
    return dict(betas=betas, times=times, clusters=grid, runs=count, t_lin=t_lin, k_star=k_star, plateau=plateau,
                plateau_sd=plateau_sd, log_time=log, dim=runs[0][3].dim, method=runs[0][3].model.method)


def _batch_data(runs) -> dict:
    """The diagram of batched runs: betas, their snapshot times, the mean fraction of clustered pairs
    (beta x time) and the median cluster count at the last snapshot, per beta."""
    runs = sorted(runs, key=lambda r: r[0])
    betas = np.array([r[0] for r in runs])
    if np.unique(betas).size != betas.size:
        raise ConfigError("TABLE: more than one batched run per beta, allowed: one (its systems are the seeds: sweep "
                          "consecutive seeds)")
    times = runs[0][1]
    if any(r[1].shape != times.shape or not np.allclose(r[1], times) for r in runs):
        raise ConfigError("TABLE: the batched runs have different snapshot times, allowed: one schedule for all")
    return dict(betas=betas, times=times, pairs=np.stack([r[2] for r in runs]),
                final_clusters=np.array([r[4][-1] for r in runs]), systems=runs[0][3].particles.batch,
                n=runs[0][3].particles.n, dim=runs[0][3].dim, batch=True)


def _draw_batch(d, fig) -> None:
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    b = d["betas"]
    mesh = ax.pcolormesh(_edges(d["times"], False), _edges(b, False), d["pairs"], shading="flat", cmap="RdBu_r")
    fig.colorbar(mesh, ax=ax, label="fraction of pairs with <x_i, x_j> > 1 - 1e-3")
    ax.set(xlabel="t", ylabel="beta")
    ax.set_title(f"clustered pairs over (t, beta): {d['systems']} systems of n = {d['n']} tokens per beta, "
                 f"S^{d['dim'] - 1}", fontsize=9)
    bx.plot(b, d["final_clusters"], "o-", ms=3)
    bx.set(xlabel="beta", ylabel=f"median cluster count at t = {d['times'][-1]:.3g}")
    bx.set_title("rank of the Gram matrix > 1 - 1e-4", fontsize=9)


def draw(df, fig) -> None:
    """Draw the phase diagram of a sweep table on the matplotlib Figure ``fig``: the number of clusters over
    (t, beta), or for batched runs the peers' fraction of clustered pairs."""
    d = phase_data(df)
    if d.get("batch"):
        _draw_batch(d, fig)
        return
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    b = d["betas"]
    log_beta = b.size > 2 and b.min() > 0 and b.max() / b.min() > 8
    edges_b = _edges(b, log_beta)
    edges_t = _edges(d["times"], d["log_time"])
    mesh = ax.pcolormesh(edges_t, edges_b, d["clusters"], shading="flat", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="mean number of clusters")
    ok = np.isfinite(d["t_lin"])
    if ok.any():
        ax.plot(d["t_lin"][ok], b[ok], "w--", lw=1.5, label="end of the linear phase log(1/eps) / lambda*")
        ax.legend(loc="upper right", fontsize=7, framealpha=0.6)
    ax.set(xlabel="t", ylabel="beta", xscale="log" if d["log_time"] else "linear", yscale="log" if log_beta else "linear",
           xlim=(edges_t[0], edges_t[-1]))
    what = "tokens" if d["method"] == "particles" else "density"
    ax.set_title(f"clustering over (t, beta): {what}, S^{d['dim'] - 1}, {int(d['runs'].sum())} runs "
                 f"({d['runs'].min()}-{d['runs'].max()} per beta)", fontsize=9)
    if log_beta:  # label the swept betas themselves: log-axis tick labels collide on a short range
        ax.set_yticks(b, [f"{x:.3g}" for x in b], minor=False, fontsize=7)
        ax.yaxis.set_minor_locator(NullLocator())
    okp = np.isfinite(d["plateau"])
    bx.errorbar(b[okp], d["plateau"][okp], yerr=d["plateau_sd"][okp], fmt="o", ms=4, label="runs: mean +- sd")
    if d["dim"] == 2:
        bx.plot(b, d["k_star"], "k-", drawstyle="steps-mid", label="k*(beta)")
    bx.set(xlabel="beta", ylabel="clusters on the first plateau", xscale="log" if log_beta else "linear")
    if log_beta:
        bx.set_xticks(b[::2], [f"{x:.3g}" for x in b[::2]], minor=False, fontsize=7)
        bx.xaxis.set_minor_locator(NullLocator())
    bx.set_title("at 1.5 x the linear phase's end", fontsize=9)
    bx.legend(fontsize=7)


def save(df, path, fmt: str | None = None) -> None:
    """Draw the phase diagram of the sweep table ``df`` into ``path`` (format ``fmt``, default: from the
    extension)."""
    from .plot import _figure

    plt, fig = _figure((12, 4.8))
    try:
        draw(df, fig)
        fig.savefig(path, format=fmt, bbox_inches="tight")
    finally:
        plt.close(fig)


def _edges(x: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around the centres x (geometric midpoints on a log axis)."""
    if x.size == 1:
        return np.array([x[0] * 0.9, x[0] * 1.1]) if log else np.array([x[0] - 0.5, x[0] + 0.5])
    y = np.log(x) if log else x
    mid = (y[1:] + y[:-1]) / 2
    e = np.concatenate([[y[0] - (mid[0] - y[0])], mid, [y[-1] + (y[-1] - mid[-1])]])
    return np.exp(e) if log else e
