"""particles.backend = "torch": the direct token field on PyTorch against the numpy path (CPU here;
the CUDA test runs where a GPU is present)."""

import numpy as np
import pytest

from meanfield import config
from meanfield.errors import ConfigError
from meanfield.tokens import TokenModel
from meanfield.physics.heads import attention_matrices

torch = pytest.importorskip("torch")


def unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def setup(n, d, heads, seed=0):
    rng = np.random.default_rng(seed)
    mats = [attention_matrices("random", d, heads, rng, k) for k in "QKV"]
    w = rng.uniform(0.5, 1.5, n)
    return unit(n, d, seed + 1), w / w.sum(), mats


@pytest.mark.parametrize("variant,beta", [("sa", 5.0), ("usa", 5.0), ("sa", 2000.0), ("usa", 250.0)])
@pytest.mark.parametrize("causal", [False, True])
def test_torch_field_matches_numpy(variant, beta, causal):
    """Random Q, K, V, two heads, d = 4; beta 2000 / 250 take the exact-row-maximum path."""
    x, w, mats = setup(1500, 4, 2)
    want = TokenModel(w, beta, variant, 4, *mats, causal=causal).velocity(x)
    got = TokenModel(w, beta, variant, 4, *mats, causal=causal, backend="torch").velocity(x)
    assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


def test_torch_keeps_the_own_term_out_with_v_identity():
    """Q = K = V = I (one head): the own term is left out of the numerator as in numpy, so the field of
    two far clusters (plateau-sized, e^{-beta (1 - cos D)}) is not lost in round-off."""
    x = np.array([[1.0, 0, 0], [0.999, 0.0447, 0], [-1.0, 0.001, 0], [-0.999, -0.0447, 0]])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = np.full(4, 0.25)
    want = TokenModel(w, 30.0, "sa", 3).velocity(x)
    got = TokenModel(w, 30.0, "sa", 3, backend="torch").velocity(x)
    assert np.max(np.abs(got - want)) <= 1e-13 * np.max(np.abs(want))


def test_torch_run_matches_numpy_run():
    base = {"model": {"method": "particles", "geometry": "sphere", "beta": 4.0},
            "particles": {"n": 300, "dim": 3, "heads": 2, "Q": "random", "K": "random", "V": "random"},
            "time": {"t_end": 0.5, "dt": 0.05}, "output": {"interval": 0.5, "checkpoint_every": 0}}
    from meanfield.simulation.simulation import Simulation

    runs = []
    for backend in ("numpy", "torch"):
        cfg = config.from_dict({**base, "particles": {**base["particles"], "backend": backend}})
        sim = Simulation(cfg)
        sim.run([])
        runs.append(sim.token_positions())
    assert np.max(np.abs(runs[0] - runs[1])) < 1e-12


def test_backend_errors_with_torch_name_the_key():
    base = {"model": {"method": "particles", "geometry": "sphere"}, "particles": {"n": 10}}
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^particles\.device: got 'cuda', but torch finds no CUDA device"):
            config.from_dict(feasible=True, raw={**base, "particles": {"n": 10, "backend": "torch", "device": "cuda"}})


def _batched(backend, device="cpu", **kw):
    from meanfield.tokens import BatchedTokenModel

    rng = np.random.default_rng(7)
    B, n, d = 9, 12, 4
    mats = [attention_matrices("random", d, 2, rng, k) for k in "QKV"]
    heads = [tuple(np.stack([m[h]] * B) if i == 0 else m[h] for i, m in enumerate(mats)) for h in range(2)]
    return BatchedTokenModel(B, rng.uniform(0.5, 1.5, n), np.linspace(2.0, 6.0, B), heads=heads, dim=d,
                             backend=backend, device=device, block_bytes=3 * 8 * n * n, **kw), unit(B * n, d, 3)


@pytest.mark.parametrize("update", ["post-ln", "pre-ln", "peri-ln", "ngpt"])
@pytest.mark.parametrize("variant,causal", [("sa", False), ("usa", False), ("sa", True), ("usa", True)])
def test_torch_batched_field_matches_numpy(update, variant, causal):
    """The batched field on torch (CPU here) against numpy's: per-system beta, heads shared and per system, every
    update, SA and USA, causal masks (numpy in blocks of 3 systems, torch in one)."""
    ours, x = _batched("numpy", variant=variant, causal=causal, alibi=0.5 if causal else 0.0, update=update)
    theirs, _ = _batched("torch", variant=variant, causal=causal, alibi=0.5 if causal else 0.0, update=update)
    want, got = ours.velocity(x), theirs.velocity(x)
    assert np.max(np.abs(got - want)) <= 1e-13 * np.max(np.abs(want))


