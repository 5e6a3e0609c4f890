"""HDF5 histories (layout in docs/output.md).

A run killed at any moment (SIGKILL included) must leave a file that any HDF5
reader opens, holding every snapshot written before.  HDF5 is not crash-safe
while its metadata changes (measured here: appending by resizing datasets and
killing at random left 2 of 25 files unreadable; SWMR mode keeps the file
consistent but marks it "open for write", so plain readers refuse it).  So the
file's structure never changes during a run:

* it is built complete under a temporary name, every dataset allocated for all
  planned snapshots (sparse on disk: unwritten rows cost nothing), then renamed;
* a snapshot only writes raw data into rows that already exist: first the data,
  flush, then its time, flush.  /time is NaN-filled, so the snapshots present are
  the leading finite times;
* a normal close (end of run, or a numerical failure) shrinks every dataset to
  the snapshots written.

Datasets carry HDF5 dimension scales so that ``xarray.open_dataset(path,
engine="h5netcdf")`` sees named dims (time, theta, mode).
"""

from __future__ import annotations

import math
import os
import shutil
from contextlib import contextmanager
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
    "spread": "particles: max_i |x_i - m|, m the normalised weighted mean of the tokens (0: synchronised)",
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


def _preallocated(group, name: str, shape: tuple, dtype, chunks: tuple, nan_fill: bool = False):
    """A chunked dataset with every chunk allocated now (so writing a row changes no metadata)."""
    dtype = np.dtype(dtype)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(chunks)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    if nan_fill:
        dcpl.set_fill_value(np.array(np.nan, dtype=dtype))
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
    else:
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # sparse: unwritten rows take no disk
    space = h5py.h5s.create_simple(shape, (h5py.h5s.UNLIMITED,) + shape[1:])
    h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(dtype, logical=True), space, dcpl=dcpl)
    return group[name]


