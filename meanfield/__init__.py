"""meanfield: mean-field dynamics of self-attention on spheres, solved spectrally and checked against theory.

    import meanfield
    result = meanfield.run("data/clustering.toml", "clusters.h5")     # what `meanfield run` does
    cfg = meanfield.load_config("data/clustering.toml", ["grid.modes=128"])
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("meanfield")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__", "Result", "load_config", "run"]


def __getattr__(name):
    # the run entry point imports numpy, scipy and h5py: only when asked for
    if name in ("Result", "load_config", "run"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'meanfield' has no attribute {name!r}")
