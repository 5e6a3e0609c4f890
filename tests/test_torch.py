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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_field_matches_numpy():
    x, w, mats = setup(3000, 3, 2)
    for causal in (False, True):
        want = TokenModel(w, 5.0, "sa", 3, *mats, causal=causal).velocity(x)
        got = TokenModel(w, 5.0, "sa", 3, *mats, causal=causal, backend="torch", device="cuda").velocity(x)
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))
