"""The range rules of a config: every key's type and range, and the consistency of keys with each other,
decided from the config alone (no solver, no file, no machine state).

``validate(cfg)`` raises ConfigError with one line naming the first bad key, the value given and what
is allowed.  What needs a solver's knowledge (kernel degrees, scheme names, the most unstable mode) is
the solvers' own checks (``feasibility``).
"""

from __future__ import annotations

import math

from ..errors import ConfigError
from .schema import (MAX_BATCH, MAX_BATCH_TOKENS, UPDATES, GEOMETRIES, GEOMETRY_DIM, INTEGRALS, MAX_BETA, MAX_MODES, MAX_SNAPSHOTS, MAX_STEPS, SCHEDULED,
                     USA_MAX_BETA, VARIANTS, Config, _plain, geometry_for_dim, layer_config, plain_attention)

INITIAL_KINDS = ("random", "uniform", "modes", "von_mises", "file", "tokens")


def need(cond: bool, where: str, value, allowed: str) -> None:
    """ConfigError "WHERE: got VALUE, allowed: ALLOWED" unless ``cond``."""
    if not cond:
        raise ConfigError(f"{where}: got {shown(value)}, allowed: {allowed}")


def shown(value) -> str:
    """repr(value), cut to one readable line (an error must stay one line)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"  # no str(): 4300 max
    text = repr(_plain(value))
    return text if len(text) <= 80 else text[:77] + "..."


def finite(x) -> bool:
    """A real number (not bool), finite."""
    try:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    except OverflowError:  # an integer beyond the float range
        return False


def is_int(x) -> bool:
    """An integer (not bool)."""
    return isinstance(x, int) and not isinstance(x, bool)


def validate(cfg: Config) -> None:
    """Check every key's range and the keys' consistency; raise ConfigError naming the first bad key."""
    _model(cfg)
    _attention(cfg)
    if cfg.model.method == "particles":
        _particles(cfg)
    _grid(cfg)
    _initial(cfg)
    _time(cfg)
    _output(cfg)
    _longtime(cfg)
    _perceptron(cfg)
    _steps(cfg)
    _schedule(cfg)


#: the most layers a [schedule] may have
MAX_LAYERS = 100_000


def _schedule(cfg: Config) -> None:
    """[schedule]: increasing times within (0, t_end], one value per layer for each key given, and every layer's
    config valid (its errors name the layer)."""
    s, tc = cfg.schedule, cfg.time
    given = [k for k in SCHEDULED if getattr(s, k)]
    if not s.times:
        need(not given, f"schedule.{given[0] if given else ''}", getattr(s, given[0]) if given else None,
             "nothing without schedule.times (the layers' end times)")
        return
    times = s.times
    need(len(times) <= MAX_LAYERS and all(finite(t) and 0 < t <= tc.t_end for t in times)
         and all(b > a for a, b in zip(times, times[1:])), "schedule.times", times,
         f"at most {MAX_LAYERS} increasing times in (0, time.t_end = {tc.t_end:g}]")
    for key in given:
        need(len(getattr(s, key)) == len(times), f"schedule.{key}", getattr(s, key),
             f"one value per layer ({len(times)}, as schedule.times)")
    need(cfg.longtime.handoff == "none", "schedule.times", times, "[] with longtime.handoff = 'tokens' (layers "
         "with a hand-off are not supported yet)")
    need(not cfg.attention.causal and not cfg.attention.resample, "schedule.times", times,
         "[] with causal or resampled attention")
    if not tc.adaptive:  # fixed steps land on multiples of dt only
        need(all(abs(t / tc.dt - round(t / tc.dt)) <= 1e-9 * max(1.0, t / tc.dt) for t in times), "schedule.times",
             times, f"multiples of time.dt = {tc.dt:g} (fixed steps)")
    for k in range(len(times)):
        try:
            validate(layer_config(cfg, k))
        except ConfigError as exc:
            raise ConfigError(f"schedule, layer {k} (until t = {times[k]:g}): {exc}") from None


def _perceptron(cfg: Config) -> None:
    """[perceptron]: the activation, the shapes of W (d x m), A (m x d), b (m), where the term is allowed."""
    p, m = cfg.perceptron, cfg.model
    allowed = ("none", "relu", "tanh", "sigmoid", "softplus")
    need(p.activation in allowed, "perceptron.activation", p.activation, " | ".join(repr(a) for a in allowed))
    if p.activation == "none":
        for key in ("W", "A", "b"):
            need(getattr(p, key) == (), f"perceptron.{key}", getattr(p, key), "nothing while perceptron.activation "
                 "= 'none'")
        return
    d = cfg.dim
    need(m.method == "particles" or m.geometry in ("circle", "sphere"), "perceptron.activation", p.activation,
         "'none' for a zonal density (a perceptron field is not zonal); the circle, the sphere or tokens")
    need(not cfg.attention.causal, "perceptron.activation", p.activation, "'none' with attention.causal = true")
    need(not cfg.attention.resample, "perceptron.activation", p.activation, "'none' with attention.resample = true")
    W, A, b = p.W, p.A, p.b
    rows = isinstance(W, tuple) and len(W) == d and all(isinstance(r, tuple) for r in W)
    units = len(W[0]) if rows and W[0] else 0
    need(rows and units >= 1 and all(len(r) == units and all(finite(v) for v in r) for r in W), "perceptron.W", W,
         f"a finite {d} x m matrix (list of {d} rows of m numbers; m units)")
    need(len(A) == units and all(isinstance(r, tuple) and len(r) == d and all(finite(v) for v in r) for r in A),
         "perceptron.A", A, f"a finite {units} x {d} matrix (list of {units} rows of {d} numbers)")
    need(len(b) == units and all(finite(v) for v in b), "perceptron.b", b,
         f"a list of {units} finite numbers (one per unit)")


def _model(cfg: Config) -> None:
    m = cfg.model
    need(m.geometry in GEOMETRIES, "model.geometry", m.geometry, " | ".join(repr(x) for x in GEOMETRIES))
    need(m.method in ("spectral", "particles"), "model.method", m.method, "'spectral' | 'particles'")
    if m.method == "spectral" and m.geometry == "zonal":
        need(is_int(m.dim) and 2 <= m.dim <= 1000, "model.dim", m.dim,
             "an integer in [2, 1000] for geometry 'zonal' (tokens on S^{dim-1})")
    elif m.method == "spectral":
        own = GEOMETRY_DIM[m.geometry]
        need(m.dim in (0, own), "model.dim", m.dim, f"0 or {own} for geometry {m.geometry!r} (use geometry 'zonal' "
             "for other d)")
    need(m.variant in VARIANTS, "model.variant", m.variant, "'sa' | 'usa'")
    need(finite(m.beta) and 0 < m.beta <= MAX_BETA, "model.beta", m.beta, f"a number in (0, {MAX_BETA:g}]")
    if m.variant == "usa":
        need(m.beta <= USA_MAX_BETA, "model.beta", m.beta,
             f"<= {USA_MAX_BETA:g} for variant 'usa' (e^beta overflows); use variant 'sa'")
    need(finite(m.viscosity) and m.viscosity >= 0, "model.viscosity", m.viscosity, "a finite number >= 0")


def _attention(cfg: Config) -> None:
    """[attention]'s own ranges (the matrices are the physics' check: it draws them)."""
    a, g, m = cfg.attention, cfg.grid, cfg.model
    need(is_int(a.heads) and 1 <= a.heads <= 64, "attention.heads", a.heads, "an integer in [1, 64]")
    need(0 <= a.seed < 2**63, "attention.seed", a.seed, "an integer in [0, 2**63) (stored as int64)")
    need(finite(a.alibi) and 0 <= a.alibi <= 50, "attention.alibi", a.alibi, "a number in [0, 50]")
    need(a.alibi == 0 or a.causal, "attention.alibi", a.alibi, "0 unless attention.causal = true")
    need(a.integrals in INTEGRALS, "attention.integrals", a.integrals, " | ".join(repr(k) for k in INTEGRALS))
    need(finite(a.variance) and 0 < a.variance <= 100, "attention.variance", a.variance, "a number in (0, 100]")
    need(2 <= g.positions <= 4097, "grid.positions", g.positions, "an integer in [2, 4097]")
    need(finite(cfg.initial.position_power) and 0 <= cfg.initial.position_power <= 20, "initial.position_power",
         cfg.initial.position_power, "a number in [0, 20]")
    if a.resample:
        need(m.method == "particles", "attention.resample", a.resample,
             "false with model.method = 'spectral' (random heads per layer move tokens)")
    if a.causal and m.method == "spectral":
        need(m.geometry in ("circle", "sphere"), "attention.causal", a.causal,
             "false on geometry 'zonal' (the causal density is for 'circle' | 'sphere')")


def _particles(cfg: Config) -> None:
    """[particles] and its consistency with [model], [time] and [attention]."""
    p, m, a = cfg.particles, cfg.model, cfg.attention
    need(1 <= p.n <= 1_000_000, "particles.n", p.n, "an integer in [1, 1000000]")
    need(2 <= p.dim <= 1000, "particles.dim", p.dim, "an integer in [2, 1000] (tokens on S^{dim-1})")
    need(finite(p.bandwidth) and p.bandwidth >= 0, "particles.bandwidth", p.bandwidth,
         "a finite number >= 0 (0: n^{-1/(dim+3)})")
    need(p.backend in ("numpy", "torch"), "particles.backend", p.backend, "'numpy' | 'torch'")
    need(p.update in UPDATES, "particles.update", p.update, " | ".join(repr(u) for u in UPDATES))
    need(finite(p.alpha) and 0 < p.alpha <= 100, "particles.alpha", p.alpha, "a number in (0, 100]")
    need(1 <= p.batch <= MAX_BATCH, "particles.batch", p.batch, f"an integer in [1, {MAX_BATCH}]")
    need(p.batch * p.n <= MAX_BATCH_TOKENS, "particles.batch", p.batch,
         f"at most {MAX_BATCH_TOKENS:g} tokens in all (batch x particles.n = {p.batch * p.n:g})")
    need(p.device in ("cpu", "cuda"), "particles.device", p.device, "'cpu' | 'cuda'")
    need(p.device == "cpu" or p.backend == "torch", "particles.device", p.device,
         "'cpu' with particles.backend = 'numpy' (set backend = 'torch' for a GPU)")
    need(p.backend == "numpy" or p.field != "funk_hecke", "particles.backend", p.backend,
         "'numpy' with particles.field = 'funk_hecke' (torch evaluates the direct field)")
    geometry = geometry_for_dim(p.dim)
    need(m.geometry == geometry, "model.geometry", m.geometry,
         f"{geometry!r} with particles.dim = {p.dim} (the grid of the density estimate and of the initial density)")
    if geometry == "zonal":
        need(m.dim in (0, p.dim), "model.dim", m.dim, f"0 or particles.dim = {p.dim}")
    need(cfg.longtime.handoff == "none", "longtime.handoff", cfg.longtime.handoff,
         "'none' with model.method = 'particles' (the run is tokens from the start)")
    if a.resample:
        need(all(getattr(a, k) == "random" for k in "QKV"), "attention.resample", a.resample,
             "false unless attention.Q, K and V are 'random' (the law the heads are drawn from every layer)")
        need(not cfg.time.adaptive, "attention.resample", a.resample,
             "false with time.adaptive = true (a layer is one step of time.dt)")
        need(m.viscosity == 0, "attention.resample", a.resample, "false with model.viscosity > 0")
        need(p.backend == "numpy", "attention.resample", a.resample, "false with particles.backend = 'torch'")
        t = cfg.time
        if finite(t.t_end) and finite(t.dt) and t.dt > 0:
            layers = t.t_end / t.dt
            need(abs(layers - round(layers)) <= 1e-9 * layers, "time.t_end", t.t_end,
                 f"a multiple of time.dt = {t.dt:g} with attention.resample = true (every layer is one step of dt)")


def _grid(cfg: Config) -> None:
    g, m = cfg.grid, cfg.model
    cap = MAX_MODES[m.geometry]
    need(1 <= g.modes <= cap, "grid.modes", g.modes, f"an integer in [1, {cap}] for geometry {m.geometry!r}")
    need(finite(g.dealias) and 1.0 <= g.dealias <= 4.0, "grid.dealias", g.dealias,
         "a number in [1, 4] (1.5 = the 3/2 rule)")
    need(g.backend in ("auto", "ducc0", "shtns"), "grid.backend", g.backend, "'auto' | 'ducc0' | 'shtns'")


def _initial(cfg: Config) -> None:
    i, g, m = cfg.initial, cfg.grid, cfg.model
    need(i.kind in INITIAL_KINDS, "initial.kind", i.kind, " | ".join(repr(k) for k in INITIAL_KINDS))
    need(finite(i.amplitude) and 0 <= i.amplitude < 1, "initial.amplitude", i.amplitude, "a number in [0, 1)")
    need(0 <= i.seed < 2**63, "initial.seed", i.seed, "an integer in [0, 2**63) (stored as int64)")
    need(0 <= i.max_mode <= g.modes, "initial.max_mode", i.max_mode,
         f"an integer in [0, grid.modes = {g.modes}] (0: every mode)")
    if i.kind == "modes":
        _modes(i.modes, m.geometry, g.modes)
    if i.kind == "tokens":
        _tokens(cfg)
    if i.kind == "von_mises":
        _centers(i.centers, m.geometry)
        n = len(i.centers)
        need(len(i.concentrations) == n and all(finite(k) and k > 0 for k in i.concentrations),
             "initial.concentrations", i.concentrations, f"{n} finite numbers > 0 (one per center)")
        if i.weights:
            need(len(i.weights) == n and all(finite(w) and w >= 0 for w in i.weights) and sum(i.weights) > 0,
                 "initial.weights", i.weights, f"{n} numbers >= 0, not all zero (normalised to sum 1)")
    if i.kind == "file":
        need(bool(i.path) and "\x00" not in i.path, "initial.path", i.path,
             "the path of an earlier meanfield output (.h5)")
        need(math.isnan(i.time) or (math.isfinite(i.time) and i.time >= 0), "initial.time", i.time,
             "a snapshot time >= 0 of that file")


def _modes(modes, geometry: str, top: int) -> None:
    """initial.modes: [k, a] (circle), [l, m, a] (sphere), [l, a] (zonal), 1 <= k, l <= top."""
    shape = {"circle": "[k, amplitude]", "sphere": "[l, m, amplitude]", "zonal": "[l, amplitude]"}[geometry]
    need(len(modes) > 0, "initial.modes", list(modes), f"a non-empty list of {shape}")
    width = 3 if geometry == "sphere" else 2
    for entry in modes:
        ok = (isinstance(entry, tuple) and len(entry) == width and all(is_int(x) for x in entry[:-1])
              and 1 <= entry[0] <= top and finite(entry[-1]))
        if ok and geometry == "sphere":
            ok = abs(entry[1]) <= entry[0]
        need(ok, "initial.modes", entry,
             f"entries {shape} with integer 1 <= {'k' if geometry == 'circle' else 'l'} <= grid.modes = {top}"
             + (", |m| <= l" if geometry == "sphere" else "") + " and a finite amplitude")


def _centers(centers, geometry: str) -> None:
    """initial.centers: angles (circle), vectors in R^3 (sphere), 0 or pi (zonal: the two poles)."""
    ok = len(centers) > 0
    if geometry == "circle":
        ok = ok and all(finite(c) for c in centers)
        allowed = "a non-empty list of angles (radians)"
    elif geometry == "sphere":
        ok = ok and all(isinstance(c, tuple) and len(c) == 3 and all(finite(x) for x in c)
                        and any(x != 0 for x in c) for c in centers)
        allowed = "a non-empty list of non-zero vectors [x, y, z]"
    else:
        ok = ok and all(finite(c) and (c == 0 or abs(c - math.pi) < 1e-12) for c in centers)
        allowed = "colatitudes 0 (north pole) or pi (south pole): a zonal bump sits on the axis"
    need(ok, "initial.centers", centers, allowed)


def _tokens(cfg: Config) -> None:
    """initial.kind = "tokens": unit vectors of the run's dimension and optional weights."""
    i, d = cfg.initial, cfg.dim
    need(cfg.model.method == "particles" or cfg.longtime.handoff == "tokens", "initial.kind", i.kind,
         "'tokens' with model.method = 'particles', or with longtime.handoff = 'tokens' (a run that "
         "starts as tokens)")
    ok = (0 < len(i.positions) <= 1_000_000
          and all(isinstance(x, tuple) and len(x) == d and all(finite(v) for v in x) and any(v != 0 for v in x)
                  for x in i.positions))
    need(ok, "initial.positions", i.positions,
         f"a non-empty list of non-zero vectors of length {d} (tokens on S^{d - 1}; normalised)")
    if i.weights:
        n = len(i.positions)
        need(len(i.weights) == n and all(finite(w) and w >= 0 for w in i.weights) and sum(i.weights) > 0,
             "initial.weights", i.weights, f"{n} numbers >= 0, not all zero (normalised to sum 1)")


