"""Config: TOML -> validated frozen dataclasses; every bad input is one ConfigError line naming the key."""

import dataclasses
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meanfield.simulation  # noqa: F401  (the solvers register their config checks)
from meanfield import config
from meanfield.config import Config, ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "meanfield" / "examples"
VALID = """
[model]
geometry = "circle"
variant = "sa"
beta = 9.0
viscosity = 0.0
[grid]
modes = 32
[initial]
kind = "random"
amplitude = 1e-6
seed = 0
[time]
t_end = 1.0
dt = 0.01
stepper = "sbdf2"
[output]
path = "x.h5"
interval = 0.1
"""


VALID_PARTICLES = VALID.replace('variant = "sa"', 'variant = "sa"\nmethod = "particles"') + """
[particles]
n = 50
dim = 2
heads = 2
Q = "random"
K = [[1.0, 0.0], [0.0, 1.0]]
V = ["identity", [[0.5, 0.0], [0.0, 2.0]]]
"""


def test_defaults_and_round_trip():
    cfg = config.loads("")
    assert cfg == Config()
    assert cfg.grid.modes == 128 and cfg.model.beta == 9.0 and cfg.time.stepper == "auto" and cfg.time.threads == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.beta = 1.0
    full = config.loads(VALID)
    assert config.loads(full.to_toml()) == full
    part = config.loads(VALID_PARTICLES)
    assert config.loads(part.to_toml()) == part and part.dim == 2 and part.attention.V[1] == ((0.5, 0.0), (0.0, 2.0))
    assert isinstance(full.model.beta, float) and full.grid.modes == 32


def test_all_examples_are_valid():
    for path in sorted((EXAMPLES).glob("*.toml")):
        config.load(path, feasible=True)


