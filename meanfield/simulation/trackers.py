"""Trackers: objects that watch a run at scheduled moments and never change it.

A tracker has any of ``start(sim)``, ``step(sim)`` (after every accepted step), ``snapshot(sim)``
(at every output time) and ``finish(sim)``.  New outputs are new trackers, not new branches in
the run loop (``Simulation.run``).
"""

from __future__ import annotations

import math
import sys
import time as _time
import warnings

import numpy as np

from ..errors import NumericalError
from .handoff import NEGATIVE_STOP, NEGATIVE_TOL

#: Spectral tail (top third of modes, relative to rho_0) above which a resolution warning is given,
#: on top of twice the initial data's own tail (random data put amplitude on every mode).
TAIL_WARN = 1e-4
#: SA divides by psi; below this min/max ratio of psi the field has lost more than ~6 digits.
PSI_RANGE_WARN = 1e-10
#: A non-negative density bounds every coefficient (circle: |rho_k| <= rho_0); beyond this
#: multiple of the bound (geometry.coefficient_ratio) the run is garbage and stops.
POSITIVITY_BOUND = 2.0


class BlowUpGuard:
    """Stops the run (NumericalError) on non-finite values, or a density that is no longer one: more
    negative than NEGATIVE_STOP = 1e-6 of its maximum, or a coefficient past the positivity bound —
    naming the time, the quantity and a remedy.  (Smaller negative values, beyond round-off, are
    ResolutionMonitor's warning.)"""

    def step(self, sim) -> None:
        """Check the state after every step."""
        if sim.phase == "tokens":
            if not np.all(np.isfinite(sim.x)):
                raise NumericalError(f"blow-up at t = {sim.t:.6g}: token positions are not finite (step {sim.steps}, "
                                     f"dt = {sim.dt:.3g}); reduce time.dt or model.beta")
            sim.last_good = sim.resume_point()
            return
        c = sim.c
        if not np.all(np.isfinite(c)):
            raise NumericalError(
                f"blow-up at t = {sim.t:.6g}: the density coefficients are not finite "
                f"(step {sim.steps}, dt = {sim.dt:.3g}); reduce time.dt, use time.adaptive = true, "
                "raise grid.modes or add model.viscosity"
            )
        ratio = sim.geometry.coefficient_ratio(c)
        if ratio > POSITIVITY_BOUND:
            raise NumericalError(
                f"blow-up at t = {sim.t:.6g}: a coefficient is {ratio:.3g} times the largest any "
                f"positive density allows (> {POSITIVITY_BOUND:g}), "
                "impossible for a positive density (under-resolved or unstable); reduce time.dt, "
                "raise grid.modes or add model.viscosity"
            )
        tail, low = sim.resolution()
        if low < -NEGATIVE_STOP:
            hint = ("; with viscosity 0 set longtime.handoff = \"tokens\" to continue as tokens"
                    if sim.model.viscosity == 0 else "")
            raise NumericalError(
                f"blow-up at t = {sim.t:.6g}: the density went negative (min rho / max rho = {low:.3g}, beyond "
                f"{-NEGATIVE_STOP:g}; spectral tail {tail:.2g}): under-resolved or unstable; raise grid.modes, "
                f"reduce time.dt or add model.viscosity{hint}")
        sim.last_good = sim.resume_point()


class ResolutionMonitor:
    """Warns once each when, at a snapshot of the density, the spectral tail exceeds TAIL_WARN above
    twice the initial data's own tail (clusters sharper than the grid) or, for SA, psi spans more
    than 1/PSI_RANGE_WARN (few clusters at large beta)."""

    def __init__(self):
        self.warned = set()

    def _warn(self, key, message) -> None:
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def snapshot(self, sim) -> None:
        """Check the resolution at a snapshot."""
        if sim.phase != "density":
            return
        tail, low = sim.resolution()
        if tail > TAIL_WARN + 2 * sim.tail0:
            self._warn("tail", f"t = {sim.t:.6g}: spectral tail {tail:.2g} > {TAIL_WARN:g}: the density is "
                       "under-resolved (clusters sharper than the grid); raise grid.modes, add model.viscosity "
                       "or set longtime.handoff = \"tokens\"")
        if low < -NEGATIVE_TOL:
            self._warn("negative", f"t = {sim.t:.6g}: the density is negative somewhere (min / max {low:.3g}, "
                       f"beyond round-off {NEGATIVE_TOL:g}): resolved only to that level; raise grid.modes, add "
                       "model.viscosity or set longtime.handoff = \"tokens\"")
        if sim.model.variant == "sa":
            r = sim.model.psi_range(sim.c)
            if r < PSI_RANGE_WARN:
                self._warn("psi", f"t = {sim.t:.6g}: min psi / max psi = {r:.2g}: the SA field grad(psi)/psi "
                           "is inaccurate where psi is small (under-resolved, or few clusters at large beta); "
                           "raise grid.modes or add model.viscosity")


