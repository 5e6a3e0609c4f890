"""Linear theory against an independent quadrature of the kernel's Fourier / Funk–Hecke coefficients.

The growth rate of mode l is lambda_l = rho_bar * m_l * l(l+d-2) / beta (USA) and
m_l / m_0 * l(l+d-2) / beta (SA), minus nu l(l+d-2), where m_l is the multiplier of
G_beta on degree-l harmonics, computed here by scipy.integrate.quad:

    m_l = |S^{d-2}| int_{-1}^{1} e^{beta t} C_l^a(t) / C_l^a(1) (1 - t^2)^{(d-3)/2} dt,  a = (d-2)/2
(d = 2: m_k = 2 int_0^pi e^{beta cos th} cos(k th) d th).
"""

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import eval_gegenbauer, eval_legendre, gamma

from meanfield.physics import theory
from meanfield.errors import ConfigError


def sphere_area(d):
    return 2 * math.pi ** (d / 2) / gamma(d / 2)


def multiplier_scaled(l, beta, d):
    """e^{-beta} m_l by adaptive quadrature (no Bessel functions involved)."""
    if d == 2:
        val, _ = quad(lambda th: math.exp(beta * (math.cos(th) - 1)), 0, math.pi,
                      weight="cos", wvar=l, epsabs=0, epsrel=1e-13, limit=400)
        return 2 * val
    if d == 3:
        poly = lambda t: eval_legendre(l, t)  # noqa: E731
    else:
        a = (d - 2) / 2
        poly = lambda t: eval_gegenbauer(l, a, t) / eval_gegenbauer(l, a, 1.0)  # noqa: E731
    f = lambda t: math.exp(beta * (t - 1)) * poly(t) * (1 - t * t) ** ((d - 3) / 2)  # noqa: E731
    # split where the integrand lives (near t = 1 for large beta)
    pts = sorted({-1.0, 1 - min(1.0, 20 / beta), 1.0})
    val = sum(quad(f, a_, b_, epsabs=0, epsrel=1e-13, limit=400)[0] for a_, b_ in zip(pts, pts[1:]))
    return sphere_area(d - 1) * val


