"""HDF5 histories: the INTERFACE layout, named dims for xarray, and a file that survives SIGKILL."""

import math
import signal

import h5py
import numpy as np
import pytest

from _proc import killed_at_write, mf, paused, strace_works

from meanfield import config
from meanfield.domains import Circle
from meanfield.errors import ConfigError
from meanfield.physics.initial import initial_coefficients
from meanfield.io.ownership import check_target
from meanfield.io import read_history, read_snapshot
from meanfield.simulation import Simulation

CFG = """
[model]
beta = 9.0
[grid]
modes = 32
[initial]
kind = "von_mises"
centers = [1.0, 3.0]
concentrations = [2.0, 4.0]
[time]
t_end = 2.0
dt = 0.01
stepper = "etdrk4"
[output]
interval = 0.25
"""


def run_cli(*args, **kw):
    return mf(*args, **kw)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    d = tmp_path_factory.mktemp("io")
    (d / "c.toml").write_text(CFG)
    out = d / "out.h5"
    r = run_cli("run", str(d / "c.toml"), "-o", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    return out


def test_layout_types_and_attributes(history):
    with h5py.File(history, "r") as f:
        n = f["time"].shape[0]
        assert n == 9 and np.allclose(f["time"][:], np.arange(9) * 0.25, atol=1e-14)
        M = f["grid/theta"].shape[0]
        assert f["rho"].shape == (n, M) and f["rho"].dtype == np.float64
        assert f["rho_hat"].shape == (n, 33) and f["rho_hat"].dtype == np.complex128
        assert f["grid/weights"].shape == (M,)
        for k in ("mass", "energy", "tail", "dt", "steps"):
            assert f["diagnostics"][k].shape == (n,)
        a = f.attrs
        assert a["geometry"] == "circle" and a["variant"] == "sa" and a["beta"] == 9.0 and a["viscosity"] == 0.0
        assert a["meanfield_version"]
        cfg = config.loads(a["config"])  # the config as run parses back
        assert cfg.grid.modes == 32 and cfg.time.stepper == "etdrk4"
        theta = f["grid/theta"][:]
        assert np.allclose(theta, 2 * math.pi * np.arange(M) / M) and theta.max() < 2 * math.pi
        w, rho, rho_hat = f["grid/weights"][:], f["rho"][:], f["rho_hat"][:]
    g = Circle(32, 2.0)
    assert M == g.npoints
    assert np.max(np.abs(rho @ w - 1)) < 1e-12  # sum(weights * rho) = 1
    assert np.allclose([g.to_spectral(r) for r in rho], rho_hat, atol=1e-15)
    # rho = sum_k rho_hat_k e^{ik theta}: check one point by hand
    k = np.arange(33)
    val = rho_hat[-1, 0].real + 2 * np.real(np.sum(rho_hat[-1, 1:] * np.exp(1j * k[1:] * theta[5])))
    assert val == pytest.approx(rho[-1, 5], rel=1e-13)


def test_xarray_sees_named_dims(history):
    import xarray as xr
    import h5netcdf  # noqa: F401 - a dependency: a broken install fails here
    with xr.open_dataset(history, engine="h5netcdf") as ds:
        assert ds["rho"].dims == ("time", "theta")
        assert ds["rho_hat"].dims == ("time", "mode")
        assert ds["mode"].values.tolist() == list(range(33))
    with xr.open_dataset(history, engine="h5netcdf", group="grid") as ds:
        assert ds["weights"].dims == ("theta",)
    with xr.open_dataset(history, engine="h5netcdf", group="diagnostics") as ds:
        assert ds["mass"].dims == ("time",)


def test_refuses_to_overwrite(history, tmp_path):
    before = history.read_bytes()
    (tmp_path / "c.toml").write_text(CFG)
    r = run_cli("run", str(tmp_path / "c.toml"), "-o", str(history), "--quiet")
    assert r.returncode == 2 and "exists" in r.stderr and "--overwrite" in r.stderr
    assert r.stderr.count("\n") == 1
    assert history.read_bytes() == before
    with pytest.raises(ConfigError, match="does not exist"):
        check_target(tmp_path / "nope" / "x.h5", "output.path")


def test_initial_condition_from_file(history, tmp_path):
    snap = read_snapshot(history, 0.5)
    t, c = snap["time"], snap["rho_hat"]
    assert t == 0.5 and c.shape == (33,) and snap["positions"] is None
    with pytest.raises(ConfigError, match="initial.time"):
        read_snapshot(history, 0.3)
    # a finer grid: modes are zero-padded
    cfg = config.loads(f'[initial]\nkind = "file"\npath = "{history}"\ntime = 0.5\n[grid]\nmodes = 48')
    c48 = initial_coefficients(cfg, Circle(48), snap)
    assert np.array_equal(c48[:33], c) and np.all(c48[33:] == 0)
    assert np.array_equal(Simulation(cfg).c, c48)  # what a run starts from: the file read by the run itself
    with pytest.raises(ConfigError, match="not a meanfield output"):
        bad = tmp_path / "bad.h5"
        h5py.File(bad, "w").close()
        read_history(bad)


@pytest.mark.parametrize("where", ["between-snapshots", "inside-a-write"])
def test_sigkill_leaves_a_readable_file(tmp_path, where):
    """Kill a long run with SIGKILL after its 20th snapshot, or at its 500th pwrite64 (inside the writes of a
    later snapshot); every flushed snapshot must read back intact."""
    cfg = tmp_path / "long.toml"
    cfg.write_text(CFG.replace("t_end = 2.0", "t_end = 20.0").replace("beta = 9.0", "beta = 9.0\nviscosity = 0.05").replace("interval = 0.25", "interval = 0.05")
                   .replace("modes = 32", "modes = 256"))
    out = tmp_path / "killed.h5"
    if where == "between-snapshots":
        proc = paused(["run", cfg, "-o", out, "--quiet"], snapshot=20)
        with h5py.File(out, "r", locking=False) as f:  # the run holds its output: read without the HDF5 lock
            assert int(np.sum(np.isfinite(f["time"][:]))) == 20
        proc.kill()  # with the file open for writing
        assert proc.wait() == -signal.SIGKILL
    else:
        if not strace_works():
            pytest.skip("strace (ptrace) is not allowed here")
        r = killed_at_write(["run", cfg, "-o", out, "--quiet"], 500, calls="pwrite64")
        assert r.returncode == -signal.SIGKILL, r.stderr
    h = read_history(out)
    n = h["time"].size
    assert n >= (20 if where == "between-snapshots" else 10)  # the 500th pwrite64 falls near the 20th snapshot
    assert np.all(np.diff(h["time"]) > 0)
    assert np.all(np.isfinite(h["rho"])) and np.all(np.isfinite(h["rho_hat"]))
    assert np.max(np.abs(h["rho"] @ h["weights"] - 1)) < 1e-12
    assert np.allclose(h["diagnostics"]["mass"], 1, atol=1e-12)
    # plain readers open it too: rows past the last snapshot have time NaN
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["time"][:n], h["time"]) and np.all(np.isnan(f["time"][n:]))
    import xarray as xr
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert int(ds["time"].notnull().sum()) == n
    r = run_cli("rates", str(out))  # the killed file reads: rates measured, or a clear "nothing to measure"
    assert r.returncode == 0 or (r.returncode == 1 and "no mode has a linear window" in r.stderr), r.stderr


