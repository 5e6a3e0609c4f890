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

import json
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
    "mass": "integral of rho over the domain (tokens: sum of weights; 1 up to round-off)",
    "energy": "exp(-beta) * E, E = (1/(2 beta)) int int e^{beta <x,y>} dmu dmu (interaction energy, SPEC 4)",
    "free_energy": "exp(-beta) * (E - viscosity * int rho log rho); non-decreasing for USA (nan if rho <= 0 somewhere)",
    "energy_rate": "exp(-beta) * dE/dt at the snapshot",
    "tail": "max |rho_k| over the top third of retained modes / rho_0 (resolution monitor; nan for tokens)",
    "spread": "particles: max_i |x_i - m|, m the normalised weighted mean of the tokens (0: synchronised)",
    "dt": "step size in use at the snapshot",
    "steps": "number of accepted steps taken up to the snapshot",
    "n_tokens": "number of live tokens (0 while the run is a density)",
    "n_clusters": "number of clusters (docs/longtime.md: mass >= 2x uniform within cluster_radius, mass >= cluster_mass)",
}
INTEGER_DIAGNOSTICS = ("steps", "n_tokens", "n_clusters")
#: Version of the file layout: 2 adds /token_weights per snapshot (was (N,)), clusters, merges.
LAYOUT_VERSION = 2
MERGE_FIELDS = {"time": ((), "f8"), "row": ((), "i8"), "count": ((), "i8"), "weight": ((), "f8"),
                "weights": ((2,), "f8"), "reach": ((), "f8")}


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
    parent, _, leaf = name.rpartition("/")
    where = group.require_group(parent) if parent else group
    h5py.h5d.create(where.id, leaf.encode(), h5py.h5t.py_create(dtype, logical=True), space, dcpl=dcpl)
    return group[name]


