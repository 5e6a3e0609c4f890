"""pyshtools interop: a sphere history to SHCoeffs and back, checked against pyshtools' own synthesis."""

import numpy as np
import pytest

import meanfield
from meanfield import io

pysh = pytest.importorskip("pyshtools")
from meanfield.io.shtools import from_shcoeffs, to_shcoeffs  # noqa: E402


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    out = tmp_path_factory.mktemp("sh") / "s.h5"
    meanfield.run(dict(model=dict(geometry="sphere", beta=6.0, viscosity=0.05), grid=dict(modes=24),
                       initial=dict(kind="von_mises", centers=[[0.3, -0.5, 0.8], [-0.6, 0.2, -0.1]],
                                    concentrations=[2.0, 3.0], weights=[0.7, 0.3]),
                       time=dict(t_end=1.0, dt=0.05), output=dict(interval=0.5)), out, progress=False)
    return io.read_history(out)


def test_round_trip_and_power(history):
    """SHCoeffs and back is the identity; pyshtools' power per degree (the mean of f^2 over the sphere
    that degree carries) is sum_m |c_lm|^2 over all m, divided by 4 pi, for orthonormal harmonics."""
    clm = to_shcoeffs(history, time=0.5)
    c = history["rho_hat"][1]
    assert np.array_equal(from_shcoeffs(clm), c)
    l, m = history["degree"], history["order"]
    ours = np.bincount(l, np.where(m == 0, 1.0, 2.0) * np.abs(c) ** 2)
    assert np.allclose(clm.spectrum() * 4 * np.pi, ours, rtol=1e-12, atol=0)
    # other normalisations and kinds come back to the same array
    for kind in ("real",):
        for norm in ("4pi", "schmidt", "ortho"):
            assert np.allclose(from_shcoeffs(clm.convert(normalization=norm, kind=kind)), c, rtol=0, atol=1e-15)


def test_pyshtools_synthesis_at_our_grid_points_is_our_density(history):
    """pyshtools evaluates the coefficients at our Gauss-Legendre nodes: our /rho, to 1e-13 (same
    normalisation, phase and orientation: colatitude from the north pole, longitude from 0)."""
    clm = to_shcoeffs(history)
    lat = 90 - np.degrees(history["colatitude"])
    lon = np.degrees(history["longitude"])
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")
    values = clm.expand(lat=LAT.ravel(), lon=LON.ravel()).reshape(LAT.shape)
    assert np.max(np.abs(values.real - history["rho"][-1])) < 1e-13 * np.max(history["rho"][-1])
    # pyshtools' GLQ grid is another grid for the same degree: same integral, different nodes
    glq = clm.expand(grid="GLQ", extend=False)  # extend=True would repeat longitude 0 at 360
    assert glq.data.shape != history["rho"][-1].shape
    w = pysh.expand.SHGLQ(clm.lmax)[1]
    mass = np.sum(w[:, None] * glq.data.real) * 2 * np.pi / glq.data.shape[1]
    assert mass == pytest.approx(1.0, abs=1e-13)


def test_refuses_a_circle_history(tmp_path):
    out = tmp_path / "c.h5"
    meanfield.run(dict(grid=dict(modes=16), time=dict(t_end=0.1, dt=0.01), output=dict(interval=0.1)), out,
                  progress=False)
    with pytest.raises(meanfield.errors.ConfigError, match="allowed: a sphere run"):
        to_shcoeffs(out)
