"""HDF5 histories (layout in docs/output.md).

The file is opened in SWMR mode (HDF5 single-writer/multiple-reader): every
dataset is created up front, snapshots are appended and flushed one by one, and
the file on disk stays consistent, so a run killed at any moment (SIGKILL
included) leaves a readable file with every snapshot flushed before.  Datasets
carry HDF5 dimension scales so that ``xarray.open_dataset(path, engine="h5netcdf")``
sees named dims (time, theta, mode).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from .errors import ConfigError

DIAGNOSTICS = {
    "mass": "integral of rho over the domain (1 up to round-off)",
    "energy": "exp(-beta) * E, E = (1/(2 beta)) int psi rho (interaction energy, SPEC 4)",
    "free_energy": "exp(-beta) * (E - viscosity * int rho log rho); non-decreasing for USA (nan if rho <= 0 somewhere)",
    "tail": "max |rho_k| over the top third of retained modes / rho_0 (resolution monitor)",
    "dt": "step size in use at the snapshot",
    "steps": "number of accepted steps taken up to the snapshot",
}


def check_writable(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse (ConfigError) an existing output unless ``overwrite``, or a directory we cannot write."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"output.path: {str(path)!r} exists; pass --overwrite or choose another -o path")
    if path.is_dir():
        raise ConfigError(f"output.path: {str(path)!r} is a directory, allowed: a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"output.path: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"output.path: directory {str(parent)!r} is not writable")
    return path


class HistoryWriter:
    """Appends snapshots of a spectral run to an HDF5 file, flushing each one."""

    def __init__(self, path, geometry, attrs: dict, diagnostics=("mass", "energy", "tail", "dt", "steps")):
        self.path = Path(path)
        self.geometry = geometry
        self.f = h5py.File(self.path, "w", libver="latest")
        f = self.f
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["meanfield_version"] = __version__
        f.attrs["geometry"] = geometry.name
        gshape, sshape = geometry.grid_shape, geometry.spectral_shape

        self.time = f.create_dataset("time", shape=(0,), maxshape=(None,), dtype="f8", chunks=(256,))
        self.time.make_scale("time")
        self.time.attrs["long_name"] = "simulation time"
        coords = []
        for name, values in geometry.grid_coords().items():
            d = f.create_dataset(name, data=np.asarray(values, dtype="f8"))
            d.make_scale(name)
            f[f"grid/{name}"] = d  # hard link: the documented /grid/<name> is the same dataset
            coords.append(d)
        mode = f.create_dataset("mode", data=geometry.mode_labels())
        mode.make_scale("mode")
        weights = f.create_dataset("grid/weights", data=np.broadcast_to(geometry.weights, gshape).astype("f8"))
        for ax, d in enumerate(coords):
            weights.dims[ax].attach_scale(d)

        self.rho = f.create_dataset("rho", shape=(0, *gshape), maxshape=(None, *gshape), dtype="f8",
                                    chunks=(1, *gshape))
        self.rho.attrs["long_name"] = "density with respect to the surface measure"
        self.rho_hat = f.create_dataset("rho_hat", shape=(0, *sshape), maxshape=(None, *sshape),
                                        dtype="c16", chunks=(1, *sshape))
        self.rho_hat.attrs["long_name"] = "spectral coefficients (docs/output.md)"
        for d in (self.rho, self.rho_hat):
            d.dims[0].attach_scale(self.time)
        for ax, d in enumerate(coords):
            self.rho.dims[ax + 1].attach_scale(d)
        self.rho_hat.dims[1].attach_scale(mode)

        self.diag = {}
        for name in diagnostics:
            d = f.create_dataset(f"diagnostics/{name}", shape=(0,), maxshape=(None,),
                                 dtype="i8" if name == "steps" else "f8", chunks=(256,))
            d.attrs["long_name"] = DIAGNOSTICS[name]
            d.dims[0].attach_scale(self.time)
            self.diag[name] = d
        f.swmr_mode = True
        self.count = 0

    def append(self, t: float, c: np.ndarray, rho: np.ndarray, diagnostics: dict) -> None:
        """Write one snapshot (time last, so /time never runs ahead of the data) and flush."""
        n = self.count + 1
        for d, value in [(self.rho, rho), (self.rho_hat, c)] + [(self.diag[k], diagnostics[k]) for k in self.diag]:
            d.resize(n, axis=0)
            d[n - 1] = value
        self.time.resize(n, axis=0)
        self.time[n - 1] = t
        self.count = n
        self.f.flush()

    def close(self) -> None:
        """Flush and close the file (safe to call twice)."""
        if self.f.id.valid:
            self.f.close()


def read_history(path: str | Path) -> dict:
    """Read a history into memory: time, rho_hat, mode, diagnostics and attributes.

    Raises ConfigError (naming the path) if the file is missing or not a meanfield output.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"file {str(path)!r} not found")
    try:
        with h5py.File(path, "r") as f:
            if "time" not in f or "rho_hat" not in f or "config" not in f.attrs:
                raise ConfigError(f"file {str(path)!r} is not a meanfield output (no /time, /rho_hat or config)")
            n = f["time"].shape[0]
            out = {
                "time": f["time"][:n],
                "rho_hat": f["rho_hat"][:n],
                "mode": f["mode"][:],
                "attrs": dict(f.attrs),
                "diagnostics": {k: f["diagnostics"][k][:n] for k in f.get("diagnostics", {})},
            }
            if "rho" in f:
                out["rho"] = f["rho"][:n]
            for name in ("theta", "weights"):
                if f"grid/{name}" in f:
                    out[name] = f[f"grid/{name}"][:]
            return out
    except OSError as exc:
        raise ConfigError(f"file {str(path)!r} is not a readable HDF5 file ({exc})") from None


def read_snapshot(path: str | Path, time: float = math.nan) -> tuple[float, np.ndarray, dict]:
    """(t, rho_hat, attrs) of the snapshot at ``time`` (nan: the last); the time must match a snapshot."""
    h = read_history(path)
    times = h["time"]
    if times.size == 0:
        raise ConfigError(f"initial.path: {str(path)!r} holds no snapshot")
    if math.isnan(time):
        i = times.size - 1
    else:
        i = int(np.argmin(np.abs(times - time)))
        if abs(times[i] - time) > 1e-9 * max(1.0, abs(time)):
            raise ConfigError(f"initial.time: got {time:g}, allowed: a snapshot time of {str(path)!r} "
                              f"(between {times[0]:g} and {times[-1]:g}, e.g. {times[i]:g})")
    return float(times[i]), h["rho_hat"][i], h["attrs"]