class HistoryWriter:
    """Writes the snapshots of a run to an HDF5 file, each one flushed before the next.

    Every dataset with a row per snapshot (a *row dataset*: /rho, /rho_hat, /diagnostics/*, and when
    present /positions, /token_weights, /clusters/*) is allocated for all planned snapshots when
    the file is made; their names are listed in the root attribute ``row_datasets``.
    ``tokens = (rows, d)`` adds the token datasets, ``clusters = C`` the cluster datasets (the C
    heaviest clusters per snapshot), ``merges = E`` room for E merge records (/merges/*).
    """

    def __init__(self, path, geometry, attrs: dict, n_snapshots: int,
                 diagnostics=("mass", "energy", "tail", "dt", "steps"), tokens=None, clusters: int = 0,
                 merges: int = 0):
        self.path = Path(path)
        self.planned = int(n_snapshots)
        self.diagnostics = list(diagnostics)
        self.tokens = None if tokens is None else (int(tokens[0]), int(tokens[1]))
        self.clusters, self.merges = int(clusters), int(merges)
        gshape, sshape = geometry.grid_shape, geometry.spectral_shape
        d = geometry.dim
        row_bytes = 8 * (int(np.prod(gshape)) + 2 * int(np.prod(sshape)) + len(self.diagnostics) + 1
                         + (self.tokens[0] * (self.tokens[1] + 1) if self.tokens else 0) + self.clusters * (d + 1))
        total = row_bytes * self.planned + 56 * self.merges
        free = shutil.disk_usage(self.path.parent if str(self.path.parent) else ".").free
        if total > free:
            raise ConfigError(
                f"output.path: {self.planned} snapshots of {row_bytes / 1e6:.3g} MB need "
                f"{total / 1e9:.3g} GB, but {free / 1e9:.3g} GB are free; "
                "raise output.interval (or lower output.per_decade) or lower grid.modes"
            )
        partial = self.path.with_name(f".{self.path.name}.partial")
        with h5py.File(partial, "w") as f:
            self._build(f, geometry, attrs)
        os.replace(partial, self.path)
        self._open(0, 0)

    def _open(self, count: int, merge_count: int) -> None:
        self.f = h5py.File(self.path, "r+")
        self.time = self.f["time"]
        self.rows = {name: self.f[name] for name in json.loads(self.f.attrs["row_datasets"])}
        self.merge_data = {k: self.f[f"merges/{k}"] for k in MERGE_FIELDS} if "merges" in self.f else {}
        self.count, self.merge_count = int(count), int(merge_count)

    def _build(self, f, geometry, attrs) -> None:
        n, gshape, sshape = self.planned, geometry.grid_shape, geometry.spectral_shape
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["meanfield_version"] = __version__
        f.attrs["geometry"] = geometry.name
        f.attrs["layout_version"] = LAYOUT_VERSION
        time = _preallocated(f, "time", (n,), "f8", (min(n, 1024),), nan_fill=True)
        time.make_scale("time")
        time.attrs["long_name"] = "simulation time (NaN: snapshot not written)"
        coords = []
        for name, values in geometry.grid_coords().items():
            ds = f.create_dataset(name, data=np.asarray(values, dtype="f8"))
            ds.make_scale(name)
            f[f"grid/{name}"] = ds  # hard link: the documented /grid/<name> is this same dataset
            coords.append(ds)
        spectral = geometry.spectral_coords()  # "mode" first: the scale of the coefficient axis
        mode = f.create_dataset("mode", data=spectral.pop("mode"))
        mode.make_scale("mode")
        for name, values in spectral.items():  # sphere: degree l and order m of each column
            ds = f.create_dataset(name, data=values)
            ds.dims[0].attach_scale(mode)
        weights = f.create_dataset("grid/weights", data=np.broadcast_to(geometry.weights, gshape).astype("f8"))
        for ax, ds in enumerate(coords):
            weights.dims[ax].attach_scale(ds)

        rows = []

        def row(name, shape, dtype, scales, long_name):
            ds = _preallocated(f, name, (n, *shape), dtype, (1, *shape) if shape else (min(n, 1024),))
            ds.attrs["long_name"] = long_name
            for ax, scale in enumerate([time, *scales]):
                if scale is not None:
                    ds.dims[ax].attach_scale(scale)
            rows.append(name)
            return ds

        row("rho", gshape, "f8", coords, "density with respect to the surface measure (tokens: their smoothed "
            "estimate)")
        row("rho_hat", sshape, "c16", [mode], "spectral coefficients (docs/output.md)")
        for name in self.diagnostics:
            row(f"diagnostics/{name}", (), "i8" if name in INTEGER_DIAGNOSTICS else "f8", [], DIAGNOSTICS[name])
        d = geometry.dim
        component = None
        if self.tokens or self.clusters:
            component = f.create_dataset("component", data=np.arange(d))
            component.make_scale("component")
        if self.tokens:
            token = f.create_dataset("token", data=np.arange(self.tokens[0]))
            token.make_scale("token")
            row("positions", self.tokens, "f8", [token, component],
                "token positions, unit vectors in R^d (NaN: no token on this row)")
            row("token_weights", self.tokens[:1], "f8", [token], "token weights (0: merged away; NaN: before the "
                "hand-off)")
        if self.clusters:
            cluster = f.create_dataset("cluster", data=np.arange(self.clusters))
            cluster.make_scale("cluster")
            row("clusters/position", (self.clusters, d), "f8", [cluster, component],
                "cluster positions, heaviest first (NaN: fewer clusters)")
            row("clusters/mass", (self.clusters,), "f8", [cluster], "cluster masses, heaviest first")
        if self.merges:
            event = f.create_dataset("merges/event", data=np.arange(self.merges))
            event.make_scale("event")
            for name, (shape, dtype) in MERGE_FIELDS.items():
                ds = _preallocated(f, f"merges/{name}", (self.merges, *shape), dtype,
                                   (min(self.merges, 1024), *shape), nan_fill=name == "time")
                ds.dims[0].attach_scale(event)
            f["merges"].attrs["long_name"] = (
                "tokens merged: time, row kept, tokens merged, their total weight, the two largest weights, "
                "largest angle of a member to the merged position")
        f.attrs["row_datasets"] = json.dumps(rows)

    def append(self, t: float, row: dict) -> None:
        """Write one snapshot: its data, flush, then its time, flush."""
        i = self.count
        if i >= self.planned:
            raise RuntimeError(f"HistoryWriter: more than the {self.planned} planned snapshots")
        for name, value in row.items():
            self.rows[name][i] = value
        self.f.flush()
        self.time[i] = t
        self.f.flush()
        self.count = i + 1

    def append_merges(self, events) -> None:
        """Write merge records (t, row, count, weight, w1, w2, reach): data first, the times last."""
        events = events[: max(0, self.merges - self.merge_count)]
        if not events:
            return
        a = np.asarray(events, dtype=float)
        i, j = self.merge_count, self.merge_count + len(events)
        d = self.merge_data
        d["row"][i:j], d["count"][i:j], d["weight"][i:j] = a[:, 1], a[:, 2], a[:, 3]
        d["weights"][i:j], d["reach"][i:j] = a[:, 4:6], a[:, 6]
        self.f.flush()
        d["time"][i:j] = a[:, 0]
        self.f.flush()
        self.merge_count = j

    def close(self, attrs: dict | None = None) -> None:
        """Write ``attrs`` (e.g. the hand-off report), shrink the datasets to the snapshots written,
        and close (safe to call twice)."""
        if not self.f.id.valid:
            return
        for key, value in (attrs or {}).items():
            self.f.attrs[key] = value
        if self.count < self.planned:
            for ds in [self.time, *self.rows.values()]:
                ds.resize(self.count, axis=0)
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
            w = f["token_weights"][:n] if f["token_weights"].ndim == 2 else f["token_weights"][:]
            out["token_weights"] = np.broadcast_to(w, out["positions"].shape[:2]).copy()  # layout 1: (N,)
        if "clusters" in f:
            out["cluster_position"] = f["clusters/position"][:n]
            out["cluster_mass"] = f["clusters/mass"][:n]
        if "merges" in f:
            m = _written(f["merges/time"][:])
            out["merges"] = {k: f[f"merges/{k}"][:m] for k in MERGE_FIELDS}
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


