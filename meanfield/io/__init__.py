"""HDF5 histories (layout in docs/output.md).

A run killed at any moment (SIGKILL included) must leave a file that any HDF5
reader opens, holding every snapshot written before.  HDF5 is not crash-safe
while its metadata changes (measured here: appending by resizing datasets and
killing at random left 2 of 25 files unreadable; SWMR mode keeps the file
consistent but marks it "open for write", so plain readers refuse it).  So the
file's structure never changes in place:

* it is built complete under a temporary name (``files.temporary``), every
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

import hashlib
import json
import math
import os
import re
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from . import ownership as files
from ..errors import ConfigError

DIAGNOSTICS = {
    "mass": "integral of rho over the domain (tokens: sum of weights; 1 up to round-off)",
    "energy": "exp(-beta) * E, E = (1/(2 beta)) int int e^{beta <x,y>} dmu dmu (interaction energy)",
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
#: Version of the file layout: 2 adds /token_weights per snapshot (was (N,)), clusters, merges;
#: 3 adds /row_checksum and the root attribute static_checksum; 4 puts the config text in that checksum
#: (and compresses finished files, names every axis, adds units).
LAYOUT_VERSION = 4
#: Datasets whose bytes make static_checksum (those a build writes once: the grid and the modes).
STATIC = ("mode", "degree", "order", "theta", "colatitude", "longitude", "grid/weights")
MERGE_FIELDS = {"time": ((), "f8"), "row": ((), "i8"), "count": ((), "i8"), "weight": ((), "f8"),
                "weights": ((2,), "f8"), "reach": ((), "f8")}


#: CF-style units of the density and of the quadrature weights (and of the area they integrate over).
DENSITY_UNITS = {"circle": "rad-1", "sphere": "sr-1"}  # zonal S^{d-1}: per unit of its surface measure, "1"
MEASURE_UNITS = {"circle": "rad", "sphere": "sr"}
#: long_name of the coordinates and of the datasets the writer does not describe where it makes them.
LONG_NAMES = {
    "theta": "angle on the circle", "colatitude": "colatitude (0 at the north pole)",
    "longitude": "longitude", "grid/weights": "quadrature weight of the grid point",
    "mode": "index of the spectral coefficient", "degree": "harmonic degree l", "order": "harmonic order m >= 0",
    "component": "component of R^d", "token": "token (row)", "cluster": "cluster, heaviest first",
    "merges/event": "merge event", "merges/part": "the two heaviest parts of a merged group",
    "merges/time": "time of the merge", "merges/row": "row kept by the merged token",
    "merges/count": "tokens merged", "merges/weight": "total weight of the merged tokens",
    "merges/weights": "weights of the two heaviest parts", "merges/reach": "largest angle of a part to the merged position",
}


def _describe(f, geometry: str) -> None:
    """CF attributes: ``units`` and ``long_name`` on every dataset, and the degree and order of each
    sphere coefficient named as its coordinates (xarray shows them beside /rho_hat)."""
    angle = {"theta", "colatitude", "longitude", "merges/reach"}
    density = DENSITY_UNITS.get(geometry, "1")
    units = {"rho": density, "rho_hat": density, "grid/weights": MEASURE_UNITS.get(geometry, "1")}
    names = []
    f.visit(names.append)
    for name in names:
        ds = f[name]
        if not isinstance(ds, h5py.Dataset):
            continue
        leaf = name.rpartition("/")[2]  # /theta is also /grid/theta: one object, visited under either name
        key = name if name in LONG_NAMES or name in units else leaf
        ds.attrs["units"] = "rad" if key in angle else units.get(key, "1")
        if "long_name" not in ds.attrs:
            ds.attrs["long_name"] = LONG_NAMES.get(key, leaf.replace("_", " "))
    if "degree" in f and "order" in f:
        f["rho_hat"].attrs["coordinates"] = "degree order"
    if geometry == "circle":
        f["mode"].attrs["long_name"] = "wavenumber k (rho = sum_k rho_hat_k e^{ik theta}, k >= 0 stored)"
    elif "degree" not in f:
        f["mode"].attrs["long_name"] = "degree l"


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
    ``on_replace()`` is called when the new file is complete, just before it replaces ``path``.
    """

    def __init__(self, path, geometry, attrs: dict, n_snapshots: int,
                 diagnostics=("mass", "energy", "tail", "dt", "steps"), tokens=None, clusters: int = 0,
                 merges: int = 0, on_replace=None, compress: bool = True, grid: bool = True):
        self.path = Path(path)
        self.compress, self.grid = bool(compress), bool(grid)
        self.planned = int(n_snapshots)
        self.diagnostics = list(diagnostics)
        self.tokens = None if tokens is None else (int(tokens[0]), int(tokens[1]))
        self.clusters, self.merges = int(clusters), int(merges)
        gshape, sshape = geometry.grid_shape, geometry.spectral_shape
        d = geometry.dim
        row_bytes = 8 * (int(np.prod(gshape)) * self.grid + 2 * int(np.prod(sshape)) + len(self.diagnostics) + 1
                         + (self.tokens[0] * (self.tokens[1] + 1) if self.tokens else 0) + self.clusters * (d + 1))
        # the final state (/resume, about a row) and HDF5's own metadata come on top of the rows
        check_room(self.path, row_bytes * (self.planned + 1) + 56 * self.merges + 2**16,
                   f"{self.planned} snapshots of {row_bytes / 1e6:.3g} MB",
                   "raise output.interval (or lower output.per_decade) or lower grid.modes")
        partial = files.temporary(self.path)
        try:
            with _writing(), h5py.File(partial, "w") as f:
                self._build(f, geometry, attrs)
            if on_replace is not None:
                on_replace()
            files.replace(partial, self.path)
        finally:
            partial.unlink(missing_ok=True)
        self._open(0, 0)

    def _open(self, count: int, merge_count: int) -> None:
        self.f = h5py.File(self.path, "r+")
        self.time = self.f["time"]
        self.rows = {name: self.f[name] for name in json.loads(self.f.attrs["row_datasets"])}
        self.checksum = self.f["row_checksum"] if "row_checksum" in self.f else None
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
        time = _preallocated(f, "time", (n,), "f8", (min(n, 1024),), nan_fill=True)
        time.make_scale("time")
        time.attrs["long_name"] = "simulation time, the depth of the continuous transformer (NaN: not written)"
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

        f.attrs["compression"] = "gzip" if self.compress else "none"
        if self.grid:  # output.grid = false: the coefficients alone (readers transform them)
            row("rho", gshape, "f8", coords, "density with respect to the surface measure (tokens: their smoothed "
                "estimate)")
        # causal density: (position, mode), the position scale shared with the grid's
        spectral_scales = [coords[0], mode] if len(sshape) == 2 and "position" in geometry.grid_coords() else [mode]
        row("rho_hat", sshape, "c16", spectral_scales, "spectral coefficients (docs/output.md)")
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
            part = f.create_dataset("merges/part", data=np.arange(2))
            part.make_scale("part")
            for name, (shape, dtype) in MERGE_FIELDS.items():
                ds = _preallocated(f, f"merges/{name}", (self.merges, *shape), dtype,
                                   (min(self.merges, 1024), *shape), nan_fill=name == "time")
                ds.dims[0].attach_scale(event)
                if shape:  # the two heaviest parts of a merged group (netCDF readers want every axis named)
                    ds.dims[1].attach_scale(part)
            f["merges"].attrs["long_name"] = (
                "tokens merged: time, row kept, tokens merged, their total weight, the two largest weights, "
                "largest angle of a member to the merged position")
        f.attrs["row_datasets"] = json.dumps(rows)
        checksum = _preallocated(f, "row_checksum", (n,), "u8", (min(n, 1024),))
        checksum.dims[0].attach_scale(time)
        checksum.attrs["long_name"] = ("BLAKE2b (8 bytes) of the snapshot's time and rows, in the order of "
                                       "row_datasets (meanfield info checks it)")
        _describe(f, geometry.name)
        f.attrs["static_checksum"] = _static_digest(f)

    def append(self, t: float, row: dict) -> None:
        """Write one snapshot: its data, flush, then its time, flush."""
        i = self.count
        if i >= self.planned:
            raise RuntimeError(f"HistoryWriter: more than the {self.planned} planned snapshots")
        values = [np.ascontiguousarray(row[name], dtype=ds.dtype).reshape(ds.shape[1:])
                  for name, ds in self.rows.items()]
        with _writing():
            for ds, value in zip(self.rows.values(), values):
                ds[i] = value
            if self.checksum is not None:
                self.checksum[i] = row_digest(t, values)
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
        with _writing():
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
        with _writing():
            self.f.close()
        if self.count >= self.planned and not attrs and final is None and not self.compress:
            return

        def edit(f):
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
            if final is not None:
                group = f.create_group("resume")
                _write_tree(group, {**final[0], "config_hash": final[1]})
                group.attrs["checksum"] = _tree_digest(group)

        edit_copy(self.path, edit, rows=self.count, compress=self.compress)


