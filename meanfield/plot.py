"""Figures from a history (matplotlib, Agg backend: no display needed).

Kinds: ``kymograph`` (rho against angle and t: circle, zonal), ``sphere`` (a snapshot on S^2,
orthographic and Mollweide), ``energy``, ``clusters`` (the cluster count and the energy staircase of
a long run), ``spectrum`` (|rho_k| or the degree power against t), ``rates`` (measured growth rates
over the theory).  ``auto``: sphere on S^2, else kymograph.  Runs with log-spaced snapshots are
drawn over log-time; a hand-off to tokens is marked.
"""

from __future__ import annotations

import math
import os

import numpy as np

KINDS = ("kymograph", "sphere", "energy", "clusters", "spectrum", "rates")


def _figure(size=(7, 4.5)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=size, dpi=120)


def _snapshot(h, time):
    """Index of the snapshot nearest ``time`` (None: the last)."""
    t = h["time"]
    return t.size - 1 if time is None else int(np.argmin(np.abs(t - time)))


def _log_time(h) -> bool:
    """Draw over log-time: log-spaced snapshots, or a run long enough to need it."""
    t = h["time"]
    return "spacing = \"log\"" in str(h["attrs"].get("config", "")) or (t.size > 2 and t[-1] > 1e3 * t[1])


def _mark_handoff(ax, h, vertical: bool = True) -> None:
    if "handoff_time" in h["attrs"] and float(h["attrs"]["handoff_time"]) > 0:
        th = float(h["attrs"]["handoff_time"])
        (ax.axvline if vertical else ax.axhline)(th, color="0.5", ls="--", lw=0.8, label=f"hand-off to tokens, t = {th:.4g}")


def kymograph(h, fig, time=None):
    """Density against angle (theta on the circle, colatitude for zonal runs) and time; over log-time
    for long runs, with the hand-off marked and the clusters' positions (dot size ~ mass)."""
    ax = fig.add_subplot()
    angle, label = (h["theta"], "theta") if "theta" in h else (h["colatitude"], "colatitude")
    t, rho = h["time"], h["rho"]
    what = "rho"
    if h["attrs"].get("geometry") == "zonal":
        # mass per unit colatitude: on S^{d-1} the density of a cluster on a pole is ~ 1 / sin^{d-2}
        from .domains.zonal import sphere_area

        d = int(h["attrs"].get("dim", 3))
        rho = rho * sphere_area(d - 1) * np.sin(angle) ** (d - 2)
        what = "mass per unit colatitude"
    log = _log_time(h)
    if log:
        keep = t > 0
        t, rho = t[keep], rho[keep]
        ax.set_yscale("log")
    # colours up to the 99th percentile: point masses (on the poles of S^{d-1} above all) would
    # otherwise leave the rest of the picture black; what lies above is drawn saturated
    top = max(float(np.quantile(rho, 0.99)), 2.0 * float(np.mean(rho)))
    im = ax.pcolormesh(angle, t, np.minimum(rho, top), shading="nearest", cmap="magma",
                       norm=__import__("matplotlib").colors.PowerNorm(0.5, vmin=0, vmax=top))
    fig.colorbar(im, ax=ax, label=what + (" (saturated above)" if top < rho.max() else ""))
    if "cluster_position" in h:
        pos, mass = h["cluster_position"], h["cluster_mass"]
        tt = np.repeat(h["time"][:, None], mass.shape[1], axis=1)
        ok = np.isfinite(mass) & (tt > 0 if log else True)
        if "theta" in h:
            ang = np.mod(np.arctan2(pos[..., 1], pos[..., 0]), 2 * math.pi)
        else:
            ang = np.arccos(np.clip(pos[..., -1], -1, 1))
        ax.scatter(ang[ok], tt[ok], s=12 * np.sqrt(mass[ok]), c="cyan", lw=0, alpha=0.6, label="clusters")
    _mark_handoff(ax, h, vertical=False)
    ax.set_xlabel(label)
    ax.set_ylabel("t" + (" (log scale)" if log else ""))
    ax.set_title(_title(h, "density" + (" and clusters" if "cluster_position" in h else "")))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=7)


def _title(h, what: str) -> str:
    a = h["attrs"]
    return (f"{what}: {a.get('geometry')}, {str(a.get('variant', '')).upper()}, beta = {float(a.get('beta', 0)):g}, "
            f"viscosity = {float(a.get('viscosity', 0)):g}")