def test_torch_batched_run_is_the_numpy_run():
    """A batched run (particles.batch) with particles.backend = "torch" is the numpy run (rotf's own-term-free
    path: Q = K = V = I, post-LN), its tokens merging alike (rows merged away: log w = -inf on torch too)."""
    import meanfield

    cfg = {"model": {"method": "particles", "geometry": "circle", "beta": 4.0},
           "particles": {"n": 16, "dim": 2, "batch": 5, "integrator": "euler"}, "initial": {"kind": "uniform"},
           "time": {"t_end": 12.0, "dt": 0.1}, "output": {"interval": 1.0}, "longtime": {"merge_tol": 1e-3}}
    runs = [meanfield.solve({**cfg, "particles": {**cfg["particles"], "backend": b}}) for b in ("numpy", "torch")]
    p0, p1 = runs[0]["positions"], runs[1]["positions"]
    assert np.array_equal(np.isnan(p0), np.isnan(p1)) and np.nanmax(np.abs(p0 - p1)) < 1e-13
    assert np.array_equal(runs[0]["diagnostics"]["cluster_count"], runs[1]["diagnostics"]["cluster_count"])
    tokens = runs[1]["diagnostics"]["n_tokens"]
    assert np.array_equal(runs[0]["diagnostics"]["n_tokens"], tokens) and np.all(tokens[-1] < 16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_batched_field_matches_numpy():
    ours, x = _batched("numpy")
    theirs, _ = _batched("torch", "cuda")
    want = ours.velocity(x)
    assert np.max(np.abs(theirs.velocity(x) - want)) <= 1e-12 * np.max(np.abs(want))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_field_matches_numpy():
    x, w, mats = setup(3000, 3, 2)
    for causal in (False, True):
        want = TokenModel(w, 5.0, "sa", 3, *mats, causal=causal).velocity(x)
        got = TokenModel(w, 5.0, "sa", 3, *mats, causal=causal, backend="torch", device="cuda").velocity(x)
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


def torch_circle_solve(geo, beta: float, dt: float, steps: int, c0: np.ndarray, gradient: bool = True):
    """The circle's SA solve written with torch.fft on the geometry's own grid (classical RK4 = Lawson's without
    viscosity): (sum |c_k(T)|^2, its gradient in c0 by autograd, or None).  Also the torch route of
    benchmarks/bench_gradient_routes.py."""
    K, M = geo.modes, geo.npoints
    k = torch.arange(K + 1, dtype=torch.float64)
    mult = torch.tensor(geo.funk_hecke(beta))
    ik = 1j * k

    def grid(c):
        return torch.fft.irfft(torch.cat([c, torch.zeros(M // 2 - K, dtype=torch.complex128)]), n=M, norm="forward")

    def rhs(c):
        psi, g, rho = grid(mult * c), grid(ik * mult * c), grid(c)
        return -ik * torch.fft.rfft(rho * g / (beta * psi), norm="forward")[: K + 1]

    with torch.set_grad_enabled(gradient):
        c = torch.tensor(c0, requires_grad=gradient)
        u = c
        for _ in range(steps):
            k1 = rhs(u)
            k2 = rhs(u + 0.5 * dt * k1)
            k3 = rhs(u + 0.5 * dt * k2)
            k4 = rhs(u + dt * k3)
            u = u + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        loss = (u.abs() ** 2).sum()
        if not gradient:
            return float(loss), None
        loss.backward()
    grad = c.grad.numpy().copy()
    grad[0] = grad[0].real  # the imaginary part of c_0 is no degree of freedom of a real field
    return float(loss.detach()), grad


def test_the_adjoint_gradient_equals_torch_autograd():
    """A second method for meanfield.gradients: torch autograd through the same discretisation (the circle's
    grid, SA, beta = 4, classical RK4, which is Lawson's RK4 without viscosity), the gradient of sum |c_k(T)|^2
    with respect to the initial coefficients: equal to 1e-10 (measured 1e-15)."""
    from meanfield.domains.circle import Circle
    from meanfield.gradients import DensityDynamics, ParameterSchedule, Problem

    beta, dt, steps = 4.0, 0.01, 100
    geo = Circle(24)
    rng = np.random.default_rng(0)
    c0 = geo.uniform() + 0.02 * geo.uniform()[0].real * geo.random_perturbation(rng, 5)
    value_t, theirs = torch_circle_solve(geo, beta, dt, steps, c0)

    def loss(state, dynamics):
        return float(np.sum(np.abs(state) ** 2)), 2 * state

    value, grad = Problem(DensityDynamics(geo, "sa"), ParameterSchedule([0, steps * dt], {"beta": beta}), c0, dt,
                          loss).value_and_gradient()
    assert abs(value - value_t) < 1e-13 * value
    assert np.max(np.abs(grad["initial"] - theirs)) < 1e-10 * np.max(np.abs(theirs))
