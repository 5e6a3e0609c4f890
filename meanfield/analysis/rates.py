"""Growth rates of a history measured in its linear phase, beside the theory's (``meanfield rates``).

    table = meanfield.measured_rates("linear.h5")
    for row in table.rows: print(row.mode, row.theory, row.measured, row.rel_error)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import NGPT_ALPHA
from ..errors import ConfigError
from ..io import History, density_snapshots, geometry_of, read_history
from ..physics import theory
from ..physics.model import AttentionModel
from ..stepping import SCHEMES, MultistepIMEX
from .diagnostics import RateFit, measure_growth_rates


def model_of(h: dict) -> AttentionModel:
    """The Q = K = V = I model (geometry, variant, beta, viscosity, and the update of its config: post-LN or nGPT)
    of the run that wrote history ``h``: what the linear theory and the rate fits refer to."""
    import tomllib

    a = h["attrs"]
    p = tomllib.loads(str(a["config"])).get("particles", {}) if "config" in a else {}
    update, alpha = str(p.get("update", "post-ln")), float(p.get("alpha", NGPT_ALPHA))
    # a density written before pre-/peri-LN densities were refused ran them as post-LN: read them so
    return AttentionModel(geometry_of(h), str(a["variant"]), float(a["beta"]), float(a["viscosity"]),
                          update if update == "ngpt" else "post-ln", alpha)


@dataclass(frozen=True)
class RateRow:
    """One mode: its theoretical rate, and the fit (``fit.status`` "ok", "noise" or "nonlinear")."""

    fit: RateFit
    theory: float

    @property
    def mode(self) -> tuple:
        """The mode's labels (k,), (l,) or (l, m)."""
        return self.fit.mode

    @property
    def measured(self) -> float:
        """The fitted rate (nan where none)."""
        return self.fit.measured

    @property
    def rel_error(self) -> float:
        """|measured - theory| / |theory| (nan where not measured)."""
        return abs(self.fit.measured - self.theory) / abs(self.theory) if self.fit.status == "ok" else float("nan")


@dataclass
class RatesTable:
    """Every mode of a history's linear phase: ``rows``, the window's tolerance ``tol``, the run's attributes, its
    residual update (the theory's: post-LN or nGPT with ``alpha``), and for the implicit schemes ``scheme_bias``:
    (z, relative error of the scheme's discrete rate at z = max |lambda| dt)."""

    path: str
    attrs: dict
    tol: float
    rows: list = field(default_factory=list)
    scheme_bias: tuple | None = None
    update: str = "post-ln"
    alpha: float = NGPT_ALPHA

    @property
    def measured(self) -> list:
        """The rows whose rate was measured."""
        return [r for r in self.rows if r.fit.status == "ok"]

    @property
    def worst(self) -> float:
        """The largest relative error among the measured rows (0 if none)."""
        return max((r.rel_error for r in self.measured), default=0.0)


def measured_rates(history, tol: float = 1e-5) -> RatesTable:
    """Fit every mode's growth rate in its linear window, beside the theory's: ``meanfield rates``.

    Parameters
    ----------
    history : str, pathlib.Path or meanfield.io.History
        A density run's history.
    tol : float
        The relative error a mode's fit must reach to count as agreeing with the theory.

    Returns
    -------
    RatesTable
        A row per mode with a linear window (``mode``, ``theory``, ``measured``, ``rel_error``);
        ``.worst`` is the largest relative error.

    Raises
    ------
    meanfield.errors.ConfigError
        For a particles run, or fewer than 3 density snapshots.
    """
    import math

    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and 0 < tol <= 1):
        raise ConfigError(f"--tol: got {tol!r}, allowed: a number in (0, 1] (the linear window: |N_k| <= tol "
                          "|lambda_k c_k|)")
    name = str(history) if isinstance(history, (str, Path)) else str(getattr(history, "path", "history"))
    h = read_history(history) if isinstance(history, (str, Path)) else history
    if h["attrs"].get("method") == "particles":
        raise ConfigError(f"history: {name!r} is a particles run; rates are measured on spectral runs")
    keep = density_snapshots(h)
    h = History({**h, "time": h["time"][:keep], "rho_hat": h["rho_hat"][:keep]})
    if h["time"].size < 3:
        raise ConfigError(f"history: {name!r} holds {h['time'].size} snapshots, allowed: >= 3 to fit a rate")
    model = model_of(h)
    dim = model.geometry.dim
    table = RatesTable(name, h["attrs"], tol, update=model.update, alpha=model.alpha)
    fits = measure_growth_rates(h["time"], h["rho_hat"], model, tol=tol)
    rates = theory.growth_rates([fit.mode[0] for fit in fits], model.beta, model.variant, model.viscosity, dim,
                                update=model.update, alpha=model.alpha)
    table.rows.extend(RateRow(fit, float(lam)) for fit, lam in zip(fits, rates))
    scheme = SCHEMES.get(str(h["attrs"].get("stepper", "")))
    dts = h["diagnostics"].get("dt")
    if scheme is not None and issubclass(scheme, MultistepIMEX) and dts is not None and dts.size and table.measured:
        z = max(abs(r.measured) for r in table.measured) * float(np.max(dts))
        table.scheme_bias = (z, scheme.rate_error(z))
    return table
