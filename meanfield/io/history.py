"""One shape for a run's history, whether it lives in a file or in memory.

``History`` is what every reader of snapshots gets: ``read_history(path)`` returns one read from an HDF5 file
(the verified reader), a ``MemoryWriter`` (behind ``simulation.trackers.Recorder``) builds one in memory, and
``History.to_dataset()`` is the labelled xarray view of either (``meanfield.open_history``).  Its keys are
those of the file (docs/output.md): ``time``, ``rho_hat`` (and ``rho``), ``mode``, ``diagnostics``,
``attrs``, token rows (``positions``, ``token_weights``), clusters (``cluster_position``,
``cluster_mass``), ``merges``, and the grid (``theta`` | ``colatitude``, ``longitude``; ``weights``).

A writer (``HistoryWriter`` for a file, ``MemoryWriter`` here) records the datasets named in its ``fields``;
``append(t, row)`` adds one snapshot, ``append_merges(events)`` merge records, ``close(attrs, final)`` ends it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import __version__
from .layout import DENSITY_UNITS, DIAGNOSTICS, LONG_NAMES, MEASURE_UNITS, MERGE_FIELDS, SHORT_NAMES, names_of, text

#: Groups of the file and the prefix their variables get in the flat dataset.
GROUPS = {"diagnostics": "", "clusters": "cluster_", "merges": "merge_", "grid": ""}

#: the keys of History for the datasets of clusters (in the file: /clusters/position, /clusters/mass)
CLUSTER_KEYS = {"clusters/position": "cluster_position", "clusters/mass": "cluster_mass"}


class History(dict):
    """A history's snapshots and attributes (see the module docstring); ``path``: the file it was read from
    (None in memory)."""

    def __init__(self, data: dict, path: str | Path | None = None):
        super().__init__(data)
        self.path = None if path is None else Path(path)

    @property
    def times(self) -> np.ndarray:
        """Snapshot times."""
        return self["time"]

    def to_dataset(self, grid: bool = True):
        """The history as an ``xarray.Dataset`` (``meanfield.open_history`` describes its variables): of the file
        it was read from, or built from memory.  ``grid``: add ``rho`` from the coefficients when only those were
        stored."""
        return _memory_dataset(self, grid)


class MemoryWriter:
    """A history kept in memory: the writer interface of ``HistoryWriter`` (``fields``, ``append``,
    ``append_merges``, ``close``), ``history()`` the History it has built.

    ``fields``: the datasets to record ("rho", "rho_hat", "diagnostics/NAME", "positions", "token_weights",
    "clusters/position", "clusters/mass"); ``geometry``: the grid (coordinates and weights) the rows live on."""

    def __init__(self, geometry, fields, attrs: dict | None = None, tokens=None, clusters: int = 0, systems=(1, 0)):
        self.geometry = geometry
        self.systems = int(systems[0]), int(systems[1])  # a batch: (systems, the first system's initial.seed)
        self.fields = list(fields)
        self.attrs = {**(attrs or {}), "geometry": geometry.name, "meanfield_version": __version__}
        self.diagnostics = [f.partition("/")[2] for f in self.fields if f.startswith("diagnostics/")]
        self.tokens = None if tokens is None else (int(tokens[0]), int(tokens[1]))
        self.clusters = int(clusters)
        self.grid = "rho" in self.fields
        self.merges = 2**62 if "merges" in self.fields else 0
        self._t, self._rows, self._merges = [], {f: [] for f in self.fields if f != "merges"}, []
        self.count = self.merge_count = 0
        self.last_time = math.nan

    def append(self, t: float, row: dict) -> None:
        """Keep one snapshot (copies: the caller's arrays may change)."""
        for name, rows in self._rows.items():
            rows.append(np.array(row[name], copy=True))
        self._t.append(float(t))
        self.count += 1
        self.last_time = float(t)

    def append_merges(self, events) -> None:
        """Keep merge records (t, row, count, weight, w1, w2, reach)."""
        self._merges.extend(events)
        self.merge_count += len(events)

    def column(self, name: str) -> np.ndarray:
        """The snapshots of one dataset ("time" too), stacked along the first axis."""
        return np.array(self._t) if name == "time" else np.array(self._rows[name])

    def close(self, attrs: dict | None = None, final=None) -> None:
        """Store the closing attributes (the resume point of a file is not kept in memory)."""
        self.attrs.update(attrs or {})

    def history(self) -> History:
        """The History recorded so far."""
        g = self.geometry
        out = {"time": np.array(self._t), "attrs": dict(self.attrs), "diagnostics": {},
               "unwritten_before_written": 0, "checksum_mismatch": []}
        for name, rows in self._rows.items():
            value = np.array(rows) if rows else np.zeros((0,))
            if name.startswith("diagnostics/"):
                out["diagnostics"][name.partition("/")[2]] = value
            else:
                out[CLUSTER_KEYS.get(name, name)] = value
        out.update({k: np.asarray(v) for k, v in g.grid_coords().items()})
        out["weights"] = np.broadcast_to(g.weights, g.grid_shape).astype(float)
        spectral = g.spectral_coords()
        out.update({k: np.asarray(v) for k, v in spectral.items()})
        if self.systems[0] > 1:
            out["system"] = self.systems[1] + np.arange(self.systems[0])
        if "merges" in self.fields:
            a = np.asarray(self._merges, dtype=float).reshape(-1, 7)
            out["merges"] = {"time": a[:, 0], "row": a[:, 1].astype(int), "count": a[:, 2].astype(int),
                             "weight": a[:, 3], "weights": a[:, 4:6], "reach": a[:, 6]}
        return History(out)


def _units(path: str, geometry: str) -> str:
    """The units of the dataset at ``path`` in a history (as ``layout.describe`` writes them)."""
    if path in ("rho", "rho_hat"):
        return DENSITY_UNITS.get(geometry, "1")
    if path in ("theta", "colatitude", "longitude", "merges/reach"):
        return "rad"
    if path == "grid/weights":
        return MEASURE_UNITS.get(geometry, "1")
    return "1"


def _memory_dataset(h: History, grid: bool = True):
    """The xarray view of a History: the variables and dims of ``meanfield.open_history``, built from the arrays
    the verified reader returned (or a run kept in memory), with each dataset's units and long_name as the file
    stores them.  ``grid``: add ``rho`` from the coefficients when only those were stored."""
    import xarray as xr

    geometry = text(h["attrs"].get("geometry", ""))
    stored = h.get("variable_attrs", {})
    grid_dims = [d for d in ("position", "theta", "colatitude", "longitude") if d in h]

    def meta(path, sentence):
        attrs = {"units": _units(path, geometry), **names_of(path, sentence), **stored.get(path, {})}
        if "description" not in stored.get(path, {}) and path in SHORT_NAMES:  # a file of layout <= 5: its long_name is the sentence
            attrs.update(names_of(path, attrs["long_name"]))
        return attrs

    coords = {"time": ("time", h["time"], meta("time", "simulation time, the depth of the continuous transformer"))}
    for d in grid_dims:
        coords[d] = (d, h[d], meta(d, LONG_NAMES.get(d, d)))
    for name, values in h.get("scales", {}).items():
        coords[name] = (name, values, meta(name, LONG_NAMES.get(name, name)))
    data = {}

    def put(name, path, dims, values, long_name):
        data[name] = (dims, values, meta(path, long_name))

    if "rho" in h:
        put("rho", "rho", ("time", *grid_dims), h["rho"], "density")
    elif grid and grid_dims and "position" not in grid_dims and "modes" in h["attrs"] and h["rho_hat"].size:
        data["rho"] = (("time", *grid_dims), grid_density(h), {"long_name": "density",
                                                               "description": "density (from the coefficients)",
                                                               "units": meta("rho_hat", "")["units"]})
    if "rho_hat" in h and h["rho_hat"].size:
        mode_dims = ("time", "position", "mode") if "position" in grid_dims else ("time", "mode")
        coords["mode"] = ("mode", h["mode"], meta("mode", LONG_NAMES["mode"]))
        put("rho_hat", "rho_hat", mode_dims, h["rho_hat"], "spectral coefficients")
        for name in ("degree", "order"):
            if name in h:
                coords[name] = ("mode", h[name], meta(name, LONG_NAMES[name]))
    if "weights" in h and grid_dims:
        put("weights", "grid/weights", tuple(grid_dims), h["weights"], LONG_NAMES["grid/weights"])
    system = ("system",) if "system" in h else ()  # a batch: per-system rows
    if system:
        coords["system"] = ("system", h["system"], meta("system", LONG_NAMES["system"]))
    for name, values in h["diagnostics"].items():
        put(name, f"diagnostics/{name}", ("time", *system[:np.ndim(values) - 1]), values, DIAGNOSTICS.get(name, name))
    if "tail" in data:  # Dataset.tail is a method: ds.tail is not this variable, ds.spectral_tail is
        data["spectral_tail"] = data["tail"]
    if "positions" in h:
        put("positions", "positions", ("time", *system, "token", "component"), h["positions"], "token positions")
        put("token_weights", "token_weights", ("time", *system, "token"), h["token_weights"], "token weights")
    if "cluster_mass" in h:
        put("cluster_position", "clusters/position", ("time", "cluster", "component"), h["cluster_position"],
            "cluster positions")
        put("cluster_mass", "clusters/mass", ("time", "cluster"), h["cluster_mass"], "cluster masses")
    if "merges" in h:
        for key in MERGE_FIELDS:
            values = h["merges"][key]
            dims = ("event", "part")[:values.ndim]
            put(f"merge_{key}", f"merges/{key}", dims, values, LONG_NAMES[f"merges/{key}"])
    for name in [n for n in coords if n in ("event", "part", "token", "cluster", "component")]:
        if not any(name in (v[0] if isinstance(v[0], tuple) else (v[0],)) for v in data.values()):
            del coords[name]  # a scale no variable kept (the merge records of a run without merges)
    return xr.Dataset(data, coords=coords, attrs={k: v for k, v in h["attrs"].items()})


def geometry_of(h: dict):
    """The geometry of the run that wrote history ``h`` (from its attributes; any installed
    backend: they share the layout and the grid)."""
    from ..domains import make_geometry

    a = h["attrs"]
    return make_geometry(text(a["geometry"]), int(a["modes"]), float(a["dealias"]), "auto", int(a.get("dim", 0)))


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


def cluster_mergers(h: dict) -> list[dict]:
    """Mergers of clusters in a history with cluster diagnostics and merge records (a History).

    A merger is a drop of the cluster count (``/diagnostics/n_clusters``) from snapshot i to i + 1;
    its time is that of the first merge record after t_i whose two heaviest parts each carry at
    least half the lightest cluster counted at t_i (tokens joining their own cluster carry less;
    two clusters may already count as one, closer than the cluster radius, a little before their
    tokens merge).  Each: time, the two masses (nan if no record qualifies: then the time is
    t_{i+1}), and the counts before and after."""
    d = h["diagnostics"]
    if "n_clusters" not in d or h["time"].size < 2:
        return []
    t, count = h["time"], d["n_clusters"]
    masses = h.get("cluster_mass")
    merges = h.get("merges") or {"time": np.zeros(0), "weights": np.zeros((0, 2))}
    out, used = [], set()
    for i in np.flatnonzero(np.diff(count) < 0):
        lightest = float(np.nanmin(masses[i])) if masses is not None and np.isfinite(masses[i]).any() else 0.0
        found = [k for k in np.flatnonzero(merges["time"] > t[i])
                 if merges["weights"][k, 1] >= 0.5 * lightest and k not in used][:1]
        if found:
            k = found[0]
            used.add(k)
            time, pair = float(merges["time"][k]), tuple(float(w) for w in merges["weights"][k])
        else:
            time, pair = float(t[i + 1]), (math.nan, math.nan)
        out.append({"time": time, "masses": pair, "clusters_before": int(count[i]), "clusters_after": int(count[i + 1])})
    return out
