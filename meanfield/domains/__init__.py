"""Geometries: each owns its grid, quadrature weights and transforms, and none of the physics."""

from .circle import DEFAULT_DEALIAS, Circle

GEOMETRIES = {"circle": Circle}


def make_geometry(name: str, modes: int, dealias: float = DEFAULT_DEALIAS):
    """Build the geometry called ``name`` with largest mode/degree ``modes``."""
    return GEOMETRIES[name](modes, dealias=dealias)


__all__ = ["Circle", "DEFAULT_DEALIAS", "GEOMETRIES", "make_geometry"]
