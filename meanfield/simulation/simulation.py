"""A run: its phase advanced step by step on its clock to t_end and watched by trackers (``trackers.py``).

    sim = Simulation(cfg)
    sim.run([ProgressBar(), HistoryTracker(writer)])

The state is one of two representations of the same measure (``phases.py``): the density on the grid, or
weighted tokens; a density phase may hand off to tokens when the grid stops resolving it.  ``step()``
advances one accepted step (like scipy.integrate's solvers); ``run`` steps to every output time exactly
and offers each tracker the start, every step, every snapshot and the finish.
"""

from __future__ import annotations

import numpy as np

from ..config import check, layer_at, layer_config
from ..physics import perceptron, theory
from ..physics.heads import attention_heads
from ..physics.clusters import ClusterFinder, default_radius
from ..stepping import Clock
from .memory import check_memory
from .phases import PHASES
from .schedules import output_times
from .setup import blas_threads, density_phase, geometry, initial_state, token_phase


class Simulation:
    """One run: the density (spectral), weighted tokens (particles), or the density handed off to tokens when
    the grid stops resolving it.

    Attributes: ``t``, ``dt`` (the step in use), ``steps`` (read from the clock, which nothing else writes),
    ``phase`` ("density" | "tokens"), ``geometry``, ``model`` (the density's model; None for a particles run),
    ``tokens`` (the token solver once there are tokens), ``handoff`` (the hand-off report, once it happened),
    ``merge_log`` (t, row, count, total weight, two largest weights, reach) per merged group.
    ``c0`` / ``tokens``: start from these coefficients / (positions, weights) instead of [initial].
    """

    def __init__(self, cfg, c0: np.ndarray | None = None, tokens: tuple | None = None):
        check(cfg)  # the solvers' own checks (registered by this package's imports)
        check_memory(cfg)  # before anything is allocated
        self.cfg = cfg
        self.particles = cfg.model.method == "particles"
        self.geometry = geometry(cfg)
        self.merge_log, self.last_good = [], None
        self.merge_base = 0  # merges before merge_log's first record (made by the process this run resumed)
        if c0 is None and tokens is None:
            c0, tokens = initial_state(cfg, self.geometry)
        self.model, self.stepper, self.stepper_reason = None, cfg.particles.integrator, "particles.integrator"
        dt = cfg.time.dt
        if not self.particles:  # the density's first step (adaptive: at most the growth step cap)
            density, self.stepper, self.stepper_reason, dt = density_phase(
                cfg, self.geometry, c0 if tokens is None else self.geometry.uniform())
            self.model = density.model
        self.clock = Clock(dt, fixed_dt=cfg.time.dt)
        if tokens is not None:
            self._phase = token_phase(cfg, self.geometry, *tokens, dt=self.clock.dt)
        else:
            self._phase = density
        if self.particles and cfg.attention.resample:
            self.stepper, self.stepper_reason = "layers", "attention.resample"
        self._finder = None
        self._nfev_before = 0  # right-hand sides of the phases before the current one
        self._layer = None  # the [schedule] layer in force (None: no schedule, or not entered yet)
        self._enter_layer()

    # --- the clock (read-only: only the clock writes its numbers) ---------------------------------------------
    @property
    def t(self) -> float:
        """Simulation time."""
        return self.clock.t

    @property
    def dt(self) -> float:
        """The step in use."""
        return self.clock.dt

    @property
    def steps(self) -> int:
        """Accepted steps so far."""
        return self.clock.steps

    @property
    def next_output(self) -> int:
        """Index of the next output time."""
        return self.clock.next_output

    @property
    def nfev(self) -> int:
        """Right-hand sides (density) and fields (tokens) evaluated so far, every phase (scipy's name)."""
        return self._nfev_before + self._phase.nfev

    # --- the phase ----------------------------------------------------------------------------------------
    @property
    def phase(self) -> str:
        """"density" or "tokens"."""
        return self._phase.name

    @property
    def handoff(self):
        """The hand-off's report once the run is tokens (``handoff.HandOff``; a start from tokens reports one
        at t = 0); None for a density or a particles run."""
        return self._phase.handoff

    @property
    def state(self):
        """The current solver state (spectral coefficients, or token positions in ``state.u``)."""
        return self._phase.state

    @property
    def tokens(self):
        """The token solver, once the run is tokens (else None)."""
        return self._phase.solver

    @property
    def x(self) -> np.ndarray:
        """The positions of the live tokens ; for zonal rings, (sin theta, cos theta) in the meridian plane."""
        return self._phase.x

    @property
    def weights(self) -> np.ndarray:
        """Weights of the live tokens (sum 1)."""
        return self._phase.weights

    @property
    def c(self) -> np.ndarray:
        """The spectral coefficients of the density, or, the tokens' smoothed density estimate."""
        return self._phase.coefficients()

    @property
    def bandwidth(self) -> float:
        """The heat-kernel bandwidth of the tokens' density estimate."""
        return self._phase.bandwidth

    def rho(self) -> np.ndarray:
        """The density (or the tokens' smoothed estimate) on the grid."""
        return self.geometry.to_grid(self.c)

    def token_positions(self) -> np.ndarray:
        """Positions on every output row (rows, d): NaN for rows without a live token."""
        return self._phase.positions()

    def token_rows(self) -> int:
        """Rows of the token output (/positions): the tokens of a particles run, or the hand-off nodes."""
        return self._phase.output_rows()

    def resolution(self) -> tuple[float, float, float]:
        """(spectral tail, min rho / max rho, max |rho / rho_bar - 1|) of the density on the grid."""
        return self._phase.resolution()

    def energy(self) -> float:
        """e^{-beta} E, the interaction energy (docs/theory.md) (of the density, or exactly of the tokens)."""
        return self._phase.energy()

    def energy_rate(self) -> float:
        """e^{-beta} dE/dt."""
        return self._phase.energy_rate()

    def diagnostics(self, rho: np.ndarray | None = None) -> dict:
        """The values a snapshot records (docs/output.md), with the clock's dt and steps."""
        if rho is None and self._phase.needs_grid:
            rho = self.rho()
        out = self._phase.diagnostics(rho)
        out.update(dt=self.dt, steps=self.steps)
        return out

    def cluster_finder(self) -> ClusterFinder:
        """The run's cluster criterion (``physics.clusters``)."""
        if self._finder is None:
            m, lt, d = self.cfg.model, self.cfg.longtime, self.geometry.dim
            radius = lt.cluster_radius or default_radius(theory.most_unstable_mode(m.beta, m.variant, m.viscosity, d))
            kind = {"circle": "circle", "sphere": "sphere"}.get(self.geometry.name,
                                                                 "points" if self.particles else "rings")
            self._finder = ClusterFinder(kind, d, radius, lt.cluster_mass)
        return self._finder

    def clusters(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions (C, k), masses (C,)) of the clusters now, heaviest first (``physics.clusters``)."""
        return self.cluster_finder().find(*self._phase.cluster_measure())

    def guard(self) -> None:
        """NumericalError if the state is no longer a measure (non-finite, negative, past the positivity bound)."""
        self._phase.guard(self)

    def resolution_warnings(self) -> list[tuple[str, str]]:
        """(key, message) of what the state resolves only approximately (the density phase's warnings)."""
        return self._phase.warnings(self)

    def token_data(self):
        """(positions, weights) on every output row, or None while the run is a density."""
        return self._phase.token_rows()

    # --- checkpoints -----------------------------------------------------------------------------------------
    def resume_point(self) -> dict:
        """Everything a checkpoint needs to continue this run bit for bit (arrays are not copied:
        states are immutable)."""
        point = {**self._phase.resume_point(), **self.clock.state(), "merges": self.merge_count}
        point.setdefault("rng", None)
        point.setdefault("tail0", 0.0)
        point.setdefault("handoff", None)
        return point

    def check_point(self, point: dict) -> None:
        """ValueError naming what is wrong if ``point`` cannot be a resume point of this run: its state arrays
        of another shape than this run's, non-finite values, or clock values out of range."""
        for name, low in (("t", 0.0), ("dt", 0.0), ("steps", 0), ("next_output", 0), ("t0", 0.0), ("j", 0)):
            value = float(point[name])
            if not (np.isfinite(value) and value >= low):
                raise ValueError(f"{name} = {value:g}")
        if int(point["next_output"]) > len(self.output_times()):
            raise ValueError(f"next_output = {int(point['next_output'])}, the run has {len(self.output_times())} "
                             "snapshots")
        phase = point.get("phase", "density")
        if phase not in PHASES or (phase == "density" and self.phase != "density"):  # tokens never turn back
            raise ValueError(f"phase = {phase!r}")
        arrays = PHASES[phase].check(point, self.geometry)
        if "n_rows" in point and int(point["n_rows"]) != self.token_rows():
            raise ValueError(f"n_rows = {int(point['n_rows'])}, this run's token output has {self.token_rows()}")
        if not all(np.all(np.isfinite(a)) for a in arrays if np.asarray(a).dtype.kind in "fc"):
            raise ValueError("non-finite values in the state")

    def restore(self, point: dict) -> None:
        """Continue from a resume point (``resume_point()`` or a checkpoint read back, passed by ``check_point``)."""
        if point.get("phase", "density") != self._phase.name:  # a density run continued past its hand-off
            tok = point["tokens"]
            self._phase = token_phase(self.cfg, self.geometry, tok["state"].u, tok["w"], tok["ids"],
                                      int(point["n_rows"]), dt=float(point["dt"]))
        self._enter_layer(float(point["t"]))  # the layer in force there, before its state is put back
        self._phase.restore(point)
        self.clock.load(point)
        merges = int(point.get("merges", self.merge_count))
        del self.merge_log[max(0, merges - self.merge_base):]
        self.merge_base = merges - len(self.merge_log)  # a resumed process counts on from the stored number

    @property
    def merge_count(self) -> int:
        """Merged groups since the run began (across resumes)."""
        return self.merge_base + len(self.merge_log)

    # --- layers ([schedule]) -------------------------------------------------------------------------------------
    def _enter_layer(self, t: float | None = None) -> None:
        """Put in force the [schedule] layer holding t (default: now), if it is not the one in force: the density
        phase is rebuilt from the layer's config (its model, linear part and scheme), the token field takes the
        layer's beta, heads and perceptron, and the integrator starts afresh (no history across the switch)."""
        if not self.cfg.schedule.times:
            return
        k = layer_at(self.cfg, self.t if t is None else t)
        if k == self._layer:
            return
        cfg = layer_config(self.cfg, k)
        if self._phase.name == "density":
            new, _, _, dt = density_phase(cfg, self.geometry, self._phase.coefficients())
            self._nfev_before += self._phase.nfev if self._layer is not None else 0
            self._phase, self.model = new, new.model
            if self._phase.adaptive and self._layer is not None:
                self.clock.dt = min(self.clock.dt, dt)
        else:
            solver = self._phase.solver
            model = solver.model
            model.beta = cfg.model.beta
            model.funk_hecke = None  # built again for this beta where it applies
            model.set_heads(*(list(mats) for mats in zip(*attention_heads(cfg, model.dim))))
            model.perceptron = perceptron.from_config(cfg)
            solver.state = solver.scheme.start(solver.state.u)
        self._layer = k

    def _layer_end(self) -> float:
        """The end of the layer in force (inf after the last)."""
        times = self.cfg.schedule.times
        return float(times[self._layer]) if self._layer < len(times) else float("inf")

    # --- stepping ----------------------------------------------------------------------------------------------
    def output_times(self) -> np.ndarray:
        """Snapshot times (``schedules.output_times``)."""
        return output_times(self.cfg)

    def step(self, t_stop: float | None = None) -> None:
        """Advance one accepted step, not beyond ``t_stop`` (default time.t_end; RuntimeError once t has
        reached it).  In a hand-off run, a density step that leaves the grid's resolution is taken back
        and the run continues as tokens from the state before it (so this call may hand off without
        advancing t)."""
        t_stop = self.cfg.time.t_end if t_stop is None else float(t_stop)
        if self.cfg.schedule.times:  # switch layers between steps, never within one (a snapshot at a layer's
            self._enter_layer()      # end belongs to that layer)
            t_stop = min(t_stop, self._layer_end())
        if self.clock.remaining(t_stop) <= 0:
            raise RuntimeError(f"step: t = {self.t:.6g} has reached t_stop = {t_stop:.6g}")
        adaptive = self._phase.adaptive
        before = self.clock.state()
        h = self.clock.step_size(t_stop, adaptive)
        taken, proposed = self._phase.step(h)
        self.clock.advance(t_stop, h, taken, proposed, adaptive)
        # a record's last entry: how long before the step's end its parts met (TokenSolver.merge); in time order
        self.merge_log.extend(sorted(((self.t - m[-1], *m[:-1]) for m in self._phase.take_merges()), key=lambda r: r[0]))
        if self._phase.ended(self):  # a hand-off: the tokens start from the state before this step
            self.clock.load(before)
            self._nfev_before += self._phase.nfev
            self._phase = self._phase.successor(self)

    def run(self, trackers=()) -> None:
        """Step to t_end, calling trackers at the start, after every step, at snapshots and at the end.

        A tracker is any object with some of ``start(sim)``, ``step(sim)``, ``snapshot(sim)``, ``finish(sim)``
        (``trackers.Tracker`` gives them a schedule).  A restored simulation (``restore``) continues where its
        resume point stood."""
        from threadpoolctl import threadpool_limits

        trackers = list(trackers)
        with threadpool_limits(limits=blas_threads(self.cfg), user_api="blas"):
            self._run(trackers)

    def _run(self, trackers) -> None:
        _call(trackers, "start", self)
        try:
            times = self.output_times()
            if self.clock.next_output == 0:
                self.clock.output_reached()
                _call(trackers, "snapshot", self)
            while self.clock.next_output < times.size:
                t_out = float(times[self.clock.next_output])
                while self.clock.remaining(t_out) > 0:
                    self.step(t_out)
                    _call(trackers, "step", self)
                self.clock.output_reached()
                _call(trackers, "snapshot", self)
        finally:
            _call(trackers, "finish", self)


def _call(trackers, name, sim) -> None:
    for tr in trackers:
        fn = getattr(tr, name, None)
        if fn is not None:
            fn(sim)
