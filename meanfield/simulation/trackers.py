"""Trackers: objects that watch a run at the moments their schedule picks and never change it.

A run offers every tracker ``start(sim)``, ``step(sim)`` (after every accepted step), ``snapshot(sim)``
(at every output time) and ``finish(sim)``; any object with some of these is a tracker.  ``Tracker`` gives
them a schedule (``schedules.py``): it acts (``act(sim)``) when its schedule is due.  New outputs are new
trackers, not new branches in the run loop (``Simulation.run``).
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from ..io import MemoryWriter, write_checkpoint
from ..errors import ConfigError, TrackerError, first_line
from .schedules import AnyOf, EverySnapshot, EverySteps, EveryWall, Never, Schedule

#: Wall-clock seconds between checkpoints of a run whose snapshots are further apart than that.
CHECKPOINT_SECONDS = 600.0
#: At most this many clusters (the heaviest) are stored per snapshot.
MAX_CLUSTERS = 256


class Tracker:
    """A tracker that acts at the events its ``schedule`` picks (default: every snapshot)."""

    def __init__(self, schedule: Schedule | None = None):
        self.schedule = EverySnapshot() if schedule is None else schedule

    def step(self, sim) -> None:
        """After every accepted step: act if the schedule is due."""
        if self.schedule.due("step", sim):
            self.act(sim)

    def snapshot(self, sim) -> None:
        """At every snapshot: act if the schedule is due."""
        if self.schedule.due("snapshot", sim):
            self.act(sim)

    def act(self, sim) -> None:  # pragma: no cover - interface
        """What the tracker does."""
        raise NotImplementedError


class BlowUpGuard(Tracker):
    """Stops the run (NumericalError) when the state is no longer a measure: non-finite values, a density more
    negative than 1e-6 of its maximum, a coefficient past the positivity bound — naming the time, the
    quantity and a remedy (``Simulation.guard``).  Keeps the last state that passed (``sim.last_good``)."""

    def __init__(self, schedule: Schedule | None = None):
        super().__init__(EverySteps(1) if schedule is None else schedule)

    def act(self, sim) -> None:
        """Check the state; remember it as the last good one."""
        sim.guard()
        sim.last_good = sim.resume_point()


class ResolutionMonitor(Tracker):
    """Warns once each of what the density resolves only approximately (``Simulation.resolution_warnings``:
    a spectral tail, a negative density beyond round-off, an SA denominator losing digits)."""

    def __init__(self, schedule: Schedule | None = None):
        super().__init__(schedule)
        self.warned = set()

    def act(self, sim) -> None:
        """Check the resolution."""
        for key, message in sim.resolution_warnings():
            if key not in self.warned:
                self.warned.add(key)
                warnings.warn(message, RuntimeWarning, stacklevel=4)


class HistoryTracker(Tracker):
    """Writes each snapshot to a history writer (``io.HistoryWriter``, ``io.MemoryWriter``): of the datasets in
    its ``fields``, the density (or the tokens' smoothed estimate) on the grid and its coefficients, the
    diagnostics, the tokens, the clusters, and the merges since the last snapshot."""

    def __init__(self, writer, final_hash: str | None = None, schedule: Schedule | None = None):
        super().__init__(schedule)
        self.writer = writer
        self.final_hash = final_hash  # store the final state of a completed run under this config hash
        self._logged = 0  # merge records of sim.merge_log already written

    def start(self, sim) -> None:
        """Merges already in the log (a restored run) are in the history already."""
        self._logged = len(sim.merge_log)

    def act(self, sim) -> None:
        """Append the current state and its diagnostics."""
        self.writer.append(sim.t, snapshot_row(sim, self.writer))
        self.write_merges(sim)

    def write_merges(self, sim, upto: int | None = None) -> None:
        """Write the merge records logged since the last call (up to record ``upto``)."""
        upto = len(sim.merge_log) if upto is None else upto
        if upto > self._logged:
            self.writer.append_merges(sim.merge_log[self._logged:upto])
            self._logged = upto

    def finish(self, sim) -> None:
        """Close the history, with the hand-off report and the token integrator's accepted / rejected steps as
        attributes, and, when the run is complete, its final state (so that a larger t_end can extend it)."""
        # merge records up to the last state the guard passed (after a failure, that is the checkpoint)
        self.write_merges(sim, sim.last_good["merges"] if sim.last_good is not None else None)
        attrs = sim.handoff.attrs() if sim.handoff is not None else {}
        ctl = sim.tokens.controller if sim.tokens is not None else None
        if ctl is not None and ctl.adaptive:
            attrs.update(token_steps_accepted=ctl.accepted, token_steps_rejected=ctl.rejected)
        complete = sim.next_output >= sim.output_times().size
        final = (sim.resume_point(), self.final_hash) if complete and self.final_hash else None
        self.writer.close(attrs, final)


def snapshot_row(sim, writer) -> dict:
    """The datasets of one snapshot that ``writer`` records (its ``fields``)."""
    fields = set(writer.fields)
    row = {}
    c = sim.c
    diagnostics = [f for f in fields if f.startswith("diagnostics/")]
    rho = sim.geometry.to_grid(c) if "rho" in fields else None
    if "rho" in fields:
        row["rho"] = rho
    if "rho_hat" in fields:
        row["rho_hat"] = c
    if "diagnostics/n_clusters" in fields or "clusters/mass" in fields:
        positions, masses = sim.clusters()
    if diagnostics:
        values = sim.diagnostics(rho)
        if "diagnostics/n_clusters" in fields:
            values["n_clusters"] = masses.size
        row.update({f: values[f.partition("/")[2]] for f in diagnostics})
    if "positions" in fields:
        tokens = sim.token_data()
        if tokens is None:
            tokens = np.full(writer.tokens, np.nan), np.full(writer.tokens[0], np.nan)
        row["positions"], row["token_weights"] = tokens
    if "clusters/mass" in fields:
        d = sim.geometry.dim
        pos, mass = np.full((writer.clusters, d), np.nan), np.full(writer.clusters, np.nan)
        k = min(writer.clusters, masses.size)
        if k:
            p = positions[:k]
            if p.shape[1] != d:  # zonal rings: (sin, cos) -> R^d
                pos[:k, 0], pos[:k, -1] = p[:, 0], p[:, 1]
            else:
                pos[:k] = p
            mass[:k] = masses[:k]
        row["clusters/position"], row["clusters/mass"] = pos, mass
    return row


class Recorder(HistoryTracker):
    """Keeps every snapshot in memory (an ``io.MemoryWriter``): ``times`` and ``states`` (spectral coefficients,
    or for a particles run token positions on every row, NaN once merged away), ``weights`` on every row of
    a particles run (0 once merged away), and the whole ``history`` (``io.History``: ``to_dataset()``)."""

    def __init__(self, schedule: Schedule | None = None):
        super().__init__(None, schedule=schedule)

    def start(self, sim) -> None:
        """Make the store (what it keeps depends on the run), once: a second run with the same Recorder goes on."""
        if self.writer is None:
            fields = ["positions", "token_weights"] if sim.particles else ["rho_hat"]
            self.writer = MemoryWriter(sim.geometry, fields, {"geometry": sim.geometry.name},
                                       tokens=(sim.token_rows(), sim.geometry.dim) if sim.particles else None)
        super().start(sim)

    def finish(self, sim) -> None:
        """Nothing to close."""

    @property
    def history(self):
        """The snapshots kept, as an ``io.History``."""
        return self.writer.history()

    @property
    def times(self) -> np.ndarray:
        """Snapshot times."""
        return self.writer.column("time") if self.writer is not None else np.zeros(0)

    @property
    def states(self) -> np.ndarray:
        """The states, stacked along the first axis."""
        return self.writer.column("positions" if "positions" in self.writer.fields else "rho_hat")

    @property
    def weights(self) -> np.ndarray:
        """Token weights per snapshot (particles runs)."""
        return self.writer.column("token_weights") if "token_weights" in self.writer.fields else np.zeros(0)


def in_notebook() -> bool:
    """Whether this process is a Jupyter (IPython) kernel: a notebook shows progress as a widget."""
    shell = sys.modules.get("IPython")
    shell = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def show_progress(progress: bool | None) -> bool:
    """``progress`` as given, else (None) whether anyone watches: stderr is a terminal, or a notebook runs us."""
    return bool(progress) if progress is not None else (sys.stderr.isatty() or in_notebook())


def progress_bar(**kw):
    """A tqdm bar: a widget in a notebook (tqdm.auto), text on stderr elsewhere."""
    if in_notebook():
        from tqdm.auto import tqdm

        return tqdm(**kw)
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, **kw)


class ProgressBar(Tracker):
    """tqdm progress bar over simulation time (over log-time for log-spaced outputs): t, dt, the
    number of tokens after a hand-off, wall time and ETA; redrawn at most every 0.2 s of wall time.
    ``enabled=None``: when stderr is a terminal or in a notebook (a widget there, through tqdm.auto)."""

    def __init__(self, enabled: bool | None = None, schedule: Schedule | None = None):
        super().__init__(EveryWall(0.2) if schedule is None else schedule)
        self.enabled = show_progress(enabled)
        self.bar = None
        self._shown = 0.0

    def _position(self, sim, t: float) -> float:
        if self.log:
            scale = sim.cfg.output.interval
            return math.log1p(t / scale) / math.log1p(sim.cfg.time.t_end / scale) * 1000
        return t

    def start(self, sim) -> None:
        """Open the bar (if enabled)."""
        if not self.enabled:
            self.schedule = Never()
            return
        self.log = sim.cfg.output.spacing == "log"
        total = 1000 if self.log else sim.cfg.time.t_end
        fmt = ("{l_bar}{bar}| log-time {n:.0f}/{total:.0f} [{elapsed}<{remaining}{postfix}]" if self.log else
               "{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}{postfix}]")
        self.bar = progress_bar(total=total, unit="t", bar_format=fmt)
        self._shown = self._position(sim, sim.t)
        self.bar.update(self._shown)

    def snapshot(self, sim) -> None:
        """The bar moves with the steps only."""

    def act(self, sim) -> None:
        """Advance the bar."""
        extra = f", tokens={sim.tokens.model.n}" if sim.tokens is not None else ""
        self.bar.set_postfix_str(f"t={sim.t:.4g}, dt={sim.dt:.3g}{extra}", refresh=False)
        pos = self._position(sim, sim.t)
        self.bar.update(pos - self._shown)
        self._shown = pos

    def finish(self, sim) -> None:
        """Bring the bar to the final time and close it."""
        if self.bar is not None:
            self.bar.update(self._position(sim, sim.t) - self._shown)
            self.bar.close()


class Checkpointer(Tracker):
    """Writes a checkpoint (``io.write_checkpoint``) after the history row, every ``every`` snapshots, and after
    a step once ``seconds`` of wall time have passed since the last one (a run whose snapshots are far
    apart); ``every = 0``: never."""

    def __init__(self, path, writer, config_hash: str, every: int = 1, run_id: str = "",
                 seconds: float = CHECKPOINT_SECONDS, schedule: Schedule | None = None):
        if schedule is None:
            schedule = AnyOf(EverySnapshot(every), EveryWall(seconds)) if every else Never()
        super().__init__(schedule)
        self.path, self.writer, self.hash = path, writer, config_hash
        self.run_id = run_id  # the history's run_id: a checkpoint resumes only its own history

    def act(self, sim) -> None:
        """Checkpoint the state (the history holds writer.count snapshots)."""
        self.write(sim.resume_point(), self.writer.count)

    def write(self, point: dict, count: int) -> None:
        """Checkpoint ``point``, recording ``count`` regular snapshots in the history."""
        write_checkpoint(self.path, {**point, "run_id": self.run_id}, count, self.hash, self.writer.merge_count)


class Interrupted(Exception):
    """A run stopped on SIGINT / SIGTERM after finishing its current step (``signum`` says which)."""

    def __init__(self, signum: int, t: float):
        super().__init__(f"signal {signum} at t = {t:.6g}")
        self.signum, self.t = signum, t


class SignalStop(Tracker):
    """On SIGINT or SIGTERM: let the current step finish, then call ``on_stop(sim)`` (final snapshot,
    checkpoint) and raise Interrupted.  Handlers are installed for the run only."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, on_stop=None):
        super().__init__(EverySteps(1))
        self.on_stop = on_stop
        self.signum = None
        self._old = {}

    def start(self, sim) -> None:
        """Install the handlers (from the main thread only: a run in a worker thread, as on a Dask worker, is
        stopped by its process).  None in a process pool's worker: its signals are the pool's (``pool_worker``)."""
        import signal
        import threading

        from ..processes import in_pool_worker

        if threading.current_thread() is not threading.main_thread() or in_pool_worker():
            return
        for name in self.SIGNALS:
            num = getattr(signal, name)
            self._old[num] = signal.signal(num, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def act(self, sim) -> None:
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


TRACKER_METHODS = ("start", "step", "snapshot", "finish")


def load_tracker(spec: str, key: str = "--tracker"):
    """The user tracker named by ``spec``: ``MODULE:NAME`` (an importable module) or ``FILE.py:NAME``.  NAME is a
    tracker (an object with any of start / step / snapshot / finish, each called with the Simulation), or a class
    or function called without arguments to make one.  ConfigError (one line naming ``key``) otherwise."""
    import importlib
    import importlib.util
    from pathlib import Path

    allowed = ("allowed: MODULE:NAME or FILE.py:NAME naming a tracker (an object with start / step / snapshot / "
               "finish methods, or a class or function that makes one)")
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise ConfigError(f"{key}: got {spec!r}, {allowed}")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ConfigError(f"{key}: got {spec!r}: {where!r} is not a file; {allowed}")
            loader = importlib.util.spec_from_file_location(f"meanfield_user_tracker_{path.stem}", path)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        obj = getattr(module, name)
        if isinstance(obj, type) or (callable(obj) and not any(hasattr(obj, m) for m in TRACKER_METHODS)):
            obj = obj()
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code: one line, then the caller decides
        raise ConfigError(f"{key}: {spec!r} could not be loaded ({type(exc).__name__}: {first_line(exc)})") from None
    if not any(callable(getattr(obj, m, None)) for m in TRACKER_METHODS):
        raise ConfigError(f"{key}: got {spec!r}, which has none of start / step / snapshot / finish; {allowed}")
    return UserTracker(obj, spec)


class UserTracker:
    """A tracker loaded by ``--tracker``: its methods are called as they are, and an exception in them becomes a
    TrackerError naming it and the time (it is the user's code that failed, not the solver)."""

    def __init__(self, tracker, spec: str):
        self.tracker, self.spec = tracker, spec
        for method in TRACKER_METHODS:
            if callable(getattr(tracker, method, None)):
                setattr(self, method, self._calling(method))

    def _calling(self, method):
        def call(sim):
            try:
                getattr(self.tracker, method)(sim)
            except Exception as exc:  # noqa: BLE001 - the user's code: one line naming it
                raise TrackerError(f"--tracker {self.spec}: {method} raised {type(exc).__name__}: {first_line(exc)} at t = "
                                   f"{sim.t:.6g}; the history keeps the snapshots written before (the checkpoint: "
                                   "--resume continues)") from None
        return call