@pytest.mark.parametrize("text,key", [
    ("[model]\nbeta = 'nine'", r"^model\.beta: got 'nine' \(str\), allowed: a number$"),
    ("[model]\nbeta = true", r"^model\.beta: .*allowed: a number"),
    ("[model]\nbeta = -1.0", r"^model\.beta: got -1\.0, allowed: a number in \(0, 1e\+08\]"),
    ("[model]\nbeta = 1e17", r"^model\.beta: got 1e\+17, allowed: a number in \(0, 1e\+08\]"),
    ("[model]\nbeta = nan", r"^model\.beta: got nan"),
    ("[model]\nbeta = inf", r"^model\.beta: got inf"),
    ("[model]\nvariant = 'softmax'", r"^model\.variant: got 'softmax', allowed: 'sa' \| 'usa'"),
    ("[model]\nvariant = 'usa'\nbeta = 800.0\n[grid]\nmodes = 200", r"^model\.beta: got 800\.0, allowed: <= 500"),
    ("[model]\nviscosity = -0.1", r"^model\.viscosity: got -0\.1"),
    ("[model]\ngeometry = 'torus'", r"^model\.geometry: got 'torus', allowed: 'circle' \| 'sphere' \| 'zonal'"),
    ("[model]\ngeometry = 'zonal'", r"^model\.dim: got 0, allowed: an integer in \[2, 1000\] for geometry 'zonal'"),
    ("[model]\ngeometry = 'sphere'\ndim = 4", r"^model\.dim: got 4, allowed: 0 or 3 for geometry 'sphere'"),
    ("[grid]\nbackend = 'fftw'", r"^grid\.backend: got 'fftw', allowed: 'auto' \| 'ducc0' \| 'shtns'"),
    ("[model]\ngeometry = 'sphere'\n[grid]\nmodes = 3000", r"^grid\.modes: got 3000, allowed: an integer in \[1, 2047\] for geometry 'sphere'"),
    ("[model]\ngeometry = 'sphere'\n[grid]\nmodes = 32\n[initial]\nkind = 'modes'\nmodes = [[3, 4, 0.1]]",
     r"^initial\.modes: got \[3, 4, 0\.1\], allowed: entries \[l, m, amplitude\] .*\|m\| <= l"),
    ("[model]\ngeometry = 'sphere'\n[grid]\nmodes = 32\n[initial]\nkind = 'modes'\nmodes = [[3, 0.1]]",
     r"^initial\.modes: got \[3, 0\.1\]"),
    ("[model]\ngeometry = 'sphere'\n[grid]\nmodes = 32\n[initial]\nkind = 'von_mises'\ncenters = [1.0]\n"
     "concentrations = [2.0]", r"^initial\.centers: got \[1\.0\], allowed: a non-empty list of non-zero vectors"),
    ("[model]\ngeometry = 'zonal'\ndim = 5\n[grid]\nmodes = 32\n[initial]\nkind = 'von_mises'\ncenters = [1.0]\n"
     "concentrations = [2.0]", r"^initial\.centers: got \[1\.0\], allowed: colatitudes 0 \(north pole\) or pi"),
    ("[model]\nmethod = 'particles'", r"^model\.geometry: got 'circle', allowed: 'sphere' with particles\.dim = 3"),
    ("[model]\nmethod = 'particles'\n[particles]\ndim = 2\nn = 0", r"^particles\.n: got 0"),
    ("[model]\nmethod = 'particles'\n[particles]\ndim = 2\nQ = 'bogus'",
     r"^particles\.Q \(read as attention\.Q\): got 'bogus', allowed: 'identity'"),
    ("[model]\nmethod = 'particles'\n[particles]\ndim = 2\n[attention]\nQ = 'bogus'", r"^attention\.Q: got 'bogus'"),
    ("[model]\nmethod = 'particles'\n[particles]\ndim = 2\nV = [[1.0, 0.0], [0.0]]", r"^particles\.V \(read as attention\.V\): got"),
    ("[model]\nmethod = 'particles'\n[particles]\ndim = 2\nheads = 2\nK = ['identity']", r"^particles\.K \(read as attention\.K\): got"),
    ("[model]\nmethod = 'particles'\n[particles]\ndim = 2\nintegrator = 'leapfrog'", r"^particles\.integrator"),
    ("[model]\nmethod = 'particles'\n[particles]\ndim = 2\n[time]\nadaptive = true", r"^time\.adaptive: got True"),
    ("[model]\nmethod = 'particles'\ngeometry = 'zonal'\n[particles]\ndim = 5\n[grid]\nmodes = 8\n[model]",
     r"^config: invalid TOML"),
    ("[model]\nmethod = 'particles'\ngeometry = 'zonal'\ndim = 4\n[particles]\ndim = 5", r"^model\.dim: got 4, allowed: 0 or"),
    ("[particles]\nn = 'many'", r"^particles\.n: got 'many'"),
    # [attention]'s ranges come before the particles checks, which draw the heads (a fuzz find: a traceback)
    ("[model]\nmethod = 'particles'\n[particles]\ndim = 2\n[attention]\nseed = -1", r"^attention\.seed: got -1"),
    ("[model]\nmethod = 'particles'\n[particles]\ndim = 2\n[attention]\nheads = 0", r"^attention\.heads: got 0"),
    ("[model]\nbeeta = 1.0", r"^model\.beeta: unknown key, allowed: geometry, variant, beta"),
    ("[modell]\nbeta = 1.0", r"^modell: unknown section, allowed: model, grid"),
    ("model = 3", r"^model: got 3, allowed: a \[model\] table"),
    ("[grid]\nmodes = 32.0", r"^grid\.modes: got 32\.0 \(float\), allowed: an integer"),
    ("[grid]\nmodes = 0", r"^grid\.modes: got 0, allowed: an integer in \[1, 1048576\] for geometry 'circle'"),
    ("[grid]\nmodes = 10000000000", r"^grid\.modes: got 10000000000"),
    ("[grid]\ndealias = 0.5", r"^grid\.dealias: got 0\.5"),
    ("[model]\nbeta = 100.0\n[grid]\nmodes = 20", r"^grid\.modes: got 20, allowed: >= 28 for beta = 100 \(twice .* k\* = 14"),
    ("[initial]\nkind = 'noise'", r"^initial\.kind: got 'noise'"),
    ("[initial]\namplitude = 1.5", r"^initial\.amplitude: got 1\.5, allowed: a number in \[0, 1\)"),
    ("[initial]\nseed = -3", r"^initial\.seed: got -3"),
    ("[initial]\nkind = 'modes'", r"^initial\.modes: got \[\], allowed: a non-empty list"),
    ("[initial]\nkind = 'modes'\nmodes = [[200, 0.1]]", r"^initial\.modes: got \[200, 0\.1\], allowed: entries"),
    ("[initial]\nkind = 'modes'\nmodes = [[2.5, 0.1]]", r"^initial\.modes: got \[2\.5, 0\.1\]"),
    ("[initial]\nkind = 'modes'\nmodes = [3, 0.1]", r"^initial\.modes: got 3"),
    ("[initial]\nkind = 'von_mises'\ncenters = [1.0]\nconcentrations = [1.0, 2.0]", r"^initial\.concentrations"),
    ("[initial]\nkind = 'von_mises'\ncenters = [1.0]\nconcentrations = [-1.0]", r"^initial\.concentrations"),
    ("[initial]\nkind = 'von_mises'\ncenters = [1.0, 2.0]\nconcentrations = [1.0, 2.0]\nweights = [0.0, 0.0]",
     r"^initial\.weights"),
    ("[initial]\nkind = 'file'", r"^initial\.path: got '', allowed"),
    ("[initial]\nkind = 'file'\npath = 'missing.h5'", r"^initial\.path: got 'missing\.h5'"),
    ("[time]\nt_end = 0.0", r"^time\.t_end: got 0\.0"),
    ("[time]\ndt = 0.0", r"^time\.dt: got 0\.0"),
    ("[time]\nstepper = 'rk45'", r"^time\.stepper: got 'rk45', allowed: 'auto' \| 'sbdf1' \| 'sbdf2' \| 'etdrk4' \| 'etd42' \| 'ark43' \| 'dopri5' \| 'dop853'"),
    ("[time]\nadaptive = 1", r"^time\.adaptive: got 1 \(int\), allowed: true or false"),
    ("[time]\nrtol = 2.0", r"^time\.rtol: got 2\.0"),
    ("[time]\ndt = 0.03", r"^output\.interval: got 0\.1, allowed with fixed steps: a multiple of time\.dt = 0\.03"),
    ("[output]\ninterval = 0.001", r"^output\.interval: got 0\.001, allowed: >= time\.dt"),
    ("[output]\ninterval = -1.0", r"^output\.interval: got -1\.0"),
    ("[output]\npath = ''", r"^output\.path: got ''"),
    ("[model\nbeta = 1", r"^config: invalid TOML"),
    ("[longtime]\nhandoff = 'tokens'\nrtol = 1e-8", r"^longtime\.rtol: got 1e-08, allowed: rtol \+ atol <= "
     r"longtime\.merge_tol = 1e-09 while tokens merge"),
])
def test_bad_config_names_the_key(text, key):
    with pytest.raises(ConfigError) as exc:
        config.loads(text, feasible=True)
    msg = str(exc.value)
    assert "\n" not in msg
    assert re.search(key, msg), msg


