"""Initial states from the [initial] config section: spectral coefficients of a density, or tokens.

A ``file`` snapshot is read by the caller (the simulation layer, through io's verified reader) and given
here as ``snapshot``: the physics set-up reads no file.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .model import NEGATIVE_STOP, NEGATIVE_TOL


def initial_coefficients(cfg, geometry, snapshot: dict | None = None) -> np.ndarray:
    """The initial coefficients for ``cfg.initial`` on ``geometry``.

    random:    rho = rho_bar (1 + amplitude * eta), eta with i.i.d. N(0, 1) coefficients on every mode up
               to initial.max_mode (0: all), drawn mode by mode so that a seed gives the same
               coefficients at every grid.modes
    uniform:   rho = rho_bar (tokens: exact uniform draws, x = g / |g| with g ~ N(0, I_d))
    modes:     rho = rho_bar (1 + sum amplitude_k cos(k theta))
    von_mises: mixture sum w_i vM(center_i, concentration_i), weights normalised to sum 1
    file:      ``snapshot``, a density snapshot of an earlier output (the new run starts at t = 0); modes
               are truncated or zero-padded
    Causal density (a position axis): random draws are independent at every position; the others
    are the same at every position, their departure from uniform scaled by s^initial.position_power.
    The density must be non-negative on the grid up to round-off (min rho >= -1e-10 max rho), else
    ConfigError; a file snapshot (an earlier run's density) down to -1e-6 max rho, the level at which
    that run would have stopped, with a warning below -1e-10.
    """
    ini = cfg.initial
    uniform = geometry.uniform()
    rho_bar = 1.0 / geometry.measure  # the uniform density's value (not its coefficient: c_00 = sqrt(4 pi) rho_bar on S^2)
    if ini.kind == "random":
        c = uniform + rho_bar * ini.amplitude * geometry.random_perturbation(np.random.default_rng(ini.seed), ini.max_mode)
    elif ini.kind == "uniform":
        c = uniform.copy()
    elif ini.kind == "modes":
        c = uniform.copy()
        for *spec, amp in ini.modes:
            c += rho_bar * amp * geometry.mode_function(spec)
    elif ini.kind == "von_mises":
        w = np.asarray(ini.weights if ini.weights else [1.0] * len(ini.centers), dtype=float)
        w = w / w.sum()
        c = sum(wi * geometry.von_mises(ci, ki) for wi, ci, ki in zip(w, ini.centers, ini.concentrations))
    elif ini.kind == "file":
        snap = check_snapshot(cfg, geometry, snapshot)
        if snap["positions"] is not None:
            raise ConfigError(f"initial.path: {ini.path!r} holds tokens at t = {snap['time']:g}, allowed for a "
                              "density: a snapshot before a hand-off, or a spectral run (tokens start runs with "
                              "model.method = 'particles' or longtime.handoff = 'tokens')")
        c = geometry.resample(snap["rho_hat"], int(snap["attrs"].get("modes", snap["rho_hat"].size - 1)))
    else:
        raise ConfigError("initial.kind: got 'tokens' for a density, allowed: 'random' | 'uniform' | 'modes' | 'von_mises' | "
                          "'file'")
    if ini.position_power and hasattr(geometry, "s"):  # causal density: the departure from uniform times s^p
        c = uniform + geometry.s.reshape((-1,) + (1,) * (c.ndim - 1)) ** ini.position_power * (c - uniform)
    rho = geometry.to_grid(c)
    if not np.all(np.isfinite(rho)):
        raise ConfigError("initial: the initial density is not finite; check initial.amplitude / concentrations")
    low = rho.min() / max(float(np.max(np.abs(rho))), 1e-300)
    if ini.kind == "file":
        if low < -NEGATIVE_STOP or rho.max() <= 0:
            raise ConfigError(f"initial.path: the snapshot of {ini.path!r} at t = {snap['time']:g} is not a density "
                              f"(min rho / max rho = {low:.3g} < {-NEGATIVE_STOP:g}): choose an earlier initial.time")
        if low < -NEGATIVE_TOL:
            import warnings

            warnings.warn(f"initial.path: the snapshot is negative beyond round-off (min rho / max rho = {low:.3g}): "
                          "it was resolved only to that level", RuntimeWarning, stacklevel=2)
    elif low < -NEGATIVE_TOL or rho.max() <= 0:
        raise ConfigError(f"initial: the initial density is negative (min {rho.min():.3g}, max {rho.max():.3g}); lower "
                          "initial.amplitude, or raise grid.modes for sharp von Mises bumps")
    return c


def initial_tokens(cfg, geometry, snapshot: dict | None = None):
    """(positions, weights) when the run starts from tokens: ``initial.kind = "tokens"``, or a
    ``file`` snapshot that holds tokens (a particles run, or after a hand-off).  None otherwise.
    Positions are normalised; weights default to equal and are normalised to sum 1."""
    ini = cfg.initial
    if ini.kind == "tokens":
        x = np.asarray(ini.positions, dtype=float)
        w = np.asarray(ini.weights, dtype=float) if ini.weights else np.full(x.shape[0], 1.0)
    elif ini.kind == "file":
        snap = check_snapshot(cfg, geometry, snapshot)
        if snap["positions"] is None:
            return None
        x, w = snap["positions"], snap["weights"]
        if x.shape[1] != geometry.dim:
            raise ConfigError(f"initial.path: {ini.path!r} holds tokens in R^{x.shape[1]}, allowed: tokens in "
                              f"R^{geometry.dim}")
    else:
        return None
    keep = w > 0
    x, w = x[keep], w[keep]
    # scaled first: a squared norm (or a sum of weights) may overflow or underflow where the vector does not
    x = x / np.max(np.abs(x), axis=1, keepdims=True)
    w = w / np.max(w)
    return x / np.linalg.norm(x, axis=1, keepdims=True), w / np.sum(w)


def check_snapshot(cfg, geometry, snap: dict | None) -> dict:
    """The [initial] file snapshot (``io.read_snapshot``'s dict), checked against this run's geometry."""
    ini = cfg.initial
    if snap is None:
        raise ValueError("initial.kind = 'file': pass the snapshot read from initial.path")
    attrs = snap["attrs"]
    if attrs.get("geometry") != geometry.name:
        raise ConfigError(f"initial.path: {ini.path!r} is a {attrs.get('geometry')!r} run, "
                          f"allowed: an output of geometry {geometry.name!r}")
    if int(attrs.get("dim", geometry.dim)) != geometry.dim:
        raise ConfigError(f"initial.path: {ini.path!r} is a run on S^{int(attrs['dim']) - 1}, "
                          f"allowed: an output with dim = {geometry.dim}")
    return snap
