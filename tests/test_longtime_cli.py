"""Long runs through the real command: the examples, info, plots, xarray, --resume extending a finished
run, token snapshots as initial data, and the guard."""

import signal
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from _proc import mf, paused, resume

from meanfield import config, io
from meanfield.simulation.simulation import Simulation
from meanfield.simulation.trackers import ResolutionMonitor

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "meanfield" / "examples"


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """The circle example at K = 128 (hand-off near t = 15) to t = 1e9."""
    d = tmp_path_factory.mktemp("long")
    out = d / "long.h5"
    r = mf("run", EXAMPLES / "longtime_circle.toml", "-o", out, "--quiet", "--set", "grid.modes=128",
           "--set", "time.t_end=1e9")
    assert r.returncode == 0, r.stderr
    return d, out


def test_long_run_file_info_and_plots(long_run):
    d, out = long_run
    h = io.read_history(out)
    a, diag = h["attrs"], h["diagnostics"]
    assert a["layout_version"] == io.LAYOUT_VERSION and 10 < float(a["handoff_time"]) < 25 and a["handoff_reason"] in ("tail", "negative")
    n = h["time"].size
    assert h["positions"].shape[:2] == h["token_weights"].shape == (n, int(a["handoff_nodes"]))
    before = h["time"] <= float(a["handoff_time"])  # a snapshot at the hand-off time holds the density
    assert np.all(np.isnan(h["positions"][before])) and np.all(np.isnan(h["token_weights"][before]))
    after = ~before
    assert np.allclose(np.sum(h["token_weights"][after], axis=1), 1, atol=1e-14, rtol=0)
    live = h["token_weights"][after] > 0
    assert np.all(np.isfinite(h["positions"][after][live])) and np.all(np.isnan(h["positions"][after][~live]))
    assert np.all(diag["n_tokens"][before] == 0) and diag["n_tokens"][-1] < 20
    assert np.max(np.abs(diag["mass"] - 1)) < 1e-14
    e = diag["energy"]
    assert np.max(-np.diff(e) / e[1:]) < 1e-12
    # the cluster staircase: none in the linear phase, several after, one step per merger
    count = diag["n_clusters"]
    assert count[0] == 0 and count.max() >= 5 and np.all(np.diff(count[np.argmax(count):]) <= 0)
    late = h["time"][h["time"] > 100]
    assert np.allclose(late[1:-1] / late[:-2], 10 ** (1 / 40), rtol=1e-3)  # log-spaced (to multiples of dt)
    m = h["merges"]
    assert m["time"].size > 0 and np.all(np.diff(m["time"]) >= 0) and np.all(m["count"] >= 2)
    parts = m["weights"].sum(axis=1)  # the two heaviest parts: at most the total, all of it when two merged
    assert np.all(m["weights"] > 0) and np.all(parts <= m["weight"] * (1 + 1e-12))
    pair = m["count"] == 2
    assert np.allclose(parts[pair], m["weight"][pair], rtol=1e-12, atol=0)
    r = mf("info", out)
    assert r.returncode == 0, r.stdout
    for needle in ("hand-off        t = ", "tokens          ", "mergers at t = ", "ok      energy non-decreasing",
                   "ok      token weights sum to 1", "ok      data finite"):
        assert needle in r.stdout, (needle, r.stdout)
    for kind in ("clusters", "kymograph", "energy"):
        assert mf("plot", out, "--kind", kind, "-o", d / f"{kind}.png").returncode == 0
    rates = mf("rates", out)
    assert rates.returncode == 0 and "modes measured" in rates.stdout  # the density snapshots before the hand-off
    import xarray as xr
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["positions"].dims == ("time", "token", "component")
        assert ds["token_weights"].dims == ("time", "token")


def test_resume_extends_a_finished_run_to_a_larger_t_end(long_run, tmp_path):
    d, full = long_run
    out = tmp_path / "short.h5"
    base = ["--quiet", "--set", "grid.modes=128"]
    r = mf("run", EXAMPLES / "longtime_circle.toml", "-o", out, *base, "--set", "time.t_end=1e4")
    assert r.returncode == 0, r.stderr
    again = mf("run", EXAMPLES / "longtime_circle.toml", "--resume", out, *base, "--set", "time.t_end=1e4")
    assert again.returncode == 0 and "nothing to resume" in again.stderr
    other = mf("run", EXAMPLES / "longtime_circle.toml", "--resume", out, *base, "--set", "model.beta=20")
    assert other.returncode == 2 and "config hash differs" in other.stderr
    ext = mf("run", EXAMPLES / "longtime_circle.toml", "--resume", out, *base, "--set", "time.t_end=1e9")
    assert ext.returncode == 0, ext.stderr
    a, b = io.read_history(out), io.read_history(full)
    assert a["time"][-1] == 1e9 and np.all(np.diff(a["time"]) > 0)
    early = b["time"] <= 1e4
    assert np.array_equal(a["time"][:early.sum()], b["time"][early])  # same snapshots up to the old end ...
    assert np.array_equal(a["rho_hat"][:early.sum()], b["rho_hat"][early])  # ... bit for bit
    late_a, late_b = a["time"][a["time"] > 1e4], b["time"][b["time"] > 1e4]
    assert np.allclose(late_a, late_b, rtol=1e-12)  # then the same schedule
    assert np.array_equal(a["diagnostics"]["n_clusters"][-1], b["diagnostics"]["n_clusters"][-1])
    assert abs(a["diagnostics"]["energy"][-1] - b["diagnostics"]["energy"][-1]) < 1e-9 * b["diagnostics"]["energy"][-1]
    assert "config hash" in mf("info", out).stdout and mf("info", out).returncode == 0
    with h5py.File(out) as f:
        assert config.loads(f.attrs["config"]).time.t_end == 1e9


