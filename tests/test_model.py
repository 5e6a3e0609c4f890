"""The attention model: the field against direct quadrature of the model (docs/theory.md), the
linear/nonlinear split against the theory, conservation and equivariance of the RHS."""

import math

import numpy as np
import pytest

from meanfield.physics import theory
from meanfield.domains import Circle
from meanfield.physics.model import AttentionModel


def density(g, rng, kappa=3.0):
    """A positive, resolved density: a mixture of three von Mises bumps at random places."""
    w = rng.uniform(0.2, 1.0, 3)
    return sum(wi * g.von_mises(mu, kappa) for wi, mu in zip(w / w.sum(), rng.uniform(0, 2 * math.pi, 3)))


def field_by_quadrature(theta, rho_fn, beta, variant, n=4096):
    """X(theta) . e_theta straight from the definition (docs/theory.md) with Q=K=V=I, by the (spectrally accurate) trapezoid rule."""
    phi = 2 * math.pi * np.arange(n) / n
    w = 2 * math.pi / n
    rho = rho_fn(phi)
    out = []
    for th in theta:
        kern = np.exp(beta * np.cos(th - phi))
        num = w * np.sum(kern * np.sin(phi - th) * rho)  # <e_theta, y> = sin(phi - theta)
        out.append(num if variant == "usa" else num / (w * np.sum(kern * rho)))
    return np.array(out)


@pytest.mark.parametrize("variant", ["sa", "usa"])
@pytest.mark.parametrize("beta", [2.0, 12.0])
def test_velocity_matches_direct_quadrature(variant, beta):
    rng = np.random.default_rng(5)
    g = Circle(48)
    c = density(g, rng)
    model = AttentionModel(g, variant, beta)
    rho_fn = lambda phi: (c[0].real + 2 * np.real(np.exp(1j * np.outer(phi, g.k[1:])) @ c[1:]))  # noqa: E731
    direct = field_by_quadrature(g.theta, rho_fn, beta, variant)
    got = model.velocity(c)[0]
    assert np.allclose(got, direct, rtol=1e-11, atol=1e-12 * np.max(np.abs(direct)))


@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_rhs_is_minus_divergence_of_the_flux(variant):
    """F = -d/dtheta(rho X): compare with the flux's derivative computed on a fine grid."""
    rng = np.random.default_rng(6)
    g = Circle(32)
    beta = 5.0
    c = density(g, rng)
    model = AttentionModel(g, variant, beta)
    fine = Circle(400)
    cf = np.zeros(fine.spectral_shape, complex)
    cf[:33] = c
    flux = fine.to_grid(cf) * AttentionModel(fine, variant, beta).velocity(cf)[0]
    want = -fine.div(flux[None])[:33]
    assert np.allclose(model.rhs(c), want, atol=1e-12 * np.max(np.abs(want)))


@pytest.mark.parametrize("variant", ["sa", "usa"])
@pytest.mark.parametrize("beta,nu", [(3.0, 0.0), (9.0, 0.0), (9.0, 0.05), (25.0, 0.01)])
def test_linearisation_of_full_rhs_matches_theory(variant, beta, nu):
    """Central differences of F (not of L) about the uniform state give the linear rates."""
    g = Circle(40)
    model = AttentionModel(g, variant, beta, nu)
    ub = g.uniform()
    eps = 1e-6 * ub[0].real
    lam = theory.growth_rates(g.k, beta, variant, nu)
    scale = np.max(np.abs(lam))
    for k in range(1, 41):
        d = np.zeros_like(ub)
        d[k] = 1.0
        jac = (model.rhs(ub + eps * d) - model.rhs(ub - eps * d)) / (2 * eps)
        assert jac[k] == pytest.approx(lam[k], rel=1e-7, abs=1e-9 * scale)
        others = np.delete(jac, k)
        assert np.max(np.abs(others)) <= 1e-9 * scale
    # the diagonal the steppers use is the same
    assert np.allclose(model.L, lam, rtol=1e-12, atol=1e-14 * scale)


@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_nonlinear_part_is_quadratic(variant):
    rng = np.random.default_rng(7)
    g = Circle(24)
    model = AttentionModel(g, variant, 6.0, 0.01)
    ub = g.uniform()
    d = density(g, rng) - ub
    n1 = np.linalg.norm(model.nonlinear(ub + 1e-3 * d))
    n2 = np.linalg.norm(model.nonlinear(ub + 1e-4 * d))
    assert n1 / n2 == pytest.approx(100, rel=1e-2)


