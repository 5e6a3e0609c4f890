"""Weighted tokens: the field against brute force, integrators (sphere kept, order), sampling,
density estimate, the PDE cross-check, and the guards."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from meanfield import config
from meanfield.analysis.diagnostics import kernel_distance, wasserstein1_circle
from meanfield.tokens import INTEGRATORS, TokenModel, sample_tokens, smoothed_density
from meanfield.physics.heads import attention_matrices
from meanfield.simulation.simulation import Simulation
from meanfield.stepping import State


def unit(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_field(x, w, beta, variant, Qs, Ks, Vs, causal):
    out = np.zeros_like(x)
    for Q, K, V in zip(Qs, Ks, Vs):
        S = np.exp(beta * (x @ Q.T) @ (x @ K.T).T) * w
        if causal:
            S = np.tril(S)
            if variant == "usa":  # each row attends to its probability measure (docs/causal.md)
                S = S / np.cumsum(w)[:, None]
        f = S @ (x @ V.T)
        if variant == "sa":
            f /= S.sum(axis=1, keepdims=True)
        out += f
    return out - np.sum(out * x, axis=1, keepdims=True) * x


@pytest.mark.parametrize("variant", ["sa", "usa"])
@pytest.mark.parametrize("causal", [False, True])
def test_field_against_brute_force(variant, causal):
    n, d, heads = 150, 4, 3
    x = unit(n, d)
    w = np.random.default_rng(1).uniform(0.5, 1.5, n)
    w /= w.sum()
    rng = np.random.default_rng(2)
    Qs, Ks, Vs = (attention_matrices("random", d, heads, rng, k) for k in "QKV")
    want = brute_field(x, w, 1.7, variant, Qs, Ks, Vs, causal)
    for tile in (8 * 128 * 16, 8 * 128 * 37, 2**26):  # tiles of 128 rows x 16 or 37 columns, one tile
        for threads in (1, 3):
            m = TokenModel(w, 1.7, variant, d, Qs, Ks, Vs, causal, tile_bytes=tile, threads=threads)
            assert np.allclose(m.velocity(x), want, rtol=1e-12, atol=1e-14)


def stable_field(x, w, beta, variant, Qs, Ks, Vs, causal):
    """Brute force in log-space: each row's exponents shifted by their maximum (no overflow)."""
    out = np.zeros_like(x)
    for Q, K, V in zip(Qs, Ks, Vs):
        logits = beta * (x @ Q.T) @ (x @ K.T).T + np.log(w)
        if causal:
            logits[np.triu_indices(x.shape[0], 1)] = -np.inf
        top = logits.max(axis=1, keepdims=True)
        S = np.exp(logits - top)
        f = S @ (x @ V.T)
        norm = np.cumsum(w)[:, None] if causal else 1.0  # causal USA: the row's probability measure
        out += f / S.sum(axis=1, keepdims=True) if variant == "sa" else f * np.exp(top) / norm
    return out - np.sum(out * x, axis=1, keepdims=True) * x


@pytest.mark.parametrize("variant,beta", [("sa", 2000.0), ("usa", 250.0)])
@pytest.mark.parametrize("causal", [False, True])
def test_field_at_large_beta_needs_the_exact_row_maxima(variant, beta, causal):
    """beta |Q| |K| so large that the cheap bound b_i would underflow whole rows (2 b_i >> 745): the
    rows are shifted by their exact maxima and the field matches the log-space brute force."""
    from meanfield.tokens.field import SAFE_EXPONENT

    n, d = 200, 3
    x = unit(n, d, 5)
    w = np.random.default_rng(6).uniform(0.5, 1.5, n)
    w /= w.sum()
    rng = np.random.default_rng(7)
    Qs, Ks, Vs = (attention_matrices("random", d, 2, rng, k) for k in "QKV")
    m = TokenModel(w, beta, variant, d, Qs, Ks, Vs, causal, tile_bytes=8 * 128 * 40)
    A, BT, *_ = m._operands(x, 0)
    bound = np.linalg.norm(A[:, :d], axis=1) * np.max(np.linalg.norm(BT[:d], axis=0))
    assert 2 * np.max(bound) - np.log(w.min()) > SAFE_EXPONENT  # the exact maxima are used
    assert np.max(bound) > 250  # and rows would underflow with the bound: the maximum sits up to 2 b_i below it
    want = stable_field(x, w, beta, variant, Qs, Ks, Vs, causal)
    got = m.velocity(x)
    assert np.all(np.isfinite(got))
    assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want)), np.max(np.abs(got - want))