@contextmanager
def _writing():
    """h5py reports some failed writes (disk full while flushing or closing) as RuntimeError:
    make every failed write an OSError, which the run turns into "writing ... failed"."""
    try:
        yield
    except RuntimeError as exc:
        code = re.search(r"errno = (\d+)", str(exc))  # HDF5 names the system error in its message
        if code:
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1)))) from exc
        raise OSError(f"HDF5 write failed: {_short(exc)}") from exc


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


def row_digest(t: float, values) -> int:
    """The checksum of one snapshot: BLAKE2b (8 bytes) of its time and its rows' bytes."""
    h = hashlib.blake2b(np.float64(t).tobytes(), digest_size=8)
    for value in values:
        h.update(np.ascontiguousarray(value).tobytes())
    return int.from_bytes(h.digest(), "little")


def _tree_digest(group) -> str:
    """BLAKE2b of every dataset (name, type, shape, bytes) and attribute under ``group``."""
    h = hashlib.blake2b(digest_size=16)

    def add(name, obj):
        h.update(name.encode())
        for key in sorted(k for k in obj.attrs if k != "checksum"):
            h.update(key.encode() + np.asarray(obj.attrs[key]).tobytes())
        if isinstance(obj, h5py.Dataset):
            h.update(f"{obj.dtype}{obj.shape}".encode() + np.ascontiguousarray(obj[()]).tobytes())

    add("", group)
    names = []
    group.visit(names.append)
    for name in sorted(names):
        add(name, group[name])
    return h.hexdigest()


