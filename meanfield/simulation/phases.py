"""The two representations of a run's measure, behind one interface.

* ``DensityPhase``: the density on the grid, spectral coefficients advanced by an IMEX / exponential
  scheme (``model.method = "spectral"``);
* ``TokenPhase``: weighted tokens advanced by a projected Runge–Kutta scheme and merged when they meet (a
  particles run, or a spectral run after its hand-off, ``longtime.handoff = "tokens"``).

Both offer ``step(h) -> (taken, proposed)``, ``state``, ``resume_point()`` / ``restore(point)``, the
coefficients of the density (for tokens: of their smoothed estimate), the diagnostics a snapshot records,
the guard against blow-up and the resolution warnings.  A density phase of a hand-off run ends (``ended``) when the grid
stops resolving it, and its ``successor`` is the token phase.  The simulation never asks which phase it holds.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from ..errors import NumericalError
from ..physics.model import NEGATIVE_STOP, NEGATIVE_TOL
from ..stepping import State
from ..tokens import max_distance_to_mean, smoothed_density
from ..tokens.batch import gram_statistics
from ..tokens.integrators import normalise
from ..tokens.updates import on_sphere
from .handoff import HandOff, density_to_tokens

#: A density phase of a hand-off run longer than this many steps (the density stays resolved) stops
#: with a message instead of running for ever.
MAX_STEPS = 1_000_000_000
#: Spectral tail (top third of modes, relative to rho_0) above which a resolution warning is given,
#: on top of twice the initial data's own tail (random data put amplitude on every mode).
TAIL_WARN = 1e-4
#: In the linear phase of a hand-off run the tail hands off (and warns) only above this.
LINEAR_TAIL = 1e-3
#: SA divides by psi; below this min/max ratio of psi the field has lost more than ~6 digits.
PSI_RANGE_WARN = 1e-10
#: A non-negative density bounds every coefficient (circle: |rho_k| <= rho_0); beyond this
#: multiple of the bound (geometry.coefficient_ratio) the run is garbage and stops.
POSITIVITY_BOUND = 2.0


def as_state(stored) -> State:
    """A solver state from a resume point (a State, or a checkpoint's StoredState)."""
    return stored if isinstance(stored, State) else State(stored.u, tuple(stored.history))


class DensityPhase:
    """The density: its coefficients advanced by ``scheme`` under ``controller`` (``setup.density_phase``)."""

    name = "density"
    needs_grid = True  # its diagnostics read the density on the grid
    handoff = None  # a density phase was not made by a hand-off
    solver = None  # nor does it hold tokens

    def __init__(self, cfg, geometry, model, scheme, controller, c0: np.ndarray, handoff_to=None):
        self.cfg, self.geometry, self.model = cfg, geometry, model
        self.scheme, self.controller = scheme, controller
        self.state = scheme.start(np.asarray(c0, dtype=complex))
        self.tail0 = geometry.tail(self.state.u)
        self.handoff_to = handoff_to  # builds the token phase of a hand-off (None: the run stays a density)
        self._before = None
        self._cache = {}

    @property
    def adaptive(self) -> bool:
        """Whether the controller picks the steps."""
        return self.controller.adaptive

    @property
    def nfev(self) -> int:
        """Right-hand sides evaluated so far (the scheme's count)."""
        return self.scheme.nfev

    def step(self, h: float) -> tuple[float, float]:
        """One accepted step of size <= h: (taken, proposed next)."""
        self._before = self.state
        self.state, taken, proposed = self.controller.advance(self.scheme, self.state, h)
        return taken, proposed

    def take_merges(self) -> list:
        """A density merges nothing: []."""
        return []

    def ended(self, sim) -> bool:
        """Whether the step just taken left the grid's resolution in a hand-off run (the run then continues as
        tokens from the state before that step: ``successor``)."""
        if self.handoff_to is None:
            return False
        self._reason = self._unresolved()
        if self._reason is None and sim.steps > MAX_STEPS:
            raise NumericalError(f"t = {sim.t:.6g}: the density stayed resolved for {MAX_STEPS:g} steps; "
                                 "use time.adaptive = true, or a shorter time.t_end")
        return self._reason is not None

    def successor(self, sim) -> TokenPhase:
        """The token phase that continues the run from the state before the last step (the caller's clock is back
        there), with the hand-off's report."""
        self.state = self._before
        self._cache.clear()
        c = self.state.u
        tail, ratio, departure = self.resolution()
        energy = self.model.energy_scaled(c)
        x, w, rows, info = density_to_tokens(self.geometry, c, self.cfg.longtime.oversample)
        tokens = self.handoff_to(x, w, rows, info["nodes"], sim.dt)
        tokens.handoff = HandOff(sim.t, self._reason, tail=tail, min_density_ratio=ratio, departure=departure,
                                 energy_density=energy,
                                 energy_tokens=tokens.solver.model.energy_scaled(tokens.solver.x), **info)
        return tokens

    # --- the measure ------------------------------------------------------------------------------------
    def coefficients(self) -> np.ndarray:
        """The density's coefficients."""
        return self.state.u

    def resolution(self) -> tuple[float, float, float]:
        """(spectral tail, min rho / max rho, max |rho / rho_bar - 1|) on the grid, cached per state."""
        hit = self._cache.get("resolution")
        if hit is None or hit[0] is not self.state:
            c = self.state.u
            rho = self.geometry.to_grid(c)
            top = float(np.max(np.abs(rho)))
            w = np.broadcast_to(self.geometry.weights, rho.shape)
            mean = float(np.sum(w * rho) / np.sum(w))
            hit = self._cache["resolution"] = (self.state, (self.geometry.tail(c),
                                                            float(np.min(rho)) / top if top > 0 else 0.0,
                                                            float(np.max(np.abs(rho - mean))) / mean))
        return hit[1]

    def _unresolved(self) -> str | None:
        """Why the density is no longer resolved ("tail" | "negative"), or None.  In the linear phase
        (max |rho / rho_bar - 1| < longtime.departure) a tail above tail_tol is the nonlinear products of resolved
        modes (amplitude ~ departure^order): handing off there fixes the token quantisation while the density is
        still near uniform, which costs far more (measured: docs/longtime.md) than the density's truncation, so
        the tail hands off there only once it passes LINEAR_TAIL."""
        tail, ratio, departure = self.resolution()
        lt = self.cfg.longtime
        limit = lt.tail_tol if departure >= lt.departure else max(lt.tail_tol, LINEAR_TAIL)
        if not math.isfinite(tail) or tail > limit + 2 * self.tail0:
            return "tail"
        if ratio < -NEGATIVE_TOL:
            return "negative"
        return None

    def energy(self) -> float:
        """e^{-beta} E, the interaction energy (docs/theory.md)."""
        return self.model.energy_scaled(self.state.u)

    def energy_rate(self) -> float:
        """e^{-beta} dE/dt = (1/beta) int psi d_t rho."""
        c = self.state.u
        return self.geometry.inner(self.model.kernel * c, self.model.rhs(c)) / self.model.beta

    def diagnostics(self, rho: np.ndarray) -> dict:
        """The values a snapshot records (rho: the density on the grid)."""
        c = self.state.u
        return {"mass": self.geometry.integrate(rho), "energy": self.energy(), "energy_rate": self.energy_rate(),
                "tail": self.geometry.tail(c), "n_tokens": 0,
                "free_energy": self.model.free_energy_scaled(c) if self.model.variant == "usa" else math.nan}

    def cluster_measure(self):
        """(points, masses) of the measure the cluster finder reads: the grid's nodes and weights times rho
        (causal density: the last position, s = 1)."""
        g, c = self.geometry, self.state.u
        if hasattr(g, "base"):
            g, c = g.base, c[-1]
        return g.points(), np.ravel(g.weights * g.to_grid(c))

    def token_rows(self):
        """No tokens: None."""
        return None

    def output_rows(self) -> int:
        """Rows of the token output: the nodes a hand-off puts tokens on."""
        return self.geometry.quadrature_size(self.cfg.longtime.oversample)

    # --- guards -------------------------------------------------------------------------------------------
    def guard(self, sim) -> None:
        """NumericalError on non-finite coefficients, a coefficient past the positivity bound, or a density more
        negative than NEGATIVE_STOP of its maximum, naming the time, the quantity and a remedy."""
        c = self.state.u
        if not np.all(np.isfinite(c)):
            raise NumericalError(f"blow-up at t = {sim.t:.6g}: the density coefficients are not finite (step "
                                 f"{sim.steps}, dt = {sim.dt:.3g}); reduce time.dt, use time.adaptive = true, raise "
                                 "grid.modes or add model.viscosity")
        ratio = self.geometry.coefficient_ratio(c)
        if ratio > POSITIVITY_BOUND:
            raise NumericalError(f"blow-up at t = {sim.t:.6g}: a coefficient is {ratio:.3g} times the largest any "
                                 f"positive density allows (> {POSITIVITY_BOUND:g}), impossible for a positive density "
                                 "(under-resolved or unstable); reduce time.dt, raise grid.modes or add model.viscosity")
        tail, low, _ = self.resolution()
        if low < -NEGATIVE_STOP:
            hint = ("; with viscosity 0 set longtime.handoff = \"tokens\" to continue as tokens"
                    if self.model.viscosity == 0 else "")
            raise NumericalError(f"blow-up at t = {sim.t:.6g}: the density went negative (min rho / max rho = "
                                 f"{low:.3g}, beyond {-NEGATIVE_STOP:g}; spectral tail {tail:.2g}): under-resolved or "
                                 f"unstable; raise grid.modes, reduce time.dt or add model.viscosity{hint}")

    def _tail_warn(self, sim) -> float:
        """The tail above which the density is reported under-resolved: TAIL_WARN, or in the linear phase of a
        hand-off run the tail at which it hands off (LINEAR_TAIL)."""
        if self.handoff_to is not None and self.resolution()[2] < self.cfg.longtime.departure:
            return max(TAIL_WARN, LINEAR_TAIL)
        return TAIL_WARN

    def warnings(self, sim) -> list[tuple[str, str]]:
        """(key, message) of what is resolved only approximately: a spectral tail above TAIL_WARN (plus twice the
        initial data's own), a negative density beyond round-off, an SA denominator spanning > 1 / PSI_RANGE_WARN."""
        out = []
        tail, low, _ = self.resolution()
        if tail > self._tail_warn(sim) + 2 * self.tail0:
            out.append(("tail", f"t = {sim.t:.6g}: spectral tail {tail:.2g} > {self._tail_warn(sim):g}: the density is "
                        "under-resolved (clusters sharper than the grid); raise grid.modes, add model.viscosity "
                        "or set longtime.handoff = \"tokens\""))
        if low < -NEGATIVE_TOL:
            out.append(("negative", f"t = {sim.t:.6g}: the density is negative somewhere (min / max {low:.3g}, "
                        f"beyond round-off {NEGATIVE_TOL:g}): resolved only to that level; raise grid.modes, add "
                        "model.viscosity or set longtime.handoff = \"tokens\""))
        if self.model.variant == "sa":
            r = self.model.psi_range(self.state.u)
            if r < PSI_RANGE_WARN:
                out.append(("psi", f"t = {sim.t:.6g}: min psi / max psi = {r:.2g}: the SA field grad(psi)/psi "
                            "is inaccurate where psi is small (under-resolved, or few clusters at large beta); "
                            "raise grid.modes or add model.viscosity"))
        return out

    # --- checkpoints ----------------------------------------------------------------------------------------
    def resume_point(self) -> dict:
        """The phase's part of a resume point."""
        return {"phase": self.name, "state": self.state, "tail0": self.tail0}

    @staticmethod
    def check(point: dict, geometry) -> list:
        """The arrays of a density resume point (ValueError if they do not fit the coefficients of ``geometry``)."""
        shape = geometry.spectral_shape
        u = point["state"].u
        if u.shape != shape:
            raise ValueError(f"state of shape {u.shape}, this run's is {shape}")
        if any(np.ndim(a) and np.shape(a) != shape for a in point["state"].history):
            raise ValueError(f"scheme history of shapes {[np.shape(a) for a in point['state'].history]}")
        return [u, *point["state"].history]

    def restore(self, point: dict) -> None:
        """Continue from a resume point."""
        self.state = as_state(point["state"])
        self.tail0 = float(point.get("tail0", self.tail0))
        self._cache.clear()


class TokenPhase:
    """Weighted tokens (or zonal rings): a ``TokenSolver`` and the grid their density estimate lives on
    (``bandwidth``: of the heat kernel that smooths them).  ``handoff``: the report of the hand-off that made
    it (None for a particles run)."""

    name = "tokens"
    needs_grid = False

    def __init__(self, geometry, solver, bandwidth: float, handoff=None):
        self.geometry, self.solver, self.bandwidth = geometry, solver, float(bandwidth)
        self.handoff = handoff
        self._cache = None

    @property
    def adaptive(self) -> bool:
        """Whether the controller picks the steps."""
        return self.solver.controller.adaptive

    @property
    def nfev(self) -> int:
        """Fields evaluated so far (the integrator's count)."""
        return self.solver.scheme.nfev

    @property
    def state(self):
        """The solver state (positions in ``state.u``)."""
        return self.solver.state

    def step(self, h: float) -> tuple[float, float]:
        """One accepted step of size <= h, then merging: (taken, proposed next)."""
        return self.solver.advance(h)

    def take_merges(self) -> list:
        """The merge records of the last step (the run stamps their time), emptied."""
        merges, self.solver.merges = self.solver.merges, []
        return merges

    def ended(self, sim) -> bool:
        """Tokens stay tokens: False."""
        return False

    # --- the measure ------------------------------------------------------------------------------------
    @property
    def x(self) -> np.ndarray:
        """Positions of the live tokens (zonal rings: (sin theta, cos theta) of the meridian plane)."""
        return self.solver.x

    @property
    def weights(self) -> np.ndarray:
        """Weights of the live tokens (sum 1)."""
        return self.solver.w

    def coefficients(self) -> np.ndarray:
        """The coefficients of the tokens' smoothed density estimate (cached per state)."""
        if self._cache is None or self._cache[0] is not self.solver.state:
            self._cache = (self.solver.state, smoothed_density(self.geometry, self.unit(), self.solver.w,
                                                               self.bandwidth))
        return self._cache[1]

    def positions(self) -> np.ndarray:
        """Positions on every output row (rows, d): NaN for rows without a live token; zonal rings as the point
        (sin theta, 0, ..., 0, cos theta) of R^d."""
        p = self.solver.full_positions()
        if p.shape[1] == self.geometry.dim:
            return p
        out = np.zeros((p.shape[0], self.geometry.dim))
        out[:, 0], out[:, -1] = p[:, 0], p[:, 1]
        out[np.isnan(p).any(axis=1)] = np.nan  # a row without a token is NaN throughout, as in every other run
        return out

    def unit(self) -> np.ndarray:
        """The live tokens as unit vectors: the positions, or the directions z / |z| of pre-LN and peri-LN
        residual streams."""
        x = self.solver.x
        return x if on_sphere(getattr(self.solver.model, "update", "post-ln")) else normalise(x)

    def energy(self) -> float:
        """e^{-beta} E of the tokens, exactly."""
        return self.solver.model.energy_scaled(self.unit())

    def energy_rate(self) -> float:
        """e^{-beta} dE/dt = sum_i w_i <dx_i/dt, ...> (dx/dt = P_x (dz/dt) / |z| for a residual stream z)."""
        state = self.solver.state
        model = self.solver.model
        v = state.history[0] if state.history else None  # dopri5 carries the field at x (first-same-as-last)
        if on_sphere(getattr(model, "update", "post-ln")):
            return model.energy_rate_scaled(state.u, v)
        x = self.unit()
        v = model.velocity(x) if v is None else v
        v = (v - np.sum(v * x, axis=1, keepdims=True) * x) / np.linalg.norm(state.u, axis=1, keepdims=True)
        return model.energy_rate_scaled(x, v)

    def diagnostics(self, rho: np.ndarray) -> dict:
        """The values a snapshot records."""
        energy = self.energy()
        return {"mass": float(np.sum(self.solver.w)), "energy": energy, "energy_rate": self.energy_rate(),
                "tail": math.nan, "n_tokens": self.solver.model.n, "free_energy": self._free_energy(energy),
                "spread": max_distance_to_mean(self.unit(), self.solver.w)}

    def _free_energy(self, energy: float) -> float:
        """e^{-beta} (E + sum_i w_i Phi(x_i)) with a gradient perceptron term grad Phi (non-decreasing for USA
        tokens), E alone without a perceptron, nan with one that is not a gradient."""
        model = self.solver.model
        mlp = getattr(model, "perceptron", None)
        if mlp is None:
            return energy
        if mlp.gradient_weights() is None:
            return math.nan
        return energy + math.exp(-model.beta) * float(self.solver.w @ mlp.potential(self.unit()))

    def cluster_measure(self):
        """(points, masses): the tokens (unit vectors) and their weights."""
        return self.unit(), self.solver.w

    def token_rows(self):
        """(positions, weights) on every output row."""
        return self.positions(), self.solver.full_weights()

    def output_rows(self) -> int:
        """Rows of the token output: one per token the phase started with (a hand-off's nodes)."""
        return self.solver.n_rows

    # --- guards -------------------------------------------------------------------------------------------
    def guard(self, sim) -> None:
        """NumericalError on token positions that are not finite."""
        if not np.all(np.isfinite(self.solver.x)):
            raise NumericalError(f"blow-up at t = {sim.t:.6g}: token positions are not finite (step {sim.steps}, "
                                 f"dt = {sim.dt:.3g}); reduce time.dt or model.beta")

    def warnings(self, sim) -> list:
        """Tokens are exact: nothing to warn about."""
        return []

    # --- checkpoints ----------------------------------------------------------------------------------------
    def resume_point(self) -> dict:
        """The phase's part of a resume point (with the random generator of a scheme that draws, and the
        hand-off's report)."""
        rng = getattr(self.solver.scheme, "rng", None)
        return {"phase": self.name, "state": self.solver.state, "tokens": self.solver.resume_point(),
                "n_rows": self.solver.n_rows, "rng": None if rng is None else rng.bit_generator.state,
                "handoff": None if self.handoff is None else asdict(self.handoff)}

    @staticmethod
    def check(point: dict, geometry) -> list:
        """The arrays of a token resume point (ValueError if their shapes do not fit together)."""
        tok = point["tokens"]
        x, w, ids = tok["state"].u, np.asarray(tok["w"]), np.asarray(tok["ids"])
        if x.ndim != 2 or w.shape != x.shape[:1] or ids.shape != x.shape[:1] or x.shape[0] > int(point["n_rows"]):
            raise ValueError(f"token arrays of shapes {x.shape}, {w.shape}, {ids.shape}")
        return [x, w, *tok["state"].history]

    def restore(self, point: dict) -> None:
        """Continue from a resume point (its hand-off report too)."""
        tok = dict(point["tokens"])
        tok["state"] = as_state(tok["state"])
        self.solver.restore(tok)
        if point.get("rng") is not None:
            self.solver.scheme.rng.bit_generator.state = point["rng"]
        self.handoff = HandOff(**point["handoff"]) if point.get("handoff") is not None else None
        self._cache = None


class BatchPhase(TokenPhase):
    """``particles.batch`` independent systems of tokens (a ``BatchTokenSolver`` on a ``BatchedTokenModel``, one step
    for all, the error measured per system): positions (systems, n, d), diagnostics one per system.  Its density is
    the ensemble's mean measure (every system's tokens, each weighing 1 / systems), smoothed.  The peers'
    statistics count every row: a merged-away row sits on the token it merged into."""

    #: the peers' thresholds: pairs with <x_i, x_j> > 1 - PAIR_DELTA are clustered; the cluster count is the rank
    #: of the Gram matrix thresholded at 1 - RANK_DELTA (Geshkovski et al., rotf)
    PAIR_DELTA = 1e-3
    RANK_DELTA = 1e-4

    def _systems(self) -> np.ndarray:
        """The tokens as unit vectors, (systems, n, d)."""
        return self.solver.model.unit(self.solver.x)

    def coefficients(self) -> np.ndarray:
        """The smoothed density of the ensemble's mean measure (cached per state)."""
        if self._cache is None or self._cache[0] is not self.solver.state:
            m = self.solver.model
            self._cache = (self.solver.state, smoothed_density(self.geometry, self.unit(), self.solver.w / m.systems,
                                                               self.bandwidth))
        return self._cache[1]

    def energy(self) -> np.ndarray:
        """e^{-beta} E of each system."""
        return self.solver.model.energy_scaled(self.solver.x)

    def diagnostics(self, rho: np.ndarray | None = None) -> dict:
        """Per system: energy, spread, the fraction of clustered pairs and the cluster count (the peers')."""
        m, X = self.solver.model, self._systems()
        w = self.solver.w.reshape(m.systems, m.size)
        mean = np.einsum("bi,bid->bd", w, X)
        norm = np.linalg.norm(mean, axis=1, keepdims=True)  # as max_distance_to_mean, system by system
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.max(np.linalg.norm(X - mean[:, None, :] / norm[:, None, :], axis=2), axis=1)
        spread[norm[:, 0] == 0] = 2.0
        pairs, count, energy = gram_statistics(X, w, m.beta, self.PAIR_DELTA, self.RANK_DELTA)
        return {"energy": energy, "spread": spread, "pair_fraction": pairs, "cluster_count": count,
                "n_tokens": np.count_nonzero(w, axis=1)}

    def positions(self) -> np.ndarray:
        """Positions (systems, n, d) (pre-LN, peri-LN: the residual streams): NaN on rows merged away."""
        m = self.solver.model
        return self.solver.full_positions().reshape(m.systems, m.size, -1)

    def token_rows(self):
        """(positions (systems, n, d), weights (systems, n))."""
        m = self.solver.model
        return self.positions(), self.solver.w.reshape(m.systems, m.size)


#: the phases by the name a resume point gives them
PHASES = {DensityPhase.name: DensityPhase, TokenPhase.name: TokenPhase}
