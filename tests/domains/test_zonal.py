"""Zonal densities on S^{d-1}: Gegenbauer tables, quadrature, and agreement with the circle and the sphere."""

import math

import numpy as np
import pytest
from scipy.special import eval_gegenbauer, gamma

from meanfield.domains import Circle, Sphere, Zonal
from meanfield.domains.zonal import gegenbauer_table, sphere_area
from meanfield.physics.model import AttentionModel


@pytest.mark.parametrize("d", [3, 4, 8, 16])
def test_gegenbauer_table_against_scipy(d):
    a = (d - 2) / 2
    t = np.linspace(-0.99, 0.99, 37)
    R, D = gegenbauer_table(30, a, t)
    for l in (0, 1, 2, 7, 30):
        want = eval_gegenbauer(l, a, t) / eval_gegenbauer(l, a, 1.0)
        assert np.allclose(R[l], want, rtol=1e-12, atol=1e-13)
        if l >= 1:  # d/dt C_l^a = 2a C_{l-1}^{a+1}
            dwant = 2 * a * eval_gegenbauer(l - 1, a + 1, t) / eval_gegenbauer(l, a, 1.0)
            assert np.allclose(D[l], dwant, rtol=1e-11, atol=1e-11)


def test_chebyshev_case_d2():
    t = np.cos(np.linspace(0.1, 3.0, 11))
    R, D = gegenbauer_table(9, 0.0, t)
    th = np.arccos(t)
    assert np.allclose(R[9], np.cos(9 * th), atol=1e-13)
    assert np.allclose(D[9], 9 * np.sin(9 * th) / np.sin(th), atol=1e-11)


@pytest.mark.parametrize("d", [2, 3, 4, 8, 16])
def test_quadrature_and_norms(d):
    g = Zonal(20, d)
    assert g.integrate(np.ones(g.grid_shape)) == pytest.approx(sphere_area(d), rel=1e-13)
    a = (d - 2) / 2
    for l in (1, 5, 20):
        if d == 2:
            want = math.pi  # int_0^{2pi} cos^2(l theta)
        else:  # Gegenbauer orthogonality, times |S^{d-2}| / C_l(1)^2
            h = math.pi * 2 ** (1 - 2 * a) * gamma(l + 2 * a) / (math.factorial(l) * (l + a) * gamma(a) ** 2)
            want = sphere_area(d - 1) * h / eval_gegenbauer(l, a, 1.0) ** 2
        assert g.norm[l] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("d", [3, 5])
def test_grad_div_laplacian_and_von_mises(d):
    g = Zonal(24, d)
    rng = np.random.default_rng(0)
    c = (rng.standard_normal(25) / (1 + np.arange(25)) ** 2).astype(complex)
    assert np.allclose(g.to_spectral(g.to_grid(c)), c, atol=1e-14)
    assert np.allclose(g.div(g.grad(c)), g.laplacian() * c, atol=1e-11)
    vm = g.von_mises(0.0, 4.0)
    dens = np.exp(4.0 * g.t)
    dens /= g.integrate(dens)
    assert np.allclose(g.to_grid(vm), dens, rtol=1e-12)
    assert np.allclose(g.to_grid(g.von_mises(math.pi, 4.0)), dens[::-1], rtol=1e-12)


@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_d2_agrees_with_the_circle_on_even_densities(variant):
    """Zonal d = 2 is the circle restricted to even densities: a_0 = c_0, a_k = 2 c_k."""
    K, beta = 24, 6.0
    circ, zon = Circle(K), Zonal(K, 2)
    c = 0.5 * circ.von_mises(0.0, 2.0) + 0.5 * circ.von_mises(math.pi, 3.0)  # even
    a = c.copy()
    a[1:] *= 2
    fc = AttentionModel(circ, variant, beta, 0.01).rhs(c)
    fz = AttentionModel(zon, variant, beta, 0.01).rhs(a)
    fc2 = fc.copy()
    fc2[1:] *= 2
    assert np.max(np.abs(fz - fc2)) <= 1e-12 * np.max(np.abs(fc2))


@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_d3_agrees_with_the_sphere_on_zonal_densities(variant):
    """Zonal d = 3 is S^2 restricted to axisymmetric densities: c_l0 = a_l sqrt(4 pi / (2l + 1))."""
    L, beta = 24, 6.0
    sph, zon = Sphere(L), Zonal(L, 3)
    a = 0.6 * zon.von_mises(0.0, 3.0) + 0.4 * zon.von_mises(math.pi, 5.0)
    scale = np.sqrt(4 * math.pi / (2 * np.arange(L + 1) + 1))
    c = np.zeros(sph.spectral_shape, complex)
    c[sph.m == 0] = a * scale
    fs = AttentionModel(sph, variant, beta, 0.01).rhs(c)
    fz = AttentionModel(zon, variant, beta, 0.01).rhs(a)
    assert np.max(np.abs(fs[sph.m != 0])) <= 1e-13 * np.max(np.abs(fs))
    assert np.max(np.abs(fs[sph.m == 0] - fz * scale)) <= 1e-12 * np.max(np.abs(fs))