def _static_digest(f) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name in STATIC:
        if name in f:
            h.update(name.encode() + np.ascontiguousarray(f[name][()]).tobytes())
    if int(f.attrs.get("layout_version", 1)) >= 4:  # the config as run (its text; readers trust it)
        h.update(b"config" + str(f.attrs.get("config", "")).encode("utf-8", "backslashreplace"))
    return h.hexdigest()


def reseal(path: str | Path) -> None:
    """Recompute the checksums of a history after a deliberate edit (e.g. crafted initial data):
    every written snapshot's /row_checksum, the static_checksum and that of the final state."""
    with h5py.File(path, "r+") as f:
        if "row_checksum" not in f:
            raise ConfigError(f"file {str(path)!r} has no checksums (layout {f.attrs.get('layout_version', 1)})")
        times = f["time"][:]
        names = json.loads(f.attrs["row_datasets"])
        for i in range(_written(times)):
            f["row_checksum"][i] = row_digest(times[i], [f[name][i] for name in names])
        f.attrs["static_checksum"] = _static_digest(f)
        if "resume" in f:
            f["resume"].attrs["checksum"] = _tree_digest(f["resume"])


def _resizable(f) -> list[str]:
    """The datasets with a row per snapshot, /time and /row_checksum included."""
    return ["time", *(["row_checksum"] if "row_checksum" in f else []), *json.loads(f.attrs["row_datasets"])]