def _time(cfg: Config) -> None:
    t = cfg.time
    need(finite(t.t_end) and t.t_end > 0, "time.t_end", t.t_end, "a finite number > 0")
    need(finite(t.dt) and 0 < t.dt <= t.t_end, "time.dt", t.dt, f"a number in (0, t_end = {t.t_end:g}]")
    if not t.adaptive and cfg.longtime.handoff == "none":  # else dt is only the first step
        need(t.t_end / t.dt <= MAX_STEPS, "time.dt", t.dt,
             f">= t_end / {MAX_STEPS:g} (it would take {t.t_end / t.dt:.3g} steps; at most {MAX_STEPS:g})")
    need(finite(t.rtol) and 0 < t.rtol < 1, "time.rtol", t.rtol, "a number in (0, 1)")
    need(finite(t.atol) and t.atol >= 0, "time.atol", t.atol, "a finite number >= 0")
    need(finite(t.cfl) and 0 <= t.cfl <= 10, "time.cfl", t.cfl, "a number in [0, 10] (0: no CFL bound)")
    need(0 <= t.threads <= 1024, "time.threads", t.threads, "an integer in [0, 1024] (0: all cores)")
    need(finite(t.dt_min) and 0 < t.dt_min <= t.dt, "time.dt_min", t.dt_min, f"a number in (0, dt = {t.dt:g}]")
    need(not math.isnan(t.dt_max) and t.dt_max >= t.dt, "time.dt_max", t.dt_max, f"a number >= dt = {t.dt:g} (or inf)")
    need(t.growth_check in ("refuse", "warn", "off"), "time.growth_check", t.growth_check,
         "'refuse' | 'warn' | 'off'")
    need(finite(t.growth_tol) and 0 < t.growth_tol < 1, "time.growth_tol", t.growth_tol, "a number in (0, 1)")


