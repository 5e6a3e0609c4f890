"""Time stepping: schemes as coefficient tables (``schemes``, ``pairs``), found by name (``registry``), their
step control (``control``) and the run's clock (``clock``).  Nothing here knows a geometry or the physics:
a scheme sees a diagonal ``L`` and a callable ``N``.
"""

from .clock import Clock, fixed_step_count
from .control import AdaptiveStep, EmbeddedStep, FixedStep, perturbation_error, row_error
from .pairs import DOP853, DOPRI5, DormandPrince, DormandPrince853, ExplicitPair, ExplicitScheme
from .registry import AUTO, EMBEDDED_SCHEMES, SCHEMES, make_scheme
from .schemes import ARK43, ETDRK4, SBDF1, SBDF2, MultistepIMEX, Scheme, State, phi_functions

__all__ = ["ARK43", "AUTO", "AdaptiveStep", "Clock", "DOP853", "DOPRI5", "DormandPrince", "DormandPrince853",
           "EMBEDDED_SCHEMES", "ETDRK4", "EmbeddedStep", "ExplicitPair", "ExplicitScheme", "FixedStep",
           "MultistepIMEX", "SBDF1", "SBDF2", "SCHEMES", "Scheme", "State", "fixed_step_count", "make_scheme",
           "perturbation_error", "phi_functions", "row_error"]
