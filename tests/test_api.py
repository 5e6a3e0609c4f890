"""The library face: the Python API, the shipped examples, `python -m meanfield`, xarray conventions,
compressed and grid-less histories, and the user-facing messages around them."""

import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from _proc import paused

import meanfield
import meanfield.examples
from meanfield import io
from meanfield.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "meanfield"]


def mf(*args, cwd=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900,
                          process_group=0)


def one_error_line(r, status=2):
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meanfield") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def small(**over):
    cfg = dict(model=dict(beta=9.0), grid=dict(modes=32), initial=dict(amplitude=1e-7, seed=1),
               time=dict(t_end=2.0, dt=0.01, stepper="etdrk4"), output=dict(interval=0.1))
    for section, values in over.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    return cfg


# --- the command ------------------------------------------------------------------------------
def test_python_m_meanfield_and_no_argument_lists_the_commands():
    r = mf()
    assert r.returncode == 0
    for command in ("run", "theory", "rates", "plot", "info", "validate", "example", "control"):
        assert re.search(rf"^\s+{command}\s", r.stdout, re.M), (command, r.stdout)
    assert mf("--version").stdout.startswith("meanfield ")


def test_example_lists_copies_and_refuses(tmp_path):
    r = mf("example")
    assert r.returncode == 0 and "linear" in r.stdout and "cross_check" in r.stdout
    assert set(meanfield.examples.names()) >= {"linear", "clustering", "sphere", "particles", "longtime_circle"}
    r = mf("example", "linear", "-o", tmp_path / "ex")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ex" / "linear.toml").read_text() == meanfield.example("linear").read_text()
    line = one_error_line(mf("example", "linear", "-o", tmp_path / "ex"))
    assert "exists; pass --overwrite" in line
    assert mf("example", "linear", "-o", tmp_path / "ex", "--overwrite").returncode == 0
    assert "allowed: " in one_error_line(mf("example", "nope"))
    assert "does not exist" in one_error_line(mf("example", "all", "-o", tmp_path / "no" / "such"))
    os.symlink(tmp_path / "elsewhere.toml", tmp_path / "ex" / "clustering.toml")
    assert "symbolic link" in one_error_line(mf("example", "clustering", "-o", tmp_path / "ex", "--overwrite"))
    assert not (tmp_path / "elsewhere.toml").exists()
    r = mf("example", "all", "-o", tmp_path / "every")
    assert r.returncode == 0 and sorted(p.stem for p in (tmp_path / "every").glob("*.toml")) == sorted(
        meanfield.examples.names() + meanfield.examples.sweep_names() + meanfield.examples.control_names())
    # "all" copies the sweep and control files too
    assert "control_two_bumps" in mf("example").stdout


