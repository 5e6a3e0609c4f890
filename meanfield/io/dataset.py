"""A history as an ``xarray.Dataset``: every variable of the file, with its dims, coordinates,
``units`` and ``long_name``, in one flat dataset (``meanfield.open_history``).

    ds = meanfield.open_history("clusters.h5")
    ds.rho.sel(time=19, method="nearest").plot()      # density at t = 19
    ds.energy.plot()                                   # a diagnostic, over its time coordinate
"""

from __future__ import annotations

from .reader import read_history


def open_history(path, grid: bool = True):
    """Open the history ``path`` as an xarray.Dataset, read into memory (the file is closed again).

    The file is read and checked by the verified reader first (``read_history``): a damaged history is refused
    with one line.  Root datasets keep their names (``rho``, ``rho_hat``, ``positions``, ``token_weights``); the
    diagnostics join them on the ``time`` coordinate (``ds.energy``, ``ds.mass``, ...); clusters become
    ``cluster_position`` / ``cluster_mass``, merge records ``merge_*`` on an ``event`` axis, the quadrature
    weights ``weights``.  On the sphere ``degree`` and ``order`` are coordinates of the ``mode`` axis.  Only
    the snapshots written are kept (a run still writing, or killed, has NaN times after them).  ``grid``: add
    ``rho`` from the coefficients when the run stored none (output.grid = false).  The root attributes (the
    config as run, versions) are ``ds.attrs``.

    Parameters
    ----------
    path : str or pathlib.Path
        A history written by ``meanfield run`` (or a run still writing it).
    grid : bool
        Add ``rho`` from the coefficients when the run stored none (``output.grid = false``).

    Returns
    -------
    xarray.Dataset
        Every variable with CF ``units``, a short ``long_name`` (axis labels) and a ``description``.

    Raises
    ------
    meanfield.errors.ConfigError
        One line, if the file is not a readable meanfield history.
    """
    return read_history(path).to_dataset(grid)