@pytest.mark.parametrize("geometry,spec,f", [
    ("circle", [3, 0.4], lambda T, P: np.cos(3 * T)),
    ("sphere", [2, 1, 0.4], lambda T, P: -math.sqrt(15) * np.sin(T) * np.cos(T) * np.cos(P)),
    ("sphere", [1, -1, 0.4], lambda T, P: -math.sqrt(3) * np.sin(T) * np.sin(P)),
])
def test_modes_initial_density_is_what_the_docs_say(geometry, spec, f):
    """kind = "modes": rho = rho_bar (1 + amplitude f), f = cos(k theta) or sqrt(4 pi) Y^real_lm (RMS 1)."""
    cfg = config.from_dict(dict(model=dict(geometry=geometry), grid=dict(modes=16),
                                initial=dict(kind="modes", modes=[spec])))
    from meanfield.domains import make_geometry

    g = make_geometry(geometry, 16)
    rho = g.to_grid(initial_coefficients(cfg, g))
    if geometry == "circle":
        want = (1 + spec[-1] * f(g.theta, None)) / (2 * math.pi)
    else:
        T, P = np.meshgrid(g.colatitude, g.longitude, indexing="ij")
        want = (1 + spec[-1] * f(T, P)) / (4 * math.pi)
    assert np.allclose(rho, want, atol=1e-14)


