"""What the one-axis geometries (circle, zonal) share: one grid axis, one coefficient per degree 0..modes."""

from __future__ import annotations

import numpy as np


class LineGeometry:
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
