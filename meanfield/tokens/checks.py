"""The token solver's checks of a config, registered with ``config.feasibility`` when this module is
imported: the integrator's name and what it allows, the field, torch on this machine."""

from __future__ import annotations

from ..config import need, register
from ..physics.heads import attention_heads, is_identity
from .field import FIELDS, pick_field
from .integrators import EMBEDDED, INTEGRATORS


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