def merge_count(path: str | Path) -> int:
    """Number of merge records a history holds."""
    with _open_history(path) as f:
        return _written(f["merges/time"][:]) if "merges" in f else 0


def read_snapshot(path: str | Path, time: float = math.nan) -> dict:
    """The snapshot at ``time`` (nan: the last; the time must match a snapshot) as a dict: ``time``,
    ``rho_hat``, ``attrs``, and ``positions``, ``weights`` of its live tokens (None when the snapshot
    holds no tokens: a density run, or before a hand-off)."""
    with _open_history(path) as f:
        if "time" not in f or "rho_hat" not in f or "config" not in f.attrs:
            raise ConfigError(f"initial.path: {str(path)!r} is not a meanfield output (no /time, /rho_hat or config)")
        times = f["time"][:]
        times = times[:_written(times)]
        if times.size == 0:
            raise ConfigError(f"initial.path: {str(path)!r} holds no snapshot")
        if math.isnan(time):
            i = times.size - 1
        else:
            i = int(np.argmin(np.abs(times - time)))
            if abs(times[i] - time) > 1e-9 * max(1.0, abs(time)):
                raise ConfigError(f"initial.time: got {time:g}, allowed: a snapshot time of {str(path)!r} "
                                  f"(between {times[0]:g} and {times[-1]:g}, e.g. {times[i]:g})")
        out = {"time": float(times[i]), "rho_hat": f["rho_hat"][i], "attrs": dict(f.attrs),
               "positions": None, "weights": None}
        if "positions" in f:
            x = f["positions"][i]
            w = f["token_weights"][i] if f["token_weights"].ndim == 2 else f["token_weights"][:]
            live = np.all(np.isfinite(x), axis=1) & np.isfinite(w) & (w > 0)
            if live.any():
                out["positions"], out["weights"] = x[live], w[live]
        return out


# -------------------------------------------------------------------------------------------
# checkpoints: the full solver state, written atomically next to the history
def checkpoint_path(history: str | Path) -> Path:
    """Where the checkpoint of history OUT.h5 lives: OUT.h5.ckpt."""
    history = Path(history)
    return history.with_name(history.name + ".ckpt")


def _write_tree(group, obj) -> None:
    """Store a resume point (nested dicts of arrays, numbers, strings, None, States) in an HDF5 group."""
    from .stepping import State

    for key, value in obj.items():
        if isinstance(value, State):
            g = group.create_group(key)
            g.attrs["__state__"] = len(value.history)
            g.create_dataset("u", data=value.u)
            _write_tree(g.create_group("history"), {str(i): v for i, v in enumerate(value.history)})
        elif isinstance(value, dict) and key != "rng":
            _write_tree(group.create_group(key), value)
        elif isinstance(value, np.ndarray):
            group.create_dataset(key, data=value)
        elif key == "rng" or value is None:
            group.attrs[key] = json.dumps(value)
        else:
            group.attrs[key] = value


