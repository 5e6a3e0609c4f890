"""Weighted tokens on S^{d-1}: the Lagrangian (measure-valued) solution of the same equation.

``field`` (the attention field of tokens: direct tiles, Funk–Hecke, torch), ``rings`` (zonal measures made
of rings), ``integrators`` (projected Runge–Kutta, random layers), ``solver`` (steps and merges),
``sampling`` (tokens from a density and back), ``work`` (blocks over threads), ``batch`` (many
independent systems advanced as one).  A run of tokens is a ``simulation.Simulation`` of a
particles config.
"""

from . import checks  # noqa: F401  (registers the [particles] checks with config)
from .batch import BatchedTokenModel
from .field import FIELDS, TokenModel, pick_field
from .integrators import EMBEDDED, INTEGRATORS, ProjectedDP5, ProjectedDP853, ProjectedEuler, ProjectedRK4, RandomLayers
from .rings import RingModel
from .sampling import default_bandwidth, heat_kernel, max_distance_to_mean, sample_tokens, smoothed_density
from .solver import BatchTokenSolver, TokenSolver, merge_groups

__all__ = ["BatchedTokenModel", "EMBEDDED", "FIELDS", "INTEGRATORS", "ProjectedDP5", "ProjectedDP853", "ProjectedEuler", "ProjectedRK4",
           "BatchTokenSolver", "RandomLayers", "RingModel", "TokenModel", "TokenSolver", "default_bandwidth", "max_distance_to_mean",
           "heat_kernel", "merge_groups", "pick_field", "sample_tokens", "smoothed_density"]
