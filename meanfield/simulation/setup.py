"""A run's parts from its config: the geometry, the model and its stepper, the initial state (a file snapshot
read through io's verified reader), the token solvers, and how many threads each part gets."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings

import numpy as np

from ..config import geometry_for_dim
from ..domains import make_geometry
from ..domains.positions import Positions
from ..errors import ConfigError
from ..io import read_snapshot
from ..physics.general import build_model
from ..physics import perceptron
from ..physics.heads import attention_heads
from ..physics.initial import initial_coefficients, initial_tokens
from ..stepping import AUTO, EMBEDDED_SCHEMES, AdaptiveStep, EmbeddedStep, FixedStep, make_scheme, perturbation_error
from ..tokens import (BatchedTokenModel, BatchTokenSolver, RandomLayers, RingModel, TokenModel, TokenSolver,
                      default_bandwidth, sample_tokens)
from ..tokens.updates import on_sphere
from .handoff import HandOff
from .phases import MAX_STEPS, BatchPhase, DensityPhase, TokenPhase

#: time.stepper = "auto" calls a run stiff when viscosity's fastest rate exceeds this many times the
#: fastest attention rate (and 1): explicit steps would then be set by the viscous mode, not by accuracy.
STIFFNESS = 10.0
#: time.threads = 0: the sphere's transforms use every core from this degree on (ducc0, two cores,
#: measured: 0.6x at L = 31, 0.9x at 63, 1.0x at 127, 1.8x at 255; the circle's 1-D transforms gain
#: nothing at any size measured, 2048..32768), and the token field from this many tokens on (direct
#: field, random Q, K, V, 2 heads, two cores: 0.6x at n = 1000, 1.06x at 2000, 1.9x at 4096).
SPHERE_THREADS_FROM = 192
TOKENS_THREADS_FROM = 4096


def geometry(cfg):
    """The run's geometry: the density's grid, or that of a particles run's density estimate; a ``Positions``
    geometry (a position axis) for the causal density."""
    g, tc = cfg.grid, cfg.time
    particles = cfg.model.method == "particles"
    name = geometry_for_dim(cfg.particles.dim) if particles else cfg.model.geometry
    out = make_geometry(name, g.modes, g.dealias, g.backend, cfg.dim, threads=transform_threads(tc.threads, name,
                                                                                                g.modes))
    return Positions(out, g.positions) if cfg.attention.causal and not particles else out


def initial_state(cfg, geometry) -> tuple[np.ndarray | None, tuple | None]:
    """(coefficients, None) or (None, (positions, weights)) the run starts from, per [initial] (a ``file``
    snapshot read and checked by ``io.read_snapshot``)."""
    snapshot = read_snapshot(cfg.initial.path, cfg.initial.time) if cfg.initial.kind == "file" else None
    tokens = initial_tokens(cfg, geometry, snapshot)
    if cfg.model.method == "particles" and cfg.particles.batch > 1:
        return None, (batch_tokens(cfg, geometry), None)
    if tokens is None and cfg.model.method == "particles":
        x = sample_tokens(cfg, geometry, cfg.particles.n, np.random.default_rng(cfg.initial.seed), snapshot)
        tokens = (x, None)
    if tokens is not None:
        if cfg.model.method != "particles" and cfg.longtime.handoff != "tokens":
            raise ConfigError(f"initial.path: {cfg.initial.path!r} holds tokens at that time, allowed for a density "
                              "run: a snapshot of a spectral run or from before a hand-off (tokens start runs with "
                              "model.method = 'particles' or longtime.handoff = 'tokens')")
        return None, tokens
    return initial_coefficients(cfg, geometry, snapshot), None


def batch_tokens(cfg, geometry) -> np.ndarray:
    """The stacked tokens (systems x n, d) of a batched run: system b is what a single run with initial.seed + b
    starts from."""
    out = []
    for b in range(cfg.particles.batch):
        cb = dataclasses.replace(cfg, initial=dataclasses.replace(cfg.initial, seed=cfg.initial.seed + b))
        out.append(sample_tokens(cb, geometry, cfg.particles.n, np.random.default_rng(cb.initial.seed)))
    return np.concatenate(out)


def batch_heads(cfg, dim: int) -> list:
    """The heads of a batched run: [(Q, K, V)], each one matrix for every system, or, where the config draws them
    ("random", "gpt2"), one per system (system b's drawn with attention.seed + b, as a single run with that seed)."""
    drawn = any(isinstance(getattr(cfg.attention, k), str) and getattr(cfg.attention, k) in ("random", "gpt2")
                for k in "QKV")
    if not drawn:
        return attention_heads(cfg, dim)
    per = [attention_heads(dataclasses.replace(cfg, attention=dataclasses.replace(cfg.attention,
                                                                                   seed=cfg.attention.seed + b)), dim)
           for b in range(cfg.particles.batch)]
    return [tuple(np.stack([p[h][k] for p in per]) for k in range(3)) for h in range(len(per[0]))]


# --- the density ------------------------------------------------------------------------------------------
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


def growth_step_cap(cfg, model, scheme, stepper: str) -> float:
    """The longest step at which an implicit scheme still grows the fastest growing mode at its rate to
    time.growth_tol (inf for the exponential schemes, which integrate the linear part exactly).  A fixed dt
    above it is refused (time.growth_check = "refuse", the default) or warned about: an implicit step with
    lambda dt >> 1 damps a growing mode, a silent wrong answer."""
    tc = cfg.time
    growing = model.L.real
    lam = float(np.max(growing))
    if tc.growth_check == "off" or lam <= 0:
        return math.inf
    z_max = type(scheme).growth_step_limit(tc.growth_tol)
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
    message = (f"{where}: got {given}, allowed with time.stepper = {stepper!r}: {allowed}. The fastest growing "
               f"mode (lambda = {lam:.4g}, index {mode}) would be stepped at lambda dt = {lam * tc.dt:.3g}: "
               f"{stepper}'s discrete growth rate is off by more than time.growth_tol = {tc.growth_tol:g} "
               f"beyond lambda dt = {z_max:.3g}, and a long implicit step damps a growing mode. Use "
               "time.stepper = 'etdrk4' (exact linear part) or a smaller dt (time.growth_check = 'warn' runs "
               "anyway)")
    if tc.growth_check == "refuse":
        raise ConfigError(message)
    warnings.warn(message.replace(". The fastest", "; running anyway. The fastest"), stacklevel=3)
    return cap if tc.adaptive else math.inf


def mean_entries(geometry) -> np.ndarray:
    """The boolean mask of a density state's entries that are means (conserved, not perturbation): entry 0, or
    entry 0 of every position of the causal density."""
    mask = np.zeros(geometry.spectral_shape, dtype=bool)
    if isinstance(geometry, Positions):
        mask.reshape(geometry.count, -1)[:, 0] = True
    else:
        mask.flat[0] = True
    return mask


def density_phase(cfg, geometry, c0) -> tuple[DensityPhase, str, str, float]:
    """(the density phase, its scheme's name, why it was picked, the first step) of a spectral run."""
    tc = cfg.time
    model = build_model(cfg, geometry)
    stepper, reason = pick_stepper(cfg, model)
    scheme = make_scheme(stepper, model.L, model.nonlinear)
    cap = growth_step_cap(cfg, model, scheme, stepper)
    dt = min(tc.dt, cap) if tc.adaptive else tc.dt
    means = mean_entries(geometry)
    if tc.adaptive and stepper in EMBEDDED_SCHEMES:
        controller = EmbeddedStep(dt, tc.rtol, tc.atol, min(tc.dt_min, cap), min(tc.dt_max, cap),
                                  norm=functools.partial(perturbation_error, means=means),
                                  span=error_span(cfg) if scheme.budgeted else None,
                                  hint="loosen time.rtol, raise grid.modes or add viscosity")
    elif tc.adaptive:
        controller = AdaptiveStep(dt, tc.rtol, tc.atol, tc.cfl, min(tc.dt_min, cap), min(tc.dt_max, cap),
                                  spacing=geometry.spacing, max_speed=model.max_speed if tc.cfl > 0 else None,
                                  means=means)
    else:
        controller = FixedStep(tc.dt)
    handoff = (lambda x, w, rows, n_rows, h: handoff_tokens(cfg, geometry, x, w, rows, n_rows, h)) \
        if cfg.longtime.handoff == "tokens" else None
    return DensityPhase(cfg, geometry, model, scheme, controller, c0, handoff), stepper, reason, dt


# --- tokens -------------------------------------------------------------------------------------------------
def _weights(x, w):
    x = np.asarray(x, dtype=float)
    return x, (np.full(x.shape[0], 1.0 / x.shape[0]) if w is None else np.asarray(w, dtype=float) / np.sum(w))


def token_merge_tol(cfg) -> float:
    """longtime.merge_tol where a particles run's tokens merge, else 0: not with noise (two tokens meet and part
    again), a causal mask (a token's place in the sequence is part of it) or a residual stream off the sphere
    (pre-LN, peri-LN: streams with one direction and different lengths are different tokens)."""
    m, p = cfg.model, cfg.particles
    return cfg.longtime.merge_tol if (m.viscosity == 0 and not cfg.attention.causal and on_sphere(p.update)) else 0.0


def batch_phase(cfg, geometry, x, w=None, dt=None) -> BatchPhase:
    """The phase of a batched particles run: ``particles.batch`` systems on a ``BatchedTokenModel``, merged as
    single runs merge (``BatchTokenSolver``).  Adaptive steps are one step for all systems, accepted when every
    token of every system meets the tolerance (``stepping.row_error``): each system's error is controlled as in a
    run of its own."""
    m, p, a, tc = cfg.model, cfg.particles, cfg.attention, cfg.time
    x = np.asarray(x, dtype=float)
    w = np.full(p.n, 1.0 / p.n) if w is None else np.asarray(w, dtype=float).reshape(p.batch, p.n)[0]
    model = BatchedTokenModel(p.batch, w, m.beta, m.variant, p.dim, a.causal, a.alibi, heads=batch_heads(cfg, p.dim),
                              update=p.update, alpha=p.alpha, threads=token_threads(cfg), backend=p.backend,
                              device=p.device)
    solver = BatchTokenSolver(model, x, np.arange(x.shape[0]), x.shape[0], p.integrator, tc.dt if dt is None else dt,
                              tc.adaptive, tc.rtol, tc.atol, tc.dt_min, tc.dt_max, token_merge_tol(cfg),
                              noise=m.viscosity, rng=np.random.default_rng([a.seed, cfg.initial.seed, 1]))
    return BatchPhase(geometry, solver, p.bandwidth or default_bandwidth(x.shape[0], p.dim))


def particle_tokens(cfg, geometry, x, w=None, rows=None, n_rows=None, dt=None) -> TokenPhase:
    """The token phase of a particles run: the config's heads, integrator, noise and merging."""
    m, p, a, tc = cfg.model, cfg.particles, cfg.attention, cfg.time
    if p.batch > 1:
        return batch_phase(cfg, geometry, x, w, dt)
    x, w = _weights(x, w)
    Q, K, V = (list(mats) for mats in zip(*attention_heads(cfg, p.dim)))
    model = TokenModel(w, m.beta, m.variant, p.dim, Q, K, V, a.causal, field=p.field, threads=token_threads(cfg),
                       backend=p.backend, device=p.device, alibi=a.alibi, update=p.update, alpha=p.alpha)
    model.perceptron = perceptron.from_config(cfg)
    solver = TokenSolver(model, x, np.arange(x.shape[0]) if rows is None else rows,
                         x.shape[0] if n_rows is None else n_rows, p.integrator, tc.dt if dt is None else dt,
                         tc.adaptive, tc.rtol, tc.atol, tc.dt_min, tc.dt_max, token_merge_tol(cfg), noise=m.viscosity,
                         rng=np.random.default_rng([a.seed, cfg.initial.seed, 1]))
    if a.resample:  # one step = one layer with fresh heads (its rng is checkpointed)
        solver.scheme = RandomLayers(model, a.heads, a.variance, np.random.default_rng([a.seed, 2]))
    return TokenPhase(geometry, solver, p.bandwidth or default_bandwidth(x.shape[0], p.dim))


def handoff_tokens(cfg, geometry, x, w=None, rows=None, n_rows=None, dt=None) -> TokenPhase:
    """The token phase a density hands off to (or a hand-off run that starts from tokens): Dormand–Prince 5(4)
    at longtime.rtol, merging at longtime.merge_tol; zonal runs as rings."""
    m, lt = cfg.model, cfg.longtime
    x, w = _weights(x, w)
    if geometry.name == "zonal":
        if x.shape[1] != 2:  # points of R^d stand for the rings through them
            x = np.stack([np.linalg.norm(x[:, :-1], axis=1), x[:, -1]], axis=1)
        model = RingModel(w, m.beta, m.variant, geometry.dim, pole_tol=lt.merge_tol / 2)
    else:  # the same heads as the density (circle, sphere; config refuses causal hand-offs)
        Q, K, V = (list(mats) for mats in zip(*attention_heads(cfg, geometry.dim)))
        # Funk–Hecke while the nodes are many (O(n) instead of O(n^2)), the direct sum once merging leaves few
        model = TokenModel(w, m.beta, m.variant, geometry.dim, Q, K, V, field="auto", threads=token_threads(cfg))
        model.perceptron = perceptron.from_config(cfg)
    solver = TokenSolver(model, x, np.arange(x.shape[0]) if rows is None else rows,
                         x.shape[0] if n_rows is None else n_rows, "dopri5", cfg.time.dt if dt is None else dt, True,
                         lt.rtol, lt.atol, merge_tol=lt.merge_tol)
    return TokenPhase(geometry, solver, 0.0)  # the tokens' exact coefficients: as faithful as the tokens


def token_phase(cfg, geometry, x, w=None, rows=None, n_rows=None, dt=None) -> TokenPhase:
    """The token phase a run of this config starts from, or restores, with these tokens."""
    if cfg.model.method == "particles":
        return particle_tokens(cfg, geometry, x, w, rows, n_rows, dt)
    tokens = handoff_tokens(cfg, geometry, x, w, rows, n_rows, dt)
    if tokens.handoff is None:
        tokens.handoff = HandOff(0.0, "initial tokens", tokens.solver.n_rows, tokens.solver.model.n, 0, 0.0, 1.0,
                                 math.nan, math.nan)
    return tokens


# --- threads ---------------------------------------------------------------------------------------------
def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def transform_threads(threads: int, geometry: str, modes: int) -> int:
    """Threads of the spectral transforms for ``time.threads`` (0: all cores where they gain, else 1)."""
    if threads:
        return int(threads)
    return cores() if geometry == "sphere" and modes >= SPHERE_THREADS_FROM else 1


def token_threads(cfg) -> int:
    """Threads of the token field for ``time.threads`` (0: all cores from TOKENS_THREADS_FROM tokens on, all
    systems of a batch counted, else 1): the direct field's row blocks, or ducc0's for the Funk–Hecke field."""
    if cfg.time.threads:
        return int(cfg.time.threads)
    many = cfg.model.method == "particles" and cfg.particles.n * cfg.particles.batch >= TOKENS_THREADS_FROM
    return cores() if many else 1


def blas_threads(cfg) -> int:
    """BLAS threads for ``time.threads``: one for particles runs (their field runs its own threads over
    row blocks, each with single-threaded products) and by default (idle BLAS threads spin on a busy
    machine: the particle example ran 2.6x slower with OpenBLAS's default than with one)."""
    return 1 if cfg.model.method == "particles" else max(1, int(cfg.time.threads))
