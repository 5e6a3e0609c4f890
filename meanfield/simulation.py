"""A run: geometry + model + stepper + step controller, driven to t_end, watched by trackers.

    sim = Simulation(cfg)            # or Simulation.from_parts(...) for scripting
    sim.run([ProgressBar(...), HistoryTracker(writer)])

``Simulation.step()`` advances one accepted step (like scipy.integrate's solvers);
``run`` steps to every output time exactly and calls the trackers.  Trackers are
plain objects with any of ``start(sim)``, ``step(sim)``, ``snapshot(sim)``,
``finish(sim)``; new outputs are new trackers, not new branches in the loop.
"""

from __future__ import annotations

import math
import sys
import time as _time
import warnings

import numpy as np

from .domains import make_geometry
from .errors import NumericalError
from .initial import initial_coefficients
from .model import AttentionModel
from .stepping import AdaptiveStep, FixedStep, make_scheme

#: Spectral tail (top third of modes, relative to rho_0) above which a resolution warning is given.
TAIL_WARN = 1e-4
#: SA divides by psi; below this min/max ratio of psi the field has lost more than ~6 digits.
PSI_RANGE_WARN = 1e-10
#: A non-negative density bounds every coefficient (circle: |rho_k| <= rho_0); beyond this
#: multiple of the bound (geometry.coefficient_ratio) the run is garbage and stops.
POSITIVITY_BOUND = 2.0


class Simulation:
    """One spectral solve: state ``c`` at time ``t``; ``step()`` and ``run()`` advance it."""

    def __init__(self, cfg, c0: np.ndarray | None = None):
        self.cfg = cfg
        m, g, tc = cfg.model, cfg.grid, cfg.time
        self.geometry = make_geometry(m.geometry, g.modes, g.dealias, g.backend, cfg.dim)
        self.model = AttentionModel(self.geometry, m.variant, m.beta, m.viscosity)
        self.scheme = make_scheme(tc.stepper, self.model.L, self.model.nonlinear)
        if tc.adaptive:
            self.controller = AdaptiveStep(tc.dt, tc.rtol, tc.atol, tc.cfl, tc.dt_min, tc.dt_max,
                                           spacing=self.geometry.spacing, max_speed=self.model.max_speed)
        else:
            self.controller = FixedStep(tc.dt)
        if c0 is None:
            c0 = initial_coefficients(cfg, self.geometry)
        self.state = self.scheme.start(np.asarray(c0, dtype=complex))
        self.t = 0.0
        self.dt = tc.dt
        self.steps = 0
        self._reset_position()

    def _reset_position(self) -> None:
        # where the run loop stands: next output index, and (fixed steps) the start of the current
        # interval and the steps taken in it, so a resumed run recomputes t = t0 + j dt exactly
        self.next_output, self._t0, self._j = 0, self.t, 0
        self.last_good = None

    def resume_point(self) -> dict:
        """Everything a checkpoint needs to continue this run bit for bit (arrays are not copied:
        states are immutable)."""
        return {"state": self.state, "t": self.t, "dt": self.dt, "steps": self.steps,
                "next_output": self.next_output, "t0": self._t0, "j": self._j, "rng": self._rng_state()}

    def restore(self, point: dict) -> None:
        """Continue from a resume point (``resume_point()`` or a checkpoint read back)."""
        self.state = point["state"]
        self.t, self.dt, self.steps = float(point["t"]), float(point["dt"]), int(point["steps"])
        self.next_output, self._t0, self._j = int(point["next_output"]), float(point["t0"]), int(point["j"])
        if point.get("rng") is not None:
            self.scheme.rng.bit_generator.state = point["rng"]

    def _rng_state(self):
        rng = getattr(self.scheme, "rng", None)
        return None if rng is None else rng.bit_generator.state

    @property
    def c(self) -> np.ndarray:
        """Current spectral coefficients."""
        return self.state.u

    def rho(self) -> np.ndarray:
        """Current density on the grid."""
        return self.geometry.to_grid(self.c)

    def output_times(self) -> np.ndarray:
        """Snapshot times: 0, interval, 2 interval, ... <= t_end, and t_end."""
        t_end, interval = self.cfg.time.t_end, self.cfg.output.interval
        n = int(math.floor(t_end / interval * (1 + 1e-12)))
        times = interval * np.arange(n + 1)
        if t_end - times[-1] > 1e-9 * t_end:
            times = np.append(times, t_end)
        else:
            times[-1] = t_end
        return times

    def step(self, t_stop: float = math.inf) -> None:
        """Advance one accepted step, not beyond ``t_stop``."""
        h = min(self.dt, t_stop - self.t)
        if self.controller.adaptive:
            self.state, taken, proposed = self.controller.advance(self.scheme, self.state, h)
            # a step shortened only to land on an output time says nothing against the current dt
            self.dt = max(proposed, self.dt) if (h < self.dt and taken == h) else proposed
        else:
            self.state, taken, _ = self.controller.advance(self.scheme, self.state, h)
        self.steps += 1
        self.t = t_stop if abs(t_stop - (self.t + taken)) <= 1e-12 * max(1.0, abs(t_stop)) else self.t + taken

    def run(self, trackers=()) -> None:
        """Step to t_end, calling trackers at the start, after every step, at snapshots and at the end.

        A restored simulation (``restore``) continues where its resume point stood."""
        trackers = list(trackers)
        _call(trackers, "start", self)
        try:
            times = self.output_times()
            if self.next_output == 0:
                self.next_output = 1
                _call(trackers, "snapshot", self)
            while self.next_output < times.size:
                self._advance_to(float(times[self.next_output]), trackers)
                self.next_output += 1
                self._t0, self._j = self.t, 0
                _call(trackers, "snapshot", self)
        finally:
            _call(trackers, "finish", self)

    def _advance_to(self, t_out: float, trackers) -> None:
        if self.controller.adaptive:
            while self.t < t_out:
                self.step(t_out)
                _call(trackers, "step", self)
            return
        # fixed steps: count them from the interval's start, so t never drifts
        dt = self.cfg.time.dt
        n = int(round((t_out - self._t0) / dt))
        while self._j < n:
            self.state, _, _ = self.controller.advance(self.scheme, self.state, dt)
            self.steps += 1
            self._j += 1
            self.t = self._t0 + self._j * dt
            _call(trackers, "step", self)
        self.t = t_out