class Recorder:
    """Keeps every snapshot in memory: ``times`` and ``states`` (spectral coefficients, or for a
    particles run token positions on every row, NaN once merged away), and for particles runs the
    ``weights`` on every row (0 once merged away) — for scripts and tests."""

    def __init__(self):
        self._t, self._u, self._w = [], [], []

    def snapshot(self, sim) -> None:
        """Keep a copy of the state."""
        self._t.append(sim.t)
        self._u.append(sim.record())
        if sim.particles:
            self._w.append(sim.tokens.full_weights())

    @property
    def weights(self) -> np.ndarray:
        """Token weights per snapshot (particles runs)."""
        return np.array(self._w)

    @property
    def times(self) -> np.ndarray:
        """Snapshot times."""
        return np.array(self._t)

    @property
    def states(self) -> np.ndarray:
        """The states, stacked along the first axis."""
        return np.array(self._u)


class HistoryTracker:
    """Writes each snapshot to a HistoryWriter: the density (or the tokens' smoothed estimate) on the
    grid and its coefficients, the diagnostics, the tokens, the clusters and the merges since the
    last snapshot."""

    def __init__(self, writer, final_hash: str | None = None):
        self.writer = writer
        self.final_hash = final_hash  # store the final state of a completed run under this config hash
        self._logged = 0  # merge records of sim.merge_log already written

    def start(self, sim) -> None:
        """Merges already in the log (a restored run) are in the file already."""
        self._logged = len(sim.merge_log)

    def snapshot(self, sim) -> None:
        """Append the current state and its diagnostics."""
        w = self.writer
        c = sim.c
        rho = sim.geometry.to_grid(c)
        row = {"rho": rho, "rho_hat": c}
        positions, masses = sim.clusters()
        values = self.diagnostics(sim, rho, masses.size)
        row.update({f"diagnostics/{k}": values[k] for k in w.diagnostics})
        if w.tokens is not None:
            if sim.phase == "tokens":
                row["positions"], row["token_weights"] = sim.token_positions(), sim.tokens.full_weights()
            else:
                row["positions"] = np.full(w.tokens, np.nan)
                row["token_weights"] = np.full(w.tokens[0], np.nan)
        if w.clusters:
            pos = np.full((w.clusters, sim.geometry.dim), np.nan)
            mass = np.full(w.clusters, np.nan)
            k = min(w.clusters, masses.size)
            if k:
                p = positions[:k]
                if p.shape[1] != sim.geometry.dim:  # zonal rings: (sin, cos) -> R^d
                    pos[:k, 0], pos[:k, -1] = p[:, 0], p[:, 1]
                else:
                    pos[:k] = p
                mass[:k] = masses[:k]
            row["clusters/position"], row["clusters/mass"] = pos, mass
        w.append(sim.t, row)
        self.write_merges(sim)

    def write_merges(self, sim, upto: int | None = None) -> None:
        """Write the merge records logged since the last call (up to record ``upto``)."""
        upto = len(sim.merge_log) if upto is None else upto
        if upto > self._logged:
            self.writer.append_merges(sim.merge_log[self._logged:upto])
            self._logged = upto

    def diagnostics(self, sim, rho, n_clusters: int) -> dict:
        """The /diagnostics values of this snapshot."""
        tokens = sim.phase == "tokens"
        out = {
            "mass": float(np.sum(sim.weights)) if tokens else sim.geometry.integrate(rho),
            "energy": sim.energy(),
            "energy_rate": sim.energy_rate(),
            "tail": math.nan if tokens else sim.geometry.tail(sim.c),
            "dt": sim.dt,
            "steps": sim.steps,
            "n_tokens": sim.tokens.model.n if tokens else 0,
            "n_clusters": n_clusters,
        }
        if "free_energy" in self.writer.diagnostics:
            out["free_energy"] = out["energy"] if tokens else sim.model.free_energy_scaled(sim.c)
        if "spread" in self.writer.diagnostics:
            from ..tokens import max_distance_to_mean

            out["spread"] = max_distance_to_mean(sim.x, sim.weights)
        return out

    def finish(self, sim) -> None:
        """Close the file (shrinking it to the snapshots written), with the hand-off report and the
        token integrator's accepted / rejected steps as attributes, and, when the run is complete,
        its final state (so that a larger t_end can extend it)."""
        # merge records up to the last state the guard passed (after a failure, that is the checkpoint)
        self.write_merges(sim, sim.last_good["merges"] if sim.last_good is not None else None)
        attrs = sim.handoff.attrs() if sim.handoff is not None else {}
        ctl = sim.tokens.controller if sim.tokens is not None else None
        if ctl is not None and ctl.adaptive:
            attrs.update(token_steps_accepted=ctl.accepted, token_steps_rejected=ctl.rejected)
        complete = sim.next_output >= sim.output_times().size
        final = (sim.resume_point(), self.final_hash) if complete and self.final_hash else None
        self.writer.close(attrs, final)