def edit_copy(path, edit, rows: int | None = None, compress: bool | None = None) -> None:
    """Apply ``edit(h5py.File)`` to a copy of the history ``path`` and rename the copy over it.

    ``rows``: the copy's row datasets get that many rows (cut, or grown with unwritten rows);
    ``compress``: True writes them gzip-compressed (a finished file), False uncompressed and fully
    allocated (a file a run writes into); None keeps the layout (a plain copy)."""
    path = Path(path)
    tmp = files.temporary(path)
    try:
        if rows is None and compress is None:
            files.sparse_copy(path, tmp)
        else:
            with _writing(), h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
                repack(src, dst, rows, bool(compress))
        with _writing(), h5py.File(tmp, "r+") as f:
            edit(f)
        files.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read(ds, where):
    """ds[where] (``"attrs"``: its attributes as a list); a part of the file that cannot be read (a damaged chunk) is a damaged input
    (ConfigError), not a failed write."""
    try:
        return list(ds.attrs.items()) if where == "attrs" else ds[where]
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise ConfigError(f"file {ds.file.filename!r} is damaged: {ds.name} cannot be read ({_short(exc)}); "
                          "meanfield info lists every check") from None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


#: gzip level of finished histories: level 1 keeps nearly all of level 9's gain at a fraction of its time
COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
_SCALE_ATTRS = ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME")


def repack(src, dst, rows: int | None, compress: bool) -> None:
    """Copy the history ``src`` (an open h5py.File) into the empty file ``dst``: every group,
    dataset, attribute, hard link and dimension scale.  The row datasets (``_resizable``) get ``rows``
    rows (None: as many as now) and are gzip-compressed (``compress``) or preallocated for writing."""
    resizable = set(_resizable(src)) if "row_datasets" in src.attrs else set()
    made = {}  # object -> its first path in dst (h5py objects hash by file object: a second path is a hard link)
    datasets = []

    def copy(name, obj):
        if obj in made:
            dst[name] = dst[made[obj]]
            return
        if isinstance(obj, h5py.Group):
            out = dst.require_group(name)
        elif name in resizable:
            n = obj.shape[0] if rows is None else int(rows)
            chunks = obj.chunks or (1, *obj.shape[1:])
            if compress:
                out = dst.create_dataset(name, shape=(n, *obj.shape[1:]), maxshape=(None, *obj.shape[1:]),
                                         dtype=obj.dtype, chunks=chunks, **COMPRESSION)
            else:
                out = _preallocated(dst, name, (n, *obj.shape[1:]), obj.dtype, chunks,
                                    nan_fill=name in ("time", "merges/time"))
            step = max(1, 2**26 // max(1, obj.dtype.itemsize * int(np.prod(obj.shape[1:]))))
            for i in range(0, min(n, obj.shape[0]), step):
                j = min(i + step, n, obj.shape[0])
                out[i:j] = _read(obj, slice(i, j))
            datasets.append((obj, out))
        else:
            out = dst.create_dataset(name, data=_read(obj, ()), dtype=obj.dtype)
            datasets.append((obj, out))
        for key, value in _read(obj, "attrs"):
            if key not in _SCALE_ATTRS:
                out.attrs[key] = value
        made[obj] = name

    def walk(group):  # every link (visititems visits an object once, and would drop the hard links)
        for key in group:
            obj = group[key]
            copy(f"{group.name.rstrip('/')}/{key}".lstrip("/"), obj)
            if isinstance(obj, h5py.Group):
                walk(obj)

    for key, value in _read(src, "attrs"):
        dst.attrs[key] = value
    walk(src)
    for old, new in datasets:  # scales first, then what refers to them
        if old.attrs.get("CLASS") == b"DIMENSION_SCALE":
            new.make_scale(_text(old.attrs.get("NAME", b"")))
    for old, new in datasets:
        for axis in range(old.ndim):
            for scale in old.dims[axis].values():
                new.dims[axis].attach_scale(dst[scale.name])


@contextmanager
def _open_history(path: str | Path, key: str = "file"):
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
    crash = _probe(path)
    if crash:
        raise ConfigError(f"{what} {str(path)!r} is damaged: the HDF5 library crashed reading it ({crash})")
    try:
        # no HDF5 file lock: a history being written by a run stays readable (rows are only ever
        # filled in, data first and time last)
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not a readable HDF5 file ({_short(exc)})") from None
    try:
        with f:
            yield f
    except ConfigError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError, OSError) as exc:
        raise ConfigError(f"{what} {str(path)!r} is damaged or not a meanfield history "
                          f"({type(exc).__name__}: {_short(exc)})") from None


