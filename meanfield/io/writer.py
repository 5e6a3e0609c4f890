"""Writing a history: every dataset allocated for all planned snapshots when the file is made, then rows
filled in, each one flushed (data first, its time last).

A run killed at any moment (SIGKILL included) must leave a file that any HDF5
reader opens, holding every snapshot written before.  HDF5 is not crash-safe
while its metadata changes (measured here: appending by resizing datasets and
killing at random left 2 of 25 files unreadable; SWMR mode keeps the file
consistent but marks it "open for write", so plain readers refuse it).  So the
file's structure never changes in place:

* it is built complete under a temporary name (``ownership.temporary``), every
  dataset allocated for all planned snapshots (sparse on disk: unwritten rows
  cost nothing), then renamed over the output;
* a snapshot only writes raw data into rows that already exist: first the data,
  flush, then its time, flush.  /time is NaN-filled, so the snapshots present are
  the leading finite times;
* every structural change (a resume growing the datasets, the close shrinking
  them to the snapshots written and storing the final state) is made on a copy
  that then replaces the file (``edit_copy``): a kill leaves the old or the new
  file, never a half-changed one.

Datasets carry HDF5 dimension scales so that ``xarray.open_dataset(path,
engine="h5netcdf")`` sees named dims (time, theta, mode).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..errors import ConfigError
from . import ownership
from .checkpoint import write_tree
from .hdf5 import preallocated, writing
from .integrity import layout_version, row_digest, static_digest, tree_digest
from .layout import DIAGNOSTICS, INTEGER_DIAGNOSTICS, LAYOUT_VERSION, SHARED_DIAGNOSTICS, MERGE_FIELDS, describe, names_of, resizable, text
from .reader import open_file
from .repack import edit_copy

class HistoryWriter:
    """Writes the snapshots of a run to an HDF5 file, each one flushed before the next.

    Every dataset with a row per snapshot (a *row dataset*: /rho, /rho_hat, /diagnostics/*, and when
    present /positions, /token_weights, /clusters/*) is allocated for all planned snapshots when
    the file is made; their names are listed in the root attribute ``row_datasets``.
    ``tokens = (rows, d)`` adds the token datasets, ``clusters = C`` the cluster datasets (the C
    heaviest clusters per snapshot), ``merges = E`` room for E merge records (/merges/*).
    ``on_replace()`` is called when the new file is complete, just before it replaces ``path``.
    """

    def __init__(self, path, geometry, attrs: dict, n_snapshots: int,
                 diagnostics=("mass", "energy", "tail", "dt", "steps"), tokens=None, clusters: int = 0,
                 merges: int = 0, on_replace=None, compress: bool = True, grid: bool = True, systems=(1, 0)):
        self.path = Path(path)
        self.systems, self.first_seed = int(systems[0]), int(systems[1])
        self.compress, self.grid = bool(compress), bool(grid)
        self.planned = int(n_snapshots)
        self.diagnostics = list(diagnostics)
        self.tokens = None if tokens is None else (int(tokens[0]), int(tokens[1]))
        self.clusters, self.merges = int(clusters), int(merges)
        gshape, sshape = geometry.grid_shape, geometry.spectral_shape
        d = geometry.dim
        row_bytes = 8 * (int(np.prod(gshape)) * self.grid + 2 * int(np.prod(sshape)) + len(self.diagnostics) * self.systems
                         + 1 + (self.tokens[0] * (self.tokens[1] + 1) * self.systems if self.tokens else 0)
                         + self.clusters * (d + 1))
        # the final state (/resume, about a row) and HDF5's own metadata come on top of the rows; at the end the
        # history is rewritten to a copy beside it (shrunk, compressed, with its final state): both on disk at once
        need = row_bytes * (self.planned + 1) + 56 * self.merges + 2**16
        check_room(self.path, need, f"{self.planned} snapshots of {row_bytes / 1e6:.3g} MB and the end-of-run "
                   "copy", "raise output.interval (or lower output.per_decade) or lower grid.modes", disk=2 * need)
        partial = ownership.temporary(self.path)
        try:
            with writing(), h5py.File(partial, "w") as f:
                self._build(f, geometry, attrs)
            if on_replace is not None:
                on_replace()
            ownership.replace(partial, self.path)
        finally:
            partial.unlink(missing_ok=True)
        self._open(0, 0)

    def _open(self, count: int, merge_count: int) -> None:
        self.f = h5py.File(self.path, "r+")
        self.time = self.f["time"]
        self.rows = {name: self.f[name] for name in json.loads(self.f.attrs["row_datasets"])}
        self.fields = list(self.rows)  # the datasets a snapshot fills (the writer interface of io.history)
        self.checksum = self.f["row_checksum"] if "row_checksum" in self.f else None
        self.version = layout_version(self.f)  # a resumed older file keeps its own digests
        self.merge_data = {k: self.f[f"merges/{k}"] for k in MERGE_FIELDS} if "merges" in self.f else {}
        self.count, self.merge_count = int(count), int(merge_count)
        self.last_time = float(self.time[self.count - 1]) if self.count else math.nan

    def _build(self, f, geometry, attrs) -> None:
        n, gshape, sshape = self.planned, geometry.grid_shape, geometry.spectral_shape
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["meanfield_version"] = __version__
        f.attrs["geometry"] = geometry.name
        f.attrs["layout_version"] = LAYOUT_VERSION
        time = preallocated(f, "time", (n,), "f8", (min(n, 1024),), nan_fill=True)
        time.make_scale("time")
        time.attrs.update(names_of("time", "simulation time, the depth of the continuous transformer (NaN: not written)"))
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
            ds = preallocated(f, name, (n, *shape), dtype, (1, *shape) if shape else (min(n, 1024),))
            ds.attrs.update(names_of(name, long_name))
            for ax, scale in enumerate([time, *scales]):
                if scale is not None:
                    ds.dims[ax].attach_scale(scale)
            rows.append(name)
            return ds

        f.attrs["compression"] = "gzip" if self.compress else "none"
        if self.grid:  # output.grid = false: the coefficients alone (readers transform them)
            row("rho", gshape, "f8", coords, "density with respect to the surface measure (tokens: their smoothed "
                "estimate)")
        # causal density: (position, mode), the position scale shared with the grid's
        spectral_scales = [coords[0], mode] if len(sshape) == 2 and "position" in geometry.grid_coords() else [mode]
        row("rho_hat", sshape, "c16", spectral_scales, "spectral coefficients (docs/output.md)")
        system = None
        if self.systems > 1:  # a batch: the system axis, labelled by each system's initial.seed
            system = f.create_dataset("system", data=self.first_seed + np.arange(self.systems))
            system.make_scale("system")
        for name in self.diagnostics:
            shared = system is None or name in SHARED_DIAGNOSTICS
            row(f"diagnostics/{name}", () if shared else (self.systems,),
                "i8" if name in INTEGER_DIAGNOSTICS else "f8", [] if shared else [system], DIAGNOSTICS[name])
        d = geometry.dim
        component = None
        if self.tokens or self.clusters:
            component = f.create_dataset("component", data=np.arange(d))
            component.make_scale("component")
        if self.tokens:
            token = f.create_dataset("token", data=np.arange(self.tokens[0]))
            token.make_scale("token")
            lead, scales = ((self.systems,), [system]) if system is not None else ((), [])
            row("positions", (*lead, *self.tokens), "f8", [*scales, token, component],
                "token positions, unit vectors in R^d (NaN: no token on this row; pre-LN and peri-LN: the residual "
                "stream, whose direction is the token)")
            row("token_weights", (*lead, self.tokens[0]), "f8", [*scales, token], "token weights (0: merged away; "
                "NaN: before the hand-off)")
        if self.clusters:
            cluster = f.create_dataset("cluster", data=np.arange(self.clusters))
            cluster.make_scale("cluster")
            row("clusters/position", (self.clusters, d), "f8", [cluster, component],
                "cluster positions, heaviest first (NaN: fewer clusters)")
            row("clusters/mass", (self.clusters,), "f8", [cluster], "cluster masses, heaviest first")
        if self.merges:
            event = f.create_dataset("merges/event", data=np.arange(self.merges))
            event.make_scale("event")
            part = f.create_dataset("merges/part", data=np.arange(2))
            part.make_scale("part")
            for name, (shape, dtype) in MERGE_FIELDS.items():
                ds = preallocated(f, f"merges/{name}", (self.merges, *shape), dtype,
                                   (min(self.merges, 1024), *shape), nan_fill=name == "time")
                ds.dims[0].attach_scale(event)
                if shape:  # the two heaviest parts of a merged group (netCDF readers want every axis named)
                    ds.dims[1].attach_scale(part)
            f["merges"].attrs["long_name"] = (
                "tokens merged: time, row kept, tokens merged, their total weight, the two largest weights, "
                "largest angle of a member to the merged position")
        f.attrs["row_datasets"] = json.dumps(rows)
        checksum = preallocated(f, "row_checksum", (n,), "u8", (min(n, 1024),))
        checksum.dims[0].attach_scale(time)
        checksum.attrs["long_name"] = ("BLAKE2b (8 bytes) of the snapshot's time and rows, in the order of "
                                       "row_datasets (meanfield info checks it)")
        describe(f, geometry.name)
        f.attrs["static_checksum"] = static_digest(f)

    def append(self, t: float, row: dict) -> None:
        """Write one snapshot: its data, flush, then its time, flush."""
        i = self.count
        if i >= self.planned:
            raise RuntimeError(f"HistoryWriter: more than the {self.planned} planned snapshots")
        values = [np.ascontiguousarray(row[name], dtype=ds.dtype).reshape(ds.shape[1:])
                  for name, ds in self.rows.items()]
        with writing():
            for ds, value in zip(self.rows.values(), values):
                ds[i] = value
            if self.checksum is not None:
                self.checksum[i] = row_digest(t, values, self.version)
            self.f.flush()
            self.time[i] = t
            self.f.flush()
        self.last_time = float(t)
        self.count = i + 1

    def append_merges(self, events) -> None:
        """Write merge records (t, row, count, weight, w1, w2, reach): data first, the times last."""
        events = events[: max(0, self.merges - self.merge_count)]
        if not events:
            return
        a = np.asarray(events, dtype=float)
        i, j = self.merge_count, self.merge_count + len(events)
        d = self.merge_data
        with writing():
            d["row"][i:j], d["count"][i:j], d["weight"][i:j] = a[:, 1], a[:, 2], a[:, 3]
            d["weights"][i:j], d["reach"][i:j] = a[:, 4:6], a[:, 6]
            self.f.flush()
            d["time"][i:j] = a[:, 0]
            self.f.flush()
        self.merge_count = j

    def close(self, attrs: dict | None = None, final: tuple | None = None) -> None:
        """Close the file, then store ``attrs`` (e.g. the hand-off report) and ``final`` = (resume
        point, config hash) of a completed run (/resume), and shrink the datasets to the snapshots
        written.  Those change the file's structure, so they are made on a copy that then replaces
        the history: a kill at any instant leaves either the old or the new file, both readable.
        Safe to call twice."""
        if not self.f.id.valid:
            return
        with writing():
            self.f.close()
        if self.count >= self.planned and not attrs and final is None and not self.compress:
            return

        def edit(f):
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
            if final is not None:
                group = f.create_group("resume")
                write_tree(group, {**final[0], "config_hash": final[1]})
                group.attrs["checksum"] = tree_digest(group)
            if "static_checksum" in f.attrs:  # the root attributes just set are in it (layout 5)
                f.attrs["static_checksum"] = static_digest(f)

        edit_copy(self.path, edit, rows=self.count, compress=self.compress)


def check_room(path, need: int, what: str, advice: str, disk: int | None = None) -> None:
    """ConfigError if a file of ``need`` bytes (``disk`` of them allocated: files are sparse) at
    ``path`` would not fit: the free space of its file system, or the file size limit of this
    process (``ulimit -f``).  Checked before writing, because HDF5 leaves a half-written file in a
    state it cannot even close cleanly."""
    import resource

    path = Path(path)
    free = shutil.disk_usage(path.parent if str(path.parent) else ".").free
    disk = need if disk is None else disk
    if disk > free:
        raise ConfigError(f"output.path: {what}: {disk / 1e9:.3g} GB needed, {free / 1e9:.3g} GB free; {advice}")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and need > limit:
        raise ConfigError(f"output.path: {what}: {need / 1e6:.3g} MB needed, but this process may not write files "
                          f"larger than {limit / 1e6:.3g} MB (ulimit -f); {advice}, or raise the limit")

def add_attributes(path: str | Path, attrs: dict) -> None:
    """Store ``attrs`` as root attributes of the finished history ``path`` (resealed: the static checksum covers
    them), on a copy that then replaces it: a kill leaves the old or the new file."""
    def edit(f):
        for key, value in attrs.items():
            f.attrs[key] = value
        if "static_checksum" in f.attrs:
            f.attrs["static_checksum"] = static_digest(f)

    edit_copy(path, edit)


def reopen_history(path: str | Path, planned: int, count: int, merge_count: int = 0,
                   attrs: dict | None = None) -> HistoryWriter:
    """Open an existing history to continue it after ``count`` regular snapshots: every row dataset
    is grown to ``planned`` rows, the rows from ``count`` on are marked unwritten (time NaN), as are
    the merge records from ``merge_count`` on, the stored final state is dropped and ``attrs`` set.
    Those structural changes are made on a copy that then replaces the history (``edit_copy``), so
    a kill during a resume never damages the stopped run's file."""
    w = HistoryWriter.__new__(HistoryWriter)
    w.path, w.planned = Path(path), int(planned)
    with open_file(w.path) as f:
        if "row_datasets" not in f.attrs:
            raise ConfigError(f"--resume: {str(path)!r} was written by an older meanfield (layout 1): "
                              "start the run again with --overwrite (overwrite=True in Python)")
        grown = sum(f[name].nbytes // max(1, f[name].shape[0]) * max(0, w.planned - f[name].shape[0])
                    for name in resizable(f))
    # the copy is made next to the file (which stays, already counted as used, until the copy replaces it)
    st = os.stat(w.path)
    check_room(w.path, st.st_size + grown + 2**16, f"the resumed history's copy ({w.planned} snapshots)",
               "free some space", disk=512 * st.st_blocks + grown + 2**16)

    def edit(f):
        f["time"][count:] = np.nan
        if "merges" in f:
            f["merges/time"][merge_count:] = np.nan
        if "resume" in f:
            del f["resume"]  # the run goes on: the stored final state is stale
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        if "static_checksum" in f.attrs:  # the config may have changed (an extended t_end)
            f.attrs["static_checksum"] = static_digest(f)

    edit_copy(w.path, edit, rows=w.planned, compress=False)  # a file a run writes into is uncompressed
    w._open(count, merge_count)
    w.compress = text(w.f.attrs.get("compression", "none")) == "gzip"
    w.grid = "rho" in w.rows
    w.diagnostics = [k for k in w.f["diagnostics"]]
    w.tokens = tuple(w.f["positions"].shape[1:]) if "positions" in w.f else None
    w.clusters = w.f["clusters/mass"].shape[1] if "clusters" in w.f else 0
    w.merges = w.f["merges/time"].shape[0] if "merges" in w.f else 0
    return w