def rate_by_quadrature(l, beta, variant, nu, d):
    lap = l * (l + d - 2)
    if variant == "sa":
        att = multiplier_scaled(l, beta, d) / multiplier_scaled(0, beta, d) * lap / beta
    else:
        att = math.exp(beta) * multiplier_scaled(l, beta, d) / sphere_area(d) * lap / beta
    return att - nu * lap


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("d", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("variant", ["sa", "usa"])
@pytest.mark.parametrize("beta", [1.0, 9.0, 40.0])
def test_rates_match_quadrature(d, variant, beta):
    nu = 0.01
    # modes whose multiplier exceeds 1e-4 of m_0: below that the oscillating quadrature
    # loses digits to cancellation (~1e-16 / ratio), and could not check 1e-10
    ls = [l for l in range(0, 40) if theory.kernel_ratio([l], beta, d)[0] > 1e-4]
    assert len(ls) >= 4
    got = theory.growth_rates(ls, beta, variant, nu, d)
    for l, g in zip(ls, got):
        want = rate_by_quadrature(l, beta, variant, nu, d)
        assert g == pytest.approx(want, rel=1e-10, abs=1e-14), (l, g, want)


def test_spec_closed_forms_circle_and_sphere():
    """The d = 2, 3 rows of the linear theory, written with their own Bessel functions."""
    from scipy.special import iv, spherical_in

    beta, nu = 7.5, 0.02
    k = np.arange(0, 12)
    assert np.allclose(theory.growth_rates(k, beta, "usa", nu, 2), k**2 * iv(k, beta) / beta - nu * k**2, rtol=1e-12)
    assert np.allclose(theory.growth_rates(k, beta, "sa", nu, 2),
                       k**2 * iv(k, beta) / (beta * iv(0, beta)) - nu * k**2, rtol=1e-12)
    ll = k * (k + 1)
    assert np.allclose(theory.growth_rates(k, beta, "usa", nu, 3), ll * spherical_in(k, beta) / beta - nu * ll, rtol=1e-12)
    assert np.allclose(theory.growth_rates(k, beta, "sa", nu, 3),
                       ll * spherical_in(k, beta) / (beta * spherical_in(0, beta)) - nu * ll, rtol=1e-12)


def test_mode_zero_never_grows():
    for d in (2, 3, 5):
        for v in ("sa", "usa"):
            assert theory.growth_rates([0], 3.0, v, 0.5, d)[0] == 0.0


def test_sa_large_beta_no_overflow_and_asymptotics():
    beta = 1e4
    k = np.arange(1, 800)
    lam = theory.growth_rates(k, beta, "sa")
    assert np.all(np.isfinite(lam)) and np.all(lam > 0)
    # I_k/I_0 ~ exp(-k^2/(2 beta)) (1 + O(k^2/beta^2)), so lambda_k ~ (k^2/beta) exp(-k^2/(2 beta))
    approx = k**2 / beta * np.exp(-(k**2) / (2 * beta))
    assert np.allclose(lam[:300], approx[:300], rtol=2e-3)
    kstar = theory.most_unstable_mode(beta)
    assert abs(kstar - math.sqrt(2 * beta)) <= 1
    assert kstar == k[np.argmax(lam)]


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_most_unstable_mode_is_exact_argmax():
    for beta in (0.5, 2.0, 9.0, 25.0, 100.0, 333.0):
        for variant in ("sa", "usa"):
            for nu in (0.0, 0.05):
                ks = np.arange(1, 500)
                brute = ks[np.argmax([rate_by_quadrature(k, beta, variant, nu, 2)
                                      if k < 3 * math.sqrt(beta) + 10 else -np.inf for k in ks])]
                assert theory.most_unstable_mode(beta, variant, nu) == brute


def test_usa_overflow_refused_with_clear_error():
    assert np.isfinite(theory.growth_rates([5], theory.USA_MAX_BETA, "usa")).all()
    with pytest.raises(ConfigError, match="beta.*usa"):
        theory.growth_rates([5], theory.USA_MAX_BETA + 1, "usa")
    with pytest.raises(ConfigError, match="variant"):
        theory.growth_rates([1], 2.0, "softmax")
    with pytest.raises(ConfigError, match="beta"):
        theory.growth_rates([1], -1.0)
    with pytest.raises(ConfigError, match="viscosity"):
        theory.growth_rates([1], 1.0, "sa", -0.1)


def test_time_scales():
    beta = 9.0
    lam = theory.growth_rates([theory.most_unstable_mode(beta)], beta)[0]
    assert theory.efolding_time(beta) == pytest.approx(1 / lam, rel=1e-15)
    assert theory.linear_phase_end(1e-6, beta) == pytest.approx(math.log(1e6) / lam, rel=1e-15)
    # strong viscosity: nothing grows
    assert theory.efolding_time(1.0, "sa", 10.0) == math.inf


def test_rate_fit_at_extreme_time_scales():
    """USA at beta = 400 grows at ~1e170 over t ~ 1e-171: the fit works in units of the time span
    (t^2 underflowed before: a zero standard error denominator and a slope of ~1e-171)."""
    from meanfield.analysis.diagnostics import fit_rate

    for rate in (0.3, 2.6e169):
        t = np.linspace(0.0, 3.0 / rate, 40)
        slope, stderr = fit_rate(t, 1e-7 * np.exp(rate * t))
        assert abs(slope / rate - 1) < 1e-12 and np.isfinite(stderr)


# ---- after the clusters form: two Diracs; with noise: threshold, stationary states, Landau -------------------
def test_two_dirac_merge_time_equals_integrating_the_ode():
    from scipy.integrate import solve_ivp

    for gap, beta, m1 in [(0.5, 10.0, 0.375), (1.1, 18.0, 0.5), (0.8, 14.0, 0.2)]:
        m2 = 1 - m1
        hit = lambda t, y: y[0] - 1e-9  # noqa: E731
        hit.terminal = True
        ode = solve_ivp(lambda t, y: [theory.two_dirac_gap_rate(y[0], beta, m1, m2)], (0, 1e12), [gap], events=hit,
                        rtol=1e-12, atol=1e-15, method="DOP853")
        assert theory.two_dirac_merge_time(gap, beta, m1, m2) == pytest.approx(ode.t_events[0][0], rel=1e-7)


def test_two_dirac_meeting_point_limits():
    # equal masses meet half-way; as beta -> 0 (e = 1) at the centre of mass; as beta -> oo at the squared-mass mean
    assert theory.two_dirac_travel(0.7, 30.0, 0.5, 0.5) == pytest.approx(0.35, rel=1e-12)
    assert theory.two_dirac_travel(0.7, 1e-9, 0.2, 0.8) == pytest.approx(0.8 * 0.7, rel=1e-8)
    far = theory.two_dirac_travel(1.0, 1e6, 0.2, 0.8)
    assert far == pytest.approx(0.64 / 0.68, rel=5e-3) and far != pytest.approx(0.64 / 0.68, rel=1e-6)


def test_critical_viscosity_zeroes_the_first_rate():
    for variant, beta in (("sa", 4.0), ("usa", 2.0), ("sa", 300.0)):
        nc = theory.critical_viscosity(beta, variant)
        assert abs(theory.growth_rates([1], beta, variant, nc)[0]) < 1e-14 * max(nc, 1)
        assert theory.growth_rates([2], beta, variant, nc)[0] < 0  # every other mode already stable


def test_landau_amplitude_converges_to_the_exact_stationary_state_at_first_order():
    for variant in ("sa", "usa"):
        nc = theory.critical_viscosity(1.0, variant)
        errs = []
        for d in (0.02, 0.01, 0.005):
            landau = theory.landau_amplitude(1.0, nc * (1 - d), variant)
            exact = theory.stationary_circle(1.0, nc * (1 - d), variant, landau)[0]
            errs.append(abs(landau / exact - 1))
        assert 1.8 < errs[0] / errs[1] < 2.2 and 1.8 < errs[1] / errs[2] < 2.2  # O(delta): halves with delta
        assert errs[-1] < 0.01
    # above the threshold (and beta < beta_*) only the uniform state is left; below it there is no small state
    assert abs(theory.stationary_circle(1.0, 1.1 * theory.critical_viscosity(1.0, "usa"), "usa", 0.3)[0]) < 1e-12
    assert math.isnan(theory.landau_amplitude(1.0, 1.1 * theory.critical_viscosity(1.0, "usa"), "usa"))


def test_beta_star_is_where_I2_over_I1_is_one_half():
    from scipy.optimize import brentq
    from scipy.special import iv

    b = brentq(lambda x: theory.landau_cubic(x, "usa"), 0.5, 10.0)
    assert iv(2, b) / iv(1, b) == pytest.approx(0.5, abs=1e-12)
    assert all(theory.landau_cubic(x, "sa") < 0 for x in (0.5, 2.0, 8.0, 64.0, 512.0))  # SA: supercritical


def test_stationary_state_has_zero_flux():
    # rho = psi^{1 / (beta nu)} / Z (SA): nu rho' = rho X with X = (log psi)' / beta, checked on a grid by FFT
    beta, variant = 2.0, "sa"
    nu = 0.9 * theory.critical_viscosity(beta, variant)
    a = theory.stationary_circle(beta, nu, variant, theory.landau_amplitude(beta, nu, variant))
    from scipy.special import ive

    k = np.arange(1, a.size + 1)
    th = 2 * np.pi * np.arange(256) / 256
    rho = 1 + 2 * np.cos(np.outer(th, k)) @ a
    drho = -2 * np.sin(np.outer(th, k)) @ (k * a)
    psi = 1 + 2 * np.cos(np.outer(th, k)) @ (ive(k, beta) / ive(0, beta) * a)
    dpsi = -2 * np.sin(np.outer(th, k)) @ (k * ive(k, beta) / ive(0, beta) * a)
    assert a[0] > 0.1 and np.max(np.abs(nu * drho - rho * dpsi / (beta * psi))) < 1e-11


def test_wasserstein1_between_densities_on_the_circle():
    from meanfield.analysis.diagnostics import wasserstein1_densities_circle

    uniform = np.zeros(9, complex)
    uniform[0] = 1 / (2 * np.pi)
    bump = uniform.copy()
    bump[1] = 1 / (4 * np.pi)  # rho = (1 + cos theta) / (2 pi): CDF difference sin(theta) / (2 pi)
    assert wasserstein1_densities_circle(uniform, bump) == pytest.approx(2 / np.pi, rel=1e-6)
    assert wasserstein1_densities_circle(bump, bump) == 0.0


def test_retrieval_kernel_is_the_volterra_resolvent():
    from scipy.integrate import quad

    from meanfield.physics.kernels import alibi_kernel

    # g(t, s) = g0(s) + int_0^s G(t, s; s') g0(s') ds' must solve g_t = a int_0^s k_lambda(s, s') g(t, s') ds':
    # the time derivative by central differences against the right-hand side by quadrature
    a, t, s, h = 0.7, 1.3, 0.8, 1e-4
    for alibi in (0.0, 2.0):
        for p in (0.0, 2.0):
            g = lambda tt, x: theory.causal_linear_mode(tt, x, a, alibi, lambda u: u**p)  # noqa: E731
            lhs = (g(t + h, s) - g(t - h, s)) / (2 * h)
            rhs = a * quad(lambda x: float(alibi_kernel(s, x, alibi)) * g(t, x), 0, s, limit=100, epsrel=1e-10)[0]
            assert lhs == pytest.approx(rhs, rel=1e-7)
        # near s0 = s the kernel is k_lambda(s, s) a t
        k_ss = 1.0 if alibi == 0 else alibi / -math.expm1(-alibi)
        assert float(theory.retrieval_kernel(t, 1 - 1e-12, a, alibi)) == pytest.approx(k_ss * a * t, rel=1e-9)
