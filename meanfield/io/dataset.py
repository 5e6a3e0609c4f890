"""A history as an ``xarray.Dataset``: every variable of the file, with its dims, coordinates,
``units`` and ``long_name``, in one flat dataset (``meanfield.open_history``).

    ds = meanfield.open_history("clusters.h5")
    ds.rho.sel(time=19, method="nearest").plot()      # density at t = 19
    ds.energy.plot()                                   # a diagnostic, over its time coordinate
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import io
from ..errors import ConfigError

#: Groups of the file and the prefix their variables get in the flat dataset.
GROUPS = {"diagnostics": "", "clusters": "cluster_", "merges": "merge_", "grid": ""}


def open_history(path, grid: bool = True):
    """Open the history ``path`` as an xarray.Dataset, read into memory (the file is closed again).

    Root datasets keep their names (``rho``, ``rho_hat``, ``positions``, ``token_weights``); the
    diagnostics join them on the ``time`` coordinate (``ds.energy``, ``ds.mass``, ...); clusters
    become ``cluster_position`` / ``cluster_mass``, merge records ``merge_*`` on an ``event`` axis,
    the quadrature weights ``weights``.  On the sphere ``degree`` and ``order`` are coordinates of
    the ``mode`` axis.  Only the snapshots written are kept (a run still writing, or killed, has
    NaN times after them).  ``grid``: add ``rho`` from the coefficients when the run stored none
    (output.grid = false).  The root attributes (the config as run, versions) are ``ds.attrs``.

    Raises ConfigError (one line) if the file is not a readable meanfield history.
    """
    import xarray as xr

    io.read_attrs(path)  # one clear line for a missing, foreign or damaged file
    try:
        # no HDF5 file lock: a history a run is writing stays readable (rows are filled data first, time last)
        tree = xr.open_datatree(Path(path), engine="h5netcdf", phony_dims="sort", driver_kwds={"locking": False})
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"file {str(path)!r} cannot be opened by xarray ({' '.join(str(exc).split())[:160]})") from None
    with tree:
        ds = tree.to_dataset(inherit=True).drop_vars("row_checksum", errors="ignore").load()
        for group, prefix in GROUPS.items():
            if group in tree.children:
                part = tree[group].to_dataset(inherit=False).load()
                ds = ds.merge(part.rename({k: prefix + k for k in part.data_vars}), compat="override",
                              combine_attrs="override")
    ds = ds.isel(time=slice(0, io._written(ds.time.values)))
    if "merge_time" in ds:
        done = np.isfinite(ds.merge_time.values)
        ds = ds.isel(event=np.flatnonzero(done))
    if grid and "rho" not in ds and "rho_hat" in ds:
        h = {"attrs": dict(ds.attrs), "rho_hat": ds.rho_hat.values}
        dims = ("time", *[d for d in ("theta", "colatitude", "longitude") if d in ds.dims])
        ds["rho"] = (dims, io.grid_density(h), {"long_name": "density (from the coefficients)",
                                                "units": ds.rho_hat.attrs.get("units", "1")})
    return ds
