"""The one verified reader of histories: a file is opened only after a forked probe survived reading all of
it (HDF5 crashes on some damage), checked against the layout, its digests recomputed; what it returns is a
``History``."""

from __future__ import annotations

import json
import math
import os
import stat
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from ..config import need, register
from ..errors import ConfigError
from .hdf5 import probe, short
from .history import History
from .integrity import history_problems, layout_version, row_digest, static_digest
from .layout import MERGE_FIELDS, REQUIRED_ATTRS, written

@contextmanager
def open_file(path: str | Path, key: str = "file"):
    """Open a history for reading; ConfigError (one line naming ``key`` and the path) if it is missing,
    not a regular file, not HDF5, or damaged (a missing dataset, a wrong shape or type)."""
    path = Path(path)
    what = _naming(key)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} not found") from None
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would hang or never end
        raise ConfigError(f"{what} {str(path)!r} is not a regular file, allowed: an HDF5 history")
    crash = probe(path)
    if crash:
        raise ConfigError(f"{what} {str(path)!r} is damaged: {crash}")
    try:
        # no HDF5 file lock: a history being written by a run stays readable (rows are only ever
        # filled in, data first and time last)
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not a readable HDF5 file ({short(exc)})") from None
    try:
        with f:
            yield f
    except ConfigError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError, OSError) as exc:
        raise ConfigError(f"{what} {str(path)!r} is damaged or not a meanfield history "
                          f"({type(exc).__name__}: {short(exc)})") from None


def _naming(key: str) -> str:
    """How an error names a file read for ``key``: "file" for a command's argument, "KEY: file" else."""
    return "file" if key == "file" else f"{key}: file"


