"""The real `meanfield` command in a subprocess, as a user types it."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from meanfield import io
from meanfield.physics import theory

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "meanfield" / "examples"
EXE = shutil.which("meanfield")


def mf(*args, cwd=None):
    cmd = [EXE] if EXE else [sys.executable, "-m", "meanfield.cli"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900,
                          process_group=0)


def one_error_line(r, status=2):
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meanfield"), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "linear.h5"
    r = mf("run", EXAMPLES / "linear.toml", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "wrote 151 snapshots" in r.stderr
    return out


def measured_rates(path, *extra):
    r = mf("rates", path, *extra)
    assert r.returncode == 0, r.stderr
    rows = [ln.split() for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")][1:]
    return r, {int(row[0]): (float(row[1]), float(row[2]), float(row[3])) for row in rows if row[-1] == "ok"}


def test_linear_example_every_mode_within_1e4(linear):
    """beta = 9, viscosity 0.02: modes 1..5 grow, the rest decay; all 32 are measured to 1e-4."""
    r, measured = measured_rates(linear)
    assert set(measured) == set(range(1, 33))
    lam_theory = theory.growth_rates(np.arange(1, 33), 9.0, "sa", 0.02)
    assert np.sum(lam_theory > 0) == 5
    for k, (lam, got, rel) in measured.items():
        assert lam == pytest.approx(lam_theory[k - 1], rel=1e-11)
        assert abs(got - lam) / abs(lam) == pytest.approx(rel, rel=0.01, abs=1e-12)
        assert rel < 1e-4, (k, lam, got)
    assert re.search(r"# 32 modes measured, max relative error [0-9.e-]+$", r.stdout.strip())


def test_inviscid_example_rates(tmp_path):
    """nu = 0: modes 1..k*+4 have a linear window and match to 1e-4; slower modes are reported."""
    out = tmp_path / "inv.h5"
    assert mf("run", EXAMPLES / "linear_inviscid.toml", "-o", out, "--quiet").returncode == 0
    r, measured = measured_rates(out)
    kstar = theory.most_unstable_mode(9.0)
    assert set(range(1, kstar + 5)) <= set(measured)
    assert all(rel < 1e-4 for _, _, rel in measured.values()), measured
    assert "modes not measurable" in r.stdout
    full = mf("rates", out, "--all")
    assert "nonlinear" in full.stdout and len(full.stdout.splitlines()) > len(r.stdout.splitlines())


def test_theory_table():
    r = mf("theory", "--geometry", "circle", "--beta", 9, "--modes", 12)
    assert r.returncode == 0, r.stderr
    assert "most unstable mode k* = 4" in r.stdout
    rows = [ln.split() for ln in r.stdout.splitlines() if ln and ln.split()[0].isdigit()]
    assert [int(x[0]) for x in rows] == list(range(13))
    assert np.allclose([float(x[1]) for x in rows], theory.growth_rates(np.arange(13), 9.0), rtol=1e-14)
    r = mf("theory", "--dim", 5, "--beta", 30, "--variant", "usa", "--viscosity", 0.1)
    assert r.returncode == 0 and "S^4" in r.stdout and "l* =" in r.stdout
    r = mf("theory", "--geometry", "circle", "--beta", 1, "--viscosity", 10)
    assert "no mode grows" in r.stdout
    # nGPT's density: SA's rates times alpha I_0 / I_1; mode 1 grows at exactly alpha / beta
    r = mf("theory", "--geometry", "circle", "--beta", 9, "--update", "ngpt", "--alpha", 0.5, "--modes", 6)
    rows = [ln.split() for ln in r.stdout.splitlines() if ln and ln.split()[0].isdigit()]
    assert r.returncode == 0 and "update ngpt (alpha = 0.5)" in r.stdout
    assert abs(float(rows[1][1]) - 0.5 / 9) < 1e-15
    assert "--alpha: got -1.0" in one_error_line(mf("theory", "--geometry", "circle", "--beta", 9, "--alpha", -1))


@pytest.mark.parametrize("args,needle", [
    (["theory", "--geometry", "circle", "--beta", "-2"], "beta: got -2"),
    (["theory", "--geometry", "circle", "--beta", "800", "--variant", "usa"], "beta: got 800"),
    (["theory", "--geometry", "torus", "--beta", "2"], "--geometry: got 'torus', allowed: circle | sphere"),
    (["theory", "--beta", "2"], "one of the arguments --geometry --dim is required"),
    (["theory", "--dim", "1", "--beta", "2"], "dim: got 1"),
    (["theory", "--geometry", "circle", "--beta", "x"], "--beta: invalid float value"),
    (["theory", "--geometry", "circle", "--beta", "2", "--eps", "2"], "--eps: got 2"),
    (["frobnicate"], "invalid choice"),
    (["run", "missing.toml"], "config: file 'missing.toml' not found"),
    (["rates", "missing.h5"], "file 'missing.h5' not found"),
    (["plot", "missing.h5"], "file 'missing.h5' not found"),
])
def test_bad_arguments_one_line_exit_2(args, needle):
    line = one_error_line(mf(*args))
    assert needle in line, line


def test_bad_config_and_no_output_written(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[model]\nbeta = 9.0\nbeeta = 3\n")
    line = one_error_line(mf("run", cfg, "-o", tmp_path / "o.h5"))
    assert "model.beeta: unknown key" in line
    line = one_error_line(mf("run", EXAMPLES / "linear.toml", "-o", tmp_path / "o.h5", "--set", "grid.modes=4"))
    assert "grid.modes: got 4" in line
    line = one_error_line(mf("run", EXAMPLES / "linear.toml", "-o", tmp_path / "no" / "o.h5"))
    assert "does not exist" in line
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".*partial"))


def test_run_overrides_and_initial_from_file(linear, tmp_path):
    out = tmp_path / "cont.h5"
    r = mf("run", EXAMPLES / "linear.toml", "-o", out, "--quiet", "--set", "initial.kind=file",
           "--set", f'initial.path="{linear}"', "--set", "initial.time=15.0", "--set", "time.t_end=1.0")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    with h5py.File(out) as f, h5py.File(linear) as g:
        assert np.array_equal(f["rho_hat"][0], g["rho_hat"][-1])
        assert "kind = \"file\"" in f.attrs["config"]


def test_plot_every_kind(linear, tmp_path):
    for kind in ("auto", "kymograph", "energy", "spectrum", "rates"):
        png = tmp_path / f"{kind}.png"
        r = mf("plot", linear, "--kind", kind, "-o", png)
        assert r.returncode == 0, r.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    line = one_error_line(mf("plot", linear, "--kind", "energy", "-o", tmp_path / "energy.png"))
    assert "exists" in line


def test_progress_bar(tmp_path):
    """A terminal gets a bar with t, dt and ETA; --quiet and pipes get none."""
    from meanfield import config
    from meanfield.simulation.simulation import Simulation
    from meanfield.simulation.schedules import EverySteps
    from meanfield.simulation.trackers import ProgressBar

    import io as _io
    import contextlib

    buf = _io.StringIO()
    sim = Simulation(config.loads((EXAMPLES / "linear.toml").read_text(), ["time.t_end=1.0"]))
    bar = ProgressBar(enabled=True, schedule=EverySteps(1))  # redrawn after every step
    with contextlib.redirect_stderr(buf):
        sim.run([bar])
    text = buf.getvalue()
    assert "t=1/1" in text and "dt=0.01" in text and "<" in text
    r = mf("run", EXAMPLES / "linear.toml", "-o", tmp_path / "q.h5", "--quiet", "--set", "time.t_end=1.0")
    assert r.returncode == 0 and r.stderr == ""


def test_version():
    r = mf("--version")
    assert r.returncode == 0 and r.stdout.startswith("meanfield ")


def test_sbdf2_rates_converge_like_dt_squared(tmp_path):
    """SBDF2's discrete rates carry an O((lambda dt)^2) bias, which rates predicts; it vanishes with dt."""
    worst = {}
    for dt in (0.01, 0.0005):
        out = tmp_path / f"s{dt}.h5"
        r = mf("run", EXAMPLES / "linear.toml", "-o", out, "--quiet", "--set", "time.stepper=sbdf2",
               "--set", f"time.dt={dt}", "--set", "time.t_end=4.0")
        assert r.returncode == 0, r.stderr
        r, measured = measured_rates(out)
        worst[dt] = max(rel for _, _, rel in measured.values())
        note = re.search(r"differ from lambda by ([0-9.e-]+) relative", r.stdout)
        assert note and 0.5 < worst[dt] / float(note.group(1)) < 2, (worst[dt], r.stdout[-300:])
    assert worst[0.0005] < 1e-4 and 200 < worst[0.01] / worst[0.0005] < 800  # (20x smaller dt)^2


