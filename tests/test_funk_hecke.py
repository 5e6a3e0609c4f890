"""The O(n) token field for Q = K = V = I (harmonic transforms) against the direct O(n^2) sum."""

import math

import numpy as np
import pytest

from meanfield.errors import ConfigError
from meanfield.physics.kernels import degree, kernel_weights
from meanfield.tokens import TokenModel, pick_field


def tokens(kind, n, d, rng):
    if kind == "uniform":
        x = rng.standard_normal((n, d))
    else:  # five tight clusters of unequal weight: the field is large, psi spans decades
        centres = rng.standard_normal((5, d))
        x = centres[rng.integers(0, 5, n)] + 0.02 * rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1)[:, None]


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("beta", [5.0, 25.0])
@pytest.mark.parametrize("kind,n", [("uniform", 5000), ("clustered", 5000), ("clustered", 300)])
@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_same_field_as_the_direct_sum(d, beta, kind, n, variant):
    rng = np.random.default_rng(int(beta) + n + d)
    x = tokens(kind, n, d, rng)
    w = rng.uniform(0.5, 1.5, n)
    w /= w.sum()
    direct = TokenModel(w, beta, variant, d, field="direct")
    fast = TokenModel(w, beta, variant, d, field="funk_hecke")
    v, u = direct.velocity(x), fast.velocity(x)
    assert np.max(np.abs(u - v)) <= 1e-10 * np.max(np.abs(v))
    # the diagnostics it also serves: energy and its rate, to the same accuracy
    assert fast.energy_scaled(x) == pytest.approx(direct.energy_scaled(x), rel=1e-10)
    assert fast.energy_rate_scaled(x, v) == pytest.approx(direct.energy_rate_scaled(x, v), rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("d", [2, 3])
def test_a_priori_degree_bounds_the_truncation(d):
    """The kernel e^{beta (t - 1)} rebuilt from its weights a_0..a_L is within the stated tail of the
    truth for every t, and the chosen degree is the least one meeting the tolerance."""
    beta, tol = 25.0, 1e-12
    L = degree(beta, d, tol)
    a = kernel_weights(beta, d, L)
    t = np.linspace(-1, 1, 2001)
    poly = (np.polynomial.chebyshev.chebval(t, a) if d == 2 else np.polynomial.legendre.legval(t, a))
    err = np.max(np.abs(poly - np.exp(beta * (t - 1))))
    assert err <= tol
    assert degree(beta, d, tol) > degree(beta, d, 1e-6) > degree(5.0, d, 1e-6)  # more degree for more accuracy / beta
    a_more = kernel_weights(beta, d, L + 40)
    l = np.arange(L + 41.0)
    tail_below = np.sum(a_more[L:] * (1 + l[L:] * (l[L:] + 1) / beta))  # the tail from L - 1 on exceeds tol
    assert tail_below > tol


def test_auto_picks_funk_hecke_only_where_it_applies():
    assert pick_field("auto", 3, 1, False, True, 20000, 25.0) == "funk_hecke"
    assert pick_field("auto", 3, 1, False, True, 100, 25.0) == "direct"  # below the break-even point
    # the break-even point follows the degree on S^2 (16 L: 768 at beta 25, 1440 at beta 100), not on S^1
    assert pick_field("auto", 3, 1, False, True, 1000, 25.0) == "funk_hecke"
    assert pick_field("auto", 3, 1, False, True, 1000, 100.0) == "direct"
    assert pick_field("auto", 2, 1, False, True, 400, 100.0) == "funk_hecke"
    assert pick_field("auto", 3, 2, False, True, 20000, 25.0) == "direct"  # heads
    assert pick_field("auto", 3, 1, True, True, 20000, 25.0) == "direct"  # causal
    assert pick_field("auto", 4, 1, False, True, 20000, 25.0) == "direct"  # S^3
    assert pick_field("auto", 3, 1, False, False, 20000, 25.0) == "direct"  # general Q, K, V
    with pytest.raises(ConfigError, match=r"^particles\.field: got 'funk_hecke'"):
        pick_field("funk_hecke", 3, 1, True, True, 20000, 25.0)


def test_the_config_refuses_funk_hecke_where_it_does_not_apply():
    from meanfield.simulation.runner import load_config

    base = {"model": {"method": "particles", "geometry": "sphere"}, "particles": {"n": 100, "field": "funk_hecke"}}
    assert load_config(base).particles.field == "funk_hecke"
    with pytest.raises(ConfigError, match=r"^particles\.field"):
        load_config({**base, "particles": {**base["particles"], "V": "random"}})


def test_a_token_run_on_the_fast_path_matches_the_direct_path():
    """Whole runs (RK4 to t = 2, 2000 tokens on S^2): the paths agree to the field's accuracy."""
    from meanfield.simulation.runner import load_config
    from meanfield.simulation.simulation import Simulation

    out = []
    for field in ("direct", "funk_hecke"):
        cfg = load_config({"model": {"method": "particles", "geometry": "sphere", "beta": 9.0},
                           "particles": {"n": 2000, "field": field}, "grid": {"modes": 16},
                           "time": {"t_end": 2.0, "dt": 0.05}, "output": {"interval": 2.0}})
        sim = Simulation(cfg)
        sim.run([])
        out.append(sim.x)
    assert np.max(np.abs(out[0] - out[1])) < 1e-9
    assert math.isfinite(float(np.sum(out[1])))


def test_auto_follows_the_token_count_as_tokens_merge():
    """field = "auto" re-chooses when the weights change: Funk–Hecke while the tokens are many, the direct sum
    (each token's own term left out exactly, as plateaus need) once merging has left few; the field is the same."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2000, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    m = TokenModel(np.full(2000, 1 / 2000), 20.0, "sa", 3, field="auto")
    assert m.funk_hecke is not None
    fast = m.velocity(x)
    direct = TokenModel(np.full(2000, 1 / 2000), 20.0, "sa", 3, field="direct").velocity(x)
    assert np.max(np.abs(fast - direct)) < 1e-9 * np.max(np.abs(direct))
    m.set_weights(np.full(10, 0.1))
    assert m.funk_hecke is None and m.n == 10
