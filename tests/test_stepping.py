"""Steppers: phi-functions, formal orders of convergence against an independent integrator
(scipy's DOP853 on the full right-hand side), variable steps, adaptive control."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from meanfield.domains import Circle
from meanfield.errors import NumericalError
from meanfield.physics.model import AttentionModel
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
    explicit = name in ("dopri5", "dop853")  # for non-stiff runs: SA without viscosity
    g, model, c0 = problem(variant, beta=9.0 if variant == "sa" else 3.0, nu=0.0 if explicit and variant == "sa" else 0.02)
    t_end = (2.0 if explicit else 1.0) if variant == "sa" else 0.5
    ref = reference(model, c0, t_end)
    scheme = make_scheme(name, model.L, model.nonlinear)
    order = scheme.order
    ns = {1: [80, 160, 320], 2: [40, 80, 160], 4: [10, 20, 40], 5: [16, 32, 64], 8: [4, 6, 8]}[order]
    if variant == "usa" and order >= 4:
        # measured: asymptotic from n = 40 (order 4), 32 (5), 12 (8)
        ns = {4: [40, 80, 160], 5: [32, 64, 128], 8: [12, 16, 24]}[order]
    errs = [np.max(np.abs(integrate(scheme, c0, t_end / n, n) - ref)) for n in ns]
    slopes = [math.log(errs[i] / errs[i + 1]) / math.log(ns[i + 1] / ns[i]) for i in range(len(errs) - 1)]
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


# -- the embedded pairs: tableau, error control, resume ----------------------------------------------
def test_ark43_tables_satisfy_the_order_conditions():
    """Both ARK4(3)6L[2]SA tables and every coupling term: order 4 for b, order 3 for b_hat (and b_hat is
    not order 4, so its difference to b estimates the error)."""
    import itertools

    from meanfield.stepping import ARK43

    ae, ai, b, bh, c = ARK43.tables()
    one = np.ones(c.size)

    def defects(w, order):
        out = [w @ one - 1, w @ c - 1 / 2]
        if order >= 3:
            out += [w @ c**2 - 1 / 3] + [w @ A @ c - 1 / 6 for A in (ae, ai)]
        if order >= 4:
            out += [w @ c**3 - 1 / 4]
            out += [(w * c) @ A @ c - 1 / 8 for A in (ae, ai)] + [w @ A @ c**2 - 1 / 12 for A in (ae, ai)]
            out += [w @ A1 @ A2 @ c - 1 / 24 for A1, A2 in itertools.product((ae, ai), repeat=2)]
        return max(abs(x) for x in out)

    assert np.allclose(ae @ one, c, atol=1e-15) and np.allclose(ai @ one, c, atol=1e-15)
    assert defects(b, 4) < 1e-14 and defects(bh, 3) < 1e-14 and defects(bh, 4) > 1e-3
    assert np.array_equal(ai[-1], b)  # stiffly accurate
    assert abs(ARK43.growth_factor(-1e8)) < 1e-6  # L-stable: stiff modes are damped


@pytest.mark.parametrize("name", ["ark43", "dopri5", "dop853"])
def test_adaptive_global_error_tracks_rtol(name):
    """With the error budgeted per unit time over the run, the error at t_end is below rtol and within two
    decades of it (measured 0.02-0.4 rtol: ark43, dopri5, dop853 at rtol 1e-5 and 1e-7); it was 10-100x above
    rtol with per-step control."""
    from meanfield.simulation.runner import load_config
    from meanfield.simulation.simulation import Simulation

    base = {"model": {"beta": 9.0, "viscosity": 0.005 if name == "ark43" else 0.0}, "grid": {"modes": 48},
            "initial": {"amplitude": 1e-3, "seed": 3}, "output": {"interval": 6.0, "checkpoint_every": 0}}
    ref = None
    for rtol in (1e-5, 1e-7):
        cfg = load_config({**base, "time": {"t_end": 6.0, "dt": 0.01, "stepper": name, "adaptive": True,
                                            "rtol": rtol, "atol": 1e-16}})
        sim = Simulation(cfg)
        if ref is None:
            ref = reference(sim.model, sim.state.u, 6.0)
        sim.run([])
        err = np.linalg.norm((sim.state.u - ref)[1:]) / np.linalg.norm(ref[1:])
        assert 0.01 * rtol < err < rtol, (rtol, err)


def test_auto_stepper_picks_by_stiffness():
    from meanfield.simulation.runner import load_config
    from meanfield.simulation.simulation import Simulation

    def picked(nu, modes, adaptive):
        cfg = load_config({"model": {"beta": 25.0, "viscosity": nu}, "grid": {"modes": modes},
                           "time": {"adaptive": adaptive, "t_end": 1.0}})
        sim = Simulation(cfg)
        return sim.stepper, sim.stepper_reason

    assert picked(1e-3, 512, True)[0] == "ark43"  # nu K^2 = 262 against rates below 3
    assert picked(0.0, 512, True)[0] == "dop853"
    assert picked(1e-3, 32, True)[0] == "dop853"  # nu K^2 = 1
    name, why = picked(1e-3, 512, False)
    assert name == "etdrk4" and "fixed" in why
    assert "stiff" in picked(1e-3, 512, True)[1]


def test_etd42_estimate_is_third_order_and_its_steps_etdrk4s():
    """etd42's step is ETDRK4's to the bit; its estimate u4 - u2 shrinks 8x per halving of h (O(h^3): the embedded
    ETD2RK is of order 2)."""
    g, model, c0 = problem("sa", beta=9.0, nu=0.02)
    s = make_scheme("etd42", model.L, model.nonlinear)
    state = s.start(c0)
    for _ in range(5):
        state = s.step(state, 0.1)
    assert np.array_equal(s.step(state, 0.1).u, make_scheme("etdrk4", model.L, model.nonlinear).step(state, 0.1).u)
    est = [np.linalg.norm(s.step_with_error(state, h)[1]) for h in (0.1, 0.05, 0.025)]
    assert all(7.5 < a / b < 8.5 for a, b in zip(est, est[1:])), est


@pytest.mark.parametrize("nu", [0.005, 0.0])
def test_etd42_adaptive_error_follows_rtol(nu):
    """etd42 holds each step's local error within rtol of the perturbation: the error at t_end falls with rtol and
    stays below it (measured 5e-4..7e-3 rtol at rtol 1e-3..1e-6: its O(h^3) estimate overstates the O(h^5)
    local error), at a cost that grows as rtol^(-1/3)."""
    from meanfield.simulation.runner import load_config
    from meanfield.simulation.simulation import Simulation

    base = {"model": {"beta": 9.0, "viscosity": nu}, "grid": {"modes": 48},
            "initial": {"amplitude": 1e-3, "seed": 3}, "output": {"interval": 6.0, "checkpoint_every": 0}}
    ref, errs = None, []
    for rtol in (1e-3, 1e-5):
        cfg = load_config({**base, "time": {"t_end": 6.0, "dt": 0.01, "stepper": "etd42", "adaptive": True,
                                            "rtol": rtol, "atol": 1e-16}})
        sim = Simulation(cfg)
        if ref is None:
            ref = reference(sim.model, sim.state.u, 6.0)
        sim.run([])
        errs.append(np.linalg.norm((sim.state.u - ref)[1:]) / np.linalg.norm(ref[1:]))
        assert 1e-4 * rtol < errs[-1] < 0.02 * rtol, (rtol, errs[-1])
    assert errs[1] < errs[0] / 100


@pytest.mark.parametrize("name", ["ark43", "dopri5", "dop853", "etd42"])
def test_embedded_schemes_resume_bit_for_bit_from_a_checkpoint(name, tmp_path):
    """The scheme state (dopri5 carries F at the new point) and the controller's dt survive a checkpoint."""
    from meanfield import io
    from meanfield.simulation.runner import load_config
    from meanfield.simulation.simulation import Simulation

    cfg = load_config({"model": {"beta": 9.0, "viscosity": 0.005}, "grid": {"modes": 32},
                       "initial": {"amplitude": 1e-3, "seed": 2},
                       "time": {"t_end": 3.0, "dt": 0.01, "stepper": name, "adaptive": True, "rtol": 1e-7},
                       "output": {"interval": 1.0}})
    straight = Simulation(cfg)
    straight.run([])

    class StopAt:
        def __init__(self):
            self.point = None

        def snapshot(self, sim):
            if sim.next_output == 2 and self.point is None:
                self.point = sim.resume_point()
                io.write_checkpoint(tmp_path / "c.ckpt", self.point, 2, "h")
                raise KeyboardInterrupt

    first = Simulation(cfg)
    with pytest.raises(KeyboardInterrupt):
        first.run([StopAt()])
    resumed = Simulation(cfg)
    point = io.read_checkpoint(tmp_path / "c.ckpt")
    resumed.check_point(point)
    resumed.restore(point)
    resumed.run([])
    assert resumed.steps == straight.steps and np.array_equal(resumed.state.u, straight.state.u)