def _probe(path) -> str | None:
    """Read everything in ``path`` in a forked child first: on some damaged files (a flipped byte in
    an attribute's heap, say) the HDF5 library does not fail but crashes the process.  Returns how
    the child died, or None (errors are left to the caller, who reads the file again to report them)."""
    if not hasattr(os, "fork"):
        return None
    pid = os.fork()
    if pid == 0:  # the child: read every attribute and dataset, report nothing but survival
        try:
            _touch_everything(path)
        finally:
            os._exit(0)  # also on errors: no Python or HDF5 clean-up in a forked child
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return None


#: Root attributes a history needs (the model is rebuilt from them), with their types.
REQUIRED_ATTRS = {"config": str, "geometry": str, "variant": str, "beta": float, "viscosity": float,
                  "modes": int, "dealias": float}
#: Names readers look up directly (not only by iterating): the probe reads them by name too, since
#: a damaged name index can hide from iteration what a lookup still finds.
_LOOKED_UP_ATTRS = (*REQUIRED_ATTRS, "row_datasets", "static_checksum", "layout_version", "config_hash", "run_id",
                    "checksum", "__state__", "backend", "library_versions", "meanfield_version", "long_name")
_LOOKED_UP = ("time", "rho", "rho_hat", "mode", "degree", "order", "grid", "diagnostics", "positions",
              "token_weights", "clusters", "merges", "row_checksum", "resume")


def _touch_everything(path) -> None:
    """Read every attribute and dataset of ``path``, each on its own (an error stops nothing)."""
    def attempt(fn, *args):
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - only a crash matters here; the caller reports errors
            pass

    def read(obj):
        keys = []
        attempt(lambda: keys.extend(obj.attrs))
        for key in {*keys, *_LOOKED_UP_ATTRS}:
            attempt(lambda k: obj.attrs[k] if k in obj.attrs else None, key)
        if isinstance(obj, h5py.Dataset):
            attempt(lambda: obj[()])

    with h5py.File(path, "r", locking=False) as f:
        names = []
        attempt(f.visit, names.append)
        for name in ["/", *_LOOKED_UP, *names]:
            attempt(lambda n: read(f[n]) if n in f else None, name)


def _naming(key: str) -> str:
    """How an error names a file read for ``key``: "file" for a command's argument, "KEY: file" else."""
    return "file" if key == "file" else f"{key}: file"


def _short(exc) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."




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
    modes_axis = 2 if "position" in f and c.ndim >= 3 else 1  # causal density: (time, position, mode)
    if c.shape[modes_axis] != f["mode"].shape[0]:
        bad(f"/rho_hat has {c.shape[1]} modes, /mode {f['mode'].shape[0]}")
    if "positions" in f and (f["positions"].ndim != 3 or f["token_weights"].shape[-1] != f["positions"].shape[1]):
        bad(f"/positions {f['positions'].shape} and /token_weights {f['token_weights'].shape} do not match")


#: history_problems' wording of the checks ``meanfield info`` also makes itself (it prints its own line)
TIMES_NOT_INCREASING = "times do not increase"
NON_FINITE = "non-finite values"
CHECKSUMS = "checksums do not match"


