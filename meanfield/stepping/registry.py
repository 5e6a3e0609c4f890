"""The schemes by name (``time.stepper``), and the config check of that name::

        sbdf1   IMEX Euler (order 1)
        sbdf2   IMEX BDF2 / SBDF2, variable step (order 2); started with one SBDF1 step
        etdrk4  Cox–Matthews exponential Runge–Kutta (order 4); L integrated exactly
        etd42   the same steps with an embedded estimate (ETD2RK from its stages, order 2): adaptive steps
                without step doubling
        ark43   Kennedy–Carpenter ARK4(3)6L[2]SA additive IMEX Runge–Kutta (order 4, embedded 3):
                L implicit (a diagonal solve per stage), N explicit
        dopri5  Dormand–Prince 5(4), fully explicit (L u + N(u) together): for runs without stiffness
        dop853  Dormand–Prince 8(5,3), fully explicit: the same, fewer steps at tight tolerances

``make_scheme(name, ...)`` builds one; ``SCHEMES`` maps each name to its class.
"""

from __future__ import annotations

from ..config import need, register
from .pairs import DOP853, DOPRI5
from .schemes import ARK43, ETD42, ETDRK4, SBDF1, SBDF2, Scheme

SCHEMES = {cls.name: cls for cls in (SBDF1, SBDF2, ETDRK4, ETD42, ARK43, DOPRI5, DOP853)}
#: what ``time.stepper = "auto"`` may pick, and the schemes with an embedded error estimate
AUTO = "auto"
EMBEDDED_SCHEMES = tuple(name for name, cls in SCHEMES.items() if getattr(cls, "embedded_order", 0))


def make_scheme(name: str, L, N) -> Scheme:
    """The scheme registered as ``name`` for du/dt = L u + N(u)."""
    return SCHEMES[name](L, N)


@register
def check_stepper(cfg) -> None:
    """time.stepper names a scheme; a CFL bound goes with the step-doubling schemes only."""
    t = cfg.time
    need(t.stepper in (AUTO, *SCHEMES), "time.stepper", t.stepper, " | ".join(repr(s) for s in (AUTO, *SCHEMES)))
    need(t.cfl == 0 or not t.adaptive or t.stepper not in (AUTO, *EMBEDDED_SCHEMES), "time.cfl", t.cfl,
         f"0 with adaptive time.stepper = {t.stepper!r} (an embedded error estimate already rejects unstable "
         "steps; the CFL bound is for the step-doubling schemes 'sbdf1' | 'sbdf2' | 'etdrk4')")
