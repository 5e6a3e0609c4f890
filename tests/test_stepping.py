"""Steppers: phi-functions, formal orders of convergence against an independent integrator
(scipy's DOP853 on the full right-hand side), variable steps, adaptive control."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from meanfield.domains import Circle
from meanfield.errors import NumericalError
from meanfield.model import AttentionModel
from meanfield.stepping import SCHEMES, AdaptiveStep, FixedStep, make_scheme, phi_functions


def test_phi_functions_against_mpmath():
    import mpmath

    mpmath.mp.dps = 80  # phi_3(1e-9) cancels ~27 digits
    z = np.array([-700.0, -50.0, -3.0, -1.0, -0.999, -0.3, -1e-9, 0.0, 1e-9, 0.2, 0.999999, 1.0, 4.0, 30.0])
    p = phi_functions(z, 3)
    for j in (1, 2, 3):
        for zi, got in zip(z, p[j - 1]):
            zm = mpmath.mpf(zi)
            if zi == 0:
                want = mpmath.mpf(1) / mpmath.factorial(j)
            else:
                want = (mpmath.exp(zm) - sum(zm**n / mpmath.factorial(n) for n in range(j))) / zm**j
            assert got == pytest.approx(float(want), rel=1e-14, abs=1e-300), (j, zi)


def problem(variant="sa", beta=9.0, nu=0.02, K=24):
    """A genuinely nonlinear state (clusters forming) where N matters."""
    g = Circle(K)
    model = AttentionModel(g, variant, beta, nu)
    c0 = 0.6 * g.von_mises(0.5, 2.0) + 0.4 * g.von_mises(2.9, 3.0)
    return g, model, c0


def reference(model, c0, t_end):
    """Independent solution: DOP853 on the full RHS, real and imaginary parts stacked."""
    n = c0.size

    def f(t, y):
        r = model.rhs(y[:n] + 1j * y[n:])
        return np.concatenate([r.real, r.imag])

    sol = solve_ivp(f, (0, t_end), np.concatenate([c0.real, c0.imag]), method="DOP853", rtol=1e-13, atol=1e-16)
    return sol.y[:n, -1] + 1j * sol.y[n:, -1]


def integrate(scheme, c0, h, n):
    state = scheme.start(c0)
    for _ in range(n):
        state = scheme.step(state, h)
    return state.u


@pytest.mark.parametrize("name", sorted(SCHEMES))
@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_order_of_convergence(name, variant):
    g, model, c0 = problem(variant, beta=9.0 if variant == "sa" else 3.0)
    t_end = 1.0 if variant == "sa" else 0.5
    ref = reference(model, c0, t_end)
    scheme = make_scheme(name, model.L, model.nonlinear)
    order = scheme.order
    ns = {1: [80, 160, 320], 2: [40, 80, 160], 4: [10, 20, 40]}[order]
    if variant == "usa" and order == 4:
        ns = [40, 80, 160]  # measured slopes 3.75, 3.91, 3.97 from n = 10: asymptotic from 40
    errs = [np.max(np.abs(integrate(scheme, c0, t_end / n, n) - ref)) for n in ns]
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]
    assert errs[-1] > 1e-13  # still in the asymptotic range, above round-off
    assert all(abs(s - order) < 0.25 for s in slopes), (name, errs, slopes)


def test_sbdf2_variable_steps_keep_order_two():
    g, model, c0 = problem()
    t_end = 1.0
    ref = reference(model, c0, t_end)
    scheme = make_scheme("sbdf2", model.L, model.nonlinear)
    errs = []
    for n in (20, 40, 80):
        # alternate steps of ratio 2: h, 2h, h, 2h, ...
        h = t_end / (1.5 * n)
        state = scheme.start(c0)
        for i in range(n):
            state = scheme.step(state, h if i % 2 == 0 else 2 * h)
        errs.append(np.max(np.abs(state.u - ref)))
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(s - 2) < 0.25 for s in slopes), (errs, slopes)


def test_linear_part_exact_for_etdrk4():
    """With N = 0, ETDRK4 multiplies by e^{hL} exactly; SBDF2 has the known O((hL)^2) rate error."""
    L = np.array([0.0, 0.5, -3.0, -400.0])
    u0 = np.ones(4, complex)
    s = make_scheme("etdrk4", L, lambda u: np.zeros_like(u))
    assert np.allclose(integrate(s, u0, 0.1, 10), np.exp(L), rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("name", ["sbdf2", "etdrk4"])
def test_adaptive_error_follows_tolerance(name):
    g, model, c0 = problem()
    t_end = 1.0
    ref = reference(model, c0, t_end)
    errors = []
    for rtol in (1e-4, 1e-6, 1e-8):
        # cfl large: this test is about the error control, not the CFL bound
        ctl = AdaptiveStep(0.05, rtol=rtol, atol=0.0, cfl=10.0, spacing=g.spacing, max_speed=model.max_speed)
        scheme = make_scheme(name, model.L, model.nonlinear)
        state, t, h = scheme.start(c0), 0.0, 0.05
        while t < t_end - 1e-14:
            state, taken, h = ctl.advance(scheme, state, min(h, t_end - t))
            t += taken
        pert = np.linalg.norm(ref[1:])
        errors.append(np.linalg.norm(state.u - ref) / pert)
    # the error per step is controlled, so the global error is O(rtol^(p/(p+1))) and falls with rtol
    p = scheme.order
    for e0, e1 in zip(errors, errors[1:]):
        assert e0 / e1 > 5, errors
    for rtol, e in zip((1e-4, 1e-6, 1e-8), errors):
        assert e < 10 * rtol ** (p / (p + 1)), errors


def test_adaptive_respects_cfl():
    g, model, c0 = problem("usa", beta=3.0)
    ctl = AdaptiveStep(10.0, rtol=1e-1, cfl=0.5, spacing=g.spacing, max_speed=model.max_speed)
    scheme = make_scheme("etdrk4", model.L, model.nonlinear)
    _, taken, _ = ctl.advance(scheme, scheme.start(c0), 10.0)
    assert taken <= 0.5 * g.spacing / model.max_speed(c0) * (1 + 1e-12)


def test_adaptive_gives_up_below_dt_min():
    g, model, c0 = problem()
    ctl = AdaptiveStep(0.1, rtol=1e-15, atol=0.0, dt_min=1e-3, spacing=g.spacing, max_speed=model.max_speed)
    scheme = make_scheme("sbdf1", model.L, model.nonlinear)
    with pytest.raises(NumericalError, match="dt_min"):
        ctl.advance(scheme, scheme.start(c0), 0.1)


def test_fixed_step_passes_h_through():
    g, model, c0 = problem()
    scheme = make_scheme("sbdf2", model.L, model.nonlinear)
    state, taken, nxt = FixedStep(0.01).advance(scheme, scheme.start(c0), 0.004)
    assert taken == 0.004 and nxt == 0.01
