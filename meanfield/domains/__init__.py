"""Geometries: each owns its grid, quadrature weights and transforms, and none of the physics.

Every geometry provides the same small interface (see circle.py): grid_shape, spectral_shape,
grid_coords(), spectral_coords(), degrees(), mode_labels(), to_grid(c), to_spectral(f),
grad(c) -> grid vector, div(grid vector) -> c, laplacian(), funk_hecke(beta), integrate(f),
inner(a, b), tail(c), coefficient_ratio(c), and the initial data uniform(),
random_perturbation(rng), mode_function(spec), von_mises(center, kappa).
"""

from .circle import DEFAULT_DEALIAS, Circle
from .sphere import Sphere
from .zonal import Zonal

GEOMETRIES = {"circle": Circle, "sphere": Sphere, "zonal": Zonal}


def make_geometry(name: str, modes: int, dealias: float = DEFAULT_DEALIAS, backend: str = "auto", dim: int = 0,
                  threads: int = 1):
    """Build the geometry called ``name`` with largest mode/degree ``modes``.

    ``backend`` is used by the sphere (spherical-harmonic library), ``dim`` by "zonal" (S^{dim-1}),
    ``threads`` by the circle's and the sphere's transforms (the zonal matrices are BLAS's).
    """
    if name == "sphere":
        return Sphere(modes, dealias=dealias, backend=backend, threads=threads)
    if name == "zonal":
        return Zonal(modes, dim=dim, dealias=dealias)
    return GEOMETRIES[name](modes, dealias=dealias, threads=threads)


__all__ = ["Circle", "DEFAULT_DEALIAS", "GEOMETRIES", "Sphere", "Zonal", "make_geometry"]