def _read_tree(group) -> dict:
    from .stepping import State

    out = {}
    for key, value in group.attrs.items():
        out[key] = json.loads(value) if key == "rng" or (isinstance(value, str) and value == "null") else value
        if isinstance(out[key], np.generic):
            out[key] = out[key].item()
    for key, item in group.items():
        if isinstance(item, h5py.Dataset):
            out[key] = item[()]
        elif "__state__" in item.attrs:
            hist = _read_tree(item["history"])
            out[key] = State(item["u"][()], tuple(hist[str(i)] for i in range(int(item.attrs["__state__"]))))
        else:
            out[key] = _read_tree(item)
    return out


def write_checkpoint(path: str | Path, point: dict, count: int, config_hash: str, merge_count: int = 0) -> None:
    """Write a resume point (Simulation.resume_point()), the number of regular snapshots and of
    merge records in the history, atomically: a complete temporary file is renamed over the
    previous checkpoint."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with h5py.File(partial, "w") as f:
        _write_tree(f, {**point, "count": int(count), "merge_count": int(merge_count), "config_hash": config_hash})
    os.replace(partial, path)


def read_checkpoint(path: str | Path) -> dict:
    """A resume point written by write_checkpoint (plus "count", "merge_count" and "config_hash")."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint {str(path)!r} (the run wrote none before it stopped); "
                          "start it again with --overwrite")
    try:
        with h5py.File(path, "r") as f:
            point = _read_tree(f)
        for key in ("t", "dt", "steps", "next_output", "t0", "j", "count", "config_hash", "state"):
            point[key]  # noqa: B018 - a missing key is an unreadable checkpoint
        return point
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"--resume: checkpoint {str(path)!r} is unreadable ({exc})") from None


def write_final_state(history: str | Path, point: dict, config_hash: str) -> None:
    """Keep the final resume point of a completed run inside its history (/resume), so that
    ``--resume`` with a larger time.t_end can extend it."""
    with h5py.File(history, "r+") as f:
        if "resume" in f:
            del f["resume"]
        _write_tree(f.create_group("resume"), {**point, "config_hash": config_hash})


def read_final_state(history: str | Path) -> dict | None:
    """The final resume point stored by ``write_final_state`` (None if there is none)."""
    with _open_history(history) as f:
        return _read_tree(f["resume"]) if "resume" in f else None


def reopen_history(path: str | Path, planned: int, count: int, merge_count: int = 0) -> HistoryWriter:
    """Open an existing history to continue it after ``count`` regular snapshots: every row dataset
    is grown to ``planned`` rows and the rows from ``count`` on are marked unwritten (time NaN), as
    are the merge records from ``merge_count`` on."""
    w = HistoryWriter.__new__(HistoryWriter)
    w.path, w.planned = Path(path), int(planned)
    with h5py.File(w.path, "r") as f:
        if "row_datasets" not in f.attrs:
            raise ConfigError(f"--resume: {str(path)!r} was written by an older meanfield (layout 1): "
                              "start the run again with --overwrite")
    w._open(count, merge_count)
    w.diagnostics = [k for k in w.f["diagnostics"]]
    w.tokens = tuple(w.f["positions"].shape[1:]) if "positions" in w.f else None
    w.clusters = w.f["clusters/mass"].shape[1] if "clusters" in w.f else 0
    w.merges = w.f["merges/time"].shape[0] if "merges" in w.f else 0
    for ds in [w.time, *w.rows.values()]:
        if ds.shape[0] != w.planned:
            ds.resize(w.planned, axis=0)
    w.time[w.count:] = np.nan
    if w.merges:
        w.f["merges/time"][w.merge_count:] = np.nan
    if "resume" in w.f:
        del w.f["resume"]  # the run goes on: the stored final state is stale
    w.f.flush()
    return w


def config_hash(cfg) -> str:
    """SHA-256 of the configuration as run, without output.path (a resumed run may be moved)."""
    import hashlib

    import tomli_w

    d = cfg.to_dict()
    d["output"].pop("path", None)
    return hashlib.sha256(tomli_w.dumps(d).encode()).hexdigest()