def _output(cfg: Config) -> None:
    o, t = cfg.output, cfg.time
    need(bool(o.path) and "\x00" not in o.path, "output.path", o.path, "a file path, e.g. run.h5")
    need(finite(o.interval) and o.interval > 0, "output.interval", o.interval, "a finite number > 0")
    need(o.checkpoint_every >= 0, "output.checkpoint_every", o.checkpoint_every,
         "an integer >= 0 (snapshots between checkpoints; 0: none)")
    need(o.spacing in ("linear", "log"), "output.spacing", o.spacing, "'linear' | 'log'")
    need(1 <= o.per_decade <= 10_000, "output.per_decade", o.per_decade, "an integer in [1, 10000]")
    if o.spacing == "linear":
        need(t.t_end / o.interval <= MAX_SNAPSHOTS, "output.interval", o.interval,
             f">= t_end / {MAX_SNAPSHOTS:g} (at most {MAX_SNAPSHOTS:g} snapshots; or output.spacing = 'log')")
    else:
        count = o.per_decade * math.log10(max(t.t_end / o.interval, 1.0)) + o.per_decade / math.log(10) + 2
        need(count <= MAX_SNAPSHOTS, "output.per_decade", o.per_decade,
             f"at most {MAX_SNAPSHOTS:g} snapshots in all (this would write about {count:.3g})")


