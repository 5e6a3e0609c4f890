"""What ``meanfield info`` reports of a history: its provenance and every integrity check, as data
(``meanfield.check(path)``); the command only prints it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import config
from ..errors import ConfigError
from .checkpoint import checkpoint_path, read_checkpoint
from .history import History, cluster_mergers, density_snapshots, grid_density
from .integrity import CHECKSUMS, NON_FINITE, TIMES_NOT_INCREASING, WEIGHTS_SUM, config_hash, history_problems
from .ownership import writer_of
from .reader import read_history


@dataclass
class Check:
    """One integrity check: what was checked (with the numbers) and whether it holds."""

    text: str
    ok: bool


@dataclass
class Report:
    """A history's provenance (``lines``: (label, text), as ``meanfield info`` prints them) and its checks."""

    path: Path
    history: History
    writer: int | None  # pid of a run writing the file now
    lines: list = field(default_factory=list)
    checks: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every check holds."""
        return all(c.ok for c in self.checks)


def check(path) -> Report:
    """Check a history: what ``meanfield info`` prints, as data.

    Checksums, the checkpoint beside it, the config hash, increasing times, finite data, mass, token
    weights, and the energy's monotonicity where the theory says it holds. A damaged history is read
    too: every damage is a failed check.

    Parameters
    ----------
    path : str or pathlib.Path
        The history.

    Returns
    -------
    Report
        ``.lines`` (provenance), ``.checks`` (each with ``text`` and ``ok``), ``.ok``.

    Raises
    ------
    meanfield.errors.ConfigError
        One line, if the file cannot be read at all.
    """
    writer = writer_of(path)
    if writer is not None and not os.path.lexists(path):
        raise ConfigError(f"history: {str(path)!r} is being created by a running meanfield (pid {writer}); "
                          "its first snapshots appear in a moment")
    h = read_history(path, check=False)
    report = Report(Path(path), h, writer)
    _provenance(report)
    _checks(report)
    return report


def _provenance(r: Report) -> None:
    h, a, add = r.history, r.history["attrs"], r.lines.append
    add(("file", str(r.path)))
    add(("meanfield", str(a.get("meanfield_version", "?"))))
    add(("method", f"{a.get('method', 'spectral')}, geometry {a.get('geometry')}, dim {a.get('dim', '?')}, "
                   f"variant {a.get('variant')}, beta {a.get('beta')}, viscosity {a.get('viscosity')}"))
    add(("resolution", f"modes {a.get('modes')}, dealias {a.get('dealias')}, stepper {a.get('stepper')}"
                       + (f", backend {a['backend']}" if "backend" in a else "")))
    try:
        versions = json.loads(a.get("library_versions", "{}"))
    except ValueError:  # damaged text: show it as it is
        versions = {"(unparsed)": a.get("library_versions")}
    for name, version in (versions.items() if isinstance(versions, dict) else [("(unparsed)", versions)]):
        add((f"  {name}", str(version)))
    t = h["time"]
    if r.writer is not None:
        add(("status", f"being written by a running meanfield (pid {r.writer}): the snapshots so far"))
    add(("snapshots", f"{t.size}" + (f", t = {t[0]:.6g} .. {t[-1]:.6g}" if t.size else "")))
    ckpt = checkpoint_path(r.path)
    add(("checkpoint", str(ckpt) if ckpt.is_file() else "none"))


def _checks(r: Report) -> None:
    h, a = r.history, r.history["attrs"]
    t, d = h["time"], h["diagnostics"]
    checks = r.checks
    own = (TIMES_NOT_INCREASING, NON_FINITE, CHECKSUMS, WEIGHTS_SUM)  # checked below, with their numbers
    checks += [Check(problem, False) for problem in history_problems(h) if not problem.startswith(own)]
    if "static_checksum" in a:  # layout 3 on
        bad = [i for i in h["checksum_mismatch"] if i != "static"]
        checks.append(Check(f"checksums match ({len(bad)} of {t.size} snapshots differ"
                            + ("; the grid, the mode datasets or the stored config differ"
                               if "static" in h["checksum_mismatch"] else "") + ")", not h["checksum_mismatch"]))
    ckpt = checkpoint_path(r.path)
    if ckpt.is_file() and r.writer is None:  # a running run writes its checkpoint after the snapshots read here
        try:
            ahead = int(read_checkpoint(ckpt)["count"]) > t.size
        except ConfigError:
            ahead = None
        checks.append(Check("the checkpoint is readable and not ahead of the history" if ahead is not None else
                            f"the checkpoint {ckpt} is readable", ahead is False))
    stored = a.get("config_hash")
    if stored is not None:
        try:
            ok = config_hash(config.loads(str(a["config"]))) == str(stored)
        except ConfigError:
            ok = False
        checks.append(Check(f"config hash {str(stored)[:16]}... matches the stored config", ok))
    checks.append(Check("times increase", bool(np.all(np.diff(t) > 0))))
    arrays = [h["rho_hat"]] + [h[k] for k in ("rho",) if k in h]
    if "positions" in h:  # rows without a live token are NaN by design
        live = np.nan_to_num(h["token_weights"], nan=0.0) > 0
        arrays.append(h["positions"][live])
    checks.append(Check("data finite", all(bool(np.all(np.isfinite(x))) for x in arrays)))
    # rows of the density (after a hand-off /rho is the tokens' series cut at the grid's degree: at a pole of
    # S^{d-1} its terms grow like l^{d-3} and their sum on the grid keeps only ~1e-10; the tokens' mass is
    # checked exactly below, by their weights)
    rows = density_snapshots(h) if str(a.get("token_coefficients", "")) == "exact" else t.size
    if "weights" in h and rows:
        mass = np.tensordot(grid_density(h, slice(0, rows)), h["weights"], axes=h["weights"].ndim)
        err = float(np.max(np.abs(mass - 1)))
        checks.append(Check(f"mass within 1e-10 of 1 (max error {err:.2g})", err <= 1e-10))
    if "handoff_time" in a:
        try:
            r.lines.append(("hand-off", f"t = {float(a['handoff_time']):.6g} ({a.get('handoff_reason')}): "
                            f"{a.get('handoff_nodes')} nodes -> {a.get('handoff_tokens')} tokens, "
                            f"{a.get('handoff_dropped')} dropped (negative mass "
                            f"{float(a.get('handoff_negative_mass', 0)):.3g}), energy jump "
                            f"{float(a.get('handoff_energy_jump', 0)):.3g}"))
        except (TypeError, ValueError):
            checks.append(Check("hand-off attributes are numbers", False))
    if "resolution_modes" in a:
        try:
            ok = "within" if int(a["resolution_ok"]) else "NOT within"
            r.lines.append(("resolution", f"against grid.modes = {int(a['resolution_modes'])}: merger times moved by <= "
                            f"{float(a['resolution_max_merger_time_error']):.2g} ({ok} longtime.check_tol = "
                            f"{float(a['resolution_tol']):g}), cluster masses by <= "
                            f"{float(a['resolution_mass_error']):.2g}, energies by <= "
                            f"{float(a['resolution_energy_error']):.2g}"))
        except (TypeError, ValueError, KeyError):
            checks.append(Check("resolution attributes are numbers", False))
    if "n_tokens" in d and t.size and np.ndim(d["n_tokens"]) == 2:  # a batch: per system, no merge records
        last = np.asarray(d["n_tokens"][-1])
        r.lines.append(("tokens", f"per system at the end: {int(last.min())} .. {int(last.max())} (median "
                        f"{float(np.median(last)):g})"))
    elif "n_tokens" in d and t.size:
        merges = h.get("merges", {}).get("time", np.zeros(0))
        r.lines.append(("tokens", f"{int(d['n_tokens'][-1])} at the end; {merges.size} merges"))
    if "n_clusters" in d and t.size:
        mergers = cluster_mergers(h)
        line = f"{int(d['n_clusters'][-1])} at the end (at most {int(np.max(d['n_clusters']))})"
        if mergers:
            line += "; mergers at t = " + ", ".join(f"{m['time']:.4g}" for m in mergers)
        r.lines.append(("clusters", line))
    if "system" in h and "pair_fraction" in d and t.size:
        r.lines.append(("batch", f"{h['system'].size} systems (initial.seed {int(h['system'][0])} .."
                        f" {int(h['system'][-1])}); at the end: clustered pairs {float(np.mean(d['pair_fraction'][-1])):.3g} "
                        f"(mean), clusters {float(np.median(d['cluster_count'][-1])):g} (median)"))
    if "token_weights" in h and t.size:
        live = np.isfinite(h["token_weights"]).all(axis=-1)  # per snapshot (and system, in a batch)
        if live.any():
            err = float(np.max(np.abs(np.sum(h["token_weights"][live], axis=-1) - 1)))
            checks.append(Check(f"token weights sum to 1 (max error {err:.2g})", err <= 1e-12))
    checks += _energy_checks(a, d, t, r)


def _energy_checks(a, d, t, report) -> list:
    """The energy's monotonicity where the theory says it holds (docs/theory.md): the run names the quantity in
    its ``monotone`` attribute (the energy, or USA's free energy with a gradient perceptron), or says why there is
    none; histories without the attribute: the energy, with Q = K = V = I and viscosity 0."""
    if "monotone" in a:
        name, note = str(a["monotone"]), str(a.get("monotone_note", ""))
    else:
        identity = all(f'{k} = "identity"' in str(a.get("config", "")) for k in "QKV")
        name, note = ("energy" if identity and float(a.get("viscosity", 1)) == 0 else ""), ""
    if note:
        report.lines.append(("energy", f"not checked: {note}"))
    if not name or name not in d or t.size < 2:
        return []
    e = d[name]
    drop = float(np.max(np.maximum(-np.diff(e, axis=0), 0) / np.abs(e[1:])))  # per system in a batch
    quantity = "energy" if name == "energy" else "free energy E + int Phi"
    return [Check(f"{quantity} non-decreasing (viscosity 0; largest relative decrease {drop:.2g} <= 1e-10)",
                  drop <= 1e-10)]