def test_overrides():
    cfg = config.loads(VALID, ["grid.modes=64", "initial.kind=modes", "initial.modes=[[3, 1e-3]]",
                               "time.adaptive=true", "output.path=out dir/r.h5"])
    assert cfg.grid.modes == 64 and cfg.initial.kind == "modes" and cfg.initial.modes == ((3, 1e-3),)
    assert cfg.time.adaptive is True and cfg.output.path == "out dir/r.h5"
    for bad in ("grid", "grid.modes", "=3", "grid.=3", "a.b.c=1"):
        with pytest.raises(ConfigError, match="^--set: got"):
            config.loads(VALID, [bad])
    with pytest.raises(ConfigError, match=r"^grid\.modes: got 'lots'"):
        config.loads(VALID, ["grid.modes=lots"])


def test_load_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read|invalid TOML"):
        config.load(tmp_path / "bin.toml")


def test_every_key_is_documented():
    doc = (ROOT / "docs" / "config.md").read_text()
    for name, cls in config.SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f"`{name}.{f.name}`" in doc, f"{name}.{f.name} missing from docs/config.md"


# -- fuzzing: any value for any key gives a Config or one ConfigError line, nothing else ------------
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.one_of(st.integers(-5, 300), st.floats(-1e3, 1e3)), max_size=4),
    st.lists(st.lists(st.one_of(st.integers(-5, 300), st.floats(-10, 10)), max_size=3), max_size=3),
)
KEYS = [(s, f.name) for s, cls in config.SECTIONS.items() for f in dataclasses.fields(cls)] + [("model", "bogus")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=4), st.booleans())
def test_fuzz_config_values(changes, particles):
    import tomllib

    raw = tomllib.loads(VALID if not particles else VALID_PARTICLES)
    for (section, key), value in changes:
        if value is None:
            raw.setdefault(section, {}).pop(key, None)
        else:
            raw.setdefault(section, {})[key] = value
    try:
        cfg = config.from_dict(raw, feasible=True)
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg and re.match(r"^[a-z_]+(\.[A-Za-z_]+(\[\d+\])?)?: ", msg), msg
        return
    # a config that validates is really usable
    assert math.isfinite(cfg.model.beta) and cfg.grid.modes >= 1 and cfg.time.dt > 0
    if cfg.model.method == "particles":
        assert cfg.particles.n >= 1 and cfg.particles.dim >= 2


def test_backend_errors_name_the_key(monkeypatch):
    """The torch backend's config errors, checked without torch (test_torch.py is skipped where it is missing)."""
    import sys

    base = {"model": {"method": "particles", "geometry": "sphere"}, "particles": {"n": 10}}
    with pytest.raises(ConfigError, match=r"^particles\.backend: got 'jax', allowed: 'numpy' \| 'torch'"):
        config.from_dict(feasible=True, raw={**base, "particles": {"n": 10, "backend": "jax"}})
    with pytest.raises(ConfigError, match=r"^particles\.device: got 'cuda', allowed: 'cpu' with particles\.backend"):
        config.from_dict(feasible=True, raw={**base, "particles": {"n": 10, "device": "cuda"}})
    with pytest.raises(ConfigError, match=r"^particles\.backend: got 'torch', allowed: 'numpy' with particles\.field"):
        config.from_dict(feasible=True, raw={**base, "particles": {"n": 10, "backend": "torch", "field": "funk_hecke"}})
    monkeypatch.setitem(sys.modules, "torch", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"^particles\.backend: got 'torch', but torch is not installed"):
        config.from_dict(feasible=True, raw={**base, "particles": {"n": 10, "backend": "torch"}})