class HistoryWriter:
    """Writes the snapshots of a spectral run to an HDF5 file, each one flushed before the next."""

    def __init__(self, path, geometry, attrs: dict, n_snapshots: int,
                 diagnostics=("mass", "energy", "tail", "dt", "steps"), token_weights=None, dim: int = 0):
        self.path = Path(path)
        self.planned = int(n_snapshots)
        gshape, sshape = geometry.grid_shape, geometry.spectral_shape
        self.tokens = None if token_weights is None else (len(token_weights), int(dim))
        row_bytes = 8 * (int(np.prod(gshape)) + 2 * int(np.prod(sshape)) + len(diagnostics) + 1
                         + (int(np.prod(self.tokens)) if self.tokens else 0))
        free = shutil.disk_usage(self.path.parent if str(self.path.parent) else ".").free
        if row_bytes * self.planned > free:
            raise ConfigError(
                f"output.path: {self.planned} snapshots of {row_bytes / 1e6:.3g} MB need "
                f"{row_bytes * self.planned / 1e9:.3g} GB, but {free / 1e9:.3g} GB are free; "
                "raise output.interval or lower grid.modes"
            )
        partial = self.path.with_name(f".{self.path.name}.partial")
        with h5py.File(partial, "w") as f:
            self._build(f, geometry, attrs, diagnostics)
            if self.tokens:
                self._build_tokens(f, token_weights)
        os.replace(partial, self.path)
        self.f = h5py.File(self.path, "r+")
        self.time, self.rho, self.rho_hat = self.f["time"], self.f["rho"], self.f["rho_hat"]
        self.positions = self.f["positions"] if self.tokens else None
        self.diag = {k: self.f["diagnostics"][k] for k in diagnostics}
        self.count = 0

    def _build(self, f, geometry, attrs, diagnostics) -> None:
        n, gshape, sshape = self.planned, geometry.grid_shape, geometry.spectral_shape
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["meanfield_version"] = __version__
        f.attrs["geometry"] = geometry.name
        time = _preallocated(f, "time", (n,), "f8", (min(n, 1024),), nan_fill=True)
        time.make_scale("time")
        time.attrs["long_name"] = "simulation time (NaN: snapshot not written)"
        coords = []
        for name, values in geometry.grid_coords().items():
            d = f.create_dataset(name, data=np.asarray(values, dtype="f8"))
            d.make_scale(name)
            f[f"grid/{name}"] = d  # hard link: the documented /grid/<name> is this same dataset
            coords.append(d)
        spectral = geometry.spectral_coords()  # "mode" first: the scale of the coefficient axis
        mode = f.create_dataset("mode", data=spectral.pop("mode"))
        mode.make_scale("mode")
        for name, values in spectral.items():  # sphere: degree l and order m of each column
            d = f.create_dataset(name, data=values)
            d.dims[0].attach_scale(mode)
        weights = f.create_dataset("grid/weights", data=np.broadcast_to(geometry.weights, gshape).astype("f8"))
        for ax, d in enumerate(coords):
            weights.dims[ax].attach_scale(d)

        rho = _preallocated(f, "rho", (n, *gshape), "f8", (1, *gshape))
        rho.attrs["long_name"] = "density with respect to the surface measure"
        rho_hat = _preallocated(f, "rho_hat", (n, *sshape), "c16", (1, *sshape))
        rho_hat.attrs["long_name"] = "spectral coefficients (docs/output.md)"
        for d in (rho, rho_hat):
            d.dims[0].attach_scale(time)
        for ax, d in enumerate(coords):
            rho.dims[ax + 1].attach_scale(d)
        rho_hat.dims[1].attach_scale(mode)
        diag = f.create_group("diagnostics")
        for name in diagnostics:
            d = _preallocated(diag, name, (n,), "i8" if name == "steps" else "f8", (min(n, 1024),))
            d.attrs["long_name"] = DIAGNOSTICS[name]
            d.dims[0].attach_scale(time)

    def _build_tokens(self, f, token_weights) -> None:
        n, d = self.tokens
        token = f.create_dataset("token", data=np.arange(n))
        token.make_scale("token")
        component = f.create_dataset("component", data=np.arange(d))
        component.make_scale("component")
        w = f.create_dataset("token_weights", data=np.asarray(token_weights, dtype="f8"))
        w.dims[0].attach_scale(token)
        pos = _preallocated(f, "positions", (self.planned, n, d), "f8", (1, n, d))
        pos.attrs["long_name"] = "token positions, unit vectors in R^d"
        for ax, scale in enumerate((f["time"], token, component)):
            pos.dims[ax].attach_scale(scale)

    def append(self, t: float, c: np.ndarray, rho: np.ndarray, diagnostics: dict, positions=None) -> None:
        """Write one snapshot: its data, flush, then its time, flush."""
        i = self.count
        if i >= self.planned:
            raise RuntimeError(f"HistoryWriter: more than the {self.planned} planned snapshots")
        if self.positions is not None:
            self.positions[i] = positions
        self.rho[i] = rho
        self.rho_hat[i] = c
        for k, d in self.diag.items():
            d[i] = diagnostics[k]
        self.f.flush()
        self.time[i] = t
        self.f.flush()
        self.count = i + 1

    def close(self) -> None:
        """Shrink the datasets to the snapshots written and close (safe to call twice)."""
        if not self.f.id.valid:
            return
        if self.count < self.planned:
            extra = [self.positions] if self.positions is not None else []
            for d in [self.time, self.rho, self.rho_hat, *self.diag.values(), *extra]:
                d.resize(self.count, axis=0)
        self.f.close()