@pytest.mark.slow
def test_sphere_example_clusters_rates_and_plot(tmp_path):
    """data/sphere.toml: clusters form on S^2 at beta = 20; every (l, m) of every growing degree is
    measured to 1e-4; the sphere plot is drawn."""
    out = tmp_path / "sphere.h5"
    r = mf("run", EXAMPLES / "sphere.toml", "-o", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr  # stayed resolved
    with h5py.File(out) as f:
        rho = f["rho"][-1] * 4 * np.pi
        assert rho.max() > 10 and f["diagnostics/tail"][-1] < 1e-6
        assert f["rho"].dims[1][0].name.endswith("colatitude") and "degree" in f and "order" in f
    r = mf("rates", out)
    assert r.returncode == 0, r.stderr
    rows = [ln.split() for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")][1:]
    got = {tuple(map(int, row[0].split(","))): float(row[3]) for row in rows if row[-1] == "ok"}
    lam = theory.growth_rates(np.arange(49), 20.0, "sa", 0.01, 3)
    growing = [l for l in range(1, 49) if lam[l] > 0]
    assert growing == list(range(1, 8))
    for l in growing:
        for m in range(l + 1):
            assert (l, m) in got and got[l, m] < 1e-4, (l, m)
    png = tmp_path / "s.png"
    assert mf("plot", out, "-o", png).returncode == 0 and png.stat().st_size > 20_000


def test_zonal_and_sphere_runs_from_the_cli(tmp_path):
    zonal = tmp_path / "z.toml"
    zonal.write_text("[model]\ngeometry = 'zonal'\ndim = 8\nbeta = 10.0\n[grid]\nmodes = 24\n"
                     "[initial]\nkind = 'modes'\nmodes = [[3, 1e-7]]\n[time]\nt_end = 5.0\nstepper = 'etdrk4'\n")
    out = tmp_path / "z.h5"
    assert mf("run", zonal, "-o", out, "--quiet").returncode == 0
    r, measured = measured_rates(out)
    assert measured[3][2] < 1e-4
    for kind in ("auto", "spectrum"):
        assert mf("plot", out, "--kind", kind, "-o", tmp_path / f"z{kind}.png").returncode == 0
    line = one_error_line(mf("plot", out, "--kind", "sphere", "-o", tmp_path / "zs.png"))
    assert "--kind: got 'sphere' for a zonal run" in line
    r = mf("theory", "--dim", 8, "--beta", 10)
    assert r.returncode == 0 and "S^7" in r.stdout


def test_particles_run_from_the_cli(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text((EXAMPLES / "particles.toml").read_text())
    out = tmp_path / "p.h5"
    r = mf("run", cfg, "-o", out, "--quiet", "--set", "particles.n=300", "--set", "time.t_end=0.5")
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        pos, w = f["positions"][:], f["token_weights"][:]
        assert pos.shape == (2, 300, 3) and np.allclose(np.linalg.norm(pos, axis=2), 1, atol=1e-15)
        assert w.shape == (2, 300) and np.allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-15)
        assert f.attrs["method"] == "particles" and f["rho"].shape[0] == 2 and f.attrs["layout_version"] == io.LAYOUT_VERSION
        assert abs((f["rho"][-1] * f["grid/weights"][:]).sum() - 1) < 1e-12
    import xarray as xr
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["positions"].dims == ("time", "token", "component")
    line = one_error_line(mf("rates", out))
    assert "particles run" in line
    assert mf("plot", out, "-o", tmp_path / "p.png").returncode == 0


@pytest.mark.slow  # the quick catalogue: about 100 s on 2 cores, the default suite's largest share
def test_validate_quick_writes_a_passing_report(tmp_path):
    out = tmp_path / "report"
    r = mf("validate", "--quick", "-j", "2", "-o", out)
    assert r.returncode == 0, r.stdout + r.stderr
    import json

    results = json.loads((out / "results.json").read_text())
    quick = [ln.split()[0] for ln in mf("validate", "--quick", "--list").stdout.splitlines()]
    assert sorted(results) == sorted(quick) and len(quick) >= 8
    assert all(v["verdict"] == "pass" and v["source"] for v in results.values())
    assert f"{len(quick)} pass, 0 fail, 0 not run, 0 error" in r.stdout
    text = (out / "report.md").read_text()
    # the summary table first: one row per case, six cells each (pipes inside a cell are escaped)
    import re

    rows = [ln for ln in text.split("\n## ")[0].splitlines() if ln.startswith("|")]
    assert len(rows) == len(quick) + 2 and all(len(re.findall(r"(?<!\\)\|", ln)) == 7 for ln in rows)
    assert all(f"## {name}" in text for name in quick)
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert figures and all((out / png).stat().st_size > 10_000 for png in figures)


def test_validate_refuses_an_unknown_case_and_reports_a_failure(tmp_path):
    line = one_error_line(mf("validate", "--case", "no-such-case", "-o", tmp_path / "r"))
    assert line.startswith("meanfield: error: --case: got 'no-such-case', allowed: theory-quadrature | ")
    from meanfield import validate

    @validate.case("always-off-by-one", "2 + 2 = 5", "a test")  # a failing case is reported, and exits 1
    def _off(ctx):
        return validate.Outcome(2.0 + 2.0, 5.0, validate.Exactly())

    try:
        outcomes = validate.run(["always-off-by-one"], out=tmp_path / "r", progress=lambda s: None)
    finally:
        del validate.CASES["always-off-by-one"]
    assert validate.failed(outcomes) == ["always-off-by-one"]
    assert "| **FAIL** |" in (tmp_path / "r" / "report.md").read_text()


def test_validate_reports_a_worker_that_died(tmp_path):
    """A case whose process dies (here: os._exit) is an error in the report, not a traceback."""
    from meanfield import validate

    @validate.case("dies", "a worker that exits", "a test")
    def _dies(ctx):
        import os

        os._exit(3)

    try:
        outcomes = validate.run(["dies", "theory-quadrature"], jobs=2, out=tmp_path / "r", progress=lambda s: None)
    finally:
        del validate.CASES["dies"]
    assert outcomes["dies"].verdict == validate.ERROR and "died" in outcomes["dies"].body
    assert "## dies" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.parametrize("raised, status, text", [("KeyboardInterrupt", 130, "interrupted"),
                                                  ("Terminated", 143, "terminated (SIGTERM)")])
def test_signals_during_start_up_are_one_line(monkeypatch, capsys, raised, status, text):
    """The console script answers Ctrl-C and SIGTERM from its first line: while numpy is imported, or a run is set
    up before its own handlers take over (they were a traceback and a silent death)."""
    import signal

    from meanfield import cli, console

    def interrupted(argv=None):
        assert signal.getsignal(signal.SIGTERM) is console._terminate  # installed before cli is imported
        raise KeyboardInterrupt if raised == "KeyboardInterrupt" else console.Terminated

    monkeypatch.setattr(cli, "main", interrupted)
    assert console.main(["info", "x.h5"]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("meanfield: error: " + text)
    assert signal.getsignal(signal.SIGTERM) is not console._terminate  # put back


def test_theory_geometry_zonal_points_to_dim():
    line = one_error_line(mf("theory", "--geometry", "zonal", "--beta", "2"))
    assert "--geometry: got 'zonal'" in line and "use --dim D" in line, line
    assert mf("theory", "--dim", "8", "--beta", "2").returncode == 0
