"""At least 500 generated malformed configs through the real command (in process): each gives exit
status 2 and one line naming the problem, never a traceback, never a written or overwritten output."""

import contextlib
import io as _io
import math
import tomllib

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meanfield import cli

BASE = {
    "model": {"geometry": "circle", "variant": "sa", "beta": 9.0, "viscosity": 0.0},
    "grid": {"modes": 16},
    "initial": {"kind": "random", "amplitude": 1e-6, "seed": 0},
    "time": {"t_end": 0.02, "dt": 0.01, "stepper": "sbdf2"},
    "output": {"interval": 0.01},
}
NAN, INF = math.nan, math.inf
WRONG_TYPE = st.sampled_from(["text", [1, 2], True, {"a": 1}, [[1.0]]])
NOT_A_STRING = st.sampled_from([[1, 2], True, {"a": 1}, [[1.0]], 3])
#: keys whose value is a string: "text" is no wrong type there (output.path = "text" is a valid run)
STRING_KEYS = {("model", "geometry"), ("model", "variant"), ("model", "method"), ("grid", "backend"),
               ("initial", "kind"), ("time", "stepper"), ("output", "path")}
# key -> values that are out of range (the wrong-type values are added for every key)
OUT_OF_RANGE = {
    ("model", "geometry"): ["torus", "", "Circle"], ("model", "variant"): ["softmax", ""],
    ("model", "beta"): [0.0, -1.0, NAN, INF, 1e9], ("model", "viscosity"): [-1e-9, NAN, INF],
    ("model", "method"): ["lagrangian"], ("model", "dim"): [-1, 7],
    ("grid", "modes"): [0, -5, 10**7, 3], ("grid", "dealias"): [0.5, 4.5, NAN], ("grid", "backend"): ["fftw"],
    ("initial", "kind"): ["noise", ""], ("initial", "amplitude"): [-0.1, 1.0, 5.0, NAN, 0.9],
    ("initial", "seed"): [-1], ("time", "t_end"): [0.0, -1.0, NAN, INF, 1e300],
    ("time", "dt"): [0.0, -0.01, NAN, 1e-300, 0.007, 5.0], ("time", "stepper"): ["rk45", ""],
    ("time", "rtol"): [0.0, 1.0, NAN], ("time", "cfl"): [-1.0, 11.0, NAN],  # 0 is allowed: no CFL bound
    ("output", "interval"): [0.0, -1.0, NAN, 1e-300, 0.015], ("output", "checkpoint_every"): [-1],
    ("output", "path"): [""],
}
KEYS = sorted(OUT_OF_RANGE)


@st.composite
def malformed(draw):
    """A config dict with 1-3 bad values, unknown keys or sections, or a kind without its keys."""
    raw = {k: dict(v) for k, v in BASE.items()}
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["range", "type", "unknown_key", "unknown_section", "kind", "particles"]))
        if how in ("range", "type"):
            section, key = draw(st.sampled_from(KEYS))
            if how == "range":
                raw[section][key] = draw(st.sampled_from(OUT_OF_RANGE[section, key]))
            else:
                raw[section][key] = draw(NOT_A_STRING if (section, key) in STRING_KEYS else WRONG_TYPE)
        elif how == "unknown_key":
            raw[draw(st.sampled_from(sorted(BASE)))][draw(st.sampled_from(["betta", "mode", "t_final", "x"]))] = 1
        elif how == "unknown_section":
            raw[draw(st.sampled_from(["solver", "Model", "grids"]))] = {"a": 1}
        elif how == "kind":
            raw["initial"]["kind"] = draw(st.sampled_from(["modes", "von_mises", "file"]))
            raw["initial"].update(draw(st.sampled_from([{}, {"modes": [[99, 0.1]]}, {"modes": [[1]]},
                                                        {"centers": [1.0], "concentrations": []},
                                                        {"centers": [], "concentrations": [1.0]},
                                                        {"path": "missing.h5"}, {"path": ""}])))
        else:
            raw["model"]["method"] = "particles"
            raw["particles"] = draw(st.sampled_from([{"n": 0, "dim": 2}, {"dim": 1}, {"dim": 2, "Q": "bogus"},
                                                     {"dim": 2, "V": [[1.0, 2.0]]}, {"dim": 2, "heads": 0},
                                                     {"dim": 2, "integrator": "verlet"}, {"dim": 3}]))
    return raw


