"""Geometries: each owns its grid, quadrature weights and transforms, and none of the physics.

Every geometry provides the same small interface (see circle.py): grid_shape, spectral_shape,
grid_coords(), spectral_coords(), degrees(), mode_labels(), to_grid(c), to_spectral(f),
grad(c) -> grid vector, div(grid vector) -> c, laplacian(), funk_hecke(beta), integrate(f),
inner(a, b), tail(c), coefficient_ratio(c), and the initial data uniform(),
random_perturbation(rng), mode_function(spec), von_mises(center, kappa).
"""

from ..config import DEFAULT_DEALIAS
from .circle import Circle
from .sphere import Sphere, grid_size
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


def exact_degree(name: str, modes: int, dealias: float) -> int:
    """The largest degree the grid's quadrature integrates exactly (circle: M - 1 for M points;
    sphere: Gauss–Legendre rings 2 n_theta - 1, trapezoid longitudes n_phi - 1)."""
    if name == "circle":
        return Circle(modes, dealias).npoints - 1
    ntheta, nphi = grid_size(modes, dealias)
    return min(2 * ntheta - 1, nphi - 1)


def grid_points(name: str, modes: int, dealias: float) -> int:
    """Number of grid nodes of geometry ``name`` (the tokens of a hand-off at oversample 1), without building it."""
    if name == "circle":
        return int(dealias * (2 * modes + 1)) + 2
    if name == "sphere":
        return int(dealias * (modes + 1) + 32) * int(dealias * (2 * modes + 1) + 2)
    return int(dealias * (modes + 1)) + 2


__all__ = ["Circle", "DEFAULT_DEALIAS", "GEOMETRIES", "Sphere", "Zonal", "exact_degree", "grid_points", "grid_size",
           "make_geometry"]
