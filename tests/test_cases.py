"""Helpers of the theorem catalogue's cases, each against an independent computation."""

import math

import numpy as np
import pytest
from scipy.linalg import expm

from meanfield.physics import theory
from meanfield.validate.cases.causal import _prompt_weights, prompt_correlations
from meanfield.validate.cases.metastability import _arcs, _cap_gap


def test_prompt_correlations_follow_the_first_order_expansion_at_short_times():
    # d/dt E[cos k (theta_n - theta_j)] at t = 0 is a_k W_nj exactly (only token j correlates with the pair);
    # over a short time the linear column n [exp(t a_k W_0)]_{nj} holds to within the Monte Carlo error
    n, t = 8, 0.02
    mean, se, _ = prompt_correlations(n, 20000, 1.0, 1.0, t, [1, 2], seed=3)
    W = _prompt_weights(n, 1.0)
    W0 = W - np.diag(np.diag(W))
    for a, k in enumerate([1, 2]):
        want = n * expm(t * float(theory.growth_rates([k], 1.0, "usa")[0]) * W0)[-1, :-1]
        z = (mean[a, :-1] - want) / se[a, :-1]
        assert np.max(np.abs(z)) < 4, z
        assert np.max(se[a, :-1] / want) < 0.02  # the control variate makes this a sharp test


def test_cap_arcs_and_gaps_of_a_known_configuration():
    caps = np.array([0, 0, 0, 1, 1, 2])
    theta = np.array([[3.1, -3.1, 3.0, 1.0, 1.2, np.nan]])  # cap 0 straddles +-pi: arc 0.1 + 2 pi - 6.2
    arcs = _arcs(theta, caps)
    assert arcs[0, 0] == pytest.approx(2 * math.pi - 6.1, abs=1e-12)
    assert arcs[0, 1] == pytest.approx(0.2, abs=1e-12) and np.isnan(arcs[0, 2])  # no token left in cap 2
    assert _cap_gap(theta, caps)[0] == pytest.approx(3.0 - 1.2, abs=1e-12)


def test_prompt_correlations_batches_average_to_the_estimate():
    mean, se, batches = prompt_correlations(5, 1000, 1.0, 1.0, 0.3, [1, 2], chunk=250)
    assert batches.shape == (4, 2, 5)
    assert np.max(np.abs(batches.mean(axis=0) - mean)) < 1e-12  # equal chunks: the mean of the batch means
    # the batch-means error of one source agrees with the per-source error within its own sampling spread
    assert 0.2 < np.std(batches[:, 0, 0], ddof=1) / 2 / se[0, 0] < 5


def test_plateau_deviation_of_a_single_cosine():
    from meanfield.validate.cases.lowtemp import _deviation

    c0 = np.zeros(33, dtype=complex)
    c0[0] = 1 / (2 * math.pi)
    c = c0.copy()
    c[5] = 0.3 / (2 * math.pi) / 2  # rho = rho_bar (1 + 0.3 cos 5 theta)
    assert _deviation(c, c0) == pytest.approx(0.3, rel=1e-12)


@pytest.mark.parametrize("midpoints", [False, True])
def test_circle_values_equal_the_direct_sum(midpoints):
    from meanfield.analysis.diagnostics import circle_values

    rng = np.random.default_rng(2)
    ck = rng.standard_normal((3, 50)) + 1j * rng.standard_normal((3, 50))
    th = 2 * np.pi * (np.arange(128) + (0.5 if midpoints else 0.0)) / 128
    direct = 2 * np.real(ck @ np.exp(1j * np.outer(np.arange(1, 51), th)))
    assert np.max(np.abs(circle_values(ck, 128, midpoints) - direct)) < 1e-11
    with pytest.raises(ValueError, match="more than 100 points"):
        circle_values(ck, 100)


def test_density_snapshots_and_snapshot_before():
    from meanfield import io

    h = {"time": np.array([0.0, 1.0, 2.0, 3.0]), "diagnostics": {"n_tokens": np.array([0, 0, 40, 40])}}
    assert io.density_snapshots(h) == 2
    assert io.density_snapshots({"time": h["time"], "diagnostics": {}}) == 4
    assert list(io.snapshot_before(h["time"], [-1.0, 0.0, 1.5, 2.0 * (1 - 1e-14), 9.0])) == [-1, 0, 1, 2, 3]


def test_crossing_time_of_an_exponential_is_exact_and_nan_without_a_crossing():
    """The cases' crossing time (analysis.diagnostics.crossing_time): log-linear interpolation is exact for
    y = a e^{lambda t} at any snapshot spacing; nan when the level is never reached or reached at once."""
    from meanfield.analysis.diagnostics import crossing_time

    t = np.linspace(0.0, 3.0, 7)  # snapshots 0.5 apart
    y = 1e-6 * np.exp(4.2 * t)
    level = 1e-6 * math.exp(4.2 * 1.2345)
    assert abs(crossing_time(t, y, level) - 1.2345) < 1e-12
    assert math.isnan(crossing_time(t, y, 1.0)) and math.isnan(crossing_time(t, y, 1e-7))
