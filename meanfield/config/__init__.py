"""TOML run configuration -> validated, frozen dataclasses (the lowest layer: it imports no solver).

    cfg = config.load("run.toml", ["grid.modes=64"])   # types and ranges (schema.py, rules.py)
    config.check(cfg)                                  # the solvers' own checks (feasibility.py)

Every key, its default and its range is documented in docs/config.md.  Any problem raises ConfigError
with one line naming ``section.key``, the value given and what is allowed; the CLI turns it into exit
status 2.  ``meanfield.load_config`` does both steps.
"""

from .feasibility import check, register, registered
from .reading import apply_override, from_dict, load, loads, read_toml
from .rules import finite, is_int, need, shown, validate
from .schema import (DEFAULT_DEALIAS, GEOMETRIES, GEOMETRY_DIM, INTEGRALS, MATRIX_KEYS, MAX_BETA, MAX_MODES,
                     MAX_SNAPSHOTS, MAX_STEPS, NGPT_ALPHA, SECTIONS, UPDATES, USA_MAX_BETA, VARIANTS, AttentionConfig, Config, GridConfig,
                     InitialConfig, LongtimeConfig, ModelConfig, OutputConfig, ParticlesConfig, TimeConfig,
                     geometry_for_dim, layer_at, layer_config, plain_attention)
from ..errors import ConfigError

__all__ = ["AttentionConfig", "Config", "ConfigError", "DEFAULT_DEALIAS", "GEOMETRIES", "GEOMETRY_DIM", "GridConfig",
           "INTEGRALS", "InitialConfig", "LongtimeConfig", "MATRIX_KEYS", "MAX_BETA", "MAX_MODES", "MAX_SNAPSHOTS",
           "MAX_STEPS", "ModelConfig", "NGPT_ALPHA", "UPDATES", "OutputConfig", "ParticlesConfig", "SECTIONS", "TimeConfig", "USA_MAX_BETA",
           "VARIANTS", "apply_override", "check", "finite", "from_dict", "geometry_for_dim", "is_int", "layer_at", "layer_config", "load", "loads",
           "need", "plain_attention", "read_toml", "register", "registered", "shown", "validate"]