def test_token_snapshots_start_runs(long_run, tmp_path):
    d, out = long_run
    h = io.read_history(out)
    t = float(h["time"][np.argmax(h["diagnostics"]["n_tokens"] > 0) + 3])  # a snapshot after the hand-off
    cfg = tmp_path / "from_tokens.toml"
    cfg.write_text(f"""
[model]
method = "particles"
beta = 25.0
[particles]
dim = 2
integrator = "dopri5"
[initial]
kind = "file"
path = "{out}"
time = {t!r}
[time]
t_end = 5.0
dt = 0.01
adaptive = true
[output]
interval = 1.0
""")
    sim = Simulation(config.load(cfg))
    i = int(np.argmin(np.abs(h["time"] - t)))
    live = h["token_weights"][i] > 0
    assert np.allclose(sim.x, h["positions"][i][live], rtol=0, atol=1e-15)
    assert np.allclose(sim.weights, h["token_weights"][i][live], rtol=1e-15)
    r = mf("run", cfg, "-o", tmp_path / "p.h5", "--quiet")
    assert r.returncode == 0, r.stderr
    # a density run cannot take tokens, unless it is a hand-off run (then it starts as tokens)
    text = cfg.read_text().replace('method = "particles"', 'method = "spectral"').replace(
        '[particles]\ndim = 2\nintegrator = "dopri5"\n', "").replace("adaptive = true", "stepper = \"etdrk4\"")
    cfg.write_text(text)
    bad = mf("run", cfg, "-o", tmp_path / "s.h5", "--quiet")
    assert bad.returncode == 2 and "holds tokens" in bad.stderr
    cfg.write_text(text + '[longtime]\nhandoff = "tokens"\n[grid]\nmodes = 64\n')
    ok = mf("run", cfg, "-o", tmp_path / "s.h5", "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert float(io.read_attrs(tmp_path / "s.h5")["handoff_time"]) == 0.0


def test_density_snapshots_with_round_off_negatives_start_runs(tmp_path):
    """A run's own snapshot may dip below 0 by round-off (1e-13 of its maximum): accepted."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\nbeta = 9.0\n[grid]\nmodes = 32\n[time]\nt_end = 0.1\ndt = 0.01\n[output]\ninterval = 0.1\n')
    out = tmp_path / "o.h5"
    assert mf("run", cfg, "-o", out, "--quiet").returncode == 0
    g = Simulation(config.load(cfg)).geometry
    c = g.von_mises(1.0, 12.0)  # resolved by K = 32, min / max = e^{-24}
    rho = g.to_grid(c)
    eps = (rho.min() + 1e-13 * rho.max()) / (1 / (2 * np.pi) - rho.min())
    c[1:] *= 1 + eps  # the same mass, now dipping 1e-13 below 0 (what round-off does to a run's density)
    with h5py.File(out, "r+") as f:
        f["rho_hat"][-1] = c
    io.reseal(out)  # a deliberate edit
    rho = g.to_grid(c)
    assert -1e-12 < rho.min() / rho.max() < 0
    cfg2 = tmp_path / "f.toml"
    cfg2.write_text(f'[initial]\nkind = "file"\npath = "{out}"\n[grid]\nmodes = 32\n[time]\nt_end = 0.1\n'
                    '[output]\ninterval = 0.1\n')
    assert mf("run", cfg2, "-o", tmp_path / "f.h5", "--quiet").returncode == 0


def test_the_guard_stops_a_collapsing_density_with_a_hint(tmp_path):
    out = tmp_path / "c.h5"
    r = mf("run", EXAMPLES / "clustering.toml", "-o", out, "--quiet", "--set", "grid.modes=64",
           "--set", "time.t_end=30")
    assert r.returncode == 1
    line = r.stderr.strip().splitlines()[-1]
    assert "density went negative" in line and 'longtime.handoff = "tokens"' in line and "t = " in line
    assert io.read_history(out)["time"][-1] < 30


def test_random_data_of_amplitude_1e3_do_not_warn_at_the_start():
    cfg = config.from_dict(dict(model=dict(beta=9.0), grid=dict(modes=32), initial=dict(amplitude=1e-3),
                                time=dict(t_end=0.1, dt=0.01), output=dict(interval=0.1)))
    sim = Simulation(cfg)
    assert sim.geometry.tail(sim.c) > 1e-4  # the data's own tail is above the warning level ...
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.run([ResolutionMonitor()])  # ... and nothing is said about it


@pytest.mark.slow
@pytest.mark.parametrize("name,clusters_at_end", [("longtime_circle", 2), ("longtime_sphere", 1),
                                                   ("longtime_zonal", 2), ("longtime_usa", 1)])
def test_long_examples_run_to_the_end(tmp_path, name, clusters_at_end):
    """Each example as a user runs it: from uniform to t = 1e20, mass exact, energy non-decreasing,
    clusters a staircase (after a few formation steps) down to the end state."""
    out = tmp_path / f"{name}.h5"
    r = mf("run", EXAMPLES / f"{name}.toml", "-o", out)
    assert r.returncode == 0, r.stderr
    h = io.read_history(out)
    d = h["diagnostics"]
    assert h["time"][-1] == 1e20 and "handoff_time" in h["attrs"]
    assert np.max(np.abs(d["mass"] - 1)) < 1e-14
    assert np.max(np.maximum(-np.diff(d["energy"]), 0) / d["energy"][1:]) < 1e-12
    assert d["n_clusters"][-1] == clusters_at_end
    top = int(np.argmax(d["n_clusters"]))
    late = d["n_clusters"][top + 10:]
    assert np.all(np.diff(late) <= 0)
    assert mf("info", out).returncode == 0


def test_resume_of_a_stopped_run_with_a_larger_t_end(tmp_path):
    """SIGTERM in the token phase, then --resume with t_end raised: the run completes to the new end."""
    out = tmp_path / "stopped.h5"
    args = ["--quiet", "--set", "grid.modes=128", "--set", "longtime.rtol=1e-13"]
    proc = paused(["run", EXAMPLES / "longtime_circle.toml", "-o", out, *args, "--set", "time.t_end=1e8"],
                  phase="tokens")
    proc.send_signal(signal.SIGTERM)
    resume(proc)
    assert proc.wait() == 143, proc.stderr.read()
    assert io.read_checkpoint(io.checkpoint_path(out))["phase"] == "tokens"
    r = mf("run", EXAMPLES / "longtime_circle.toml", "--resume", out, *args, "--set", "time.t_end=1e12")
    assert r.returncode == 0, r.stderr
    h = io.read_history(out)
    assert h["time"][-1] == 1e12 and np.all(np.diff(h["time"]) > 0)
    assert np.max(np.abs(h["diagnostics"]["mass"] - 1)) < 1e-14
    assert mf("info", out).returncode == 0


@pytest.mark.slow
def test_zonal_rings_follow_the_sphere_tokens_of_an_axisymmetric_density():
    """The same axisymmetric density on S^2, once as a zonal run (tokens: rings), once as a sphere
    run (tokens: points, nphi per ring).  With this amplitude both hand off at the start, on the same
    Gauss nodes; 4 time units later every ring sits at the colatitude of its points, to 1e-10
    (measured 1.3e-14, while the rings moved by up to 0.7).  (With small amplitudes the two hand
    off at different times: the sphere's tail, max |c_lm| / c_00, is sqrt(2l + 1) times the zonal
    one, max |a_l| / a_0 scaled by the bound of R_l, for the same density.)"""
    common = dict(model=dict(beta=9.0), grid=dict(modes=16), time=dict(t_end=4.0, dt=0.01, stepper="etdrk4"),
                  output=dict(interval=0.5), longtime=dict(handoff="tokens", rtol=1e-12))
    zonal = config.from_dict({**common, "model": dict(beta=9.0, geometry="zonal", dim=3),
                              "initial": dict(kind="modes", modes=[[3, 0.4], [5, 0.2]])})
    sphere = config.from_dict({**common, "model": dict(beta=9.0, geometry="sphere"),
                               # sqrt(4 pi) Y_l0 = sqrt(2 l + 1) P_l: the same density as the zonal run's
                               "initial": dict(kind="modes", modes=[[3, 0, 0.4 / 7**0.5], [5, 0, 0.2 / 11**0.5]])})
    z, s = Simulation(zonal), Simulation(sphere)
    assert np.allclose(z.geometry.colatitude, s.geometry.colatitude, atol=1e-14)
    z.run([])
    s.run([])
    assert z.handoff.time == s.handoff.time and z.handoff.tokens == s.handoff.nodes // s.geometry.nphi
    theta_z = np.arccos(np.clip(z.token_positions()[:, -1], -1, 1))
    rows = s.token_positions()
    live = np.isfinite(rows[:, 0])
    theta_s = np.arccos(np.clip(rows[:, 2], -1, 1)).reshape(s.geometry.ntheta, s.geometry.nphi)
    ring_rows = np.isfinite(theta_z)
    assert live.all() and ring_rows.all()  # nothing merged yet on either side
    assert np.max(np.abs(theta_s - theta_z[:, None])) < 1e-10
    assert np.max(np.abs(theta_z - z.geometry.colatitude)) > 0.1  # and they did move