def _call(trackers, name, sim) -> None:
    for tr in trackers:
        fn = getattr(tr, name, None)
        if fn is not None:
            fn(sim)


# -------------------------------------------------------------------------------------
# trackers
class BlowUpGuard:
    """Stops the run (NumericalError) on non-finite values or lost positivity, naming the time and a remedy."""

    def step(self, sim) -> None:
        """Check the state after every step."""
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
        sim.last_good = sim.resume_point()


class ResolutionMonitor:
    """Warns once each when, at a snapshot, the spectral tail exceeds TAIL_WARN (clusters sharper
    than the grid) or, for SA, psi spans more than 1/PSI_RANGE_WARN (few clusters at large beta)."""

    def __init__(self):
        self.warned = set()

    def _warn(self, key, message) -> None:
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def snapshot(self, sim) -> None:
        """Check the resolution at a snapshot."""
        tail = sim.geometry.tail(sim.c)
        if tail > TAIL_WARN:
            self._warn("tail", f"t = {sim.t:.6g}: spectral tail {tail:.2g} > {TAIL_WARN:g}: the density is "
                       "under-resolved (clusters sharper than the grid); raise grid.modes or add model.viscosity")
        rho = sim.rho()
        if rho.min() < -1e-8 * rho.max():  # beyond the round-off of a spectral sum
            self._warn("negative", f"t = {sim.t:.6g}: the density is negative somewhere (min {rho.min():.3g}): "
                       "under-resolved; raise grid.modes or add model.viscosity")
        if sim.model.variant == "sa":
            r = sim.model.psi_range(sim.c)
            if r < PSI_RANGE_WARN:
                self._warn("psi", f"t = {sim.t:.6g}: min psi / max psi = {r:.2g}: the SA field grad(psi)/psi "
                           "is inaccurate where psi is small (under-resolved, or few clusters at large beta); "
                           "raise grid.modes or add model.viscosity")


