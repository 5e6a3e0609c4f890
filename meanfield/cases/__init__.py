"""The cases of `meanfield validate` (meanfield.validate): importing this package registers them all."""

from . import linear, selection, synchronisation  # noqa: F401
