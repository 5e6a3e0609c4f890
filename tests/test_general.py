"""General attention in the density solver: Q, K, V, heads (general.py), the causal density (causal.py),
random heads per layer (particles.RandomLayers)."""

import math

import numpy as np
import pytest
from scipy.integrate import quad

from meanfield import config
from meanfield.physics import theory
from meanfield.validate.cases.selection import INITIAL as VM, V as V_SEL  # the catalogue's selection setting
from meanfield.physics.kernels import alibi_kernel
from meanfield.physics.causal import causal_weights
from meanfield.domains import make_geometry
from meanfield.domains.positions import position_nodes
from meanfield.errors import ConfigError
from meanfield.physics.general import GeneralModel, required_degree
from meanfield.physics.kernels import kernel_degree
from meanfield.domains import exact_degree
from meanfield.physics.model import AttentionModel
from meanfield.tokens import TokenModel
from meanfield.physics.heads import attention_matrices
from meanfield.simulation.simulation import Simulation


def state(geometry, size=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return geometry.uniform() + size * geometry.random_perturbation(rng, 6) / geometry.measure


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("name,modes", [("circle", 64), ("sphere", 16)])
@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_quadrature_path_is_the_funk_hecke_path_for_identity(name, modes, variant):
    g = make_geometry(name, modes)
    c = state(g)
    I = np.eye(g.dim)
    want = AttentionModel(g, variant, 5.0, 0.01).rhs(c)
    got = GeneralModel(g, variant, 5.0, 0.01, [(I, I, I)], "quadrature").rhs(c)
    assert rel(got, want) < 1e-12


@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_scalar_heads_funk_hecke_against_quadrature(variant):
    """Q^T K = c I, V = v I: the spectral sum of heads equals the kernel-matrix quadrature."""
    g = make_geometry("sphere", 12)
    c = state(g, seed=1)
    R = np.linalg.qr(np.random.default_rng(2).standard_normal((3, 3)))[0]  # Q = 2 R, K = R: Q^T K = 2 I
    heads = [(2 * R, R, 0.5 * np.eye(3)), (np.eye(3), 0.7 * np.eye(3), -np.eye(3))]
    fh = GeneralModel(g, variant, 3.0, 0.0, heads, "funk_hecke")
    qd = GeneralModel(g, variant, 3.0, 0.0, heads, "quadrature")
    assert fh.integrals == "funk_hecke" and qd.integrals == "quadrature"
    assert rel(qd.rhs(c), fh.rhs(c)) < 1e-12
    # the linear part is the heads' rates summed: 0.5 lambda(6) - lambda(2.1) (docs/general.md)
    single = lambda b: AttentionModel(g, variant, b, 0.0).L
    assert np.allclose(fh.L, 0.5 * single(6.0) - single(2.1), rtol=1e-13, atol=0)


def test_two_heads_against_one_head_with_the_summed_field():
    g = make_geometry("circle", 48)
    c = state(g, seed=3)
    rng = np.random.default_rng(4)
    Q, K, V1, V2 = (attention_matrices("random", 2, 1, rng, k)[0] for k in "QKVV")
    two = GeneralModel(g, "sa", 4.0, 0.0, [(Q, K, V1), (Q, K, V2)]).rhs(c)
    one = GeneralModel(g, "sa", 4.0, 0.0, [(Q, K, V1 + V2)]).rhs(c)  # SA: same softmax, linear in V
    assert rel(two, one) < 1e-13
    Q2, K2 = (attention_matrices("random", 2, 1, rng, k)[0] for k in "QK")
    for variant in ("sa", "usa"):
        both = GeneralModel(g, variant, 4.0, 0.0, [(Q, K, V1), (Q2, K2, V2)]).rhs(c)
        apart = (GeneralModel(g, variant, 4.0, 0.0, [(Q, K, V1)]).rhs(c)
                 + GeneralModel(g, variant, 4.0, 0.0, [(Q2, K2, V2)]).rhs(c))
        assert rel(both, apart) < 1e-13


def test_quadrature_field_against_direct_integration_at_the_stated_resolution():
    """At the degree the config check asks for, the field equals an independent fine-grid evaluation."""
    rng = np.random.default_rng(5)
    heads = list(zip(*[attention_matrices("random", 2, 1, rng, k) for k in "QKV"]))
    beta, K = 20.0, 16
    need = required_degree(K, beta, heads, 2)
    g = make_geometry("circle", K, dealias=(need + 1) / (2 * K + 1))
    assert exact_degree("circle", K, g.dealias) >= need
    c = state(g, seed=6)
    model = GeneralModel(g, "sa", beta, 0.0, heads)
    X = model.velocity(c)[0]
    theta = np.linspace(0, 2 * np.pi, 20000, endpoint=False)  # a 20000-point rule: exact far beyond
    y = np.stack([np.cos(theta), np.sin(theta)], 1)
    rho = np.real(c[0] + 2 * np.exp(1j * np.outer(theta, np.arange(1, K + 1))) @ c[1:])
    Qm, Km, Vm = heads[0]
    for i in range(0, g.npoints, 7):
        x = g.points()[i]
        e = np.exp(beta * (Qm @ x) @ (y @ Km.T).T - beta * np.linalg.norm(Km.T @ Qm @ x))
        v = (e * rho) @ (y @ Vm.T) / np.sum(e * rho)
        assert abs(v @ np.array([-x[1], x[0]]) - X[i]) < 1e-12 * max(1.0, np.max(np.abs(X)))
    assert kernel_degree(0.0, 2) == 0 and kernel_degree(beta, 2) > kernel_degree(beta / 4, 2)


def base(**sections):
    raw = dict(model=dict(geometry="circle", beta=4.0), grid=dict(modes=16), time=dict(t_end=1.0, dt=0.01),
               output=dict(interval=0.5))
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return raw


@pytest.mark.parametrize("sections,pattern", [
    (dict(attention=dict(Q=[[5.0, 1.0], [0.0, 5.0]]), model=dict(beta=20.0), grid=dict(dealias=1.0)),
     r"^grid\.dealias: got 1, allowed with attention\.integrals = 'quadrature' at beta \|\|K\^T Q\|\| = 1\d\d"),
    (dict(attention=dict(alibi=1.0)), r"^attention\.alibi: got 1\.0, allowed: 0 unless attention\.causal"),
    (dict(attention=dict(integrals="funk_hecke", Q="random")), r"^attention\.integrals: got 'funk_hecke'"),
    (dict(attention=dict(Q="random"), model=dict(geometry="zonal", dim=4)), r"^attention\.Q: got 'random'"),
    (dict(attention=dict(causal=True), model=dict(geometry="zonal", dim=4)), r"^attention\.causal: got True"),
    (dict(attention=dict(Q=[[300.0, 0.0], [0.0, 300.0]]), model=dict(variant="usa", beta=2.0), grid=dict(modes=1024)),
     r"^model\.beta: got 2\.0, allowed: beta \|\|K\^T Q\|\| <= 500"),
    (dict(attention=dict(causal=True, V="random"), longtime=dict(handoff="tokens")), r"^longtime\.handoff: got 'tokens'"),
    (dict(attention=dict(V=[[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 2.0]]),
          model=dict(geometry="zonal", dim=4), longtime=dict(handoff="tokens")), r"^longtime\.handoff: got 'tokens'"),
    (dict(attention=dict(resample=True)), r"^attention\.resample: got True, allowed: false with model\.method"),
    (dict(grid=dict(positions=1), attention=dict(causal=True)), r"^grid\.positions: got 1"),
])
def test_bad_attention_configs_name_the_key(sections, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config.from_dict(base(**sections), feasible=True)


def test_particles_keys_moved_to_attention():
    old = config.from_dict(dict(model=dict(method="particles", geometry="circle"), grid=dict(modes=8),
                                particles=dict(n=10, dim=2, heads=2, Q="random", causal=True, seed=3)))
    assert old.attention.heads == 2 and old.attention.Q == "random" and old.attention.causal and old.attention.seed == 3
    assert config.loads(old.to_toml()) == old and "[attention]" in old.to_toml()
    with pytest.raises(ConfigError, match=r"^particles\.heads: also given as attention\.heads"):
        config.from_dict(dict(particles=dict(heads=2), attention=dict(heads=2)))


def test_kernel_memory_is_refused_before_allocating(monkeypatch):
    from meanfield.simulation import memory

    monkeypatch.setattr(memory, "available_memory", lambda: 2.0**30)
    cfg = config.from_dict(base(model=dict(geometry="sphere"), grid=dict(modes=64), attention=dict(Q="random")),
                           feasible=True)  # valid: memory is the run's business, not the config's
    with pytest.raises(ConfigError, match=r"^grid\.modes: got 64, which needs about .* GiB"):
        Simulation(cfg)


# --- the causal density ---------------------------------------------------------------
@pytest.mark.parametrize("alibi", [0.0, 0.7, 8.0])
def test_causal_weights_are_causal_probability_rows_and_second_order(alibi):
    for S in (9, 17, 33):
        s = position_nodes(S)
        W = causal_weights(s, alibi)
        assert np.allclose(W.sum(1), 1, atol=1e-15, rtol=0) and np.all(W >= 0) and np.all(np.triu(W, 1) == 0)
    errs = []
    for S in (17, 33, 65):
        s = position_nodes(S)
        f = np.cos(3 * s)
        exact = np.array([quad(lambda u: alibi_kernel(si, u, alibi) * np.cos(3 * u), 0, si)[0] if si else 1.0
                          for si in s])
        errs.append(np.max(np.abs(causal_weights(s, alibi) @ f - exact)))
    assert 3.5 < errs[0] / errs[1] < 4.5 and 3.5 < errs[1] / errs[2] < 4.5  # second order


@pytest.mark.parametrize("variant,alibi", [("sa", 0.0), ("usa", 2.0)])
def test_linear_causal_density_solves_the_volterra_equation(variant, alibi):
    """Mode 1 with amplitude s^2 in position: the run against the closed-form Volterra solution
    (docs/causal.md), the error falling at second order in the number of positions."""
    beta, t_end, amp = 2.0, 3.0, 1e-7
    from meanfield.physics import theory

    a = float(theory.growth_rates([1], beta, variant)[0])
    errs = []
    for S in (9, 17, 33):
        cfg = config.from_dict(base(model=dict(beta=beta, variant=variant), grid=dict(modes=8, positions=S),
                                    attention=dict(causal=True, alibi=alibi),
                                    initial=dict(kind="modes", modes=[[1, amp]], position_power=2.0),
                                    time=dict(t_end=t_end, dt=0.01, stepper="etdrk4"), output=dict(interval=t_end)))
        sim = Simulation(cfg)
        sim.run([])
        got = sim.c[:, 1].real / (amp / (4 * math.pi))  # c_1 = rho_bar amp g / 2
        want = np.array([theory.causal_linear_mode(t_end, s, a, alibi, lambda u: u * u) for s in sim.geometry.s])
        assert np.max(np.abs(sim.c[:, 1].imag)) < 1e-20
        errs.append(float(np.max(np.abs(got - want) / np.max(want))))
    assert errs[-1] < 2e-3
    assert errs[0] / errs[1] > 3.3 and errs[1] / errs[2] > 3.3  # second order in 1 / S


def test_causal_density_eigenfunction_s_power():
    """lambda = 0: K s^p = s^p / (p + 1), so amplitude s^p grows at a / (p + 1); p = 1 is exact for the
    product trapezoid rule (piecewise-linear interpolation of a linear profile)."""
    from meanfield.physics import theory

    a = float(theory.growth_rates([2], 3.0, "sa")[0])
    cfg = config.from_dict(base(model=dict(beta=3.0), grid=dict(modes=8, positions=9), attention=dict(causal=True),
                                initial=dict(kind="modes", modes=[[2, 1e-8]], position_power=1.0),
                                time=dict(t_end=4.0, dt=0.01, stepper="etdrk4"), output=dict(interval=4.0)))
    sim = Simulation(cfg)
    c0 = sim.c[:, 2].real.copy()
    sim.run([])
    rate = np.log(sim.c[1:, 2].real / c0[1:]) / 4.0
    assert np.max(np.abs(rate / (a / 2) - 1)) < 1e-6
    # every position keeps its mass: the series of each summed on a uniform grid of its own, trapezoid rule
    theta = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    rho = sim.c[:, :1].real + 2 * np.real(sim.c[:, 1:] @ np.exp(1j * np.outer(np.arange(1, sim.c.shape[1]), theta)))
    assert np.max(np.abs(rho.sum(axis=1) * (2 * np.pi / theta.size) - 1)) < 1e-13


def test_causal_density_history_has_a_named_position_axis(tmp_path):
    import meanfield

    cfg = config.from_dict(base(grid=dict(modes=8, positions=5), attention=dict(causal=True, alibi=1.0),
                                initial=dict(amplitude=1e-3), output=dict(path=str(tmp_path / "c.h5"))))
    meanfield.run(cfg, tmp_path / "c.h5", progress=False)
    ds = meanfield.open_history(tmp_path / "c.h5")
    assert ds["rho"].dims == ("time", "position", "theta") and ds["rho_hat"].dims == ("time", "position", "mode")
    assert np.allclose(ds["position"], np.linspace(0, 1, 5))
    assert np.allclose((ds["rho"] * ds["weights"]).sum(("position", "theta")), 1.0, atol=1e-13)


# --- tokens: ALiBi and random heads per layer ----------------------------------------------
def brute_alibi(x, w, beta, variant, Q, K, V, alibi):
    n = x.shape[0]
    s = np.arange(1, n + 1) / n
    out = np.zeros_like(x)
    for i in range(n):
        k = w[:i + 1] * np.exp(-alibi * (s[i] - s[:i + 1]))
        k = k / k.sum()
        e = np.exp(beta * (Q @ x[i]) @ (x[:i + 1] @ K.T).T)
        f = (k * e) @ (x[:i + 1] @ V.T)
        out[i] = f / np.sum(k * e) if variant == "sa" else f
    return out - np.sum(out * x, axis=1, keepdims=True) * x


@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_token_alibi_against_brute_force(variant):
    rng = np.random.default_rng(8)
    n, d = 70, 3
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = rng.uniform(0.5, 1.5, n)
    w /= w.sum()
    Q, K, V = (attention_matrices("random", d, 1, rng, k) for k in "QKV")
    got = TokenModel(w, 1.3, variant, d, Q, K, V, causal=True, alibi=3.0, tile_bytes=8 * 128 * 16).velocity(x)
    want = brute_alibi(x, w, 1.3, variant, Q[0], K[0], V[0], 3.0)
    assert rel(got, want) < 1e-12


def layers_cfg(tmp=None, **attention):
    raw = dict(model=dict(method="particles", geometry="zonal", beta=1e-6), grid=dict(modes=4),
               particles=dict(n=12, dim=16), initial=dict(kind="random", amplitude=0.0, seed=1),
               attention=dict(heads=3, Q="random", K="random", V="random", resample=True, **attention),
               time=dict(t_end=0.4, dt=0.01), output=dict(interval=0.1, path=str(tmp) if tmp else "run.h5"))
    return config.from_dict(raw)


def test_random_layers_are_seeded_and_resume_bitwise(tmp_path):
    import meanfield

    meanfield.run(layers_cfg(tmp_path / "a.h5"), tmp_path / "a.h5", progress=False)
    b = Simulation(layers_cfg())
    b.run([])
    x_a = meanfield.open_history(tmp_path / "a.h5")["positions"].values[-1]
    assert np.array_equal(x_a, b.x)
    c = Simulation(layers_cfg(seed=5))
    c.run([])
    assert not np.allclose(c.x, b.x)
    # stop half-way (checkpoint) and extend: the same layers, bit for bit
    half = layers_cfg(tmp_path / "h.h5")
    import dataclasses

    half = dataclasses.replace(half, time=dataclasses.replace(half.time, t_end=0.2))
    meanfield.run(half, tmp_path / "h.h5", progress=False)
    meanfield.run(layers_cfg(tmp_path / "h.h5"), tmp_path / "h.h5", resume=True, progress=False)
    assert np.array_equal(meanfield.open_history(tmp_path / "h.h5")["positions"].values[-1], b.x)


# --- the catalogue's general-attention cases, at test size (in memory) ------------------------------
def _measure(name, quick=True):
    from meanfield import validate

    outcome = validate.measure(name, quick)
    assert outcome.verdict == validate.PASS, (outcome.measured, outcome.predicted, outcome.criterion(),
                                              outcome.failed_conditions)
    return outcome


def test_density_synchronises_for_V_identity_and_positive_definite_QK():
    out = _measure("synchronisation-general-heads")  # one viscous bump: 1 - |m| < 0.01 from |m| < 0.9
    assert out.numbers["first_moment_start"] < 0.9 and 1 - out.numbers["first_moment_final"] < 0.01


def test_causal_density_first_positions_lead():
    out = _measure("causal-density-lead")  # 17 positions: Spearman > 0.9, the first before the last
    assert out.measured > 0.9 and np.all(np.isfinite(out.numbers["times"]))


def test_random_heads_mean_overlap_follows_the_ode():
    """beta -> 0, fresh Gaussian heads every layer: the mean overlap over seeds against the ODE of
    docs/general.md (no fitted constant: its time is layers x dt); n = 16, d = 32, 4 heads, 24 seeds."""
    out = _measure("random-heads-logistic")
    assert out.measured < 4.0  # max over times of |mean - ODE| / standard error


@pytest.mark.slow
def test_tokens_converge_to_the_density_under_two_random_heads():
    """The weak limit for general attention: tokens drawn from a density and the density itself (grid
    quadrature), two heads of random Q, K, V on S^1, t = 1: W1 falls like n^{-1/2}."""
    out = _measure("tokens-vs-pde-heads", quick=False)  # W1 0.56, 0.14, 0.043, 0.017 at n = 10 .. 10^4: -0.506
    assert -0.6 <= out.measured <= -0.4


def test_spectral_selection_mass_at_each_pole_against_the_first_order_theory():
    """Q^T K = V symmetric positive definite, inviscid density on S^1, beta = 1024: the mass that gathers
    at +v_1 is the initial mass of the half-circle <x, v_1> > 0 plus the O(1/beta) correction of
    docs/general.md (its next term is O(1/beta^2): 0.5 % of the correction measured at this beta), once the flux
    through the half-circle's ends has died out."""
    out = _measure("selection-mass-split")
    assert abs(out.measured / out.predicted - 1) < 0.02


def test_general_attention_hands_off_to_tokens_with_the_same_heads():
    """A run that outgrows its grid continues as tokens under the same heads.  At t = 2 its half-circle mass
    equals a resolved density run's (hand-off at K = 64 against K = 128 without one, itself checked against
    K = 256); by then it has settled: the token run's value at t = 4 is the same.  (No density reference exists at
    t = 4: with viscosity 0 the clusters have sharpened past any grid; K = 128 there reads 0.43.)  The identity
    heads would give 0.43 too."""
    v1 = np.array([0.93788501, 0.34694625])  # V_SEL's top eigenvector
    common = dict(model=dict(geometry="circle", beta=2.0), attention=dict(Q=V_SEL, V=V_SEL), initial=VM)
    half = {}
    for K in (128, 256):
        ref = Simulation(config.from_dict(dict(**common, grid=dict(modes=K), time=dict(t_end=2.0, dt=0.01))))
        ref.run([])
        half[K] = theory.half_circle_mass(ref.c, v1)
    assert abs(half[128] - half[256]) < 1e-8  # the reference is resolved at t = 2
    tokens = {}
    for t_end in (2.0, 4.0):
        sim = Simulation(config.from_dict(dict(**common, grid=dict(modes=64), time=dict(t_end=t_end, dt=0.01),
                                               longtime=dict(handoff="tokens", oversample=4))))
        sim.run([])
        assert sim.handoff is not None and sim.handoff.time > 0.1
        tokens[t_end] = float(sim.weights[sim.x @ v1 > 0].sum())
    assert abs(tokens[2.0] - half[128]) < 1e-4
    assert abs(tokens[4.0] - tokens[2.0]) < 1e-9  # settled


def test_half_circle_mass_against_quadrature():
    g = make_geometry("circle", 32)
    c = 0.6 * g.von_mises([math.cos(0.5), math.sin(0.5)], 2.0) + 0.4 * g.von_mises([math.cos(2.8), math.sin(2.8)], 1.0)
    phi = 1.1
    rho = lambda t: float(g.evaluate(c, np.array([[math.cos(t), math.sin(t)]]))[0])
    exact = quad(rho, phi - math.pi / 2, phi + math.pi / 2, epsabs=1e-13)[0]
    assert abs(theory.half_circle_mass(c, [math.cos(phi), math.sin(phi)]) - exact) < 1e-12


@pytest.mark.parametrize("stepper, bound", [("dop853", 1e-5), ("ark43", 1e-5), ("sbdf2", 1e-3)])
def test_adaptive_steps_on_the_causal_density_follow_rtol(stepper, bound):
    """The error norm knows the means (one per causal position): it measured the means of all positions but the
    first as perturbation, so rtol 1e-6 controlled the error like rtol ~1e-3 (and dop853 took the same steps for
    both tolerances).  Against an ETDRK4 reference at dt/4: the error at rtol 1e-6 is small, and 100x tighter
    tolerance buys at least 10x less error."""
    import meanfield

    base = dict(model=dict(geometry="circle", beta=5.0), grid=dict(modes=32, positions=9),
                attention=dict(causal=True), initial=dict(kind="random", amplitude=1e-4, seed=0),
                output=dict(interval=4.0))
    ref = meanfield.solve({**base, "time": dict(t_end=4.0, dt=0.0025, stepper="etdrk4")})["rho_hat"][-1]
    pert = ref.copy()
    pert[:, 0] = 0.0
    err = {}
    for rtol in (1e-4, 1e-6):
        got = meanfield.solve({**base, "time": dict(t_end=4.0, dt=0.01, stepper=stepper, adaptive=True, rtol=rtol)})
        err[rtol] = np.linalg.norm(got["rho_hat"][-1] - ref) / np.linalg.norm(pert)
    assert err[1e-6] <= bound, err
    assert err[1e-4] / err[1e-6] >= 10, err