def history_problems(h: dict) -> list[str]:
    """What is wrong in a history read by ``read_history`` that a reader could be misled by: rows
    after an unwritten one, times not increasing, non-finite data, root attributes that disagree
    with the stored config.  Empty when the history is sound."""
    import tomllib

    out = []
    bad = h.get("checksum_mismatch", [])
    if bad:
        rows = [i for i in bad if i != "static"]
        what = ([f"{len(rows)} snapshot{'s' * (len(rows) > 1)} (first at t = {h['time'][rows[0]]:.6g})"] if rows else []) + \
               (["the grid, the mode datasets or the stored config"] if "static" in bad else [])
        out.append(f"{CHECKSUMS} in {' and '.join(what)}: the file was changed after it was written")
    if h["unwritten_before_written"]:
        out.append(f"{h['unwritten_before_written']} rows with a time follow an unwritten row (time NaN): "
                   "the history was spliced or its checkpoint resumed into another file")
    t = h["time"]
    if t.size > 1 and not np.all(np.diff(t) > 0):
        out.append(TIMES_NOT_INCREASING)
    if t.size and t[0] < 0:
        out.append(f"negative time {t[0]:g}")
    bad = [name for name in ("rho_hat", "rho") if name in h and not np.all(np.isfinite(h[name]))]
    if bad:
        out.append(NON_FINITE + " in /" + " and /".join(bad))
    if "cluster_mass" in h:  # NaN marks a missing cluster; anything else must be a mass and a unit vector
        m, x = h["cluster_mass"], h["cluster_position"]
        with np.errstate(invalid="ignore", over="ignore"):
            mass_ok = np.isnan(m) | ((m >= 0) & (m <= 1 + 1e-9))
            norm = np.sqrt(np.sum(x * x, axis=-1))
            pos_ok = np.isnan(norm) | (np.abs(norm - 1) <= 1e-6)
        if not (mass_ok.all() and pos_ok.all()):
            out.append("cluster masses outside [0, 1] or positions off the unit sphere in /clusters")
    a = h["attrs"]
    try:
        model = tomllib.loads(str(a["config"])).get("model", {})
    except tomllib.TOMLDecodeError:
        return out + ["the stored config is not valid TOML"]
    for name, default in (("beta", None), ("variant", "sa"), ("viscosity", 0.0), ("geometry", None)):
        if name in model or default is not None:
            want = model.get(name, default)
            have = a.get(name)
            have = have.item() if isinstance(have, np.generic) else have
            if isinstance(want, (int, float)) and isinstance(have, (int, float)):
                same = float(want) == float(have)
            else:
                same = str(want) == str(have)
            if name == "geometry" and model.get("method") == "particles":
                continue
            if not same:
                out.append(f"attribute {name} = {have!r} disagrees with the stored config ({want!r})")
    return out


def _written(times: np.ndarray) -> int:
    """Number of snapshots written: the leading finite times (a killed run leaves a NaN tail)."""
    finite = np.isfinite(times)
    return int(np.argmin(finite)) if not finite.all() else times.size


def read_history(path: str | Path, check: bool = True, key: str = "file") -> dict:
    """Read a history into memory: time, rho_hat, mode, diagnostics and attributes (the leading
    snapshots with a finite time: a killed run leaves a NaN tail).

    Raises ConfigError (one line naming ``key`` and the path) if the file is missing, not a meanfield
    output or damaged; with ``check``, also if ``history_problems`` finds something wrong
    (``meanfield info`` reads with check=False and reports them).
    """
    with _open_history(path, key) as f:
        if "time" not in f or "rho_hat" not in f or "config" not in f.attrs:
            raise ConfigError(f"{_naming(key)} {str(path)!r} is not a meanfield output (no /time, /rho_hat or config)")
        _check_structure(f, path, key)
        times = f["time"][:]
        n = _written(times)
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
            out["checksum_mismatch"] = [i for i in range(n) if row_digest(times[i], [rows[k][i] for k in names])
                                        != int(stored[i])]
        if "static_checksum" in f.attrs and str(f.attrs["static_checksum"]) != _static_digest(f):
            out["checksum_mismatch"].append("static")
        if "rho" in rows:
            out["rho"] = rows["rho"]
        if "positions" in rows:
            out["positions"] = rows["positions"]
            w = rows["token_weights"] if f["token_weights"].ndim == 2 else f["token_weights"][:]
            out["token_weights"] = np.broadcast_to(w, out["positions"].shape[:2]).copy()  # layout 1: (N,)
        if "clusters" in f:
            out["cluster_position"] = rows["clusters/position"]
            out["cluster_mass"] = rows["clusters/mass"]
        if "merges" in f:
            m = _written(f["merges/time"][:])
            out["merges"] = {k: f[f"merges/{k}"][:m] for k in MERGE_FIELDS}
        for name in f.get("grid", {}):  # theta | colatitude, longitude; weights
            out[name] = f["grid"][name][:]
        for name in ("degree", "order"):
            if name in f:
                out[name] = f[name][:]
    if check:
        problems = history_problems(out)
        if problems:
            raise ConfigError(f"{_naming(key)} {str(path)!r} is damaged: {problems[0]} (meanfield info lists every "
                              "check)")
    return out


