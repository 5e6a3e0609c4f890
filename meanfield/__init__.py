"""meanfield: mean-field dynamics of self-attention on spheres, solved spectrally and checked against theory.

    import meanfield
    cfg = meanfield.load_config(meanfield.example("clustering"), ["grid.modes=128"])  # --set overrides
    result = meanfield.run(cfg, "clusters.h5")            # what `meanfield run` does
    ds = result.dataset                                    # = meanfield.open_history("clusters.h5")
    ds.rho.plot(x="theta", y="time")
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("meanfield")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__", "Result", "check", "example", "load_config", "measured_rates", "open_history", "run",
           "show_versions", "solve"]

_LAZY = {"Result": "simulation.runner", "load_config": "simulation.runner", "run": "simulation.runner",
         "solve": "simulation.runner", "open_history": "io.dataset", "check": "io.report",
         "measured_rates": "analysis.rates", "example": "examples", "show_versions": "versions"}

#: Module paths of meanfield 0.1.0 that the docs named, before the folders named the layers: importing one
#: gives the module's new home (with a DeprecationWarning), so scripts written against them keep working.
MOVED = {"theory": "physics.theory", "shtools": "io.shtools", "trackers": "simulation.trackers",
         "diagnostics": "analysis.diagnostics", "phase": "viz.phase", "movie": "viz.movie", "plot": "viz.plot",
         "runner": "simulation.runner", "history": "io.dataset"}


def __getattr__(name):
    # numpy, scipy, h5py and xarray are imported only when asked for (`meanfield --help` stays fast)
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'meanfield' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


class _MovedFinder:
    """Imports ``meanfield.OLD`` (``MOVED``) as the module that now holds it."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname[len(__name__) + 1:] if fullname.startswith(__name__ + ".") else None
        if old not in MOVED:
            return None
        from importlib.util import spec_from_loader

        return spec_from_loader(fullname, self)

    def create_module(self, spec):
        import warnings
        from importlib import import_module

        new = f"{__name__}.{MOVED[spec.name[len(__name__) + 1:]]}"
        warnings.warn(f"{spec.name} is now {new}", DeprecationWarning, stacklevel=2)
        return import_module(new)

    def exec_module(self, module):
        """The module was imported under its new name already."""


import sys as _sys  # noqa: E402

_sys.meta_path.append(_MovedFinder())
