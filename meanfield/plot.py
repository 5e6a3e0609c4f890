"""Figures from a history (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import numpy as np

KINDS = ("kymograph", "energy", "spectrum", "rates")


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(7, 4.5), dpi=120)


def kymograph(h, fig):
    """Density rho(theta, t) as an image (circle)."""
    ax = fig.add_subplot()
    t, theta, rho = h["time"], h["theta"], h["rho"]
    im = ax.pcolormesh(theta, t, rho, shading="auto", cmap="magma")
    fig.colorbar(im, ax=ax, label="rho")
    ax.set_xlabel("theta")
    ax.set_ylabel("t")
    ax.set_title("token density")


def energy(h, fig):
    """Scaled interaction energy e^{-beta} E (and free energy for USA) against time."""
    ax = fig.add_subplot()
    d = h["diagnostics"]
    ax.plot(h["time"], d["energy"], label="exp(-beta) E")
    if "free_energy" in d:
        ax.plot(h["time"], d["free_energy"], "--", label="exp(-beta) F")
    ax.set_xlabel("t")
    ax.legend()
    ax.set_title("energy")


def spectrum(h, fig):
    """|rho_k(t)| / rho_0 for every mode, log scale."""
    ax = fig.add_subplot()
    c = np.abs(h["rho_hat"])
    rel = c[:, 1:] / c[:, :1]
    im = ax.pcolormesh(h["mode"][1:], h["time"], np.log10(np.maximum(rel, 1e-300)), shading="auto",
                       cmap="viridis", vmin=max(-16, np.log10(max(rel.max(), 1e-300)) - 16))
    fig.colorbar(im, ax=ax, label="log10 |rho_k| / rho_0")
    ax.set_xlabel("mode")
    ax.set_ylabel("t")
    ax.set_title("spectrum")


def rates(h, fig, model):
    """Measured growth rates against theory."""
    from . import theory
    from .diagnostics import measure_growth_rates

    fits = [f for f in measure_growth_rates(h["time"], h["rho_hat"], model) if f.status == "ok"]
    k = np.arange(1, model.geometry.modes + 1)
    lam = theory.growth_rates(k, model.beta, model.variant, model.viscosity, model.geometry.dim)
    ax = fig.add_subplot()
    ax.plot(k, lam, "-", color="0.6", label="theory (SPEC 3)")
    ax.plot([f.mode[0] for f in fits], [f.measured for f in fits], "o", ms=4, label="measured")
    ax.axhline(0, color="0.8", lw=0.8)
    ax.set_xlim(0, max([f.mode[0] for f in fits], default=10) * 1.5 + 1)
    ax.set_xlabel("mode")
    ax.set_ylabel("growth rate")
    ax.legend()


def save(h, kind, path, model=None) -> str:
    """Draw ``kind`` ("auto" picks the kymograph) for history ``h`` into ``path``; returns the kind drawn."""
    if kind == "auto":
        kind = "kymograph"
    plt, fig = _figure()
    try:
        if kind == "rates":
            rates(h, fig, model)
        else:
            {"kymograph": kymograph, "energy": energy, "spectrum": spectrum}[kind](h, fig)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return kind
