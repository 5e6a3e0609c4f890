"""An error bar for a run: the same run at a finer grid, and how far its answers moved.

``longtime.check_factor = f`` (``meanfield run --check-resolution``) reruns the configuration in memory with
``grid.modes`` multiplied by f (so a hand-off also puts its tokens on a finer quadrature) and compares what a
long run is read for: the times of the cluster mergers (``merger_times``: merge records of two whole clusters,
matched in order), the masses of the clusters at the last snapshot (heaviest first), and the energy at every
snapshot.  The differences are root attributes of the history (``resolution_*``); a merger time that moved by
more than ``longtime.check_tol`` (relative), or a different number of mergers, is a warning naming the numbers
and what to change.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def finer(cfg, factor: float | None = None):
    """``cfg`` at the check's finer grid: grid.modes times ``factor`` (default longtime.check_factor), rounded up,
    with no check of its own and no grid output (the comparison reads coefficients, tokens and diagnostics)."""
    factor = cfg.longtime.check_factor if factor is None else factor
    modes = max(cfg.grid.modes + 1, math.ceil(cfg.grid.modes * factor))
    return dataclasses.replace(
        cfg, grid=dataclasses.replace(cfg.grid, modes=modes),
        longtime=dataclasses.replace(cfg.longtime, check_factor=0.0),
        output=dataclasses.replace(cfg.output, grid=False))


def _final_masses(h) -> np.ndarray:
    m = h.get("cluster_mass")
    if m is None or not len(m):
        return np.zeros(0)
    last = np.asarray(m[-1], dtype=float)
    return np.sort(last[np.isfinite(last)])[::-1]


def compare(coarse, fine, modes: int, tol: float) -> tuple[dict, list[str]]:
    """(root attributes, warnings) of the differences between the histories ``coarse`` and ``fine`` (the run at
    ``modes``): merger times (relative), final cluster masses (absolute), energies (relative, at the snapshot
    times both hold)."""
    tc, tf = merger_times(coarse), merger_times(fine)
    n = min(tc.size, tf.size)
    rel = np.abs(tc[:n] - tf[:n]) / np.abs(tf[:n]) if n else np.zeros(0)
    pc, pf = _final_masses(coarse), _final_masses(fine)
    k = min(pc.size, pf.size)
    mass = float(np.max(np.abs(pc[:k] - pf[:k]))) if k else 0.0
    common, ic, jf = np.intersect1d(np.asarray(coarse["time"]), np.asarray(fine["time"]), return_indices=True)
    ec = np.asarray(coarse["diagnostics"]["energy"])[ic]
    ef = np.asarray(fine["diagnostics"]["energy"])[jf]
    energy = float(np.max(np.abs(ec - ef) / np.abs(ef))) if common.size else math.nan
    attrs = {
        "resolution_modes": int(modes), "resolution_tol": float(tol),
        "resolution_merger_times": tc, "resolution_merger_times_fine": tf,
        "resolution_merger_time_error": rel, "resolution_max_merger_time_error": float(rel.max()) if n else 0.0,
        "resolution_cluster_masses": pc, "resolution_cluster_masses_fine": pf,
        "resolution_mass_error": mass, "resolution_energy_error": energy,
    }
    warnings = []
    if tc.size != tf.size:
        warnings.append(f"resolution check: {tc.size} cluster mergers at grid.modes = {coarse_modes(coarse)}, "
                        f"{tf.size} at {modes}: the runs merge different clusters; raise grid.modes or "
                        "longtime.oversample")
    if n and rel.max() > tol:
        i = int(np.argmax(rel))
        warnings.append(f"resolution check: cluster merger {i + 1} at t = {tc[i]:.6g}, at grid.modes = {modes} t = "
                        f"{tf[i]:.6g} ({rel[i]:.2g} relative > longtime.check_tol = {tol:g}); raise grid.modes or "
                        "longtime.oversample")
    if pc.size != pf.size:
        warnings.append(f"resolution check: {pc.size} clusters at the end, {pf.size} at grid.modes = {modes}")
    attrs["resolution_ok"] = int(not warnings)
    return attrs, warnings


def merger_times(h) -> np.ndarray:
    """Times of the cluster mergers of history ``h``: the merge records whose two parts each carry at least 0.75 of
    the lightest cluster counted at the snapshot before (two whole clusters meeting; tokens joining their own
    cluster while it contracts carry less).  Two grids are compared merger by merger in this order: unlike the
    cluster count, which may rise and fall while clusters form, these records are the same events on both."""
    merges = h.get("merges")
    if not merges or "cluster_mass" not in h:
        return np.zeros(0)
    t, masses = np.asarray(h["time"]), np.asarray(h["cluster_mass"])
    out = []
    for when, (w0, w1) in zip(np.asarray(merges["time"]), np.asarray(merges["weights"])):
        i = int(np.searchsorted(t, when)) - 1
        if not np.isfinite(when) or i < 0 or not np.isfinite(masses[i]).any():
            continue
        if min(w0, w1) >= 0.75 * float(np.nanmin(masses[i])):
            out.append(float(when))
    return np.array(out)


def coarse_modes(h) -> int:
    """grid.modes of the run that wrote history ``h``."""
    return int(h["attrs"]["modes"])


def check(cfg, coarse, solve) -> tuple[dict, list[str]]:
    """Run ``cfg`` at the finer grid with ``solve`` (``runner.solve``) and compare it with its history
    ``coarse``: (root attributes, warnings) as ``compare``."""
    fine_cfg = finer(cfg)
    fine = solve(fine_cfg)
    return compare(coarse, fine, fine_cfg.grid.modes, cfg.longtime.check_tol)
