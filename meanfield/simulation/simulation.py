"""A run: its state advanced step by step to t_end and watched by trackers (``trackers.py``).

    sim = Simulation(cfg)
    sim.run([ProgressBar(), HistoryTracker(writer)])

The state is one of two representations of the same measure:

* the **density** on the grid (``model.method = "spectral"``): spectral coefficients advanced by
  an IMEX / exponential scheme (``stepping.py``);
* **weighted tokens** (``model.method = "particles"``, or a spectral run after its hand-off,
  ``longtime.handoff = "tokens"``): positions advanced by a projected Runge–Kutta scheme, merged
  when they meet (``particles.TokenSolver``).

``step()`` advances one accepted step (like scipy.integrate's solvers); ``run`` steps to every
output time exactly and calls the trackers' ``start``, ``step``, ``snapshot`` and ``finish``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict

import numpy as np

from ..physics import theory
from ..physics.clusters import ClusterFinder, default_radius
from ..domains import make_geometry
from ..errors import ConfigError, NumericalError
from ..physics.initial import initial_coefficients, initial_tokens
from .handoff import NEGATIVE_TOL, HandOff, density_to_tokens, resolution_bandwidth
from ..domains.positions import Positions
from ..physics.general import attention_heads, build_model
from ..tokens import RandomLayers, RingModel, TokenModel, TokenSolver, default_bandwidth, particle_geometry_name, sample_tokens, smoothed_density
from ..stepping import AUTO, EMBEDDED_SCHEMES, AdaptiveStep, EmbeddedStep, FixedStep, make_scheme, perturbation_error

#: A spectral phase longer than this many steps (a hand-off run whose density stays resolved)
#: stops with a message instead of running for ever.
MAX_STEPS = 1_000_000_000

#: time.stepper = "auto" calls a run stiff when viscosity's fastest rate exceeds this many times the
#: fastest attention rate (and 1): explicit steps would then be set by the viscous mode, not by accuracy.
STIFFNESS = 10.0


def error_span(cfg) -> float:
    """The time over which an embedded scheme's local errors are budgeted to add up to time.rtol: the
    run (t_end), or one time unit in a hand-off run, whose t_end (up to 1e20) says nothing of how long
    the density phase lasts."""
    return cfg.time.t_end if cfg.longtime.handoff == "none" else 1.0


def pick_stepper(cfg, model) -> tuple[str, str]:
    """(scheme, why) for ``time.stepper`` (``"auto"``: chosen by stiffness, nu |Lap|_max against the
    attention rates; any other name is kept).  Fixed steps: etdrk4 (the linear part exact, order 4).
    Adaptive: ark43 (L implicit) when stiff, else dop853 (explicit, no solve, no growth-rate limit;
    measured against dopri5 on the circle at nu = 0: as cheap at K = 512, rtol 1e-3, 3.5x cheaper at
    rtol 1e-8, 2.5x at K = 2048, rtol 1e-5)."""
    tc = cfg.time
    if tc.stepper != AUTO:
        return tc.stepper, "as configured"
    if not tc.adaptive:
        return "etdrk4", "fixed steps: exact linear part, order 4"
    viscous = model.viscosity * float(np.max(-model.lap))
    attention = float(np.max(np.abs(model.L - model.viscosity * model.lap)))
    stiff = viscous > STIFFNESS * max(attention, 1.0)
    cmp = ">" if stiff else "<="
    why = (f"viscosity x max|Lap| = {viscous:.3g} {cmp} {STIFFNESS:g} x max(attention rate {attention:.3g}, 1): "
           + ("stiff" if stiff else "not stiff"))
    return ("ark43" if stiff else "dop853"), why


def output_times(cfg) -> np.ndarray:
    """Snapshot times of a run.

    linear: 0, interval, 2 interval, ... <= t_end, and t_end.
    log:    0, interval, then t_{k+1} = max(t_k + interval, t_k 10^(1/per_decade)) up to t_end: linear
            while that is denser, geometric after (per_decade snapshots per decade of time).
    With fixed steps every time is a multiple of time.dt.
    """
    t_end, interval, o = cfg.time.t_end, cfg.output.interval, cfg.output
    if o.spacing == "linear":
        n = int(math.floor(t_end / interval * (1 + 1e-12)))
        times = interval * np.arange(n + 1)
        if t_end - times[-1] > 1e-9 * t_end:
            return np.append(times, t_end)
        times[-1] = t_end
        return times
    ratio = 10.0 ** (1.0 / o.per_decade)
    times, t = [0.0], interval
    while t < t_end * (1 - 1e-12):
        times.append(t)
        t = max(t + interval, t * ratio)
    times = np.array(times + [t_end])
    if not cfg.time.adaptive:
        dt = cfg.time.dt
        times[1:-1] = np.round(times[1:-1] / dt) * dt
        times = times[np.r_[True, np.diff(times) > 0.5 * dt]]
        times[-1] = t_end
    return times


class Simulation:
    """One run: the density (spectral), weighted tokens (particles), or the density handed off to
    tokens when the grid stops resolving it.

    Attributes: ``t``, ``dt`` (the step in use), ``steps``, ``phase`` ("density" | "tokens"),
    ``geometry``, ``model`` (the spectral model; None for a particles run), ``tokens`` (the token
    solver once there are tokens), ``handoff`` (the hand-off report, once it happened).
    """

    def __init__(self, cfg, c0: np.ndarray | None = None, tokens: tuple | None = None):
        self.cfg = cfg
        m, g, tc, lt = cfg.model, cfg.grid, cfg.time, cfg.longtime
        self.particles = m.method == "particles"
        name = particle_geometry_name(cfg.particles.dim) if self.particles else m.geometry
        self.geometry = make_geometry(name, g.modes, g.dealias, g.backend, cfg.dim,
                                      threads=transform_threads(tc.threads, name, g.modes))
        if cfg.attention.causal and not self.particles:  # the causal density: a position axis
            self.geometry = Positions(self.geometry, g.positions)
        self.handoff_enabled = lt.handoff == "tokens"
        self.tokens, self.handoff, self.model = None, None, None
        self.merge_log = []  # (t, row, count, total weight, two largest weights, reach) per merged group
        self.t, self._t_lo, self.dt, self.steps = 0.0, 0.0, tc.dt, 0
        self._cache = {}
        self._reset_position()
        self.stepper, self.stepper_reason = cfg.particles.integrator, "particles.integrator"
        if not self.particles:
            self.model = build_model(cfg, self.geometry)
            self.stepper, self.stepper_reason = pick_stepper(cfg, self.model)
            self.scheme = make_scheme(self.stepper, self.model.L, self.model.nonlinear)
            dt_cap = self._growth_step_cap()
            if tc.adaptive:
                self.dt = min(tc.dt, dt_cap)
            if tc.adaptive and self.stepper in EMBEDDED_SCHEMES:
                self.controller = EmbeddedStep(self.dt, tc.rtol, tc.atol, min(tc.dt_min, dt_cap),
                                               min(tc.dt_max, dt_cap), norm=perturbation_error,
                                               span=error_span(cfg), hint="loosen time.rtol, raise grid.modes or add viscosity")
            elif tc.adaptive:
                self.controller = AdaptiveStep(self.dt, tc.rtol, tc.atol, tc.cfl, min(tc.dt_min, dt_cap),
                                               min(tc.dt_max, dt_cap), spacing=self.geometry.spacing,
                                               max_speed=self.model.max_speed if tc.cfl > 0 else None)
            else:
                self.controller = FixedStep(tc.dt)
        if tokens is None and c0 is None:
            tokens = initial_tokens(cfg, self.geometry)
        if tokens is None and self.particles:
            tokens = (sample_tokens(cfg, self.geometry, cfg.particles.n, np.random.default_rng(cfg.initial.seed)),
                      None)
        if tokens is not None:
            if not (self.particles or self.handoff_enabled):
                raise ConfigError(f"initial.path: {cfg.initial.path!r} holds tokens at that time, allowed for a density "
                                  "run: a snapshot of a spectral run or from before a hand-off (tokens start runs with "
                                  "model.method = 'particles' or longtime.handoff = 'tokens')")
            self.tail0 = 0.0
            self._start_tokens(*tokens)
            if not self.particles:
                self.handoff = HandOff(0.0, "initial tokens", self.tokens.n_rows, self.tokens.model.n, 0, 0.0, 1.0,
                                       math.nan, math.nan)
        else:
            c0 = initial_coefficients(cfg, self.geometry) if c0 is None else c0
            self.state = self.scheme.start(np.asarray(c0, dtype=complex))
            self.tail0 = self.geometry.tail(self.state.u)

    def _growth_step_cap(self) -> float:
        """The longest step at which an implicit scheme still grows the fastest growing mode at its rate
        to time.growth_tol (inf for the exponential schemes, which integrate the linear part exactly).
        A fixed dt above it is refused (time.growth_check = "refuse", the default) or warned about: an
        implicit step with lambda dt >> 1 damps a growing mode, a silent wrong answer."""
        tc = self.cfg.time
        growing = self.model.L.real
        lam = float(np.max(growing))
        if tc.growth_check == "off" or lam <= 0:
            return math.inf
        z_max = type(self.scheme).growth_step_limit(tc.growth_tol)
        if not math.isfinite(z_max):
            return math.inf
        cap = z_max / lam
        if tc.adaptive and tc.t_end / cap <= MAX_STEPS:
            return cap
        if not tc.adaptive and tc.dt <= cap:
            return math.inf
        mode = tuple(int(i) for i in np.unravel_index(int(np.argmax(growing)), growing.shape))
        where, given = ("time.adaptive", "true") if tc.adaptive else ("time.dt", f"{tc.dt:g}")
        allowed = (f"at most {MAX_STEPS:g} steps of <= {cap:.3g}, so time.t_end <= {MAX_STEPS * cap:.3g}"
                   if tc.adaptive else f"<= {cap:.3g}")
        message = (f"{where}: got {given}, allowed with time.stepper = {self.stepper!r}: {allowed}. The fastest growing "
                   f"mode (lambda = {lam:.4g}, index {mode}) would be stepped at lambda dt = {lam * tc.dt:.3g}: "
                   f"{self.stepper}'s discrete growth rate is off by more than time.growth_tol = {tc.growth_tol:g} "
                   f"beyond lambda dt = {z_max:.3g}, and a long implicit step damps a growing mode. Use "
                   "time.stepper = 'etdrk4' (exact linear part) or a smaller dt (time.growth_check = 'warn' runs "
                   "anyway)")
        if tc.growth_check == "refuse":
            raise ConfigError(message)
        warnings.warn(message.replace(". The fastest", "; running anyway. The fastest"), stacklevel=2)
        return cap if tc.adaptive else math.inf

    # --- tokens -------------------------------------------------------------------------
    def _start_tokens(self, x, w=None, rows=None, n_rows=None) -> None:
        """Continue (or start) as the tokens x with weights w (default equal) on output rows ``rows``."""
        cfg, m, lt, tc = self.cfg, self.cfg.model, self.cfg.longtime, self.cfg.time
        x = np.asarray(x, dtype=float)
        w = np.full(x.shape[0], 1.0 / x.shape[0]) if w is None else np.asarray(w, dtype=float) / np.sum(w)
        rows = np.arange(x.shape[0]) if rows is None else rows
        n_rows = x.shape[0] if n_rows is None else n_rows
        if self.particles:
            p, a = cfg.particles, cfg.attention
            Q, K, V = (list(mats) for mats in zip(*attention_heads(cfg, p.dim)))
            model = TokenModel(w, m.beta, m.variant, p.dim, Q, K, V, a.causal, field=p.field,
                               threads=token_threads(cfg), backend=p.backend, device=p.device, alibi=a.alibi)
            merge = lt.merge_tol if (m.viscosity == 0 and not a.causal) else 0.0
            self.tokens = TokenSolver(model, x, rows, n_rows, p.integrator, self.dt, tc.adaptive, tc.rtol, tc.atol,
                                      tc.dt_min, tc.dt_max, merge, noise=m.viscosity,
                                      rng=np.random.default_rng([a.seed, cfg.initial.seed, 1]))
            if a.resample:  # one step = one layer with fresh heads (its rng is checkpointed)
                self.tokens.scheme = RandomLayers(model, a.heads, a.variance, np.random.default_rng([a.seed, 2]))
                self.stepper, self.stepper_reason = "layers", "attention.resample"
            self.bandwidth = p.bandwidth or default_bandwidth(x.shape[0], p.dim)
        else:
            if self.geometry.name == "zonal":
                if x.shape[1] != 2:  # points of R^d stand for the rings through them
                    x = np.stack([np.linalg.norm(x[:, :-1], axis=1), x[:, -1]], axis=1)
                model = RingModel(w, m.beta, m.variant, self.geometry.dim, pole_tol=lt.merge_tol / 2)
            else:  # the same heads as the density (circle, sphere; config refuses causal hand-offs)
                Q, K, V = (list(mats) for mats in zip(*attention_heads(cfg, self.geometry.dim)))
                model = TokenModel(w, m.beta, m.variant, self.geometry.dim, Q, K, V)
            self.tokens = TokenSolver(model, x, rows, n_rows, "dopri5", self.dt, True, lt.rtol, lt.atol,
                                      merge_tol=lt.merge_tol)
            self.bandwidth = resolution_bandwidth(self.geometry)
        self._cache.clear()

    def _hand_off(self, reason: str) -> None:
        """The density stopped being resolved: continue from the current state as tokens."""
        c = self.state.u
        tail, ratio = self.resolution()
        energy = self.model.energy_scaled(c)
        x, w, rows, info = density_to_tokens(self.geometry, c, self.cfg.longtime.oversample)
        self._start_tokens(x, w, rows, info["nodes"])
        self.handoff = HandOff(self.t, reason, tail=tail, min_density_ratio=ratio, energy_density=energy,
                               energy_tokens=self.tokens.model.energy_scaled(self.tokens.x), **info)

    def token_rows(self) -> int:
        """Rows of the token output (/positions): the tokens of a particles run, or the hand-off nodes."""
        if self.particles or (self.tokens is not None and self.handoff is not None
                              and self.handoff.reason == "initial tokens"):
            return self.tokens.n_rows
        return self.geometry.quadrature_size(self.cfg.longtime.oversample)

    # --- views of the state ------------------------------------------------------------------
    @property
    def phase(self) -> str:
        """"density" or "tokens"."""
        return "density" if self.tokens is None else "tokens"

    @property
    def state(self):
        """The current solver state (spectral coefficients, or token positions in ``state.u``)."""
        return self._state if self.tokens is None else self.tokens.state

    @state.setter
    def state(self, value) -> None:
        if self.tokens is None:
            self._state = value
        else:
            self.tokens.state = value

    @property
    def x(self) -> np.ndarray:
        """Positions of the live tokens (zonal rings: (sin theta, cos theta) of the meridian plane)."""
        return self.tokens.x

    @property
    def weights(self) -> np.ndarray:
        """Weights of the live tokens (sum 1)."""
        return self.tokens.w

    @property
    def c(self) -> np.ndarray:
        """Spectral coefficients: of the density, or of the tokens' smoothed density estimate."""
        if self.tokens is None:
            return self._state.u
        return self._cached("estimate", self.tokens.state,
                            lambda: smoothed_density(self.geometry, self.tokens.x, self.tokens.w, self.bandwidth))

    def _cached(self, name: str, owner, compute):
        """compute(), remembered while ``owner`` (an immutable state) is current."""
        hit = self._cache.get(name)
        if hit is None or hit[0] is not owner:
            hit = self._cache[name] = (owner, compute())
        return hit[1]

    def rho(self) -> np.ndarray:
        """The density (or the tokens' smoothed estimate) on the grid."""
        return self.geometry.to_grid(self.c)

    def token_positions(self) -> np.ndarray:
        """Positions on every output row (rows, d): NaN for rows without a live token; zonal rings
        as the point (sin theta, 0, ..., 0, cos theta) of R^d."""
        p = self.tokens.full_positions()
        if p.shape[1] == self.geometry.dim:
            return p
        out = np.zeros((p.shape[0], self.geometry.dim))
        out[:, 0], out[:, -1] = p[:, 0], p[:, 1]
        return out

    def resolution(self) -> tuple[float, float]:
        """(spectral tail, min rho / max rho on the grid) of the density (cached per state)."""
        def compute():
            c = self._state.u
            rho = self.geometry.to_grid(c)
            top = float(np.max(np.abs(rho)))
            return self.geometry.tail(c), (float(np.min(rho)) / top if top > 0 else 0.0)

        return self._cached("resolution", self._state, compute)

    def _unresolved(self) -> str | None:
        """Why the density is no longer resolved ("tail" | "negative"), or None."""
        tail, ratio = self.resolution()
        if not math.isfinite(tail) or tail > self.cfg.longtime.tail_tol + 2 * self.tail0:
            return "tail"
        if ratio < -NEGATIVE_TOL:
            return "negative"
        return None

    def energy(self) -> float:
        """e^{-beta} E, the interaction energy (docs/theory.md) (of the density, or exactly of the tokens)."""
        if self.tokens is None:
            return self.model.energy_scaled(self._state.u)
        return self.tokens.model.energy_scaled(self.tokens.x)

    def energy_rate(self) -> float:
        """e^{-beta} dE/dt: (1/beta) int psi d_t rho for the density, sum_i w_i <dx_i/dt, ...> for tokens."""
        if self.tokens is None:
            c = self._state.u
            return self.geometry.inner(self.model.kernel * c, self.model.rhs(c)) / self.model.beta
        state = self.tokens.state
        v = state.history[0] if state.history else None  # dopri5 carries the field at x (first-same-as-last)
        return self.tokens.model.energy_rate_scaled(state.u, v)

    def cluster_finder(self) -> ClusterFinder:
        """The run's cluster criterion (``clusters.py``)."""
        if "finder" not in self.__dict__:
            m, lt, d = self.cfg.model, self.cfg.longtime, self.geometry.dim
            radius = lt.cluster_radius or default_radius(theory.most_unstable_mode(m.beta, m.variant, m.viscosity, d))
            kind = {"circle": "circle", "sphere": "sphere"}.get(self.geometry.name,
                                                                 "points" if self.particles else "rings")
            self.finder = ClusterFinder(kind, d, radius, lt.cluster_mass)
        return self.finder

    def clusters(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions (C, k), masses (C,)) of the clusters now, heaviest first (``clusters.py``)."""
        if self.tokens is not None:
            return self.cluster_finder().find(self.tokens.x, self.tokens.w)
        if isinstance(self.geometry, Positions):  # causal density: the clusters of the last position, s = 1
            base = self.geometry.base
            rho = base.to_grid(self._state.u[-1])
            return self.cluster_finder().find(base.points(), np.ravel(base.weights * rho))
        rho = self.geometry.to_grid(self._state.u)
        return self.cluster_finder().find(self.geometry.points(), np.ravel(self.geometry.weights * rho))

    # --- checkpoints -----------------------------------------------------------------------
    def _reset_position(self) -> None:
        # where the run loop stands: next output index, and (fixed steps) the start of the current
        # interval and the steps taken in it, so a resumed run recomputes t = t0 + j dt exactly
        self.next_output, self._t0, self._j = 0, self.t, 0
        self.last_good = None

    def resume_point(self) -> dict:
        """Everything a checkpoint needs to continue this run bit for bit (arrays are not copied:
        states are immutable)."""
        point = {"phase": self.phase, "state": self.state, "t": self.t, "t_lo": self._t_lo, "dt": self.dt,
                 "steps": self.steps, "next_output": self.next_output, "t0": self._t0, "j": self._j,
                 "rng": self._rng_state(), "tail0": self.tail0, "merges": len(self.merge_log)}
        if self.tokens is not None:
            point["tokens"] = self.tokens.resume_point()
            point["n_rows"] = self.tokens.n_rows
        if self.handoff is not None:
            point["handoff"] = asdict(self.handoff)
        return point

    def check_point(self, point: dict) -> None:
        """ValueError naming what is wrong if ``point`` cannot be a resume point of this run: its
        state arrays of another shape than this run's, non-finite values, or clock values out of range."""
        for name, low in (("t", 0.0), ("dt", 0.0), ("steps", 0), ("next_output", 0), ("t0", 0.0), ("j", 0)):
            value = float(point[name])
            if not (math.isfinite(value) and value >= low):
                raise ValueError(f"{name} = {value:g}")
        if int(point["next_output"]) > len(self.output_times()):
            raise ValueError(f"next_output = {int(point['next_output'])}, the run has {len(self.output_times())} snapshots")
        phase = point.get("phase", "density")
        if phase == "tokens":
            tok = point["tokens"]
            x, w, ids = tok["state"].u, np.asarray(tok["w"]), np.asarray(tok["ids"])
            if x.ndim != 2 or w.shape != x.shape[:1] or ids.shape != x.shape[:1] or x.shape[0] > int(point["n_rows"]):
                raise ValueError(f"token arrays of shapes {x.shape}, {w.shape}, {ids.shape}")
            arrays = [x, w, *tok["state"].history]
        elif phase == "density":
            shape = self.state.u.shape  # a fresh run: its initial state
            u = point["state"].u
            if u.shape != shape:
                raise ValueError(f"state of shape {u.shape}, this run's is {shape}")
            arrays = [u, *point["state"].history]
            if any(np.ndim(a) and np.shape(a) != shape for a in point["state"].history):
                raise ValueError(f"scheme history of shapes {[np.shape(a) for a in point['state'].history]}")
        else:
            raise ValueError(f"phase = {phase!r}")
        if not all(np.all(np.isfinite(a)) for a in arrays if np.asarray(a).dtype.kind in "fc"):
            raise ValueError("non-finite values in the state")

    def restore(self, point: dict) -> None:
        """Continue from a resume point (``resume_point()`` or a checkpoint read back)."""
        if point.get("phase", "density") == "tokens":
            tok = point["tokens"]
            if self.tokens is None or self.tokens.n_rows != int(point["n_rows"]):
                self._start_tokens(tok["state"].u, tok["w"], tok["ids"], int(point["n_rows"]))
            self.tokens.restore(tok)
        else:
            self.tokens = None
            self._state = point["state"]
        self.handoff = HandOff(**point["handoff"]) if point.get("handoff") is not None else None
        self.t, self._t_lo = float(point["t"]), float(point.get("t_lo", 0.0))
        self.dt, self.steps = float(point["dt"]), int(point["steps"])
        self.next_output, self._t0, self._j = int(point["next_output"]), float(point["t0"]), int(point["j"])
        self.tail0 = float(point.get("tail0", self.tail0 if hasattr(self, "tail0") else 0.0))
        del self.merge_log[int(point.get("merges", len(self.merge_log))):]
        if point.get("rng") is not None:
            self.tokens.scheme.rng.bit_generator.state = point["rng"]
        self._cache.clear()

    def _rng_state(self):
        rng = getattr(self.tokens.scheme, "rng", None) if self.tokens is not None else None
        return None if rng is None else rng.bit_generator.state

    # --- stepping ------------------------------------------------------------------------
    def output_times(self) -> np.ndarray:
        """Snapshot times (``output_times(cfg)``)."""
        return output_times(self.cfg)

    @property
    def _controller(self):
        return self.controller if self.tokens is None else self.tokens.controller

    def step(self, t_stop: float | None = None) -> None:
        """Advance one accepted step, not beyond ``t_stop`` (default time.t_end; RuntimeError once t has
        reached it).  In a hand-off run, a density step that leaves the grid's resolution is taken back
        and the run continues as tokens from the state before it (so this call may hand off without
        advancing t)."""
        t_stop = self.cfg.time.t_end if t_stop is None else float(t_stop)
        if self._remaining(t_stop) <= 0:
            raise RuntimeError(f"step: t = {self.t:.6g} has reached t_stop = {t_stop:.6g}")
        if self.tokens is not None:
            self._advance(t_stop, self.tokens.advance)
            self._stamp_merges()
            return
        before = (self._state, self.t, self._t_lo, self.dt, self.steps, self._j)
        self._advance(t_stop, lambda h: self._density_step(h))
        if self.handoff_enabled:
            reason = self._unresolved()
            if reason is not None:
                self._state, self.t, self._t_lo, self.dt, self.steps, self._j = before
                self._hand_off(reason)
            elif self.steps > MAX_STEPS:
                raise NumericalError(f"t = {self.t:.6g}: the density stayed resolved for {MAX_STEPS:g} steps; "
                                     "use time.adaptive = true, or a shorter time.t_end")

    def _density_step(self, h: float):
        self._state, taken, proposed = self.controller.advance(self.scheme, self._state, h)
        return taken, proposed

    def _advance(self, t_stop: float, take) -> None:
        """One step of ``take(h) -> (taken, proposed)``, keeping the clock."""
        if self._controller.adaptive:
            remaining = self._remaining(t_stop)
            h = min(self.dt, remaining)
            taken, proposed = take(h)
            # a step shortened only to land on an output time says nothing against the current dt
            self.dt = max(proposed, self.dt) if (h < self.dt and taken == h) else proposed
            self.steps += 1
            if taken == h == remaining:  # landed (a relative tolerance on t would skip dynamics at t ~ 1e18)
                self.t, self._t_lo = t_stop, 0.0
            else:
                self._add_time(taken)
            return
        # fixed steps: counted from the interval's start, so t never drifts; an interval that is not
        # a multiple of dt (only the last, to t_end) ends with one shorter step
        dt = self.cfg.time.dt
        n = fixed_step_count(t_stop - self._t0, dt)
        last = (t_stop - self._t0) - (n - 1) * dt
        take(last if self._j == n - 1 else dt)
        self.steps += 1
        self._j += 1
        self.t = t_stop if self._j >= n else self._t0 + self._j * dt

    def _remaining(self, t_stop: float) -> float:
        return (t_stop - self.t) - self._t_lo

    def _add_time(self, h: float) -> None:
        """t += h in double-double arithmetic (t, t_lo): at t ~ 1e18 a step of 1 still counts."""
        s = self.t + h
        bp = s - self.t
        err = (self.t - (s - bp)) + (h - bp) + self._t_lo
        self.t = s + err
        self._t_lo = err - (self.t - s)

    def _stamp_merges(self) -> None:
        if self.tokens.merges:
            self.merge_log.extend((self.t, *m) for m in self.tokens.merges)
            self.tokens.merges.clear()

    def run(self, trackers=()) -> None:
        """Step to t_end, calling trackers at the start, after every step, at snapshots and at the end.

        A restored simulation (``restore``) continues where its resume point stood."""
        from threadpoolctl import threadpool_limits

        trackers = list(trackers)
        with threadpool_limits(limits=blas_threads(self.cfg), user_api="blas"):
            self._run(trackers)

    def _run(self, trackers) -> None:
        _call(trackers, "start", self)
        try:
            times = self.output_times()
            if self.next_output == 0:
                self.next_output = 1
                _call(trackers, "snapshot", self)
            while self.next_output < times.size:
                t_out = float(times[self.next_output])
                while self._remaining(t_out) > 0:
                    self.step(t_out)
                    _call(trackers, "step", self)
                self.next_output += 1
                self._t0, self._j = self.t, 0
                _call(trackers, "snapshot", self)
        finally:
            _call(trackers, "finish", self)

    def record(self) -> np.ndarray:
        """A copy of the state as the Recorder keeps it: coefficients (density runs), or positions
        on every row (particles runs)."""
        return self.token_positions() if self.particles else np.array(self.c, copy=True)


