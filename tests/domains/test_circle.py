"""The circle geometry: transforms, calculus, quadrature, de-aliasing, initial data."""

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import iv

from meanfield.domains import Circle


def random_coeffs(K, rng):
    c = (rng.standard_normal(K + 1) + 1j * rng.standard_normal(K + 1)) / (1 + np.arange(K + 1))
    c[0] = c[0].real
    return c


def test_grid_sizes_follow_the_three_halves_rule():
    for K in (1, 7, 32, 100, 255):
        assert Circle(K, dealias=1.5).npoints >= 3 * K + 1
        g = Circle(K)
        assert g.npoints >= 2 * (2 * K + 1)
        assert g.grid_shape == (g.npoints,) and g.spectral_shape == (K + 1,)
    assert Circle(32, dealias=1.0).npoints >= 2 * 32 + 2


def test_round_trip_and_grid_values():
    rng = np.random.default_rng(0)
    g = Circle(40)
    c = random_coeffs(40, rng)
    f = g.to_grid(c)
    direct = c[0].real + 2 * np.real(np.exp(1j * np.outer(g.theta, g.k[1:])) @ c[1:])
    assert np.allclose(f, direct, atol=1e-13)
    assert np.allclose(g.to_spectral(f), c, atol=1e-15)


def test_grad_div_laplacian():
    g = Circle(16)
    th = g.theta
    f = np.cos(3 * th) + 0.5 * np.sin(7 * th)
    c = g.to_spectral(f)
    assert np.allclose(g.grad(c)[0], -3 * np.sin(3 * th) + 3.5 * np.cos(7 * th), atol=1e-13)
    v = (np.sin(2 * th) * np.cos(th))[None]  # degree 3
    assert np.allclose(g.to_grid(g.div(v)), 2 * np.cos(2 * th) * np.cos(th) - np.sin(2 * th) * np.sin(th), atol=1e-13)
    assert np.allclose(g.to_grid(g.laplacian() * c), -9 * np.cos(3 * th) - 24.5 * np.sin(7 * th), atol=1e-12)


def test_integrate_and_parseval():
    rng = np.random.default_rng(1)
    g = Circle(30)
    a, b = random_coeffs(30, rng), random_coeffs(30, rng)
    fa, fb = g.to_grid(a), g.to_grid(b)
    assert g.integrate(fa) == pytest.approx(2 * math.pi * a[0].real, rel=1e-14)
    assert g.inner(a, b) == pytest.approx(g.integrate(fa * fb), rel=1e-12)


def test_products_are_not_aliased_at_three_halves():
    """The product of two degree-K functions, truncated to K, is exact on the 3/2 grid."""
    rng = np.random.default_rng(2)
    K = 24
    g = Circle(K, dealias=1.5)
    a, b = random_coeffs(K, rng), random_coeffs(K, rng)
    prod = g.to_spectral(g.to_grid(a) * g.to_grid(b))
    full_a = np.concatenate([np.conj(a[:0:-1]), a])  # k = -K..K
    full_b = np.concatenate([np.conj(b[:0:-1]), b])
    conv = np.convolve(full_a, full_b)  # k = -2K..2K
    exact = conv[2 * K: 3 * K + 1]
    assert np.allclose(prod, exact, atol=1e-14)
    # and the plain 2K+2 grid does alias
    g1 = Circle(K, dealias=1.0)
    assert not np.allclose(g1.to_spectral(g1.to_grid(a) * g1.to_grid(b)), exact, atol=1e-6)


def test_von_mises_coefficients_against_quadrature():
    g = Circle(20)
    kappa, mu = 4.0, 1.1
    c = g.von_mises(mu, kappa)
    for k in (0, 1, 5, 12):
        re = quad(lambda t: math.exp(kappa * math.cos(t - mu)) * math.cos(k * t), 0, 2 * math.pi, epsrel=1e-13)[0]
        im = -quad(lambda t: math.exp(kappa * math.cos(t - mu)) * math.sin(k * t), 0, 2 * math.pi, epsrel=1e-13)[0]
        want = (re + 1j * im) / (2 * math.pi) / (2 * math.pi * iv(0, kappa))
        assert abs(c[k] - want) < 1e-13
    assert g.integrate(g.to_grid(c)) == pytest.approx(1.0, abs=1e-14)


def test_random_perturbation_is_real_zero_mean_unit_variance():
    g = Circle(2000)
    eta = g.random_perturbation(np.random.default_rng(3))
    assert eta[0] == 0
    f = g.to_grid(eta)
    # Var eta(theta) = sum_k (Var a_k cos^2 + Var b_k sin^2) = K
    assert np.var(f) / 2000 == pytest.approx(1.0, rel=0.1)


def test_tail_measures_the_top_third():
    g = Circle(30)
    c = g.uniform()
    assert g.tail(c) == 0
    c[25] = 1e-3 * c[0]
    assert g.tail(c) == pytest.approx(1e-3)
    c[25] = 0
    c[15] = 1.0
    assert g.tail(c) == 0
