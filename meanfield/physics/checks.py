"""The physics' checks of a config, registered with ``config.feasibility`` when this module is imported:
what the range rules cannot judge without the theory and the kernels.

* the grid resolves the most unstable mode (grid.modes >= 2 k*, density runs);
* the heads' matrices are d x d and finite, and the density solver can evaluate them: scalar heads on
  'zonal', a grid whose quadrature integrates the kernel (grid.dealias), e^{beta <Qx, Ky>} within float64
  for USA.
"""

from __future__ import annotations

from ..config import need, plain_attention, register
from ..errors import ConfigError
from . import theory
from .general import check_quadrature
from .heads import attention_heads, funk_hecke_heads
from .kernels import kernel_radius


@register
def check_resolution(cfg) -> None:
    """grid.modes at least twice the most unstable mode (a particles run's grid only carries an estimate)."""
    m, g = cfg.model, cfg.grid
    if m.method != "spectral":
        return
    kstar = theory.most_unstable_mode(m.beta, m.variant, m.viscosity, cfg.dim, update=cfg.particles.update,
                                      alpha=cfg.particles.alpha)
    if g.modes < 2 * kstar:
        name = "k*" if m.geometry == "circle" else "l*"
        raise ConfigError(f"grid.modes: got {g.modes}, allowed: >= {2 * kstar} for beta = {m.beta:g} (twice the most "
                          f"unstable mode {name} = {kstar}, so that it is well resolved)")


@register
def check_update(cfg) -> None:
    """A density run's residual update (particles.update): post-LN, or nGPT with Q = K = V = I, no causal mask
    and no perceptron term (where the density solver implements it)."""
    m, p = cfg.model, cfg.particles
    if m.method != "spectral" or p.update == "post-ln":
        return
    why = f"with particles.update = {p.update!r} for a density (nGPT's density: Q = K = V = I, no mask, no perceptron)"
    need(p.update == "ngpt", "particles.update", p.update, "'post-ln' | 'ngpt' for a density (pre-LN and peri-LN "
         "move residual streams off the sphere: tokens only)")
    need(plain_attention(cfg), "attention.Q", cfg.attention.Q, f"'identity' (and K, V, one head) {why}")
    need(not cfg.attention.causal, "attention.causal", cfg.attention.causal, f"false {why}")
    need(cfg.perceptron.activation == "none", "perceptron.activation", cfg.perceptron.activation, f"'none' {why}")
    need(cfg.longtime.handoff == "none", "longtime.handoff", cfg.longtime.handoff, f"'none' {why} (the hand-off's "
         "tokens move by post-LN)")


@register
def check_heads(cfg) -> None:
    """The [attention] matrices (drawn as the run will draw them), and what the density solver can evaluate."""
    a, m, g = cfg.attention, cfg.model, cfg.grid
    heads = attention_heads(cfg, cfg.dim)  # ConfigError naming attention.Q, K or V
    if m.method == "particles" or plain_attention(cfg):
        return
    spectral = funk_hecke_heads(heads)
    if m.geometry == "zonal":
        need(spectral and a.integrals != "quadrature", "attention.Q", a.Q,
             "on geometry 'zonal', heads that keep zonal symmetry: Q^T K = c I (c > 0) and V = v I per head")
    if a.integrals == "funk_hecke":
        need(spectral, "attention.integrals", a.integrals, "'auto' | 'quadrature' for these heads (Funk–Hecke "
             "needs Q^T K = c I, c > 0, and V = v I in every head)")
    if m.variant == "usa":
        top = max(kernel_radius(m.beta, Q, K) for Q, K, _ in heads)
        need(top <= theory.USA_MAX_BETA, "model.beta", m.beta, f"beta ||K^T Q|| <= {theory.USA_MAX_BETA:g} for "
             f"variant 'usa' (here {top:.4g}: e^(beta <Qx, Ky>) overflows); use variant 'sa'")
    if not spectral or a.integrals == "quadrature":
        check_quadrature(m.geometry, g.modes, g.dealias, m.beta, heads)
