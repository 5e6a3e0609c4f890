"""pyshtools interoperability (the ``pyshtools`` extra): sphere histories to ``pyshtools.SHCoeffs``
and back.

    from meanfield.io.shtools import to_shcoeffs, from_shcoeffs
    clm = to_shcoeffs("sphere.h5", time=50.0)       # complex, orthonormal, Condon-Shortley phase
    clm.spectrum()                                  # pyshtools' power per degree
    grid = clm.expand(grid="GLQ")                   # pyshtools' own Gauss-Legendre grid
    c = from_shcoeffs(clm)                          # back: meanfield's coefficient array

Conventions.  meanfield stores c_lm for 0 <= m <= l <= L (m-major, the ducc0 / healpy order) of a
real density, rho = sum_lm c_lm Y_lm with orthonormal complex Y_lm including the Condon-Shortley
phase; the m < 0 coefficients are implied, c_{l,-m} = (-1)^m conj(c_lm).  That is pyshtools'
``kind="complex", normalization="ortho", csphase=-1``; ``from_shcoeffs`` converts any other
normalisation, phase or kind first.

Grids differ: for degree L pyshtools' GLQ grid has L + 1 Gauss-Legendre latitudes and 2L + 1
longitudes, a meanfield history has ntheta = max(ceil(dealias (L + 1)), L + 2, 32) rings and at
least dealias (2L + 1) longitudes (the padding that de-aliases the flux).  Both grids are exact
for degree L, but their arrays are not interchangeable: move data through the coefficients.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .layout import text
from .reader import read_history


def _pyshtools():
    try:
        import pyshtools
    except ImportError:
        raise ConfigError("pyshtools is not installed; allowed: pip install 'meanfield[pyshtools]'") from None
    return pyshtools


def to_shcoeffs(history, time: float | None = None):
    """The density of a sphere history (a path, or ``io.read_history``'s dict) at the snapshot
    nearest ``time`` (None: the last) as ``pyshtools.SHCoeffs`` (complex, ortho, csphase -1, lmax = L)."""
    pysh = _pyshtools()
    h = history if isinstance(history, dict) else read_history(history)
    if text(h["attrs"].get("geometry", "")) != "sphere":
        raise ConfigError(f"history: a {text(h['attrs'].get('geometry'))!r} run, allowed: a sphere run "
                          "(pyshtools holds spherical harmonics on S^2)")
    t = h["time"]
    if t.size == 0:
        raise ConfigError("history: no snapshot written yet")
    i = t.size - 1 if time is None else int(np.argmin(np.abs(t - time)))
    c, l, m = h["rho_hat"][i], h["degree"], h["order"]
    L = int(l.max())
    arr = np.zeros((2, L + 1, L + 1), dtype=complex)
    arr[0, l, m] = c
    pos = m > 0
    arr[1, l[pos], m[pos]] = (-1.0) ** m[pos] * np.conj(c[pos])
    return pysh.SHCoeffs.from_array(arr, normalization="ortho", csphase=-1, copy=False)  # complex: from the dtype


def from_shcoeffs(clm, modes: int | None = None) -> np.ndarray:
    """meanfield's coefficient array (degree ``modes``, default clm.lmax: truncated or zero-padded)
    of the real field held by ``clm`` (any pyshtools SHCoeffs: converted to complex, ortho, csphase -1)."""
    _pyshtools()
    z = clm.convert(normalization="ortho", csphase=-1, kind="complex", check=False)
    L = int(z.lmax if modes is None else modes)
    l = np.concatenate([np.arange(m, L + 1) for m in range(L + 1)])
    m = np.concatenate([np.full(L + 1 - m, m) for m in range(L + 1)])
    have = l <= z.lmax
    out = np.zeros(l.size, dtype=complex)
    out[have] = z.coeffs[0, l[have], m[have]]
    return out
