"""What a run's history says: growth rates measured in its linear phase (``rates``) and the diagnostics the
theorem catalogue, the figures and the sweeps compute from histories (``diagnostics``)."""

from .rates import RateRow, RatesTable, measured_rates, model_of

__all__ = ["RateRow", "RatesTable", "measured_rates", "model_of"]