def run_cli(argv):
    err = _io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(_io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, err.getvalue()


def assert_refused(code, err):
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("meanfield"), err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    for geometry in ("circle", "sphere"):
        (d / f"{geometry}.toml").write_text(tomli_w.dumps({**BASE, "model": {**BASE["model"], "geometry": geometry}}))
        code, err = run_cli(["run", str(d / f"{geometry}.toml"), "-o", str(d / f"{geometry}.h5"), "--quiet"])
        assert code == 0, err
    data = (d / "circle.h5").read_bytes()
    (d / "truncated.h5").write_bytes(data[: len(data) // 3])
    (d / "text.h5").write_text("not hdf5")
    (d / "existing.h5").write_bytes(b"precious")
    return d


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(raw=malformed(), existing=st.booleans())
def test_fuzz_malformed_configs_through_the_cli(workdir, raw, existing, monkeypatch):
    monkeypatch.chdir(workdir)  # a config that slipped through would write output.path here, not in the checkout
    cfg = workdir / "case.toml"
    try:
        cfg.write_text(tomli_w.dumps(raw))
    except (TypeError, ValueError):  # NaN inside lists etc. that TOML cannot write: write it by hand
        return
    out = workdir / ("existing.h5" if existing else "new.h5")
    # a bad output.path is only bad without -o (which overrides it)
    target = [] if "path" in raw["output"] else ["-o", str(out)]
    code, err = run_cli(["run", str(cfg), *target, "--quiet"])
    assert_refused(code, err)
    if existing:
        assert out.read_bytes() == b"precious"
    else:
        assert not out.exists() and not (workdir / ".new.h5.partial").exists()


@pytest.mark.parametrize("initial,needle", [
    ({"kind": "file", "path": "nowhere.h5"}, "initial.path: got"),
    ({"kind": "file", "path": "{d}/truncated.h5"}, "not a readable HDF5 file"),
    ({"kind": "file", "path": "{d}/text.h5"}, "not a readable HDF5 file"),
    ({"kind": "file", "path": "{d}/sphere.h5"}, "is a 'sphere' run"),
    ({"kind": "file", "path": "{d}/circle.h5", "time": 0.005}, "initial.time: got 0.005"),
])
def test_bad_initial_files(workdir, initial, needle):
    raw = {k: dict(v) for k, v in BASE.items()}
    raw["initial"] = {k: (v.format(d=workdir) if isinstance(v, str) else v) for k, v in initial.items()}
    cfg = workdir / "file.toml"
    cfg.write_text(tomli_w.dumps(raw))
    code, err = run_cli(["run", str(cfg), "-o", str(workdir / "never.h5"), "--quiet"])
    assert_refused(code, err)
    assert needle in err and not (workdir / "never.h5").exists()


@pytest.mark.parametrize("text", ["[model\nbeta = 1", "\xff\xfe", "model = [", "[model]\nbeta = 9.0\nbeta = 8.0"])
def test_unparseable_config_text(workdir, text):
    cfg = workdir / "bad.toml"
    cfg.write_bytes(text.encode("latin-1"))
    assert_refused(*run_cli(["run", str(cfg), "-o", str(workdir / "never.h5")]))


def test_unreadable_paths(workdir):
    assert_refused(*run_cli(["run", str(workdir), "-o", str(workdir / "never.h5")]))  # a directory as config
    cfg = workdir / "circle.toml"
    assert_refused(*run_cli(["run", str(cfg), "-o", str(workdir)]))  # a directory as output
    assert_refused(*run_cli(["run", str(cfg), "-o", str(workdir / "no" / "such" / "dir.h5")]))


def test_memory_and_step_requests_refused_before_allocation(workdir):
    raw = {k: dict(v) for k, v in BASE.items()}
    raw["model"].update(geometry="zonal", dim=5)
    raw["grid"]["modes"] = 60000
    cfg = workdir / "huge.toml"
    cfg.write_text(tomli_w.dumps(raw))
    code, err = run_cli(["run", str(cfg), "-o", str(workdir / "never.h5")])
    assert_refused(code, err)
    assert "GiB of memory" in err and "grid.modes" in err
    tomllib.loads(cfg.read_text())
