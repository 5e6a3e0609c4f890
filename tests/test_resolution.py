"""Long runs whose answers do not depend on the grid: the hand-off waits for the end of the linear phase, the
stored density after it is the tokens' own, merger times converge with the grid, and --check-resolution
stores an error bar."""

import math
import subprocess
import sys

import numpy as np
import pytest

import meanfield
from meanfield import io
from meanfield.errors import ConfigError
from meanfield.simulation import solve
from meanfield.simulation.resolution import merger_times

CIRCLE = meanfield.example("longtime_circle")


def _mergers(h):
    return merger_times(h)


def test_the_hand_off_waits_for_the_end_of_the_linear_phase():
    """Band-limited data on S^2 at L = 24: the tail passes 1e-8 while the density is 1 % from uniform (the old
    criterion, longtime.departure = 0, handed off there, at t = 7.0); the hand-off now waits until
    max |rho / rho_bar - 1| >= 1 or the tail passes LINEAR_TAIL (1e-3)."""
    sets = ["time.t_end=17", "initial.max_mode=12", "grid.modes=24", "longtime.oversample=1", "output.spacing=\"linear\"",
            "output.interval=1.0"]
    h = solve(meanfield.load_config(meanfield.example("longtime_sphere"), sets))
    a = h["attrs"]
    assert a["handoff_reason"] == "tail"
    # the state handed off is the last one before the step that crossed (measured: departure 0.83, tail 9.8e-4)
    assert float(a["handoff_departure"]) >= 1.0 or float(a["handoff_tail"]) >= 5e-4
    assert float(a["handoff_departure"]) > 0.5 and float(a["handoff_time"]) > 12.0
    old = solve(meanfield.load_config(meanfield.example("longtime_sphere"), sets + ["longtime.departure=0"]))
    assert float(old["attrs"]["handoff_time"]) < 8.0 and float(old["attrs"]["handoff_departure"]) < 0.05


def test_the_stored_density_after_the_hand_off_is_the_tokens_own():
    """The first token row's coefficients are the measure's (sum_i w_i e^{-ik theta_i} / 2 pi), not damped: three
    von Mises bumps at K = 24 (where the heat kernel used before damped degree 5 by 5x), handed off by the tail
    alone (longtime.departure = 0).  Over the hand-off step the coefficients change about as much as over the
    density's step before it: no jump."""
    h = solve({"model": {"beta": 9.0}, "grid": {"modes": 24},
               "initial": {"kind": "von_mises", "centers": [0.5, 2.0, 4.0], "concentrations": [1.0, 2.0, 1.5]},
               "time": {"t_end": 2.0, "dt": 0.01, "stepper": "etdrk4"}, "output": {"interval": 0.01},
               "longtime": {"handoff": "tokens", "departure": 0.0}})
    first = io.density_snapshots(h)
    assert 1 < first < h["time"].size
    x, w = h["positions"][first], h["token_weights"][first]
    live = w > 0
    theta = np.arctan2(x[live, 1], x[live, 0])
    k = np.arange(h["rho_hat"].shape[1])
    exact = (w[live] @ np.exp(-1j * np.outer(theta, k))) / (2 * math.pi)
    np.testing.assert_allclose(h["rho_hat"][first], exact, rtol=0, atol=1e-14)
    c = h["rho_hat"]
    before, across = np.abs(c[first - 1] - c[first - 2]), np.abs(c[first] - c[first - 1])
    assert np.all(across[1:13] <= 3 * before[1:13] + 1e-12), (across[1:13], before[1:13])
    assert h["attrs"]["token_coefficients"] == "exact"


@pytest.mark.slow
def test_circle_merger_times_converge_with_the_grid():
    """The example's setting with band-limited data (the same function at every K): the first three merger times
    at K = 128, 256, 512 (measured 161.46 / 413.31 / 1456.8, 162.50 / 417.27 / 1466.8, 162.57 / 417.02 / 1473.1):
    K = 256 is within 1 % of K = 512, and the differences shrink with K."""
    runs = {K: _mergers(solve(meanfield.load_config(CIRCLE, ["time.t_end=3000", "initial.max_mode=32",
                                                               f"grid.modes={K}"])))[:3] for K in (128, 256, 512)}
    assert all(v.size == 3 for v in runs.values())
    coarse = np.abs(runs[128] - runs[512]) / runs[512]
    mid = np.abs(runs[256] - runs[512]) / runs[512]
    assert np.all(mid < 0.01), mid
    assert np.max(mid) < np.max(coarse)


def test_check_resolution_stores_the_differences(tmp_path):
    """`meanfield run --check-resolution 2`: the history holds both runs' merger times and their differences
    (resealed: `meanfield info` passes), and a tolerance the run cannot meet is a warning naming the merger."""
    out = tmp_path / "run.h5"
    cmd = [sys.executable, "-m", "meanfield", "run", CIRCLE, "-o", str(out), "--set", "time.t_end=1000",
           "--set", "initial.max_mode=32", "--set", "grid.modes=128", "--check-resolution", "2",
           "--set", "longtime.check_tol=1e-6"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, start_new_session=True)
    assert r.returncode == 0, r.stderr
    assert "resolution check: cluster merger" in r.stderr and "longtime.check_tol = 1e-06" in r.stderr
    a = io.read_history(out)["attrs"]
    assert int(a["resolution_modes"]) == 256 and int(a["resolution_ok"]) == 0
    fine = solve(meanfield.load_config(CIRCLE, ["time.t_end=1000", "initial.max_mode=32", "grid.modes=256"]))
    np.testing.assert_allclose(a["resolution_merger_times_fine"], merger_times(fine), rtol=1e-12)
    assert len(a["resolution_merger_times"]) == 2
    rel = np.abs(a["resolution_merger_times"] - a["resolution_merger_times_fine"]) / a["resolution_merger_times_fine"]
    np.testing.assert_allclose(a["resolution_merger_time_error"], rel, rtol=1e-12)
    assert 1e-6 < float(a["resolution_max_merger_time_error"]) < 0.02
    info = subprocess.run([sys.executable, "-m", "meanfield", "info", str(out)], capture_output=True, text=True,
                          timeout=120, start_new_session=True)
    assert info.returncode == 0, info.stdout + info.stderr
    assert "against grid.modes = 256" in info.stdout and "NOT within longtime.check_tol" in info.stdout


@pytest.mark.parametrize("value", ["1", "0.5", "5", "nan"])
def test_check_factor_is_checked(value):
    with pytest.raises(ConfigError, match="longtime.check_factor"):
        meanfield.load_config(CIRCLE, [f"longtime.check_factor={value}"])