# -- schemes as coefficient tables, counting their right-hand sides ----------------------------------------
def test_sbdf_coefficient_tables_give_the_closed_form_growth_factors():
    from meanfield.stepping import SBDF1, SBDF2

    for z in (1e-3, 0.1, 0.7, 1.2):
        assert SBDF1.growth_factor(z) == pytest.approx(1 / (1 - z), rel=1e-15)
        assert SBDF2.growth_factor(z) == pytest.approx((2 + math.sqrt(1 + 2 * z)) / (3 - 2 * z), rel=1e-15)
    a, c = SBDF2.coefficients(1.0)  # constant steps: the textbook BDF2 / extrapolation
    assert a == (1.5, -2.0, 0.5) and c == (2.0, -1.0)
    for w in (0.5, 1.0, 3.0):  # consistency: the a's sum to 0, the c's to 1, for every step ratio
        a, c = SBDF2.coefficients(w)
        assert abs(sum(a)) < 1e-15 and sum(c) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("name,per_step", [("sbdf1", 1), ("sbdf2", 1), ("etdrk4", 4), ("ark43", 6),
                                           ("dopri5", 6), ("dop853", 12)])
def test_each_scheme_counts_its_right_hand_sides(name, per_step):
    from meanfield.domains import Circle
    from meanfield.physics.model import AttentionModel

    g = Circle(16)
    model = AttentionModel(g, "sa", 9.0, 0.02)
    calls = [0]

    def N(u):
        calls[0] += 1
        return model.nonlinear(u)

    scheme = make_scheme(name, model.L, N)
    state = scheme.start(g.uniform() + 1e-3 * g.random_perturbation(np.random.default_rng(0)))
    for _ in range(5):
        state = scheme.step(state, 0.01)
    first = 1 if name in ("dopri5", "dop853") else 0  # the pairs' first stage of the first step (FSAL after)
    assert scheme.nfev == calls[0] == 5 * per_step + first


def test_a_simulation_reports_its_right_hand_sides_across_a_hand_off():
    import meanfield
    from meanfield.simulation import Simulation

    sim = Simulation(meanfield.load_config({
        "model": {"beta": 9.0}, "grid": {"modes": 24},
        "initial": {"kind": "von_mises", "centers": [0.5, 2.0, 4.0], "concentrations": [1.0, 2.0, 1.5]},
        "time": {"t_end": 2.0, "dt": 0.01, "stepper": "etdrk4"}, "output": {"interval": 0.5},
        "longtime": {"handoff": "tokens", "departure": 0.0}}))
    sim.run([])
    assert sim.phase == "tokens" and sim.handoff is not None
    # ETDRK4's 4 per step until the hand-off, and for the step taken back there, then the tokens' dopri5
    density_steps = round(sim.handoff.time / 0.01) + 1
    assert sim.nfev == 4 * density_steps + sim.tokens.scheme.nfev
