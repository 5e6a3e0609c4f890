"""Figures from a history (matplotlib, Agg backend: no display needed).

Kinds: ``kymograph`` (rho against angle and t: circle, zonal), ``sphere`` (a snapshot on S^2,
orthographic and Mollweide), ``energy``, ``clusters`` (the cluster count and the energy staircase of
a long run), ``spectrum`` (|rho_k| or the degree power against t), ``rates`` (measured growth rates
over the theory), ``positions`` (a causal density over prompt positions), ``overlap`` (the tokens' mean
pairwise overlap).  ``auto``: positions for causal runs, overlap for random heads per layer, sphere on
S^2, else kymograph.  Runs with log-spaced snapshots are drawn over log-time; a hand-off to tokens is marked.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..analysis import diagnostics
from ..analysis.rates import model_of
from ..errors import ConfigError
from .display import SMOOTHED, display_density, smoothed_rows
from ..io import text as _text
from ..physics import theory

#: At most this many live tokens are drawn as what they are, weighted Dirac masses (marker area ~ weight), with
#: no density beneath: smoothing a few point masses at the grid's resolution would draw each as a wide blob.
FEW_TOKENS = 64
#: Many tokens are drawn over their density estimate as a faint sample of at most this many dots.
DOTS = 2000

KINDS = ("kymograph", "sphere", "energy", "clusters", "spectrum", "rates", "positions", "overlap")


def _figure(size=(7, 4.5)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=size, dpi=120)


def _snapshot(h, time):
    """Index of the snapshot nearest ``time`` (None: the last).  A time outside the snapshots' span is refused
    (drawing the last one instead would say nothing); inside it the nearest snapshot is drawn, its time in
    the title."""
    t = h["time"]
    if time is None:
        return t.size - 1
    check_time(h, time)
    return int(np.argmin(np.abs(t - time)))


def check_time(h, time) -> None:
    """ConfigError (one line) when ``time`` (``--time``) lies outside the history's snapshots."""
    t = h["time"]
    lo, hi = float(t[0]), float(t[-1])
    if not (math.isfinite(time) and lo - 1e-9 * max(1.0, abs(lo)) <= time <= hi * (1 + 1e-9) + 1e-12):
        raise ConfigError(f"--time: got {time:g}, allowed: a time within the history's snapshots, {lo:g} .. {hi:.6g}")


def _mark_time(ax, h, time, vertical: bool = True) -> None:
    """A dashed line at the snapshot drawn for ``--time`` (on figures over all times)."""
    if time is None:
        return
    tt = float(h["time"][_snapshot(h, time)])
    (ax.axvline if vertical else ax.axhline)(tt, color="0.3", lw=0.8, ls="--", label=f"--time: t = {tt:.4g}")


def _log_time(h) -> bool:
    """Draw over log-time: log-spaced snapshots, or a run long enough to need it."""
    t = h["time"]
    return "spacing = \"log\"" in str(h["attrs"].get("config", "")) or (t.size > 2 and t[-1] > 1e3 * t[1])


def _mark_handoff(ax, h, vertical: bool = True) -> None:
    if "handoff_time" in h["attrs"] and float(h["attrs"]["handoff_time"]) > 0:
        th = float(h["attrs"]["handoff_time"])
        (ax.axvline if vertical else ax.axhline)(th, color="0.5", ls="--", lw=0.8, label=f"hand-off to tokens, $t = {th:.4g}$")


def parameters(h) -> str:
    """The run's parameters in mathtext: domain, attention, beta, viscosity, resolution or tokens."""
    a = h["attrs"]
    geometry, d = _text(a.get("geometry", "")), int(a.get("dim", 2))
    domain = {"circle": "$S^1$", "sphere": "$S^2$"}.get(geometry, f"$S^{{{d - 1}}}$ (zonal)")
    cfg = _stored_config(a)
    layers = len(cfg.get("schedule", {}).get("times", []))
    beta = f"$\\beta = {float(a.get('beta', 0)):g}$"
    if layers and cfg.get("schedule", {}).get("beta"):
        beta = f"$\\beta$ per layer ({layers} layers)"
    parts = [domain, _text(a.get("variant", "")).upper(), beta, f"$\\nu = {float(a.get('viscosity', 0)):g}$"]
    mlp = cfg.get("perceptron", {})
    if mlp.get("activation", "none") != "none":
        parts.append(f"perceptron ({mlp['activation']}, {len(mlp.get('b', []))} units)")
    if _text(a.get("method", "spectral")) == "particles":
        parts.append(f"$n = {int(a.get('n_tokens', 0))}$ tokens")
    else:
        parts.append(f"$K = {int(a.get('modes', 0))}$" if geometry == "circle" else f"$L = {int(a.get('modes', 0))}$")
    return ", ".join(parts)