def model_of(h: dict):
    """The Q = K = V = I model (geometry, variant, beta, viscosity) of the run that wrote history ``h``:
    what the linear theory and the rate fits refer to."""
    from ..physics.model import AttentionModel

    a = h["attrs"]
    return AttentionModel(geometry_of(h), str(a["variant"]), float(a["beta"]), float(a["viscosity"]))


def geometry_of(h: dict):
    """The geometry of the run that wrote history ``h`` (from its attributes; any installed
    backend: they share the layout and the grid)."""
    from ..domains import make_geometry

    a = h["attrs"]
    return make_geometry(_text(a["geometry"]), int(a["modes"]), float(a["dealias"]), "auto", int(a.get("dim", 0)))


def density_snapshots(h: dict) -> int:
    """How many leading snapshots of history ``h`` hold the density: all, unless the run handed off to tokens."""
    tokens = h["diagnostics"].get("n_tokens")
    if tokens is not None and np.any(tokens > 0):
        return int(np.argmax(tokens > 0))
    return int(h["time"].size)


def snapshot_before(time: np.ndarray, when) -> np.ndarray | int:
    """Index of the last snapshot at or before ``when`` (scalar or array; relative tolerance 1e-12), -1 if none."""
    return np.searchsorted(time, np.asarray(when) * (1 + 1e-12), side="right") - 1


def grid_density(h: dict, rows=slice(None)) -> np.ndarray:
    """rho on the grid at the snapshots ``rows``: /rho, or the coefficients transformed when the
    history was written with output.grid = false."""
    if "rho" in h:
        return h["rho"][rows]
    g = geometry_of(h)
    c = np.asarray(h["rho_hat"][rows])
    if c.ndim == len(g.spectral_shape):
        return g.to_grid(c)
    return np.stack([g.to_grid(row) for row in c]) if len(c) else np.zeros((0, *g.grid_shape))


def read_attrs(path: str | Path) -> dict:
    """The root attributes of a history, without reading its data (ConfigError if unreadable)."""
    with _open_history(path) as f:
        return dict(f.attrs)


def snapshot_count(path: str | Path) -> int:
    """Number of snapshots a history holds, reading only /time."""
    with _open_history(path) as f:
        return _written(f["time"][:]) if "time" in f else 0


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
    if "positions" in h:
        x, w = h["positions"][i], h["token_weights"][i]
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
    from ..stepping import State

    for key, value in obj.items():
        if isinstance(value, State):
            g = group.create_group(key)
            g.attrs["__state__"] = len(value.history)
            ds = g.create_dataset("u", data=value.u)
            ds.attrs.update(long_name=f"solver state: {key} (read by --resume)", units="1")
            _write_tree(g.create_group("history"), {str(i): v for i, v in enumerate(value.history)})
        elif isinstance(value, dict) and key != "rng":
            _write_tree(group.create_group(key), value)
        elif isinstance(value, np.ndarray):
            ds = group.create_dataset(key, data=value)
            ds.attrs.update(long_name=f"solver state: {key} (read by --resume)", units="1")
        elif key == "rng" or value is None:
            group.attrs[key] = json.dumps(value)
        else:
            group.attrs[key] = value


def _read_tree(group) -> dict:
    from ..stepping import State

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
    partial = files.temporary(path)
    try:
        with _writing(), h5py.File(partial, "w", userblock_size=_USERBLOCK) as f:
            _write_tree(f, {**point, "count": int(count), "merge_count": int(merge_count),
                            "config_hash": config_hash})
        with open(partial, "r+b") as f:  # the digest of everything after the user block, in the user block
            digest = _file_digest(f)
            f.seek(0)
            f.write(_CKPT_MAGIC + digest.encode())
            f.flush()
            os.fsync(f.fileno())
        files.replace(partial, path, "checkpoint")
    finally:
        partial.unlink(missing_ok=True)


#: A checkpoint starts with a user block (ignored by HDF5) holding this tag and the BLAKE2b digest of
#: the rest of the file: a flipped byte anywhere in the state is found before a resume uses it.
_USERBLOCK = 512
_CKPT_MAGIC = b"meanfield-checkpoint blake2b "


