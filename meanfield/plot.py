"""Figures from a history (matplotlib, Agg backend: no display needed).

Kinds: ``kymograph`` (rho against angle and t: circle, zonal), ``sphere`` (a snapshot on S^2,
orthographic and Mollweide), ``energy``, ``spectrum`` (|rho_k| or the degree power against t),
``rates`` (measured growth rates over the theory).  ``auto``: sphere on S^2, else kymograph.
"""

from __future__ import annotations

import math

import numpy as np

KINDS = ("kymograph", "sphere", "energy", "spectrum", "rates")


def _figure(size=(7, 4.5)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=size, dpi=120)


def _snapshot(h, time):
    """Index of the snapshot nearest ``time`` (None: the last)."""
    t = h["time"]
    return t.size - 1 if time is None else int(np.argmin(np.abs(t - time)))


def kymograph(h, fig, time=None):
    """Density against angle (theta on the circle, colatitude for zonal runs) and time."""
    ax = fig.add_subplot()
    angle, label = (h["theta"], "theta") if "theta" in h else (h["colatitude"], "colatitude")
    im = ax.pcolormesh(angle, h["time"], h["rho"], shading="auto", cmap="magma")
    fig.colorbar(im, ax=ax, label="rho")
    ax.set_xlabel(label)
    ax.set_ylabel("t")
    ax.set_title("token density")


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
    """Scaled interaction energy e^{-beta} E (and free energy for USA) against time."""
    ax = fig.add_subplot()
    d = h["diagnostics"]
    ax.plot(h["time"], d["energy"], label="exp(-beta) E")
    if "free_energy" in d:
        ax.plot(h["time"], d["free_energy"], "--", label="exp(-beta) F")
    ax.set_xlabel("t")
    ax.legend()
    ax.set_title("energy")


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


def save(h, kind, path, model=None, time=None) -> str:
    """Draw ``kind`` for history ``h`` into ``path``; returns the kind drawn ("auto" resolved)."""
    kind = resolve_kind(h, kind)
    if kind == "sphere" and "longitude" not in h:
        from .errors import ConfigError

        raise ConfigError(f"--kind: got 'sphere' for a {h['attrs'].get('geometry')} run, allowed: kymograph, "
                          "energy, spectrum, rates")
    if kind == "kymograph" and "longitude" in h:
        from .errors import ConfigError

        raise ConfigError("--kind: got 'kymograph' for a sphere run, allowed: sphere, energy, spectrum, rates")
    plt, fig = _figure((10, 4.5) if kind == "sphere" else (7, 4.5))
    try:
        if kind == "rates":
            rates(h, fig, model)
        else:
            {"kymograph": kymograph, "sphere": sphere, "energy": energy, "spectrum": spectrum}[kind](h, fig, time)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return kind
