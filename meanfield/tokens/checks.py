"""The token solver's checks of a config, registered with ``config.feasibility`` when this module is
imported: the integrator's name and what it allows, the field, torch on this machine."""

from __future__ import annotations

from ..config import need, register
from ..physics.heads import attention_heads, is_identity
from .field import FIELDS, pick_field
from .integrators import EMBEDDED, INTEGRATORS
from .updates import on_sphere


@register
def check_particles(cfg) -> None:
    """[particles] keys that only the token solver can judge (a particles run)."""
    p, m, a = cfg.particles, cfg.model, cfg.attention
    if m.method != "particles":
        return
    need(p.integrator in INTEGRATORS, "particles.integrator", p.integrator, " | ".join(repr(k) for k in INTEGRATORS))
    need(p.field in FIELDS, "particles.field", p.field, " | ".join(repr(f) for f in FIELDS))
    if p.backend == "torch":
        from .torch_field import load_torch  # torch is an optional extra: imported only when asked for

        load_torch(p.device)
    need(not cfg.time.adaptive or p.integrator in EMBEDDED, "time.adaptive", cfg.time.adaptive,
         f"false with particles.integrator = {p.integrator!r} (adaptive steps need an embedded pair: "
         + " | ".join(repr(k) for k in EMBEDDED) + ")")
    need(p.integrator not in EMBEDDED or m.viscosity == 0, "particles.integrator", p.integrator,
         "'rk4' | 'euler' with model.viscosity > 0 (noise); 'dopri5' and 'dop853' are for deterministic runs")
    heads = attention_heads(cfg, p.dim)
    pick_field(p.field, p.dim, a.heads, a.causal, is_identity(p.dim, *zip(*heads)), p.n, m.beta)
    _check_update(cfg)
    if p.batch > 1:
        _check_batch(cfg)


def _check_update(cfg) -> None:
    """What a residual update other than post-LN allows."""
    p, a = cfg.particles, cfg.attention
    if p.update == "post-ln":
        return
    why = f"with particles.update = {p.update!r}"
    need(cfg.perceptron.activation == "none", "perceptron.activation", cfg.perceptron.activation,
         f"'none' {why} (the perceptron term is defined for post-LN)")
    need(not a.resample, "attention.resample", a.resample, f"false {why}")
    need(p.field != "funk_hecke", "particles.field", p.field, f"'auto' | 'direct' {why} (the Funk–Hecke field is the "
         "tangent part alone)")
    need(on_sphere(p.update) or cfg.model.viscosity == 0, "model.viscosity", cfg.model.viscosity,
         f"0 {why} (noise is Brownian motion on the sphere; the residual stream is in R^d)")


def _check_batch(cfg) -> None:
    """What a batched run (particles.batch > 1) allows."""
    p, a = cfg.particles, cfg.attention
    why = f"with particles.batch = {p.batch} (a batch is many systems of one model: docs/ensembles.md)"
    need(cfg.perceptron.activation == "none", "perceptron.activation", cfg.perceptron.activation, f"'none' {why}")
    need(not cfg.schedule.times, "schedule.times", list(cfg.schedule.times), f"[] {why}")
    need(not a.resample, "attention.resample", a.resample, f"false {why}")
    need(p.field != "funk_hecke", "particles.field", p.field, f"'auto' | 'direct' {why} (each system's field is a "
         "direct sum)")
    need(cfg.initial.kind not in ("tokens", "file"), "initial.kind", cfg.initial.kind,
         f"a density to sample (not 'tokens' or 'file') {why}: system b draws its tokens with initial.seed + b")