def test_field_is_bitwise_independent_of_the_thread_count():
    n, d = 700, 3
    x = unit(n, d, 8)
    w = np.full(n, 1 / n)
    rng = np.random.default_rng(9)
    mats = [attention_matrices("random", d, 2, rng, k) for k in "QKV"]
    for causal in (False, True):
        one = TokenModel(w, 5.0, "sa", d, *mats, causal=causal).velocity(x)
        for threads in (2, 4):
            assert np.array_equal(TokenModel(w, 5.0, "sa", d, *mats, causal=causal, threads=threads).velocity(x), one)


def test_two_tokens_on_the_circle_follow_the_closed_form():
    """Two tokens at angle phi apart (SA, Q=K=V=I, equal weights): phi' = -2 e^{b cos phi} sin phi / (e^b + e^{b cos phi})."""
    beta, phi0, T = 3.0, 2.5, 2.0
    ref = solve_ivp(lambda t, p: -2 * np.exp(beta * np.cos(p)) * np.sin(p) / (np.exp(beta) + np.exp(beta * np.cos(p))),
                    (0, T), [phi0], rtol=1e-13, atol=1e-14).y[0, -1]
    x = np.array([[math.cos(phi0 / 2), math.sin(phi0 / 2)], [math.cos(-phi0 / 2), math.sin(-phi0 / 2)]])
    m = TokenModel(np.array([0.5, 0.5]), beta, "sa", 2)
    scheme = INTEGRATORS["rk4"](m.velocity)
    state = scheme.start(x)
    for _ in range(200):
        state = scheme.step(state, T / 200)
    a = np.arctan2(state.u[:, 1], state.u[:, 0])
    assert a[0] - a[1] == pytest.approx(ref, abs=1e-10)
    assert np.allclose(np.linalg.norm(state.u, axis=1), 1, atol=1e-15)


@pytest.mark.parametrize("name,order", [("rk4", 4), ("euler", 1)])
def test_integrator_order_and_sphere_kept(name, order):
    d, n = 3, 40
    x0 = unit(n, d, 3)
    rng = np.random.default_rng(4)
    m = TokenModel(np.full(n, 1 / n), 2.0, "sa", d, *(attention_matrices("random", d, 1, rng, k) for k in "QKV"))
    ref_scheme = INTEGRATORS["rk4"](m.velocity)
    ref = ref_scheme.start(x0)
    for _ in range(2000):
        ref = ref_scheme.step(ref, 1e-3)
    errs = []
    steps = [10, 20, 40] if order == 4 else [200, 400, 800]
    for k in steps:
        s = INTEGRATORS[name](m.velocity)
        st = s.start(x0)
        for _ in range(k):
            st = s.step(st, 2.0 / k)
        assert np.max(np.abs(np.linalg.norm(st.u, axis=1) - 1)) < 1e-15
        errs.append(np.max(np.abs(st.u - ref.u)))
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(s - order) < 0.3 for s in slopes), (errs, slopes)


def test_noise_is_brownian_motion_on_the_sphere():
    """With nu > 0 and no drift, <x(t), x(0)> decays like e^{-nu (d-1) t} (Brownian motion, generator nu Lap)."""
    d, n, nu, T = 3, 20000, 0.5, 0.6
    s = INTEGRATORS["euler"](np.zeros_like, noise=nu, rng=np.random.default_rng(5))
    x0 = unit(n, d, 6)
    st = s.start(x0)
    for _ in range(300):
        st = s.step(st, T / 300)
    got = np.mean(np.sum(st.u * x0, axis=1))
    # sampling error ~ 1/sqrt(n) (0.007), time-step bias O(dt) (~1e-3)
    assert got == pytest.approx(math.exp(-nu * (d - 1) * T), abs=4 / math.sqrt(n))


def particles_cfg(dim, n, **kw):
    geometry = {2: "circle", 3: "sphere"}.get(dim, "zonal")
    base = dict(model=dict(method="particles", geometry=geometry, beta=4.0), grid=dict(modes=32),
                initial=dict(kind="von_mises", centers=[0.5, 2.8] if dim == 2 else [[0, 0, 1], [1, 0, 0]],
                             concentrations=[2.0, 3.0], weights=[0.6, 0.4]),
                particles=dict(n=n, dim=dim), time=dict(t_end=1.0, dt=0.1), output=dict(interval=0.5))
    for k, v in kw.items():
        base[k] = {**base.get(k, {}), **v}
    return config.from_dict(base)