def _stored_config(attrs) -> dict:
    """The run's config as stored (a dict of sections; {} if it cannot be read: the title then says less)."""
    import tomllib

    try:
        return tomllib.loads(_text(attrs.get("config", "")))
    except (tomllib.TOMLDecodeError, TypeError, ValueError):
        return {}


def _title(ax, h, what: str) -> None:
    ax.set_title(f"{what}\n{parameters(h)}", fontsize=9)


def _uniform(h) -> float:
    """rho_bar, the uniform density (1 / the measure of the domain)."""
    return 1.0 / float(np.sum(h["weights"])) if "weights" in h else 1.0 / (2 * math.pi)


def _tokens(h, i):
    """(positions, weights) of the live tokens of snapshot i, or None."""
    if "positions" not in h:
        return None
    w = h["token_weights"][i]
    live = np.isfinite(w) & (w > 0)
    return (h["positions"][i][live], w[live]) if live.any() else None


def kymograph(h, fig, time=None):
    """Density against angle (theta on the circle, colatitude for zonal runs) and time.

    In the linear phase (|rho / rho_bar - 1| < 0.1 throughout) each snapshot's perturbation
    rho / rho_bar - 1 is drawn relative to its own maximum, so the growing modes show, with their
    amplitude beside it on a log axis.  Beyond it rho / rho_bar is drawn, over log-time for long runs,
    the flat part of the linear phase cropped, the clusters (dot size ~ mass), tokens and hand-off marked.
    With ``time`` (``--time``) the snapshot nearest it is marked, and its profile drawn in a panel beside."""

    if time is not None:
        grid = fig.add_gridspec(1, 2, width_ratios=(3, 1.2), wspace=0.45)
        _kymograph(h, fig, grid[0], time)
        _profile(h, fig.add_subplot(grid[1]), time)
        return
    _kymograph(h, fig, None, None)


def _profile(h, ax, time) -> None:
    """rho / rho_bar against angle at the snapshot nearest ``time``, tokens below it as weighted ticks."""
    angle, label = (h["theta"], r"$\theta$") if "theta" in h else (h["colatitude"], "colatitude")
    i = _snapshot(h, time)
    rel = display_density(h, i) / _uniform(h)
    tok = _tokens(h, i)
    if tok is not None and len(tok[0]) <= FEW_TOKENS:  # Dirac masses: their weights, not a smoothed bump
        x, w = tok
        ang = np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * math.pi) if "theta" in h else np.arccos(np.clip(x[:, -1], -1, 1))
        ax.vlines(ang, 0, w, color="C0")
        ax.plot(ang, w, "o", ms=3, color="C0")
        ax.set(xlabel=label, ylabel="token weight", ylim=(0, 1.05 * float(w.max())))
    else:
        ax.plot(angle, rel, color="C0")
        ax.set(xlabel=label, ylabel=r"$\rho/\bar\rho$" + (" (smoothed tokens)" if smoothed_rows(h)[i] else ""))
    ax.set_title(f"$t = {h['time'][i]:.4g}$", fontsize=9)


