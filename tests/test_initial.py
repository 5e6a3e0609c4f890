"""Initial data: a random perturbation is a function of the seed, not of the grid."""

import numpy as np
import pytest

import meanfield
from meanfield.simulation.simulation import Simulation


def _initial(geometry, modes, **initial):
    extra = {"dim": 5} if geometry == "zonal" else {}
    cfg = meanfield.load_config(dict(model=dict(geometry=geometry, beta=4.0, **extra), grid=dict(modes=modes),
                                     initial=dict(kind="random", amplitude=1e-5, seed=7, **initial),
                                     time=dict(t_end=0.1, dt=0.01), output=dict(interval=0.1)))
    return Simulation(cfg)


@pytest.mark.parametrize("geometry,coarse,fine", [("circle", 64, 256), ("sphere", 12, 40), ("zonal", 16, 48)])
def test_same_seed_same_density_at_every_resolution(geometry, coarse, fine):
    """Band-limited (initial.max_mode = 8): the density on a fine grid is the coarse one, at the fine
    grid's points, to round-off; without a band limit the shared modes still agree."""
    a, b = _initial(geometry, coarse, max_mode=8), _initial(geometry, fine, max_mode=8)
    ca = b.geometry.resample(a.c, coarse)  # zero-padded to the fine grid's modes
    assert np.max(np.abs(b.geometry.to_grid(ca) - b.rho())) < 1e-14 * np.max(np.abs(b.rho()))
    assert np.ptp(b.rho()) > 1e-6 * np.max(b.rho())  # the perturbation (size 1e-5) is there
    a, b = _initial(geometry, coarse), _initial(geometry, fine)
    ca, cb = b.geometry.resample(a.c, coarse), b.c
    shared = np.abs(ca) > 0
    assert shared.sum() > 10 and np.allclose(ca[shared], cb[shared], rtol=1e-13, atol=0)
    assert np.count_nonzero(cb) > np.count_nonzero(ca)  # the fine grid's extra modes are perturbed too


def test_a_relative_initial_path_resumes_from_any_directory(tmp_path, monkeypatch):
    """A config with initial.path relative to it, run from its own directory, resumes from the parent: the config
    as run names the file by its absolute path (the relative text gave another config hash there)."""
    import subprocess
    import sys

    work = tmp_path / "work"
    work.mkdir()
    src = work / "src.h5"
    base = ('[model]\ngeometry = "circle"\nbeta = 4.0\nviscosity = 0.05\n[grid]\nmodes = 16\n[initial]\n{init}\n'
            '[time]\nt_end = {t}\ndt = 0.01\n[output]\ninterval = 0.1\n')
    (work / "s.toml").write_text(base.format(init='kind = "random"\namplitude = 1e-3', t=0.2))
    cli = [sys.executable, "-m", "meanfield.cli"]
    run = lambda *a, cwd: subprocess.run([*cli, *a, "--quiet"], cwd=cwd, capture_output=True, text=True,  # noqa: E731
                                         process_group=0, timeout=300)
    assert run("run", "s.toml", "-o", "src.h5", cwd=work).returncode == 0
    (work / "c.toml").write_text(base.format(init='kind = "file"\npath = "src.h5"', t=0.4))
    assert run("run", "c.toml", "-o", "run.h5", cwd=work).returncode == 0
    (work / "c.toml").write_text(base.format(init='kind = "file"\npath = "src.h5"', t=0.6))  # extend it
    r = run("run", "work/c.toml", "--resume", "work/run.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    from meanfield import config, io

    h = io.read_history(work / "run.h5")
    assert h["time"][-1] == pytest.approx(0.6)
    assert config.loads(str(h["attrs"]["config"])).initial.path == str(src)