@pytest.mark.parametrize("dim", [2, 3])
def test_sampled_tokens_follow_the_initial_density(dim):
    cfg = particles_cfg(dim, 20000)
    sim = Simulation(cfg)
    c_emp = sim.geometry.measure_coefficients(sim.x, sim.weights)
    from meanfield.physics.initial import initial_coefficients

    c = initial_coefficients(cfg, sim.geometry)
    low = sim.geometry.degrees() <= 3
    assert np.max(np.abs(c_emp[low] - c[low])) < 5 / math.sqrt(20000) * abs(c[0])  # sampling error
    # the same for rejection sampling of a perturbed uniform density
    cfg2 = particles_cfg(dim, 20000, initial=dict(kind="modes", modes=[[2, 0.5]] if dim == 2 else [[2, 1, 0.2]]))
    x = sample_tokens(cfg2, sim.geometry, 20000, np.random.default_rng(0))
    c2 = initial_coefficients(cfg2, sim.geometry)
    c2_emp = sim.geometry.measure_coefficients(x, np.full(20000, 1 / 20000))
    assert np.max(np.abs(c2_emp[low] - c2[low])) < 5 / math.sqrt(20000) * abs(c2[0])
    # and exact draws of the uniform measure (x = g / |g|): the density is the uniform one, the tokens' low
    # modes vanish to the sampling error (and would not for draws g / |g| of a skewed g: tested in the margin)
    cfg3 = particles_cfg(dim, 20000, initial=dict(kind="uniform"))
    assert np.array_equal(initial_coefficients(cfg3, sim.geometry), sim.geometry.uniform())
    x = sample_tokens(cfg3, sim.geometry, 20000, np.random.default_rng(1))
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, rtol=0, atol=1e-15)
    c3_emp = sim.geometry.measure_coefficients(x, np.full(20000, 1 / 20000))
    up = low & (sim.geometry.degrees() >= 1)
    assert np.max(np.abs(c3_emp[up])) < 4 / math.sqrt(20000) * abs(c3_emp[0])
    skew = x + 0.3 * np.eye(dim)[0]
    skew /= np.linalg.norm(skew, axis=1, keepdims=True)
    assert np.max(np.abs(sim.geometry.measure_coefficients(skew, np.full(20000, 1 / 20000))[up])) > \
        8 / math.sqrt(20000) * abs(c3_emp[0])


def test_density_estimate_is_a_probability_density():
    sim = Simulation(particles_cfg(3, 500))
    c = smoothed_density(sim.geometry, sim.x, sim.weights, sim.bandwidth)
    rho = sim.geometry.to_grid(c)
    assert sim.geometry.integrate(rho) == pytest.approx(1.0, abs=1e-12)
    assert rho.min() > -1e-3 * rho.max()


def test_causal_first_token_leads():
    """Token 0 attends only to itself: with V = I it never moves; the others move towards the front."""
    cfg = particles_cfg(3, 50, particles=dict(causal=True))
    sim = Simulation(cfg)
    x0 = sim.x.copy()
    sim.run([])
    assert np.allclose(sim.x[0], x0[0], atol=1e-15)
    assert np.linalg.norm(sim.x[1] - x0[1]) > 1e-3


def w1_error(n, seed, pde):
    cfg = particles_cfg(2, n, initial=dict(seed=seed), grid=dict(modes=64))
    sim = Simulation(cfg)
    sim.run([])
    return wasserstein1_circle(pde.geometry, pde.c, sim.x, sim.weights)


def pde_reference(dim):
    cfg = particles_cfg(dim, 1, grid=dict(modes=64 if dim == 2 else 48))
    spec = config.from_dict({**cfg.to_dict(), "model": {**cfg.to_dict()["model"], "method": "spectral"},
                             "time": {"t_end": 1.0, "dt": 0.02, "stepper": "etdrk4"}})
    pde = Simulation(spec)
    pde.run([])
    return pde


@pytest.mark.slow
def test_particles_converge_to_the_pde_on_the_circle():
    """W1(tokens, PDE) at t = 1 falls like n^{-1/2} over three decades of n (docs/theory.md)."""
    pde = pde_reference(2)
    ns = [10, 100, 1000, 10000]
    errs = [np.mean([w1_error(n, s, pde) for s in range(4 if n < 10000 else 2)]) for n in ns]
    slope = np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert -0.6 <= slope <= -0.4, (errs, slope)