def _kymograph(h, fig, cell, time):
    import matplotlib.colors as mcolors

    angle, label = (h["theta"], r"$\theta$") if "theta" in h else (h["colatitude"], "colatitude")
    t, rho = h["time"], display_density(h)
    rel = rho / _uniform(h)
    amp = np.max(np.abs(rel - 1), axis=1)
    if float(amp.max()) < 0.1 and not _log_time(h):
        grid = (cell.subgridspec if cell is not None else fig.add_gridspec)(1, 2, width_ratios=(4, 1), wspace=0.05)
        ax = fig.add_subplot(grid[0])
        shape = (rel - 1) / np.maximum(amp, 1e-300)[:, None]
        im = ax.pcolormesh(angle, t, shape, shading="nearest", cmap="RdBu_r", vmin=-1, vmax=1)
        fig.colorbar(im, ax=ax, pad=0.01, label=r"$(\rho/\bar\rho - 1)\,/\,\max_\theta|\rho/\bar\rho - 1|$")
        ax.set_xlabel(label)
        ax.set_ylabel("$t$")
        _title(ax, h, "linear phase: the shape of the perturbation")
        side = fig.add_subplot(grid[1], sharey=ax)
        side.semilogx(amp, t, color="k")
        side.set_xlabel(r"$\max|\rho/\bar\rho - 1|$")
        side.tick_params(labelleft=False)
        side.grid(True, which="major", lw=0.3)
        _mark_time(ax, h, time, vertical=False)
        return
    ax = fig.add_subplot(cell) if cell is not None else fig.add_subplot()
    what = r"$\rho/\bar\rho$"
    if _text(h["attrs"].get("geometry")) == "zonal":
        # mass per unit colatitude: on S^{d-1} the density of a cluster on a pole is ~ 1 / sin^{d-2}
        from ..domains.zonal import sphere_area

        d = int(h["attrs"].get("dim", 3))
        rel = rho * sphere_area(d - 1) * np.sin(angle) ** (d - 2)
        what = "mass per unit colatitude"
    log = _log_time(h)
    keep = t > 0 if log else np.ones(t.size, bool)
    # colours up to the 99th percentile: point masses (on the poles of S^{d-1} above all) would
    # otherwise leave the rest of the picture black; what lies above is drawn saturated
    late = rel[keep][-max(1, int(np.sum(keep)) // 4):]  # clusters are sharpest at the end
    zonal = _text(h["attrs"].get("geometry")) == "zonal"  # point masses on the poles: saturate them
    top = max(float(np.quantile(late, 0.99) if zonal else np.max(late)), 2.0 * float(np.mean(rel[keep])))
    im = ax.pcolormesh(angle, t[keep], np.minimum(rel[keep], top), shading="nearest", cmap="magma",
                       norm=mcolors.PowerNorm(0.5, vmin=0, vmax=top))
    smoothed = f" ({SMOOTHED})" if smoothed_rows(h).any() else ""
    fig.colorbar(im, ax=ax, label=what + (" (saturated above)" if top < rel.max() else "") + smoothed)
    start = int(np.argmax(amp > 0.05)) if np.any(amp > 0.05) else 0
    if not log and t[start] > 0.3 * t[-1]:  # a long flat linear phase: show where things happen
        lo = max(0.0, t[start] - 0.25 * (t[-1] - t[start]))
        ax.set_ylim(lo, t[-1])
        ax.text(0.01, 0.01, f"$t < {lo:.3g}$ not shown: $|\\rho/\\bar\\rho - 1| < 0.05$ until $t = {t[start]:.3g}$",
                transform=ax.transAxes, fontsize=7, color="w", va="bottom")
    if "cluster_position" in h:
        pos, mass = h["cluster_position"], h["cluster_mass"]
        tt = np.repeat(t[:, None], mass.shape[1], axis=1)
        ok = np.isfinite(mass) & (tt > 0 if log else True)
        ang = np.mod(np.arctan2(pos[..., 1], pos[..., 0]), 2 * math.pi) if "theta" in h else \
            np.arccos(np.clip(pos[..., -1], -1, 1))
        ax.scatter(ang[ok], tt[ok], s=12 * np.sqrt(mass[ok]), c="cyan", lw=0, alpha=0.6, label="clusters")
    if "positions" in h and "theta" in h:  # tokens over their density estimate
        rows = np.flatnonzero(keep)[:: max(1, int(np.sum(keep)) // 150)]
        xs, ys = [], []
        for i in rows:
            tok = _tokens(h, i)
            if tok is not None:
                x = tok[0][:: max(1, len(tok[0]) // 400)]
                xs.append(np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * math.pi))
                ys.append(np.full(len(x), t[i]))
        if xs:
            ax.scatter(np.concatenate(xs), np.concatenate(ys), s=1.5, c="w", lw=0, alpha=0.7, label="tokens")
    _mark_handoff(ax, h, vertical=False)
    _mark_time(ax, h, time, vertical=False)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("$t$" + (" (log scale)" if log else ""))
    _title(ax, h, "density" + (" and clusters" if "cluster_position" in h else ""))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=7, markerscale=3)


def _pad_poles(th, rho):
    """Rows at colatitude 0 and pi (the mean of the nearest ring), so the picture has no hole at the poles."""
    return np.concatenate([[0.0], th, [math.pi]]), np.concatenate([rho[:1].mean(1, keepdims=True).repeat(rho.shape[1], 1),
                                                                   rho, rho[-1:].mean(1, keepdims=True).repeat(rho.shape[1], 1)])


def sphere(h, fig, time=None):
    """One snapshot on S^2: orthographic view centred on the density's maximum (with a 30 degree
    graticule) and a Mollweide map.  Few tokens (<= FEW_TOKENS) are drawn alone, as weighted Dirac masses
    (area ~ weight); many are drawn over their density estimate as a faint sample (<= DOTS dots)."""
    i = _snapshot(h, time)
    tok = _tokens(h, i)
    if tok is not None and len(tok[0]) <= FEW_TOKENS:
        _sphere_tokens(h, fig, i, *tok)
        return
    from matplotlib.patches import Circle

    th, rho = _pad_poles(h["colatitude"], display_density(h, i) / _uniform(h))
    ph = h["longitude"]
    T, P = np.meshgrid(th, np.append(ph, 2 * math.pi), indexing="ij")
    R = np.concatenate([rho, rho[:, :1]], axis=1)
    X = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)])
    j = np.unravel_index(np.argmax(rho), rho.shape)
    v = X[:, j[0], j[1]]
    e1 = np.cross([0.0, 0.0, 1.0], v) if abs(v[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(v, e1)
    cmap, label = "magma", r"$\rho/\bar\rho$"
    if float(np.max(np.abs(R - 1))) < 0.1:  # the linear phase: the perturbation, not an offset colorbar
        R, cmap, label = R - 1, "RdBu_r", r"$\rho/\bar\rho - 1$"
        vmax = float(np.max(np.abs(R)))
        vmin = -vmax
    else:
        vmin, vmax = float(R.min()), float(R.max())
    ax = fig.add_subplot(1, 2, 1)
    front = np.tensordot(v, X, axes=1) >= 0
    ax.pcolormesh(np.tensordot(e1, X, axes=1), np.tensordot(e2, X, axes=1), np.where(front, R, np.nan),
                  shading="gouraud", cmap=cmap, vmin=vmin, vmax=vmax)
    _graticules(ax, v, e1, e2)
    sample = None if tok is None else tok[0][:: math.ceil(len(tok[0]) / DOTS)]
    if sample is not None:
        x = sample[sample @ v > 0]
        ax.scatter(x @ e1, x @ e2, s=1, c="cyan", lw=0, alpha=0.25)
    ax.add_patch(Circle((0, 0), 1, fill=False, lw=0.8))
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"orthographic, $t = {h['time'][i]:.4g}$", fontsize=9)
    ax = fig.add_subplot(1, 2, 2, projection="mollweide")
    lon = np.where(P > math.pi, P - 2 * math.pi, P)
    order = np.argsort(lon[0])
    im = ax.pcolormesh(lon[:, order], math.pi / 2 - T[:, order], R[:, order], shading="gouraud",
                       cmap=cmap, vmin=vmin, vmax=vmax)
    if sample is not None:
        x = sample
        ax.scatter(np.arctan2(x[:, 1], x[:, 0]), np.arcsin(np.clip(x[:, 2], -1, 1)), s=1, c="cyan", lw=0, alpha=0.25)
    ax.grid(True, lw=0.3)
    ax.set_xticklabels([])
    ax.set_title("Mollweide", fontsize=9)
    smoothed = smoothed_rows(h)[i] or str(h["attrs"].get("method")) == "particles"
    fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.05, pad=0.08,
                 label=label + (f" ({SMOOTHED})" if smoothed else ""))
    what = "density" if tok is None else f"{len(tok[0])} tokens (a sample of {len(sample)} dots) over their density estimate"
    fig.suptitle(f"{what} at $t = {h['time'][i]:.4g}$: {parameters(h)}", fontsize=9)


def _sphere_tokens(h, fig, i, x, w) -> None:
    """Few tokens on S^2 as weighted Dirac masses (marker area ~ weight, the weight written beside the
    heaviest), orthographic view centred on the heaviest and a Mollweide map; no density is drawn."""
    from matplotlib.patches import Circle

    v = x[int(np.argmax(w))]
    e1 = np.cross([0.0, 0.0, 1.0], v) if abs(v[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(v, e1)
    size = 400 * w / float(w.max())
    ax = fig.add_subplot(1, 2, 1)
    _graticules(ax, v, e1, e2, "0.5")
    front = x @ v > 0
    ax.scatter(x[front] @ e1, x[front] @ e2, s=size[front], c="C3", alpha=0.8, lw=0.5, edgecolors="k")
    for j in np.flatnonzero(front)[np.argsort(-w[front])][:8]:
        ax.annotate(f"{w[j]:.3g}", (x[j] @ e1, x[j] @ e2), xytext=(6, 6), textcoords="offset points", fontsize=7)
    ax.add_patch(Circle((0, 0), 1, fill=False, lw=0.8))
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal")
    ax.set_axis_off()
    ax.set_title("orthographic (marker area ~ weight)", fontsize=9)
    ax = fig.add_subplot(1, 2, 2, projection="mollweide")
    ax.scatter(np.arctan2(x[:, 1], x[:, 0]), np.arcsin(np.clip(x[:, 2], -1, 1)), s=size, c="C3", alpha=0.8, lw=0.5,
               edgecolors="k")
    ax.grid(True, lw=0.3)
    ax.set_xticklabels([])
    ax.set_title("Mollweide", fontsize=9)
    fig.suptitle(f"{len(w)} token{'s' if len(w) > 1 else ''} (weighted Dirac masses) at $t = {h['time'][i]:.4g}$: "
                 f"{parameters(h)}", fontsize=9)


def _graticules(ax, v, e1, e2, color="w") -> None:
    """The 30 degree parallels and meridians of an orthographic view centred on v, front half only."""
    s = np.linspace(0, 2 * math.pi, 181)
    for lat in np.radians(np.arange(-60, 61, 30)):
        _graticule(ax, v, e1, e2, np.stack([np.cos(lat) * np.cos(s), np.cos(lat) * np.sin(s), np.full_like(s, np.sin(lat))]),
                   color)
    for lon in np.radians(np.arange(0, 180, 30)):
        _graticule(ax, v, e1, e2, np.stack([np.cos(s) * np.cos(lon), np.cos(s) * np.sin(lon), np.sin(s)]), color)


def _graticule(ax, v, e1, e2, line, color="w"):
    """Draw a great or small circle (3 x N points) where it faces the viewer."""
    y = np.where(v @ line >= 0, 1.0, np.nan)
    ax.plot((e1 @ line) * y, (e2 @ line) * y, color=color, lw=0.3, alpha=0.6)


def energy(h, fig, time=None):
    """Scaled interaction energy e^{-beta} E (and free energy for USA) against time (log-time for long runs)."""
    ax = fig.add_subplot()
    d = h["diagnostics"]
    t = h["time"]
    keep = t > 0 if _log_time(h) else np.ones(t.size, bool)
    ax.plot(t[keep], d["energy"][keep], label=r"$e^{-\beta} E$")
    if "free_energy" in d:
        ax.plot(t[keep], d["free_energy"][keep], "--", label=r"$e^{-\beta} F = e^{-\beta}(E - \nu\int\rho\log\rho)$")
    if _log_time(h):
        ax.set_xscale("log")
    _mark_handoff(ax, h)
    _mark_time(ax, h, time)
    ax.set_xlabel("$t$")
    ax.set_ylabel("energy (scaled by $e^{-\\beta}$)")
    ax.legend(fontsize=8)
    _title(ax, h, r"interaction energy $E = \frac{1}{2\beta}\iint e^{\beta\langle x,y\rangle}d\mu\,d\mu$")


def clusters(h, fig, time=None):
    """The long run at a glance, over log-time: the number of clusters (a staircase, one step per
    merger) and the energy 2 beta e^{-beta} E, which on a plateau of well-separated clusters equals
    the sum of their squared masses (drawn as dots from the cluster diagnostics)."""
    d = h["diagnostics"]
    if "n_clusters" not in d:
        raise ConfigError("--kind: got 'clusters' for a history without cluster diagnostics (written by an older "
                          "meanfield), allowed: kymograph, energy, spectrum, rates")
    t = h["time"]
    log = _log_time(h)
    keep = t > 0 if log else np.ones(t.size, bool)
    beta = float(h["attrs"].get("beta", 1.0))
    ax1 = fig.add_subplot(2, 1, 1)
    ax1.step(t[keep], d["n_clusters"][keep], where="post", color="C0")
    ax1.set_ylabel("clusters")
    _title(ax1, h, "clusters and the energy staircase")
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax1)
    ax2.plot(t[keep], 2 * beta * d["energy"][keep], color="C3", label=r"$2\beta\, e^{-\beta} E$")
    if "cluster_mass" in h:
        m = np.nan_to_num(h["cluster_mass"], nan=0.0)
        ax2.plot(t[keep], np.sum(m * m, axis=1)[keep], ".", ms=3, color="k", label=r"$\sum_a m_a^2$ (cluster masses)")
    ax2.set_ylabel("energy")
    ax2.set_xlabel("$t$" + (" (log scale)" if log else ""))
    for ax in (ax1, ax2):
        _mark_handoff(ax, h)
        _mark_time(ax, h, time)
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
        modes, label, what = np.arange(l.max() + 1), "degree $l$", r"$\log_{10}\,(\sum_m|\hat\rho_{lm}|^2)^{1/2}/\hat\rho_{00}$"
    else:
        power, modes = c, h["mode"]
        label = "wavenumber $k$" if "theta" in h else "degree $l$"
        what = r"$\log_{10}\,|\hat\rho_k|/\hat\rho_0$"
    t = h["time"]
    keep = t > 0 if _log_time(h) else np.ones(t.size, bool)
    rel = power[keep, 1:] / power[keep, :1]
    top = np.log10(max(float(rel.max()), 1e-300))
    im = ax.pcolormesh(modes[1:], t[keep], np.log10(np.maximum(rel, 1e-300)), shading="auto",
                       cmap="viridis", vmin=max(-16.0, top - 16), vmax=top)
    fig.colorbar(im, ax=ax, label=what)
    _mark_time(ax, h, time, vertical=False)
    if _log_time(h):
        ax.set_yscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("$t$")
    _title(ax, h, "spectrum")


def rates(h, fig, model, time=None):
    """Measured growth rates (fits in each mode's linear window) over the theory, and their relative
    error in a panel below (``model``: the run's, by default rebuilt from its attributes).  ConfigError when
    no mode has a linear window."""
    model = model_of(h) if model is None else model
    fits = [f for f in diagnostics.measure_growth_rates(h["time"], h["rho_hat"], model) if f.status == "ok"]
    if not fits:
        raise ConfigError("--kind: got 'rates' for a run in which no mode has a linear window (each mode's "
                          "nonlinear part was never below 1e-5 of its linear part); allowed: a run that starts "
                          "from a small perturbation (meanfield rates --all says why, mode by mode)")
    g = model.geometry
    kind = {"update": model.update, "alpha": model.alpha}
    kmax = max(max(f.mode[0] for f in fits), int(theory.most_unstable_mode(model.beta, model.variant,
                                                                          model.viscosity, g.dim, **kind)) * 2)
    k = np.arange(0, min(g.modes, kmax + 2) + 1)
    lam = theory.growth_rates(k, model.beta, model.variant, model.viscosity, g.dim, **kind)
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1.3), hspace=0.08)
    ax = fig.add_subplot(grid[0])
    ax.plot(k, lam, "-", color="0.6", label=r"theory $\lambda_k$")
    mode = np.array([f.mode[0] for f in fits])
    measured = np.array([f.measured for f in fits])
    ax.plot(mode, measured, "o", ms=4, mfc="none", color="C0", label=f"measured ({len(fits)} fits)")
    ax.axhline(0, color="0.8", lw=0.8)
    ax.set_ylabel(r"growth rate $\lambda$")
    ax.tick_params(labelbottom=False)
    ax.legend(fontsize=8)
    _title(ax, h, "growth rates in the linear phase")
    res = fig.add_subplot(grid[1], sharex=ax)
    theory_at = theory.growth_rates(mode, model.beta, model.variant, model.viscosity, g.dim, **kind)
    err = np.abs(measured - theory_at) / np.abs(theory_at)
    res.semilogy(mode, np.maximum(err, 1e-16), "o", ms=3, color="C0")
    res.axhline(1e-4, color="C3", lw=0.8, ls="--", label="$10^{-4}$")
    res.set_ylabel("rel. error")
    res.set_xlabel("wavenumber $k$" if g.dim == 2 else "degree $l$")
    res.legend(fontsize=7, loc="upper right")