def test_quick_start_from_an_empty_directory(tmp_path):
    """The README's first steps, run where no repository is: copy an example, run it, read the rates."""
    assert mf("example", "linear", "-o", ".", cwd=tmp_path).returncode == 0
    r = mf("run", "linear.toml", "-o", "linear.h5", "--quiet", "--set", "time.t_end=5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = mf("rates", "linear.h5", cwd=tmp_path)
    assert r.returncode == 0 and "32 modes measured" in r.stdout


def test_rates_with_no_linear_window_exits_1(tmp_path):
    out = tmp_path / "vm.h5"
    meanfield.run(small(initial=dict(kind="von_mises", centers=[1.0], concentrations=[2.0]),
                        model=dict(viscosity=0.05)), out, progress=False)
    r = mf("rates", out)
    assert "no mode has a linear window" in one_error_line(r, status=1)
    assert "max relative error 0" not in r.stdout


# --- the Python API -----------------------------------------------------------------------------
def test_run_and_open_history_with_units_and_coordinates(tmp_path):
    """Every variable and coordinate has units and long_name; diagnostics sit on the time coordinate;
    on the sphere degree and order are coordinates of the mode axis."""
    res = meanfield.run(small(), tmp_path / "c.h5", progress=False)
    ds = res.dataset
    assert res.status == "complete" and ds.sizes["time"] == 21
    assert ds.energy.dims == ("time",) and np.array_equal(ds.energy.time, ds.time)
    for name, var in ds.variables.items():
        assert var.attrs.get("units") and var.attrs.get("long_name"), name
    assert ds.rho.attrs["units"] == "rad-1" and ds.theta.attrs["units"] == "rad"
    assert float(np.sum(ds.rho.isel(time=-1) * ds.weights)) == pytest.approx(1, abs=1e-13)
    sphere = meanfield.run(dict(model=dict(geometry="sphere", beta=4.0), grid=dict(modes=8),
                                time=dict(t_end=0.2, dt=0.05), output=dict(interval=0.1)),
                           tmp_path / "s.h5", progress=False).dataset
    assert {"degree", "order"} <= set(sphere.coords) and sphere.degree.dims == ("mode",)
    assert sphere.rho.attrs["units"] == "sr-1"
    import xarray as xr
    tree = xr.open_datatree(tmp_path / "s.h5", engine="h5netcdf", phony_dims="sort")
    assert np.array_equal(tree["diagnostics"].to_dataset().time, sphere.time)  # inherited from the root


def test_labels_are_short_and_the_sentences_are_descriptions(tmp_path):
    """xarray labels an axis with long_name [units]: a short long_name (what fits under an axis), the sentence
    in description, in the file as in the view; ds.tail is Dataset.tail, ds.spectral_tail the diagnostic."""
    import h5py
    import matplotlib

    matplotlib.use("Agg")
    ds = meanfield.run(small(), tmp_path / "c.h5", progress=False).dataset
    for name, var in ds.variables.items():
        assert len(var.attrs["long_name"]) <= 22, (name, var.attrs["long_name"])
    assert ds.energy.attrs["long_name"] == "scaled energy" and "interaction energy" in ds.energy.attrs["description"]
    with h5py.File(tmp_path / "c.h5") as f:
        assert f["diagnostics/energy"].attrs["long_name"] == "scaled energy"
        assert "interaction energy" in f["diagnostics/energy"].attrs["description"]
    assert callable(ds.tail) and np.array_equal(ds.spectral_tail, ds["tail"])
    line, = ds.energy.plot()
    assert line.axes.get_ylabel() == "scaled energy [1]" and line.axes.get_xlabel() == "time [1]"


def test_open_history_of_a_token_run(tmp_path):
    ds = meanfield.run(dict(model=dict(method="particles", geometry="sphere", beta=3.0), grid=dict(modes=8),
                            particles=dict(n=50, dim=3), time=dict(t_end=0.5, dt=0.05), output=dict(interval=0.25)),
                       tmp_path / "p.h5", progress=False).dataset
    assert ds.positions.dims == ("time", "token", "component") and ds.positions.shape == (3, 50, 3)
    assert np.allclose(np.linalg.norm(ds.positions.values, axis=-1), 1)
    assert np.allclose(ds.token_weights.sum("token"), 1, atol=1e-14) and "spread" in ds


def test_load_config_overrides_and_errors(tmp_path):
    cfg = meanfield.load_config(meanfield.example("linear"), ["grid.modes=64"])
    assert cfg.grid.modes == 64 and cfg.model.beta == 9.0
    with pytest.raises(ConfigError, match=r"^grid\.modes: got 0"):
        meanfield.load_config({"grid": {"modes": 0}})
    with pytest.raises(ConfigError, match="allowed: .*linear"):
        meanfield.example("lineer")


def test_compressed_and_grid_free_histories_hold_the_same_numbers(tmp_path):
    """gzip (the default) changes the bytes on disk, not one number; output.grid = false drops /rho,
    and every reader transforms the coefficients back to the same density."""
    base = small(model=dict(beta=25.0), grid=dict(modes=128), time=dict(t_end=18.0), initial=dict(amplitude=1e-6))
    a = meanfield.run(base, tmp_path / "a.h5", progress=False).path
    b = meanfield.run(small(**{**base, "output": {**base["output"], "compress": False}}), tmp_path / "b.h5",
                      progress=False).path
    c = meanfield.run(small(**{**base, "output": {**base["output"], "grid": False}}), tmp_path / "c.h5",
                      progress=False).path
    ha, hb, hc = io.read_history(a), io.read_history(b), io.read_history(c)
    assert np.array_equal(ha["rho"], hb["rho"]) and np.array_equal(ha["rho_hat"], hb["rho_hat"])
    with h5py.File(a) as f, h5py.File(b) as g:
        assert f["rho"].compression == "gzip" and g["rho"].compression is None
        assert f["rho"].id.get_storage_size() < 0.9 * g["rho"].id.get_storage_size()
    assert "rho" not in hc and os.path.getsize(c) < 0.5 * os.path.getsize(b)
    assert np.max(np.abs(meanfield.open_history(c).rho.values - ha["rho"])) < 1e-13 * ha["rho"].max()
    assert mf("info", c).returncode == 0 and mf("plot", c, "-o", tmp_path / "c.png").returncode == 0


def test_info_on_a_history_being_written(tmp_path):
    out = tmp_path / "w.h5"
    cfg = tmp_path / "w.toml"
    cfg.write_text(meanfield.example("metastable").read_text())
    proc = paused(["run", cfg, "-o", out, "--quiet", "--set", "time.t_end=1e4"], snapshot=3)
    try:
        r = mf("info", out)
        assert "being written by a running meanfield" in r.stdout, r.stdout + r.stderr
        assert r.returncode == 0 and "FAILED" not in r.stdout
        assert meanfield.open_history(out).sizes["time"] == 3
    finally:
        proc.kill()
        proc.wait()


def test_nothing_points_outside_the_repository():
    """Docs, code, examples and the attributes written into histories never cite our internal
    contract (a file users do not have)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    bad = []
    for name in files:
        if name.endswith((".py", ".md", ".toml", ".cff", ".txt")) and name != "tests/test_api.py":
            text = (ROOT / name).read_text(errors="replace")
            if re.search(r"\bSPEC\b|shared/", text):
                bad.append(name)
    assert not bad
    assert not any("SPEC" in text for text in io.DIAGNOSTICS.values())


def test_what_the_commands_print_is_an_api_call(tmp_path):
    """theory, rates and info print what meanfield's API returns: the CLI holds no logic of its own."""
    from meanfield.physics import theory

    table = theory.rate_table(9.0, "sa", 0.02, 2)
    assert table.kstar == 3 and table.modes[-1] == 10 and table.tags[3] == "most unstable"
    assert table.rates[3] == pytest.approx(table.lambda_star) and table.tags[0] == "neutral"
    with pytest.raises(ConfigError, match="^--modes: got 0"):
        theory.rate_table(9.0, modes=0)
    out = tmp_path / "l.h5"
    meanfield.run(small(initial=dict(amplitude=1e-7), time=dict(t_end=6.0)), out, progress=False)
    rates = meanfield.measured_rates(out)
    assert len(rates.measured) >= 5 and rates.worst < 1e-4 and rates.scheme_bias is None
    cli_rates = mf("rates", out)
    assert f"max relative error {rates.worst:.3g}" in cli_rates.stdout
    report = meanfield.check(out)
    assert report.ok and ("snapshots", f"{io.snapshot_count(out)}, t = 0 .. 6") in report.lines
    info = mf("info", out).stdout.splitlines()
    assert [ln for ln in info if ln.startswith(("ok", "FAILED"))] == [f"ok      {c.text}" for c in report.checks]


def test_rng_draws_the_seeds_and_records_them(tmp_path):
    """rng= (Scientific Python spec 7): a seed or a Generator draws initial.seed and attention.seed; the same rng gives the same
    run, another rng another one, and the config as run holds the seeds drawn (rerunning it repeats the run)."""
    import tomllib

    cfg = dict(model=dict(beta=6.0), grid=dict(modes=16), initial=dict(amplitude=1e-3),
               time=dict(t_end=0.2, dt=0.05), output=dict(interval=0.1))
    a = meanfield.solve(cfg, rng=7)
    b = meanfield.solve(cfg, rng=np.random.default_rng(7))
    c = meanfield.solve(cfg, rng=8)
    assert np.array_equal(a["rho_hat"], b["rho_hat"]) and not np.allclose(a["rho_hat"][0], c["rho_hat"][0])
    seeds = np.random.default_rng(7).integers(0, 2**63 - 1, size=2)
    as_run = tomllib.loads(a["attrs"]["config"])
    assert as_run["initial"]["seed"] == seeds[0] and as_run["attention"]["seed"] == seeds[1]
    assert np.array_equal(meanfield.solve(as_run)["rho_hat"], a["rho_hat"])
    assert np.array_equal(meanfield.solve(cfg, rng=None)["rho_hat"], meanfield.solve(cfg)["rho_hat"])
    res = meanfield.run(cfg, tmp_path / "r.h5", progress=False, rng=7)
    assert np.array_equal(res.dataset.rho_hat.values, a["rho_hat"])
    with pytest.raises(ConfigError, match="rng: got a generator with resume=True"):
        meanfield.run(cfg, tmp_path / "r.h5", resume=True, rng=7)