def _check_structure(f, path, key: str) -> None:
    """ConfigError if the file lacks what readers index into, or holds it with the wrong shape or type."""
    def bad(what):
        raise ConfigError(f"{_naming(key)} {str(path)!r} is damaged or not a meanfield history ({what})")

    for name in ("time", "rho_hat", "mode"):
        if name not in f or not isinstance(f[name], h5py.Dataset):
            bad(f"no dataset /{name}")
    for name, kind in REQUIRED_ATTRS.items():
        if name not in f.attrs:
            bad(f"no attribute {name!r}")
        value = f.attrs[name]
        value = value.item() if isinstance(value, np.generic) else value
        ok = isinstance(value, str) if kind is str else (isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok or (kind is not str and not math.isfinite(value)):
            bad(f"attribute {name!r} = {value!r}, expected {kind.__name__}")
    t, c = f["time"], f["rho_hat"]
    if t.ndim != 1 or t.dtype.kind != "f":
        bad(f"/time has shape {t.shape} and type {t.dtype}, expected (n,) float")
    if c.dtype.kind != "c" or c.ndim < 2:
        bad(f"/rho_hat has shape {c.shape} and type {c.dtype}, expected (n, modes...) complex")
    n = t.shape[0]
    rows = [c] + ([f["rho"]] if "rho" in f else [])
    rows += [ds for ds in f.get("diagnostics", {}).values()] if isinstance(f.get("diagnostics"), h5py.Group) else []
    for name in ("positions", "token_weights", "clusters/position", "clusters/mass"):
        if name in f:
            rows.append(f[name])
    for ds in rows:
        if not isinstance(ds, h5py.Dataset) or ds.shape[:1] != (n,) and not (ds.name == "/token_weights"
                                                                             and ds.ndim == 1):
            bad(f"{getattr(ds, 'name', ds)} has {ds.shape[0] if ds.shape else 0} rows, /time {n}")
        if ds.dtype.kind not in "fciu":
            bad(f"{ds.name} has type {ds.dtype}, expected numbers")
    if layout_version(f) < 5:  # older digests hash raw bytes: a flipped byte order would pass them
        for ds in rows + [t, f["mode"]]:
            if not ds.dtype.isnative:
                bad(f"{ds.name} has type {ds.dtype.str}, expected native byte order")
    modes_axis = 2 if "position" in f and c.ndim >= 3 else 1  # causal density: (time, position, mode)
    if c.shape[modes_axis] != f["mode"].shape[0]:
        bad(f"/rho_hat has {c.shape[1]} modes, /mode {f['mode'].shape[0]}")
    batch = "system" in f  # a batch: (time, system, token, component) and (time, system, token)
    if "positions" in f and (f["positions"].ndim != 3 + batch
                             or f["token_weights"].shape[-1] != f["positions"].shape[1 + batch]):
        bad(f"/positions {f['positions'].shape} and /token_weights {f['token_weights'].shape} do not match")


def read_history(path: str | Path, check: bool = True, key: str = "file") -> History:
    """Read a history into memory: time, rho_hat, mode, diagnostics and attributes (the leading
    snapshots with a finite time: a killed run leaves a NaN tail).

    Raises ConfigError (one line naming ``key`` and the path) if the file is missing, not a meanfield
    output or damaged; with ``check``, also if ``history_problems`` finds something wrong
    (``meanfield info`` reads with check=False and reports them).
    """
    with open_file(path, key) as f:
        if "time" not in f or "rho_hat" not in f or "config" not in f.attrs:
            if f.attrs.get("kind") == "meanfield control":
                raise ConfigError(f"{_naming(key)} {str(path)!r} is the output of meanfield control, not a run's "
                                  "history: read it with meanfield.control.open_control (docs/control.md)")
            raise ConfigError(f"{_naming(key)} {str(path)!r} is not a meanfield output (no /time, /rho_hat or config)")
        _check_structure(f, path, key)
        times = f["time"][:]
        n = written(times)
        names = json.loads(f.attrs["row_datasets"]) if "row_datasets" in f.attrs else []
        rows = {name: f[name][:n] for name in names}  # each row dataset read once
        rows.update({name: f[name][:n] for name in ("rho", "rho_hat", "positions", "clusters/position",
                                                      "clusters/mass") if name in f and name not in rows})
        out = {
            "time": times[:n],
            "rho_hat": rows["rho_hat"],
            "mode": f["mode"][:],
            "attrs": dict(f.attrs),
            "diagnostics": {k: rows[f"diagnostics/{k}"] if f"diagnostics/{k}" in rows else f["diagnostics"][k][:n]
                            for k in f.get("diagnostics", {})},
            "unwritten_before_written": int(np.sum(np.isfinite(times[n:]))),
            "checksum_mismatch": [],
        }
        if "row_checksum" in f:
            stored = f["row_checksum"][:n]
            version = layout_version(f)
            out["checksum_mismatch"] = [i for i in range(n) if row_digest(times[i], [rows[k][i] for k in names],
                                                                          version) != int(stored[i])]
        if "static_checksum" in f.attrs and str(f.attrs["static_checksum"]) != static_digest(f):
            out["checksum_mismatch"].append("static")
        if "rho" in rows:
            out["rho"] = rows["rho"]
        if "positions" in rows:
            out["positions"] = rows["positions"]
            w = rows["token_weights"] if f["token_weights"].ndim >= 2 else f["token_weights"][:]
            out["token_weights"] = np.broadcast_to(w, out["positions"].shape[:-1]).copy()  # layout 1: (N,)
        if "clusters" in f:
            out["cluster_position"] = rows["clusters/position"]
            out["cluster_mass"] = rows["clusters/mass"]
        if "merges" in f:
            m = written(f["merges/time"][:])
            out["merges"] = {k: f[f"merges/{k}"][:m] for k in MERGE_FIELDS}
        for name in f.get("grid", {}):  # theta | colatitude, longitude; weights
            out[name] = f["grid"][name][:]
        for name in ("degree", "order", "system"):
            if name in f:
                out[name] = f[name][:]
        # what the xarray view shows besides the data: each dataset's units, long_name and description, the scales
        names = []
        f.visit(names.append)
        out["variable_attrs"] = {n: {k: _attr_text(f[n].attrs[k]) for k in ("units", "long_name", "description")
                                     if k in f[n].attrs}
                                 for n in names if isinstance(f[n], h5py.Dataset)}
        out["scales"] = {n: f[n][:] for n in ("cluster", "component", "token", "event", "part")
                         if n in f and isinstance(f[n], h5py.Dataset) and f[n].ndim == 1}
    if check:
        problems = history_problems(out)
        if problems:
            raise ConfigError(f"{_naming(key)} {str(path)!r} is damaged: {problems[0]} (meanfield info lists every "
                              "check)")
    return History(out, path)


def _attr_text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def read_attrs(path: str | Path) -> dict:
    """The root attributes of a history, without reading its data (ConfigError if unreadable)."""
    with open_file(path) as f:
        return dict(f.attrs)


def snapshot_count(path: str | Path) -> int:
    """Number of snapshots a history holds, reading only /time."""
    with open_file(path) as f:
        return written(f["time"][:]) if "time" in f else 0


def read_snapshot(path: str | Path, time: float = math.nan) -> dict:
    """The snapshot at ``time`` (nan: the last; the time must match a snapshot) as a dict: ``time``,
    ``rho_hat``, ``attrs``, and ``positions``, ``weights`` of its live tokens (None when the snapshot
    holds no tokens: a density run, or before a hand-off).  The whole history is checked first
    (``read_history``): a file damaged anywhere is not trusted as initial data."""
    h = read_history(path, key="initial.path")
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
    out = {"time": float(times[i]), "rho_hat": h["rho_hat"][i], "attrs": h["attrs"], "positions": None,
           "weights": None}
    if "positions" in h:  # checked by read_history: every row a live token or none (NaN), never repaired here
        x, w = h["positions"][i], h["token_weights"][i]
        live = np.all(np.isfinite(x), axis=1)
        if live.any():
            out["positions"], out["weights"] = x[live], w[live]
    return out


@register
def check_initial_file(cfg) -> None:
    """initial.path names an existing file (read, and checked, when the run starts)."""
    i = cfg.initial
    if i.kind == "file":
        need(Path(i.path).is_file(), "initial.path", i.path, "an existing meanfield output file")
