"""Initial densities from the [initial] config section, as spectral coefficients."""

from __future__ import annotations

import numpy as np

from . import io
from .errors import ConfigError


def initial_coefficients(cfg, geometry) -> np.ndarray:
    """The initial coefficients for ``cfg.initial`` on ``geometry``.

    random:    rho = rho_bar (1 + amplitude * eta), eta with i.i.d. N(0, 1) coefficients on every mode
    modes:     rho = rho_bar (1 + sum amplitude_k cos(k theta))
    von_mises: mixture sum w_i vM(center_i, concentration_i), weights normalised to sum 1
    file:      a snapshot of an earlier output (the new run starts at t = 0); modes are
               truncated or zero-padded
    The density must be positive on the grid, else ConfigError.
    """
    ini = cfg.initial
    uniform = geometry.uniform()
    rho_bar = 1.0 / geometry.measure  # the uniform density's value (not its coefficient: c_00 = sqrt(4 pi) rho_bar on S^2)
    if ini.kind == "random":
        c = uniform + rho_bar * ini.amplitude * geometry.random_perturbation(np.random.default_rng(ini.seed))
    elif ini.kind == "modes":
        c = uniform.copy()
        for *spec, amp in ini.modes:
            c += rho_bar * amp * geometry.mode_function(spec)
    elif ini.kind == "von_mises":
        w = np.asarray(ini.weights if ini.weights else [1.0] * len(ini.centers), dtype=float)
        w = w / w.sum()
        c = sum(wi * geometry.von_mises(ci, ki) for wi, ci, ki in zip(w, ini.centers, ini.concentrations))
    else:
        _, c_file, attrs = io.read_snapshot(ini.path, ini.time)
        if attrs.get("geometry") != geometry.name:
            raise ConfigError(f"initial.path: {ini.path!r} is a {attrs.get('geometry')!r} run, "
                              f"allowed: an output of geometry {geometry.name!r}")
        if int(attrs.get("dim", geometry.dim)) != geometry.dim:
            raise ConfigError(f"initial.path: {ini.path!r} is a run on S^{int(attrs['dim']) - 1}, "
                              f"allowed: an output with dim = {geometry.dim}")
        c = geometry.resample(c_file, int(attrs.get("modes", c_file.size - 1)))
    rho = geometry.to_grid(c)
    if not np.all(np.isfinite(rho)):
        raise ConfigError("initial: the initial density is not finite; check initial.amplitude / concentrations")
    if rho.min() <= 0:
        raise ConfigError(f"initial: the initial density is not positive (min {rho.min():.3g}); lower "
                          "initial.amplitude, or raise grid.modes for sharp von Mises bumps")
    return c