class Recorder:
    """Keeps every snapshot in memory: ``times`` and ``states`` (spectral coefficients, or token
    positions for a particles run) as arrays — for scripts and tests that need no file."""

    def __init__(self):
        self._t, self._u = [], []

    def snapshot(self, sim) -> None:
        """Keep a copy of the state."""
        self._t.append(sim.t)
        self._u.append(np.array(sim.state.u, copy=True))

    @property
    def times(self) -> np.ndarray:
        """Snapshot times."""
        return np.array(self._t)

    @property
    def states(self) -> np.ndarray:
        """The states, stacked along the first axis."""
        return np.array(self._u)


class HistoryTracker:
    """Writes each snapshot (grid values, coefficients, diagnostics) to a HistoryWriter."""

    def __init__(self, writer):
        self.writer = writer

    def snapshot(self, sim) -> None:
        """Append the current state and its diagnostics."""
        c = sim.c
        rho = sim.geometry.to_grid(c)
        self.writer.append(sim.t, c, rho, self.diagnostics(sim, c, rho), **self.extra(sim))

    def diagnostics(self, sim, c, rho) -> dict:
        """The /diagnostics values of this snapshot."""
        diag = {
            "mass": sim.geometry.integrate(rho),
            "energy": sim.model.energy_scaled(c),
            "tail": sim.geometry.tail(c),
            "dt": sim.dt,
            "steps": sim.steps,
        }
        if "free_energy" in self.writer.diag:
            diag["free_energy"] = sim.model.free_energy_scaled(c)
        return diag

    def extra(self, sim) -> dict:
        """Further per-snapshot datasets (none for a spectral run)."""
        return {}

    def finish(self, sim) -> None:
        """Close the file (shrinking it to the snapshots written)."""
        self.writer.close()


class ProgressBar:
    """tqdm progress bar over simulation time: t, dt, wall time and ETA."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        self._shown = 0.0
        self._every = 0.2  # seconds between updates: stepping must not wait on the terminal

    def start(self, sim) -> None:
        """Open the bar (if enabled)."""
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=sim.cfg.time.t_end, unit="t", file=sys.stderr, dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}{postfix}]")
        self._wall = _time.monotonic()

    def step(self, sim) -> None:
        """Advance the bar, at most every ``_every`` seconds."""
        if self.bar is None:
            return
        now = _time.monotonic()
        if now - self._wall >= self._every:
            self._wall = now
            self.bar.set_postfix_str(f"dt={sim.dt:.3g}", refresh=False)
            self.bar.update(sim.t - self._shown)
            self._shown = sim.t

    def finish(self, sim) -> None:
        """Bring the bar to the final time and close it."""
        if self.bar is not None:
            self.bar.update(sim.t - self._shown)
            self.bar.close()


class Checkpointer:
    """Writes a checkpoint (io.write_checkpoint) every ``every`` snapshots, after the history row."""

    def __init__(self, path, writer, config_hash: str, every: int = 1):
        self.path, self.writer, self.hash, self.every = path, writer, config_hash, int(every)
        self._seen = 0

    def snapshot(self, sim) -> None:
        """Checkpoint the state just written to the history (every ``every``-th snapshot)."""
        self._seen += 1
        if self.every and self._seen % self.every == 0:
            self.write(sim.resume_point(), self.writer.count)

    def write(self, point: dict, count: int) -> None:
        """Checkpoint ``point``, recording ``count`` regular snapshots in the history."""
        from .io import write_checkpoint

        write_checkpoint(self.path, point, count, self.hash)


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
        """Install the handlers."""
        import signal

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