def _longtime(cfg: Config) -> None:
    """[longtime] and its consistency with the model."""
    lt, m, a = cfg.longtime, cfg.model, cfg.attention
    need(lt.handoff in ("none", "tokens"), "longtime.handoff", lt.handoff, "'none' | 'tokens'")
    if lt.handoff == "tokens":
        need(m.viscosity == 0, "longtime.handoff", lt.handoff,
             "'none' with model.viscosity > 0 (tokens carry the inviscid equation; viscosity keeps "
             "the density resolved)")
    need(finite(lt.merge_tol) and 0 <= lt.merge_tol <= 0.1, "longtime.merge_tol", lt.merge_tol,
         "a number of radians in [0, 0.1] (0: tokens never merge)")
    need(finite(lt.tail_tol) and 0 < lt.tail_tol < 1, "longtime.tail_tol", lt.tail_tol, "a number in (0, 1)")
    need(finite(lt.departure) and 0 <= lt.departure <= 1e3, "longtime.departure", lt.departure,
         "a number in [0, 1000] (max |rho / rho_bar - 1| before the tail can hand off)")
    need(finite(lt.check_factor) and (lt.check_factor == 0 or 1 < lt.check_factor <= 4), "longtime.check_factor",
         lt.check_factor, "0 (no resolution check) or a number in (1, 4]")
    need(finite(lt.check_tol) and 0 < lt.check_tol < 1, "longtime.check_tol", lt.check_tol, "a number in (0, 1)")
    need(lt.check_factor == 0 or m.method == "spectral", "longtime.check_factor", lt.check_factor,
         "0 with model.method = 'particles' (the check refines the grid of a spectral run)")
    need(1 <= lt.oversample <= 8, "longtime.oversample", lt.oversample, "an integer in [1, 8]")
    need(finite(lt.rtol) and 0 <= lt.rtol < 1, "longtime.rtol", lt.rtol, "a number in [0, 1)")
    need(finite(lt.atol) and lt.atol >= 0, "longtime.atol", lt.atol, "a finite number >= 0")
    need(lt.rtol + lt.atol >= 1e-15, "longtime.rtol", lt.rtol,
         "rtol + atol >= 1e-15 (positions are unit vectors: below that is round-off)")
    need(lt.handoff != "tokens" or lt.merge_tol == 0 or lt.rtol + lt.atol <= lt.merge_tol, "longtime.rtol", lt.rtol,
         f"rtol + atol <= longtime.merge_tol = {lt.merge_tol:g} while tokens merge (the adaptive steps resolve "
         "distances down to about rtol: with a looser tolerance two tokens stall further apart than merge_tol "
         "and never merge); tighten longtime.rtol or raise longtime.merge_tol")
    need(finite(lt.cluster_radius) and (lt.cluster_radius == 0 or 1e-9 <= lt.cluster_radius <= math.pi / 2),
         "longtime.cluster_radius", lt.cluster_radius,
         "0 (min(0.2, pi / (4 l*))) or a number of radians in [1e-9, pi/2]")
    need(finite(lt.cluster_mass) and 1e-12 <= lt.cluster_mass <= 1, "longtime.cluster_mass", lt.cluster_mass,
         "a number in [1e-12, 1]")
    if m.method == "spectral" and not plain_attention(cfg):
        need(lt.handoff == "none" or (m.geometry != "zonal" and not a.causal), "longtime.handoff", lt.handoff,
             "'none' with general attention on geometry 'zonal' or with attention.causal (the tokens of a hand-off "
             "carry one position and the circle's or sphere's heads)")


def _steps(cfg: Config) -> None:
    """Fixed steps: output times on multiples of time.dt."""
    t, o = cfg.time, cfg.output
    if t.adaptive:
        return
    for where, value in (("output.interval", o.interval), ("time.t_end", t.t_end)):
        ratio = value / t.dt
        if not math.isfinite(ratio):
            raise ConfigError(f"{where}: got {value:g}, allowed with fixed steps: at most {MAX_STEPS:g} "
                              f"steps of time.dt = {t.dt:g}")
    # snapshots fall on multiples of dt; t_end may not (the run ends with one shorter step)
    ratio = o.interval / t.dt
    if ratio >= 1 and abs(ratio - round(ratio)) > 1e-9 * ratio:
        raise ConfigError(f"output.interval: got {o.interval:g}, allowed with fixed steps: a multiple of "
                          f"time.dt = {t.dt:g} (or set time.adaptive = true)")
    need(o.interval >= t.dt, "output.interval", o.interval, f">= time.dt = {t.dt:g} with fixed steps")