def test_checksums_follow_the_documented_recipe_and_catch_one_changed_value(history, tmp_path):
    """/row_checksum is BLAKE2b-8 of (time, each row of row_datasets in order), as docs/output.md
    says; one changed value is refused by readers until io.reseal, and info fails a check."""
    import hashlib
    import json
    import shutil

    from meanfield import io

    with h5py.File(history, "r") as f:
        names = json.loads(f.attrs["row_datasets"])
        for i, t in enumerate(f["time"][:]):
            h = hashlib.blake2b(np.float64(t).tobytes(), digest_size=8)
            for name in names:
                row = np.ascontiguousarray(f[name][i])
                h.update(f"{row.dtype.str}{row.shape}".encode() + row.tobytes())  # layout 5: type, shape, values
            assert int.from_bytes(h.digest(), "little") == int(f["row_checksum"][i])
    edited = tmp_path / "edited.h5"
    shutil.copy(history, edited)
    with h5py.File(edited, "r+") as f:
        f["rho_hat"][4, 3] += 1e-12  # a plausible value: only the checksum can tell
    with pytest.raises(ConfigError, match="checksums do not match in 1 snapshot .first at t = 1"):
        read_history(edited)
    r = run_cli("info", str(edited))
    assert r.returncode == 1 and "FAILED  checksums match (1 of 9 snapshots differ)" in r.stdout
    io.reseal(edited)
    assert read_history(edited)["rho_hat"][4, 3] == read_history(history)["rho_hat"][4, 3] + 1e-12
    assert run_cli("info", str(edited)).returncode == 0


def test_a_damaged_config_attribute_is_refused(tmp_path):
    """The config text is what readers rebuild the run from: one flipped bit in it is caught by the
    static checksum (layout 4), not read back as another config."""
    import meanfield

    out = tmp_path / "a.h5"
    meanfield.run(dict(grid=dict(modes=16), initial=dict(amplitude=1e-3), time=dict(t_end=0.4, dt=0.01),
                       output=dict(interval=0.05)), out, progress=False)
    data = bytearray(out.read_bytes())
    i = data.find(b'kind = "random"')
    assert i > 0
    data[i + 10] ^= 1
    (tmp_path / "b.h5").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="stored config"):
        read_history(tmp_path / "b.h5")


def _flip_in(path, text: bytes) -> None:
    """Invert one byte in the middle of ``text`` where it is stored in the file (a damaged attribute)."""
    data = bytearray(path.read_bytes())
    i = data.index(text) + len(text) // 2
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("layout", [6, 5])
def test_a_damaged_description_is_refused_not_copied_on(tmp_path, layout):
    """Pinned from the attack corrupt/flip4-resume: an inverted byte in a dataset's description made it invalid
    UTF-8, and --resume crashed copying it ("internal error").  From layout 6 the description is in
    static_checksum (refused as damaged); a layout-5 file, whose checksums cannot see it, is refused in one line
    when a resume would copy it."""
    from meanfield.io.integrity import reseal

    cfg = tmp_path / "c.toml"
    cfg.write_text("[grid]\nmodes = 16\n[time]\nt_end = 0.4\ndt = 0.05\n[output]\ninterval = 0.1\n")
    out = tmp_path / "run.h5"
    assert mf("run", cfg, "-o", out, "--quiet").returncode == 0
    if layout == 5:
        with h5py.File(out, "r+") as f:
            f.attrs["layout_version"] = 5
        reseal(out)
    _flip_in(out, b"cluster positions, heaviest first")
    before = out.read_bytes()
    r = mf("run", cfg, "--resume", out, "--quiet", "--set", "time.t_end=0.6")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ("damaged" in r.stderr and "checks" in r.stderr) if layout == 6 else "is not valid UTF-8" in r.stderr
    assert out.read_bytes() == before  # nothing copied on, nothing repaired
    if layout == 6:
        info = mf("info", out)
        assert info.returncode == 1 and "FAILED" in info.stdout
