"""``meanfield.show_versions()``: what a bug report needs to know about this installation (``meanfield versions``)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

#: Distributions reported, in this order: ours, the required ones, then the optional extras'.
PACKAGES = ("meanfield", "numpy", "scipy", "h5py", "ducc0", "xarray", "h5netcdf", "matplotlib", "tqdm", "tomli-w",
            "threadpoolctl", "dask", "distributed", "pandas", "pyarrow", "shtns", "pyshtools", "torch",
            "sphinx", "sphinx-gallery", "pydata-sphinx-theme")


def versions() -> dict[str, dict[str, str]]:
    """The report as data: sections ("system", "packages", "transforms", "threads", "blas", "gpu") of name -> text."""
    out: dict[str, dict[str, str]] = {}
    out["system"] = {"python": sys.version.split()[0], "executable": sys.executable,
                     "platform": platform.platform(), "machine": platform.machine()}
    out["packages"] = {}
    for name in PACKAGES:
        try:
            out["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out["packages"][name] = "not installed"
    import h5py

    out["packages"]["h5py"] += f" (HDF5 {h5py.version.hdf5_version})"
    from .domains.sphere import installed_backends

    out["transforms"] = {"sphere libraries installed": ", ".join(installed_backends()) or "none",
                         "grid.backend = auto": "times the installed ones on the run's grid (docs/sphere.md)"}
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out["threads"] = {"cpu_count": str(os.cpu_count()), "usable cores": str(affinity)}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        out["threads"][var] = os.environ.get(var, "unset")
    from threadpoolctl import threadpool_info

    import numpy  # noqa: F401 - loads the BLAS that threadpoolctl reports

    out["blas"] = {f"{p.get('internal_api')} {p.get('version') or ''}".strip():
                   f"{p.get('num_threads')} threads, {p.get('threading_layer', '')} {p.get('filepath', '')}".strip()
                   for p in threadpool_info()} or {"none found": ""}
    out["gpu"] = _gpu()
    return out


def _gpu() -> dict[str, str]:
    """torch's view of CUDA devices (the token field's GPU backend), if torch is installed."""
    try:
        import torch
    except ImportError:
        return {"torch": "not installed (particles.backend = 'torch' needs the torch extra)"}
    if not torch.cuda.is_available():
        return {"cuda": f"not available (torch {torch.__version__})"}
    return {f"cuda:{i}": torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}


def show_versions(file=None) -> None:
    """Print the versions of meanfield and its dependencies, the transform libraries, threads, BLAS and GPU: paste it
    into a bug report.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default: ``sys.stdout``).
    """
    file = sys.stdout if file is None else file
    for section, items in versions().items():
        print(f"[{section}]", file=file)
        width = max(len(k) for k in items)
        for key, value in items.items():
            print(f"  {key:<{width}}  {value}", file=file)