def _file_digest(f) -> str:
    f.seek(_USERBLOCK)
    h = hashlib.blake2b(digest_size=32)
    for chunk in iter(lambda: f.read(1 << 22), b""):
        h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> dict:
    """A resume point written by write_checkpoint (plus "count", "merge_count" and "config_hash")."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint {str(path)!r} (the run wrote none before it stopped); "
                          "start it again with --overwrite")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_CKPT_MAGIC) + 64)
            # a plain HDF5 file (no user block) is a checkpoint of meanfield <= 0.1.0: nothing to check
            if not head.startswith(b"\x89HDF") and head[len(_CKPT_MAGIC):].decode(errors="replace") != _file_digest(f):
                raise ValueError("its checksum does not match: the file was changed after it was written")
        crash = _probe(path) if head.startswith(b"\x89HDF") else None  # no digest: HDF5 may crash on damage
        if crash:
            raise ValueError(f"the HDF5 library crashed reading it ({crash})")
        with h5py.File(path, "r") as f:
            point = _read_tree(f)
        for key in ("t", "dt", "steps", "next_output", "t0", "j", "count", "config_hash", "state"):
            point[key]  # noqa: B018 - a missing key is an unreadable checkpoint
        return point
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
        raise ConfigError(f"--resume: checkpoint {str(path)!r} is unreadable ({type(exc).__name__}: "
                          f"{_short(exc)}); remove it to resume from the history's final state, or start again "
                          "with --overwrite") from None


def read_final_state(history: str | Path) -> dict | None:
    """The final resume point stored by ``HistoryWriter.close`` (None if there is none)."""
    with _open_history(history, "--resume") as f:
        if "resume" not in f:
            return None
        group = f["resume"]
        if "checksum" in group.attrs and str(group.attrs["checksum"]) != _tree_digest(group):
            raise ConfigError(f"--resume: the final state stored in {str(history)!r} does not match its checksum "
                              "(the file was changed after it was written); start again with --overwrite")
        return _read_tree(group)


def reopen_history(path: str | Path, planned: int, count: int, merge_count: int = 0,
                   attrs: dict | None = None) -> HistoryWriter:
    """Open an existing history to continue it after ``count`` regular snapshots: every row dataset
    is grown to ``planned`` rows, the rows from ``count`` on are marked unwritten (time NaN), as are
    the merge records from ``merge_count`` on, the stored final state is dropped and ``attrs`` set.
    Those structural changes are made on a copy that then replaces the history (``edit_copy``), so
    a kill during a resume never damages the stopped run's file."""
    w = HistoryWriter.__new__(HistoryWriter)
    w.path, w.planned = Path(path), int(planned)
    with _open_history(w.path) as f:
        if "row_datasets" not in f.attrs:
            raise ConfigError(f"--resume: {str(path)!r} was written by an older meanfield (layout 1): "
                              "start the run again with --overwrite")
        grown = sum(f[name].nbytes // max(1, f[name].shape[0]) * max(0, w.planned - f[name].shape[0])
                    for name in _resizable(f))
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
            f.attrs["static_checksum"] = _static_digest(f)

    edit_copy(w.path, edit, rows=w.planned, compress=False)  # a file a run writes into is uncompressed
    w._open(count, merge_count)
    w.compress = _text(w.f.attrs.get("compression", "none")) == "gzip"
    w.grid = "rho" in w.rows
    w.diagnostics = [k for k in w.f["diagnostics"]]
    w.tokens = tuple(w.f["positions"].shape[1:]) if "positions" in w.f else None
    w.clusters = w.f["clusters/mass"].shape[1] if "clusters" in w.f else 0
    w.merges = w.f["merges/time"].shape[0] if "merges" in w.f else 0
    return w


def config_hash(cfg) -> str:
    """SHA-256 of the configuration as run, without output.path (a resumed run may be moved)."""
    import hashlib

    import tomli_w

    d = cfg.to_dict()
    d["output"].pop("path", None)
    return hashlib.sha256(tomli_w.dumps(d).encode()).hexdigest()