def sphere(h, fig, time=None):
    """One snapshot on S^2: orthographic view centred on the density's maximum, and Mollweide."""
    i = _snapshot(h, time)
    rho = h["rho"][i]
    th, ph = h["colatitude"], h["longitude"]
    T, P = np.meshgrid(th, np.append(ph, 2 * math.pi), indexing="ij")
    R = np.concatenate([rho, rho[:, :1]], axis=1)
    X = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)])
    j = np.unravel_index(np.argmax(rho), rho.shape)
    v = X[:, j[0], j[1]]
    e1 = np.cross([0.0, 0.0, 1.0], v) if abs(v[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(v, e1)
    depth = np.tensordot(v, X, axes=1)
    vmin, vmax = float(rho.min()), float(rho.max())
    ax = fig.add_subplot(1, 2, 1)
    ax.pcolormesh(np.tensordot(e1, X, axes=1), np.tensordot(e2, X, axes=1),
                  np.where(depth > 0, R, np.nan), shading="gouraud", cmap="magma", vmin=vmin, vmax=vmax)
    ax.add_patch(__import__("matplotlib").patches.Circle((0, 0), 1, fill=False, lw=0.8))
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"orthographic, t = {h['time'][i]:.4g}")
    ax = fig.add_subplot(1, 2, 2, projection="mollweide")
    lon = np.where(P > math.pi, P - 2 * math.pi, P)
    order = np.argsort(lon[0])
    im = ax.pcolormesh(lon[:, order], math.pi / 2 - T[:, order], R[:, order], shading="auto",
                       cmap="magma", vmin=vmin, vmax=vmax)
    ax.grid(True, lw=0.3)
    ax.set_xticklabels([])
    ax.set_title("Mollweide")
    fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.05, pad=0.08, label="rho")


def energy(h, fig, time=None):
    """Scaled interaction energy e^{-beta} E (and free energy for USA) against time (log-time for long runs)."""
    ax = fig.add_subplot()
    d = h["diagnostics"]
    t = h["time"]
    keep = t > 0 if _log_time(h) else np.ones(t.size, bool)
    ax.plot(t[keep], d["energy"][keep], label="exp(-beta) E")
    if "free_energy" in d:
        ax.plot(t[keep], d["free_energy"][keep], "--", label="exp(-beta) F")
    if _log_time(h):
        ax.set_xscale("log")
    _mark_handoff(ax, h)
    ax.set_xlabel("t")
    ax.legend()
    ax.set_title(_title(h, "energy"))


def clusters(h, fig, time=None):
    """The long run at a glance, over log-time: the number of clusters (a staircase, one step per
    merger) and the energy 2 beta e^{-beta} E, which on a plateau of well-separated clusters equals
    the sum of their squared masses (drawn as dots from the cluster diagnostics)."""
    d = h["diagnostics"]
    if "n_clusters" not in d:
        from .errors import ConfigError

        raise ConfigError("--kind: got 'clusters' for a history without cluster diagnostics (written by an older "
                          "meanfield), allowed: kymograph, energy, spectrum, rates")
    t = h["time"]
    log = _log_time(h)
    keep = t > 0 if log else np.ones(t.size, bool)
    beta = float(h["attrs"].get("beta", 1.0))
    ax1 = fig.add_subplot(2, 1, 1)
    ax1.step(t[keep], d["n_clusters"][keep], where="post", color="C0")
    ax1.set_ylabel("clusters")
    ax1.set_title(_title(h, "clusters"))
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax1)
    ax2.plot(t[keep], 2 * beta * d["energy"][keep], color="C3", label="2 beta exp(-beta) E")
    if "cluster_mass" in h:
        m = np.nan_to_num(h["cluster_mass"], nan=0.0)
        ax2.plot(t[keep], np.sum(m * m, axis=1)[keep], ".", ms=3, color="k", label="sum of squared cluster masses")
    ax2.set_ylabel("energy")
    ax2.set_xlabel("t")
    for ax in (ax1, ax2):
        _mark_handoff(ax, h)
        if log:
            ax.set_xscale("log")
    ax2.legend(fontsize=7)