@pytest.mark.slow
def test_particles_converge_to_the_pde_on_the_sphere():
    """Kernel (MMD) distance between tokens and the PDE on S^2 at t = 1 falls like n^{-1/2}."""
    pde = pde_reference(3)
    ns = [10, 100, 1000, 5000]
    errs = []
    for n in ns:
        e = []
        for s in range(3 if n < 5000 else 1):
            sim = Simulation(particles_cfg(3, n, initial=dict(seed=s), grid=dict(modes=48)))
            sim.run([])
            e.append(kernel_distance(pde.geometry, pde.c, sim.x, sim.weights))
        errs.append(np.mean(e))
    slope = np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert -0.6 <= slope <= -0.4, (errs, slope)


def test_particles_and_pde_agree_at_moderate_n():
    """The default-suite version of the cross-check: at n = 2000 the W1 distance is at the sampling level."""
    pde = pde_reference(2)
    err = np.mean([w1_error(2000, s, pde) for s in range(2)])
    assert err < 3 / math.sqrt(2000)
    # and it is not small by accident: the solution moved away from the initial density by much more
    cfg = particles_cfg(2, 2000, grid=dict(modes=64))
    sim0 = Simulation(cfg)
    assert wasserstein1_circle(pde.geometry, pde.c, sim0.x, sim0.weights) > 3 * err


def test_state_is_exactly_on_the_sphere_after_a_run():
    sim = Simulation(particles_cfg(5, 300, model=dict(geometry="zonal"), initial=dict(kind="random",
                                                                                              amplitude=1e-4)))
    sim.run([])
    assert np.max(np.abs(np.linalg.norm(sim.x, axis=1) - 1)) < 1e-15
    assert isinstance(sim.state, State)


# -- the theorems of the validation scripts: their catalogue cases, at test size (in memory) ---------------
def _measure(name):
    from meanfield import validate

    outcome = validate.measure(name, quick=True)
    assert outcome.verdict == validate.PASS, (outcome.measured, outcome.criterion(), outcome.failed_conditions)
    return outcome


def test_synchronisation_at_rate_one():
    """V = I: all tokens meet (Geshkovski et al.), the spread decaying like e^{-t} at the end (Chen et al.)."""
    out = _measure("synchronisation-from-uniform")  # 48 tokens to t = 35
    assert out.numbers["final_spread"] < 1e-9 and out.measured == pytest.approx(1.0, abs=1e-3)


def test_spectral_selection():
    """A symmetric V with a simple positive top eigenvalue: every token ends on +-v_1."""
    out = _measure("selection-tokens-symmetric-V")  # 100 tokens to t = 40
    assert out.measured < 1e-4 and all(out.conditions.values())


def test_causal_first_tokens_lead_profile():
    """Causal mask: token 0 stays, the rest collapse onto it, earlier tokens first."""
    out = _measure("causal-first-token-leads")  # 32 tokens to t = 30
    assert out.measured == 0.0 and out.numbers["spearman"] > 0.9


def test_runs_are_reproducible_from_their_seeds():
    cfg = particles_cfg(3, 200, model=dict(viscosity=0.05), particles=dict(Q="random", heads=2),
                        initial=dict(kind="random", amplitude=1e-3, seed=7))
    a, b = Simulation(cfg), Simulation(cfg)
    assert np.array_equal(a.x, b.x)
    a.run([])
    b.run([])
    assert np.array_equal(a.x, b.x)
    c = Simulation(particles_cfg(3, 200, model=dict(viscosity=0.05), particles=dict(Q="random", heads=2),
                                         initial=dict(kind="random", amplitude=1e-3, seed=8)))
    assert not np.array_equal(a.x[:5], c.x[:5])


@pytest.mark.parametrize("variant,causal,alibi,dim", [("sa", False, 0.0, 3), ("usa", False, 0.0, 2),
                                                      ("sa", True, 1.5, 3), ("usa", True, 1.0, 2)])
def test_batched_systems_have_the_token_models_field(variant, causal, alibi, dim):
    """Each system of a BatchedTokenModel moves with TokenModel's field of its own tokens (the blocks of systems
    included: a block smaller than the batch)."""
    from meanfield.tokens import BatchedTokenModel

    rng = np.random.default_rng(7)
    systems, n, beta = 5, 9, 4.0
    w = rng.uniform(0.5, 1.5, n)
    w /= w.sum()
    x = rng.standard_normal((systems * n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    batch = BatchedTokenModel(systems, w, beta, variant, dim, causal=causal, alibi=alibi, block_bytes=2 * 8 * n * n)
    got = batch.velocity(x)
    for s in range(systems):
        one = TokenModel(w, beta, variant, dim, causal=causal, alibi=alibi, field="direct")
        want = one.velocity(x[s * n:(s + 1) * n])
        assert np.max(np.abs(got[s * n:(s + 1) * n] - want)) <= 1e-14 * np.max(np.abs(want))
