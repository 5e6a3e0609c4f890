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

__all__ = ["__version__", "Result", "example", "load_config", "open_history", "run"]

_LAZY = {"Result": "simulation.runner", "load_config": "simulation.runner", "run": "simulation.runner",
         "open_history": "io.dataset",
         "example": "examples"}


def __getattr__(name):
    # numpy, scipy, h5py and xarray are imported only when asked for (`meanfield --help` stays fast)
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'meanfield' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