#: time.threads = 0: the sphere's transforms use every core from this degree on (ducc0, two cores,
#: measured: 0.6x at L = 31, 0.9x at 63, 1.0x at 127, 1.8x at 255; the circle's 1-D transforms gain
#: nothing at any size measured, 2048..32768), and the token field from this many tokens on (direct
#: field, random Q, K, V, 2 heads, two cores: 0.6x at n = 1000, 1.06x at 2000, 1.9x at 4096).
SPHERE_THREADS_FROM = 192
TOKENS_THREADS_FROM = 4096


def fixed_step_count(span: float, dt: float) -> int:
    """Steps of at most ``dt`` that cover ``span``: a span within 1e-9 relative of a multiple of dt
    takes that many steps of dt, any other ends with one shorter step."""
    ratio = span / dt
    n = round(ratio)
    return max(1, n if abs(ratio - n) <= 1e-9 * max(ratio, 1.0) else math.ceil(ratio))


def cores() -> int:
    """The cores this process may run on."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def transform_threads(threads: int, geometry: str, modes: int) -> int:
    """Threads of the spectral transforms for ``time.threads`` (0: all cores where they gain, else 1)."""
    if threads:
        return int(threads)
    return cores() if geometry == "sphere" and modes >= SPHERE_THREADS_FROM else 1


def token_threads(cfg) -> int:
    """Threads of the token field for ``time.threads`` (0: all cores from TOKENS_THREADS_FROM tokens on,
    else 1): the direct field's row blocks, or ducc0's for the Funk–Hecke field."""
    if cfg.time.threads:
        return int(cfg.time.threads)
    many = cfg.model.method == "particles" and cfg.particles.n >= TOKENS_THREADS_FROM
    return cores() if many else 1


def blas_threads(cfg) -> int:
    """BLAS threads for ``time.threads``: one for particles runs (their field runs its own threads over
    row blocks, each with single-threaded products) and by default (idle BLAS threads spin on a busy
    machine: the particle example ran 2.6x slower with OpenBLAS's default than with one)."""
    return 1 if cfg.model.method == "particles" else max(1, int(cfg.time.threads))


def _call(trackers, name, sim) -> None:
    for tr in trackers:
        fn = getattr(tr, name, None)
        if fn is not None:
            fn(sim)