def spectrum(h, fig, time=None):
    """log10 of |rho_k| / rho_0 (circle, zonal) or of the degree power sqrt(sum_m |rho_lm|^2) / rho_00."""
    ax = fig.add_subplot()
    c = np.abs(h["rho_hat"])
    if "degree" in h:  # S^2: power per degree, m > 0 counted twice (real field)
        l, m = h["degree"], h["order"]
        w = np.where(m > 0, 2.0, 1.0)
        power = np.stack([np.sqrt(np.sum(w[l == k] * c[:, l == k] ** 2, axis=1)) for k in range(l.max() + 1)], 1)
        modes, label = np.arange(l.max() + 1), "degree l"
    else:
        power, modes, label = c, h["mode"], "mode"
    rel = power[:, 1:] / power[:, :1]
    top = np.log10(max(float(rel.max()), 1e-300))
    im = ax.pcolormesh(modes[1:], h["time"], np.log10(np.maximum(rel, 1e-300)), shading="auto",
                       cmap="viridis", vmin=max(-16.0, top - 16), vmax=top)
    fig.colorbar(im, ax=ax, label="log10 (relative to mode 0)")
    ax.set_xlabel(label)
    ax.set_ylabel("t")
    ax.set_title("spectrum")


def rates(h, fig, model, time=None):
    """Measured growth rates against theory."""
    from . import theory
    from .diagnostics import measure_growth_rates

    fits = [f for f in measure_growth_rates(h["time"], h["rho_hat"], model) if f.status == "ok"]
    g = model.geometry
    k = np.arange(1, g.modes + 1)
    lam = theory.growth_rates(k, model.beta, model.variant, model.viscosity, g.dim)
    ax = fig.add_subplot()
    ax.plot(k, lam, "-", color="0.6", label="theory (SPEC 3)")
    ax.plot([f.mode[0] for f in fits], [f.measured for f in fits], "o", ms=4, label="measured")
    ax.axhline(0, color="0.8", lw=0.8)
    ax.set_xlim(0, max([f.mode[0] for f in fits], default=10) * 1.5 + 1)
    ax.set_xlabel("mode" if g.dim == 2 else "degree l")
    ax.set_ylabel("growth rate")
    ax.legend()


def resolve_kind(h, kind: str) -> str:
    """``auto`` -> the natural view of the run: ``sphere`` on S^2, else ``kymograph``."""
    if kind == "auto":
        return "sphere" if "longitude" in h else "kymograph"
    return kind


def figure_formats() -> set[str]:
    """File extensions matplotlib can write (png, pdf, svg, ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return set(FigureCanvasAgg(Figure()).get_supported_filetypes())


def figure_path(path) -> tuple["Path", str]:
    """The file a figure named ``path`` is written to and its format: a path without an extension
    gets .png (as matplotlib would add it); ConfigError for an extension matplotlib cannot write."""
    from pathlib import Path

    from .errors import ConfigError

    path = Path(path)
    formats = figure_formats()
    fmt = path.suffix[1:].lower()
    if not path.suffix:
        if os.path.lexists(path):  # a device, directory or file named like that: writing next to it surprises
            raise ConfigError(f"-o: {str(path)!r} exists and has no extension (the figure would go to "
                              f"{path.name + '.png'!r}); allowed: a figure file name with its extension")
        return path.with_name(path.name + ".png"), "png"
    if fmt not in formats:
        raise ConfigError(f"-o: got {str(path)!r}, allowed: a figure file ending in "
                          + ", ".join(f".{f}" for f in sorted(formats)) + " (no extension: .png)")
    return path, fmt


def save(h, kind, path, model=None, time=None, fmt=None) -> str:
    """Draw ``kind`` for history ``h`` into ``path`` (format ``fmt``, default: from the extension);
    returns the kind drawn ("auto" resolved)."""
    kind = resolve_kind(h, kind)
    if kind == "sphere" and "longitude" not in h:
        from .errors import ConfigError

        raise ConfigError(f"--kind: got 'sphere' for a {h['attrs'].get('geometry')} run, allowed: kymograph, "
                          "energy, spectrum, rates")
    if kind == "kymograph" and "longitude" in h:
        from .errors import ConfigError

        raise ConfigError("--kind: got 'kymograph' for a sphere run, allowed: sphere, energy, spectrum, rates")
    plt, fig = _figure({"sphere": (10, 4.5), "clusters": (7, 6)}.get(kind, (7, 4.5)))
    try:
        if kind == "rates":
            rates(h, fig, model)
        else:
            {"kymograph": kymograph, "sphere": sphere, "energy": energy, "clusters": clusters,
             "spectrum": spectrum}[kind](h, fig, time)
        fig.tight_layout()
        fig.savefig(path, format=fmt)
    finally:
        plt.close(fig)
    return kind
