"""Geometries: each owns its grid, quadrature weights and transforms, and none of the physics."""

from .circle import Circle

GEOMETRIES = {"circle": Circle}


def make_geometry(name: str, modes: int, dealias: float = 1.5):
    """Build the geometry called ``name`` with largest mode/degree ``modes``."""
    return GEOMETRIES[name](modes, dealias=dealias)


__all__ = ["Circle", "GEOMETRIES", "make_geometry"]