class ProgressBar:
    """tqdm progress bar over simulation time (over log-time for log-spaced outputs): t, dt, the
    number of tokens after a hand-off, wall time and ETA."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        self._shown = 0.0
        self._every = 0.2  # seconds between updates: stepping must not wait on the terminal

    def _position(self, sim, t: float) -> float:
        if self.log:
            scale = sim.cfg.output.interval
            return math.log1p(t / scale) / math.log1p(sim.cfg.time.t_end / scale) * 1000
        return t

    def start(self, sim) -> None:
        """Open the bar (if enabled)."""
        if not self.enabled:
            return
        from tqdm import tqdm

        self.log = sim.cfg.output.spacing == "log"
        total = 1000 if self.log else sim.cfg.time.t_end
        fmt = ("{l_bar}{bar}| log-time {n:.0f}/{total:.0f} [{elapsed}<{remaining}{postfix}]" if self.log else
               "{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}{postfix}]")
        self.bar = tqdm(total=total, unit="t", file=sys.stderr, dynamic_ncols=True, bar_format=fmt)
        self._wall = _time.monotonic()
        self._shown = self._position(sim, sim.t)
        self.bar.update(self._shown)

    def step(self, sim) -> None:
        """Advance the bar, at most every ``_every`` seconds."""
        if self.bar is None:
            return
        now = _time.monotonic()
        if now - self._wall >= self._every:
            self._wall = now
            extra = f", tokens={sim.tokens.model.n}" if sim.phase == "tokens" else ""
            self.bar.set_postfix_str(f"t={sim.t:.4g}, dt={sim.dt:.3g}{extra}", refresh=False)
            pos = self._position(sim, sim.t)
            self.bar.update(pos - self._shown)
            self._shown = pos

    def finish(self, sim) -> None:
        """Bring the bar to the final time and close it."""
        if self.bar is not None:
            self.bar.update(self._position(sim, sim.t) - self._shown)
            self.bar.close()


class Checkpointer:
    """Writes a checkpoint (io.write_checkpoint) every ``every`` snapshots, after the history row."""

    def __init__(self, path, writer, config_hash: str, every: int = 1, run_id: str = ""):
        self.path, self.writer, self.hash, self.every = path, writer, config_hash, int(every)
        self.run_id = run_id  # the history's run_id: a checkpoint resumes only its own history
        self._seen = 0

    def snapshot(self, sim) -> None:
        """Checkpoint the state just written to the history (every ``every``-th snapshot)."""
        self._seen += 1
        if self.every and self._seen % self.every == 0:
            self.write(sim.resume_point(), self.writer.count)

    def write(self, point: dict, count: int) -> None:
        """Checkpoint ``point``, recording ``count`` regular snapshots in the history."""
        from ..io import write_checkpoint

        write_checkpoint(self.path, {**point, "run_id": self.run_id}, count, self.hash, self.writer.merge_count)


class Interrupted(Exception):
    """A run stopped on SIGINT / SIGTERM after finishing its current step (``signum`` says which)."""

    def __init__(self, signum: int, t: float):
        super().__init__(f"signal {signum} at t = {t:.6g}")
        self.signum, self.t = signum, t


class SignalStop:
    """On SIGINT or SIGTERM: let the current step finish, then call ``on_stop(sim)`` (final
    snapshot, checkpoint) and raise Interrupted.  Handlers are installed for the run only."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, on_stop=None):
        self.on_stop = on_stop
        self.signum = None
        self._old = {}

    def start(self, sim) -> None:
        """Install the handlers (from the main thread only: a run in a worker thread, as on a Dask worker, is
        stopped by its process)."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            num = getattr(signal, name)
            self._old[num] = signal.signal(num, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def step(self, sim) -> None:
        """After a completed step: stop if a signal came."""
        if self.signum is not None:
            if self.on_stop is not None:
                self.on_stop(sim)
            raise Interrupted(self.signum, sim.t)

    def finish(self, sim) -> None:
        """Restore the previous handlers."""
        import signal

        for num, old in self._old.items():
            signal.signal(num, old)