@contextmanager
def _open_history(path: str | Path):
    """Open a history for reading; ConfigError (naming the path) if missing or not HDF5."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"file {str(path)!r} not found")
    try:
        with h5py.File(path, "r") as f:
            yield f
    except OSError as exc:
        raise ConfigError(f"file {str(path)!r} is not a readable HDF5 file ({exc})") from None


def _written(times: np.ndarray) -> int:
    """Number of snapshots written: the leading finite times (a killed run leaves a NaN tail)."""
    finite = np.isfinite(times)
    return int(np.argmin(finite)) if not finite.all() else times.size


def read_history(path: str | Path) -> dict:
    """Read a history into memory: time, rho_hat, mode, diagnostics and attributes.

    Raises ConfigError (naming the path) if the file is missing or not a meanfield output.
    """
    with _open_history(path) as f:
        if "time" not in f or "rho_hat" not in f or "config" not in f.attrs:
            raise ConfigError(f"file {str(path)!r} is not a meanfield output (no /time, /rho_hat or config)")
        times = f["time"][:]
        n = _written(times)
        out = {
            "time": times[:n],
            "rho_hat": f["rho_hat"][:n],
            "mode": f["mode"][:],
            "attrs": dict(f.attrs),
            "diagnostics": {k: f["diagnostics"][k][:n] for k in f.get("diagnostics", {})},
        }
        if "rho" in f:
            out["rho"] = f["rho"][:n]
        if "positions" in f:
            out["positions"] = f["positions"][:n]
            out["token_weights"] = f["token_weights"][:]
        for name in f.get("grid", {}):  # theta | colatitude, longitude; weights
            out[name] = f["grid"][name][:]
        for name in ("degree", "order"):
            if name in f:
                out[name] = f[name][:]
        return out


def read_attrs(path: str | Path) -> dict:
    """The root attributes of a history, without reading its data (ConfigError if unreadable)."""
    with _open_history(path) as f:
        return dict(f.attrs)


def snapshot_count(path: str | Path) -> int:
    """Number of snapshots a history holds, reading only /time."""
    with _open_history(path) as f:
        return _written(f["time"][:]) if "time" in f else 0


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


# -------------------------------------------------------------------------------------------
# checkpoints: the full solver state, written atomically next to the history
def checkpoint_path(history: str | Path) -> Path:
    """Where the checkpoint of history OUT.h5 lives: OUT.h5.ckpt."""
    history = Path(history)
    return history.with_name(history.name + ".ckpt")


def write_checkpoint(path: str | Path, point: dict, count: int, config_hash: str) -> None:
    """Write a resume point (Simulation.resume_point()) and the number of regular snapshots in the
    history, atomically: a complete temporary file is renamed over the previous checkpoint."""
    import json

    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with h5py.File(partial, "w") as f:
        state = point["state"]
        f.create_dataset("u", data=state.u)
        for i, item in enumerate(state.history):
            if isinstance(item, np.ndarray):
                f.create_dataset(f"history/{i}", data=item)
            else:
                f.attrs[f"history_{i}"] = item
        f.attrs["history_length"] = len(state.history)
        for key in ("t", "dt", "steps", "next_output", "t0", "j"):
            f.attrs[key] = point[key]
        f.attrs["count"] = int(count)
        f.attrs["config_hash"] = config_hash
        f.attrs["rng"] = json.dumps(point["rng"]) if point.get("rng") is not None else ""
    os.replace(partial, path)


def read_checkpoint(path: str | Path) -> dict:
    """A resume point written by write_checkpoint (plus "count" and "config_hash")."""
    import json

    from .stepping import State

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint {str(path)!r} (the run wrote none before it stopped); "
                          "start it again with --overwrite")
    try:
        with h5py.File(path, "r") as f:
            history = []
            for i in range(int(f.attrs["history_length"])):
                history.append(f[f"history/{i}"][()] if f"history/{i}" in f else f.attrs[f"history_{i}"])
            point = {key: f.attrs[key] for key in ("t", "dt", "steps", "next_output", "t0", "j", "count")}
            point["state"] = State(f["u"][()], tuple(history))
            point["config_hash"] = str(f.attrs["config_hash"])
            point["rng"] = json.loads(f.attrs["rng"]) if f.attrs["rng"] else None
            return point
    except (OSError, KeyError) as exc:
        raise ConfigError(f"--resume: checkpoint {str(path)!r} is unreadable ({exc})") from None


def reopen_history(path: str | Path, planned: int, count: int, diagnostics, tokens: bool = False) -> HistoryWriter:
    """Open an existing history to continue it after ``count`` regular snapshots: every dataset is
    grown back to ``planned`` rows and the rows from ``count`` on are marked unwritten (time NaN)."""
    w = HistoryWriter.__new__(HistoryWriter)
    w.path, w.planned, w.count = Path(path), int(planned), int(count)
    w.f = h5py.File(w.path, "r+")
    w.time, w.rho, w.rho_hat = w.f["time"], w.f["rho"], w.f["rho_hat"]
    w.diag = {k: w.f["diagnostics"][k] for k in diagnostics}
    w.positions = w.f["positions"] if tokens else None
    extra = [w.positions] if tokens else []
    for d in [w.time, w.rho, w.rho_hat, *w.diag.values(), *extra]:
        if d.shape[0] < w.planned:
            d.resize(w.planned, axis=0)
    w.time[w.count:] = np.nan
    w.f.flush()
    return w


def config_hash(cfg) -> str:
    """SHA-256 of the configuration as run, without output.path (a resumed run may be moved)."""
    import hashlib

    import tomli_w

    d = cfg.to_dict()
    d["output"].pop("path", None)
    return hashlib.sha256(tomli_w.dumps(d).encode()).hexdigest()
