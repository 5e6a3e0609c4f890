"""The layout of a history file (docs/output.md): its datasets, their units and names, the attributes
readers rely on.  The writer builds files with it, the reader checks files against it."""

from __future__ import annotations

import h5py

DIAGNOSTICS = {
    "mass": "integral of rho over the domain (tokens: sum of weights; 1 up to round-off)",
    "energy": "exp(-beta) * E, E = (1/(2 beta)) int int e^{beta <x,y>} dmu dmu (interaction energy)",
    "free_energy": "exp(-beta) * (E + int Phi rho - viscosity * int rho log rho), Phi the potential of a gradient "
                   "perceptron term; non-decreasing for USA (nan if rho <= 0 somewhere or the perceptron is not a gradient)",
    "energy_rate": "exp(-beta) * dE/dt at the snapshot",
    "tail": "max |rho_k| over the top third of retained modes / rho_0 (resolution monitor; nan for tokens)",
    "spread": "particles: max_i |x_i - m|, m the normalised weighted mean of the tokens (0: synchronised)",
    "dt": "step size in use at the snapshot",
    "steps": "number of accepted steps taken up to the snapshot",
    "n_tokens": "number of live tokens (0 while the run is a density)",
    "n_clusters": "number of clusters (docs/longtime.md: mass >= 2x uniform within cluster_radius, mass >= cluster_mass)",
    "pair_fraction": "batched tokens: fraction of pairs i != j with <x_i, x_j> > 1 - 1e-3, per system",
    "cluster_count": "batched tokens: rank of the Gram matrix thresholded at <x_i, x_j> > 1 - 1e-4, per system",
}
INTEGER_DIAGNOSTICS = ("steps", "n_tokens", "n_clusters", "cluster_count")
#: diagnostics of a batched run that are one value for all systems (the others have a system axis)
SHARED_DIAGNOSTICS = ("dt", "steps")
#: Version of the file layout: 2 adds /token_weights per snapshot (was (N,)), clusters, merges;
#: 3 adds /row_checksum and the root attribute static_checksum; 4 puts the config text in that checksum
#: (and compresses finished files, names every axis, adds units); 5 hashes each dataset's native type, shape
#: and native-order values (a flipped byte order or datatype no longer reads as the same bytes); 6 adds each
#: dataset's units, long_name and description to static_checksum (a damaged description is found, not copied on).
LAYOUT_VERSION = 6
#: The attributes that say what a dataset is: in static_checksum from layout 6.
DESCRIBING = ("units", "long_name", "description")
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
    "component": "component of R^d", "token": "token (row)", "system": "system of a batch, by its initial.seed", "cluster": "cluster, heaviest first",
    "merges/event": "merge event", "merges/part": "the two heaviest parts of a merged group",
    "merges/time": "time of the merge", "merges/row": "row kept by the merged token",
    "merges/count": "tokens merged", "merges/weight": "total weight of the merged tokens",
    "merges/weights": "weights of the two heaviest parts", "merges/reach": "largest angle of a part to the merged position",
}


#: Short ``long_name`` of each dataset (xarray's axis and colour-bar labels: "energy [1]"); the sentence that says
#: what it is goes in ``description`` (CF), so ``ds.energy.plot()`` has labels that fit.
SHORT_NAMES = {
    "time": "time", "rho": "density", "rho_hat": "spectral coefficient", "positions": "token position",
    "token_weights": "token weight", "clusters/position": "cluster position", "clusters/mass": "cluster mass",
    "theta": "angle", "colatitude": "colatitude", "longitude": "longitude", "grid/weights": "quadrature weight",
    "mode": "mode", "degree": "degree l", "order": "order m", "component": "component", "token": "token",
    "cluster": "cluster", "position": "prompt position",
    "diagnostics/mass": "mass", "diagnostics/energy": "scaled energy", "diagnostics/free_energy": "scaled free energy",
    "diagnostics/energy_rate": "scaled energy rate", "diagnostics/tail": "spectral tail", "diagnostics/spread": "spread",
    "diagnostics/dt": "step size", "diagnostics/steps": "steps", "diagnostics/n_tokens": "live tokens",
    "diagnostics/n_clusters": "clusters", "diagnostics/pair_fraction": "clustered pairs",
    "diagnostics/cluster_count": "cluster count", "system": "system (its initial.seed)",
    "merges/event": "merge event", "merges/part": "part", "merges/time": "merge time", "merges/row": "kept row",
    "merges/count": "tokens merged", "merges/weight": "merged weight", "merges/weights": "part weights",
    "merges/reach": "reach",
}


def names_of(path: str, sentence: str) -> dict:
    """The ``long_name`` (short, for labels) and ``description`` (the sentence) of dataset ``path``."""
    short = SHORT_NAMES.get(path, sentence)
    return {"long_name": short, "description": sentence} if short != sentence else {"long_name": short}


def describe(f, geometry: str) -> None:
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
            ds.attrs.update(names_of(key, LONG_NAMES.get(key, leaf.replace("_", " "))))
    if "degree" in f and "order" in f:
        f["rho_hat"].attrs["coordinates"] = "degree order"
    if geometry == "circle":
        f["mode"].attrs.update(long_name="wavenumber k",
                               description="wavenumber k (rho = sum_k rho_hat_k e^{ik theta}, k >= 0 stored)")
    elif "degree" not in f:
        f["mode"].attrs.update(long_name="degree l", description="degree l")



#: Root attributes a history needs (the model is rebuilt from them), with their types.
REQUIRED_ATTRS = {"config": str, "geometry": str, "variant": str, "beta": float, "viscosity": float,
                  "modes": int, "dealias": float}


def text(value) -> str:
    """An attribute as str (h5py may hand back bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def resizable(f) -> list[str]:
    """The datasets with a row per snapshot, /time and /row_checksum included."""
    import json

    return ["time", *(["row_checksum"] if "row_checksum" in f else []), *json.loads(f.attrs["row_datasets"])]


def written(times) -> int:
    """Number of snapshots written: the leading finite times (a killed run leaves a NaN tail)."""
    import numpy as np

    finite = np.isfinite(times)
    return int(np.argmin(finite)) if not finite.all() else times.size