@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_single_mode_feeds_only_0_and_2k_at_second_order(variant):
    """N of a single mode k of size eps: mode 2k is O(eps^2); modes k and 3k are O(eps^3) for SA
    and exactly zero for USA (its flux rho grad psi is quadratic); other modes are not fed."""
    g = Circle(24)
    model = AttentionModel(g, variant, 9.0)
    out = {}
    for eps in (1e-3, 1e-4):
        c = g.uniform()
        c[5] = eps * c[0]
        out[eps] = np.abs(model.nonlinear(c))
    a, b = out[1e-3], out[1e-4]
    assert a[10] / b[10] == pytest.approx(1e2, rel=1e-3)
    for k in (5, 15):
        if variant == "sa":
            assert a[k] / b[k] == pytest.approx(1e3, rel=1e-2)
        else:
            assert a[k] < 1e-12 * a[10]
    rest = np.delete(b, [5, 10, 15, 20])  # 4k: O(eps^4) for SA
    assert np.max(rest) < 1e-12 * b[10]


@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_mass_and_rotation(variant):
    rng = np.random.default_rng(8)
    g = Circle(32)
    model = AttentionModel(g, variant, 7.0, 0.02)
    c = density(g, rng)
    f = model.rhs(c)
    assert f[0] == 0
    # shift by a grid multiple: exact; by any angle: to the de-aliasing error
    for a in (2 * math.pi * 5 / g.npoints, 0.377):
        shift = np.exp(-1j * g.k * a)
        err = np.max(np.abs(model.rhs(c * shift) - f * shift)) / np.max(np.abs(f))
        assert err < 1e-13, (a, err)


def test_energy_is_the_double_integral():
    """e^{-beta} E = e^{-beta}/(2 beta) int int e^{beta cos(th - ph)} rho rho, by direct quadrature."""
    rng = np.random.default_rng(9)
    g = Circle(20)
    beta = 4.0
    c = density(g, rng)
    rho = g.to_grid(c)
    kern = np.exp(beta * (np.cos(g.theta[:, None] - g.theta[None, :]) - 1))
    direct = (g.weights * rho) @ kern @ (g.weights * rho) / (2 * beta)
    assert AttentionModel(g, "sa", beta).energy_scaled(c) == pytest.approx(direct, rel=1e-12)


def test_usa_beta_limit_and_scaled_kernel():
    g = Circle(64)
    m = AttentionModel(g, "usa", theory.USA_MAX_BETA)
    assert np.all(np.isfinite(m.L))
    big = AttentionModel(g, "sa", 1e4)
    assert np.all(np.isfinite(big.L)) and np.all(np.isfinite(big.rhs(g.uniform())))


def _flat_spectrum_density(g, amp):
    eta = g.random_perturbation(np.random.default_rng(0))
    eta /= np.max(np.abs(g.to_grid(eta)))
    return g.uniform() + g.uniform()[0] * amp * eta


@pytest.mark.parametrize("beta", [9.0, 100.0])
def test_dealiasing_usa_exact_sa_converges(beta):
    """USA's flux is quadratic: the 3/2 rule is exact.  SA's log psi is not: the aliasing error
    (against a grid padded 8x) falls fast with padding; the default (2x) keeps it below 1e-4
    even for a flat spectrum of amplitude 0.5 at the coarsest resolution allowed (K = 2 k*)."""
    K = 2 * theory.most_unstable_mode(beta)
    c = _flat_spectrum_density(Circle(K), 0.5)
    ref = {v: AttentionModel(Circle(K, 8.0), v, beta).rhs(c) for v in ("sa", "usa")}
    err = {}
    for v in ("sa", "usa"):
        for d in (1.5, 2.0, 3.0):
            got = AttentionModel(Circle(K, d), v, beta).rhs(c)
            err[v, d] = np.max(np.abs(got - ref[v])) / np.max(np.abs(ref[v]))
    assert err["usa", 1.5] < 1e-13
    assert err["sa", 1.5] > err["sa", 2.0] > err["sa", 3.0]
    assert err["sa", 2.0] < 1e-4 and err["sa", 3.0] < 1e-8
