"""What every geometry shares (the generic transport term), and what the one-axis geometries
(circle, zonal) share: one grid axis, one coefficient per degree 0..modes."""

from __future__ import annotations

import numpy as np


class Geometry:
    """The transport term from a geometry's own grad, to_grid and div; a geometry whose
    transforms batch (the circle) overrides ``flux_divergence`` with a fused version."""

    #: worker threads of the transforms (1: reproducible and best for small grids; 0: all cores)
    threads: int = 1

    def gradient_field(self, psi: np.ndarray, quotient: bool, scale: float | None = None) -> np.ndarray:
        """The grid vector field grad(psi) [/ psi when ``quotient``] [* scale] of the coefficients psi.
        Non-positive psi gives inf/nan: the guard reports it."""
        v = self.grad(psi)  # a fresh array: scaled in place (grid temporaries cost page faults)
        if quotient:
            with np.errstate(divide="ignore", invalid="ignore"):
                v /= self.to_grid(psi)
        if scale is not None:
            v *= scale
        return v

    def flux_divergence(self, psi: np.ndarray, c: np.ndarray, quotient: bool, scale: float) -> np.ndarray:
        """Coefficients of div(rho v), v = scale * grad(psi) [/ psi when ``quotient``] (SA), for the
        fields with coefficients psi and c (rho)."""
        v = self.gradient_field(psi, quotient)
        v *= self.to_grid(c)
        v *= scale
        return self.div(v)


class LineGeometry(Geometry):
    """Shapes and labels of a geometry with ``npoints`` grid points and coefficients for degrees 0..``modes``."""

    modes: int
    npoints: int

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Shape of grid arrays: (npoints,)."""
        return (self.npoints,)

    @property
    def spectral_shape(self) -> tuple[int, ...]:
        """Shape of coefficient arrays: (modes + 1,)."""
        return (self.modes + 1,)

    def degrees(self) -> np.ndarray:
        """The degree (wavenumber on the circle) of each coefficient: 0..modes."""
        return np.arange(self.modes + 1)

    def spectral_coords(self) -> dict[str, np.ndarray]:
        """Along the coefficient axis: ``mode``, the degree."""
        return {"mode": self.degrees()}

    def mode_labels(self) -> list[tuple]:
        """(degree,) for each coefficient."""
        return [(int(l),) for l in self.degrees()]

    def resample(self, c: np.ndarray, modes: int) -> np.ndarray:
        """Coefficients ``c`` of a run with ``modes`` degrees, truncated or zero-padded to this one."""
        out = np.zeros(self.spectral_shape, dtype=complex)
        n = min(out.size, int(modes) + 1, c.size)
        out[:n] = c[:n]
        return out
