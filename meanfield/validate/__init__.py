"""`meanfield validate`: the theorem catalogue.

``harness`` runs cases and judges what they return (an ``Outcome``: measured, predicted, a ``Tolerance``,
named conditions); ``cases`` holds the claims, each registered with ``@case``.  The stand-alone scripts of
``meanfield.validation`` are entry points over these cases; ``measure(name)`` runs one in memory.
"""

from .harness import (CASES, ERROR, FAIL, NOT_RUN, PASS, AtLeast, AtMost, Between, Case, Conditions, Context,
                      Exactly, Outcome, Sigmas, Tolerance, Within, case, failed, judge, measure, run, selected,
                      write_report, write_text)
from . import cases  # noqa: F401, E402  (registers every case)  # isort: skip

__all__ = ["AtLeast", "AtMost", "Between", "CASES", "Case", "Conditions", "Context", "ERROR", "Exactly", "FAIL",
           "NOT_RUN", "Outcome", "PASS", "Sigmas", "Tolerance", "Within", "case", "failed", "judge", "measure", "run",
           "selected", "write_report", "write_text"]