def resolve_kind(h, kind: str) -> str:
    """``auto`` -> the natural view of the run: ``positions`` for a causal run, ``overlap`` for random heads per
    layer, ``sphere`` on S^2, else ``kymograph``."""
    if kind == "auto":
        if "position" in h:
            return "positions"
        if h["attrs"].get("stepper") == "layers":  # random heads per layer: no density to speak of
            return "overlap"
        return "sphere" if "longitude" in h else "kymograph"
    return kind


def figure_formats() -> set[str]:
    """File extensions matplotlib can write (png, pdf, svg, ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    formats = set(FigureCanvasAgg(Figure()).get_supported_filetypes())
    import shutil

    if not any(shutil.which(tex) for tex in ("xelatex", "lualatex", "pdflatex")):
        formats.discard("pgf")  # matplotlib writes .pgf through a LaTeX installation
    return formats


def figure_path(path) -> tuple[Path, str]:
    """The file a figure named ``path`` is written to and its format: a path without an extension
    gets .png (as matplotlib would add it); ConfigError for an extension matplotlib cannot write."""
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
        raise ConfigError(f"--kind: got 'sphere' for a {h['attrs'].get('geometry')} run, allowed: kymograph, "
                          "energy, spectrum, rates")
    if ("position" in h and kind not in ("positions", "energy")) or ("position" not in h and kind == "positions"):
        allowed = "positions, energy" if "position" in h else "kymograph, sphere, energy, spectrum, rates, clusters"
        raise ConfigError(f"--kind: got {kind!r} for a {'causal' if 'position' in h else 'non-causal'} run, "
                          f"allowed: {allowed}")
    if kind == "overlap" and "positions" not in h:
        raise ConfigError("--kind: got 'overlap' for a density run without tokens, allowed: kymograph, sphere, energy, "
                          "spectrum, rates, clusters (overlap: token runs)")
    if kind == "kymograph" and "longitude" in h:
        raise ConfigError("--kind: got 'kymograph' for a sphere run, allowed: sphere, energy, spectrum, rates")
    sizes = {"sphere": (10, 4.8), "clusters": (7, 6), "rates": (7, 5.5), "positions": (11, 4.5)}
    plt, fig = _figure((10.5, 4.5) if kind == "kymograph" and time is not None else sizes.get(kind, (7, 4.5)))
    try:
        draw(h, kind, fig, model, time)
        fig.savefig(path, format=fmt, bbox_inches="tight")
    finally:
        plt.close(fig)
    return kind


def draw(h, kind, fig, model=None, time=None):
    """Draw ``kind`` (resolved, checked) for history ``h`` on the matplotlib Figure ``fig``."""
    if time is not None:
        if kind == "rates":
            raise ConfigError("--time: got a time for --kind rates, which fits every snapshot of the linear phase; "
                              "allowed: --time with kymograph, sphere, energy, spectrum, clusters, positions, overlap")
        check_time(h, time)
    if kind == "rates":
        rates(h, fig, model)
    else:
        {"kymograph": kymograph, "sphere": sphere, "energy": energy, "clusters": clusters,
         "spectrum": spectrum, "positions": positions, "overlap": overlap}[kind](h, fig, time)


def positions(h, fig, time=None):
    """Causal density: the size max_x |rho(s, x) / rho_bar - 1| over position s and time (log colour),
    and on the circle rho / rho_bar over angle and position at ``time`` (default: the last snapshot)."""
    import matplotlib.colors as mcolors

    t, s, rho = h["time"], h["position"], display_density(h)
    rel = rho / _uniform(h)
    amp = np.max(np.abs(rel - 1).reshape(rel.shape[0], rel.shape[1], -1), axis=2)
    circle = "theta" in h
    fig.subplots_adjust(wspace=0.35)  # room for the first colour bar's label between the panels
    ax = fig.add_subplot(1, 2 if circle else 1, 1)
    im = ax.pcolormesh(s, t, np.maximum(amp, 1e-300), shading="nearest", cmap="viridis",
                       norm=mcolors.LogNorm(vmin=max(float(amp.max()) * 1e-8, float(amp.min()) or 1e-300),
                                            vmax=float(amp.max())))
    fig.colorbar(im, ax=ax, pad=0.01, label=r"$\max_x|\rho(s,x)/\bar\rho - 1|$")
    ax.set(xlabel="position $s$ in the prompt", ylabel="$t$")
    _title(ax, h, "causal density")
    if circle:
        i = _snapshot(h, time)
        ax = fig.add_subplot(1, 2, 2)
        im = ax.pcolormesh(h["theta"], s, rel[i], shading="nearest", cmap="magma")
        fig.colorbar(im, ax=ax, pad=0.01, label=r"$\rho/\bar\rho$")
        ax.set(xlabel=r"$\theta$", ylabel="position $s$", title=f"t = {t[i]:.4g}")


def overlap(h, fig, time=None):
    """Tokens: their mean pairwise overlap against t (1 = synchronised); for random heads per layer at
    beta <= 0.01 with equal weights, beside the beta -> 0 law of docs/general.md from the same start."""
    t, a = h["time"], h["attrs"]
    live = [(i, tok) for i in range(t.size) if (tok := _tokens(h, i)) is not None and len(tok[0]) > 1]
    if not live:
        raise ConfigError("--kind: got 'overlap' for a run with fewer than two live tokens in every snapshot, "
                          "allowed: kymograph, energy, spectrum")
    tt = t[[i for i, _ in live]]
    rho = np.array([diagnostics.mean_overlap(*tok) for _, tok in live])
    w = live[0][1][1]
    layers = a.get("stepper") == "layers"
    with_law = layers and float(a["beta"]) <= 0.01 and np.ptp(w) <= 1e-12 * np.max(w) and tt[0] == 0
    ax = fig.add_subplot()
    ax.plot(tt, rho, "o-", ms=3, label="tokens" + (" (one run: the law is that of the mean over seeds)" if with_law
                                                   else ""))
    if with_law:
        curve = theory.mean_overlap_ode(tt, float(rho[0]), len(w), int(a["dim"]))
        ax.plot(tt, curve, "k--", label=r"$\beta\to 0$ law: $\rho' = (\frac{1}{n} + (1 - \frac{1}{n})\rho)(1 - \rho)"
                r"(1 - \frac{2 + \rho}{d})$")
    if _log_time(h):
        ax.set_xscale("log")
    ax.set(xlabel="$t$" + (" (= layers x dt)" if layers else ""),
           ylabel=r"mean overlap $\langle x_i, x_j\rangle$, $i \neq j$")
    ax.legend(fontsize=8)
    _title(ax, h, "mean pairwise overlap of the tokens" + (" (random heads per layer)" if layers else ""))
