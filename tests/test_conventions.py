"""What users of scientific Python packages expect: show_versions, py.typed, a JSON schema of the config, user
trackers on file runs, the version from git."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

import meanfield
from meanfield.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "meanfield" / "config" / "meanfield.schema.json").read_text())


def test_show_versions_reports_what_a_bug_report_needs(capsys):
    meanfield.show_versions()
    out = capsys.readouterr().out
    for section in ("[system]", "[packages]", "[transforms]", "[threads]", "[blas]", "[gpu]"):
        assert section in out
    import numpy
    import scipy

    assert f"numpy                {numpy.__version__}" in out and scipy.__version__ in out
    assert "HDF5" in out and "ducc0" in out and "sphere libraries installed" in out
    assert main(["versions"]) == 0 and "[packages]" in capsys.readouterr().out


def test_the_package_is_typed_and_versioned_from_git():
    assert (Path(meanfield.__file__).parent / "py.typed").is_file()
    tags = subprocess.run(["git", "-C", str(ROOT), "describe", "--tags", "--abbrev=0"], capture_output=True, text=True)
    if tags.returncode == 0:  # a clone with its tags: the version is the last tag's, or a dev version after it
        base = tags.stdout.strip().lstrip("v")
        v = meanfield.__version__
        assert v == base or (".dev" in v and v.split(".dev")[0] > base), (v, base)
    assert (ROOT / "CHANGELOG.md").is_file()


def test_the_shipped_schema_is_the_one_the_docs_and_dataclasses_give():
    got = subprocess.run([sys.executable, str(ROOT / "docs" / "scripts" / "config_schema.py"), "--check"],
                         capture_output=True, text=True)
    assert got.returncode == 0, got.stderr


def test_every_example_config_validates_and_bad_ones_do_not():
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for path in sorted((ROOT / "meanfield" / "examples").glob("*.toml")):
        assert not list(validator.iter_errors(tomllib.loads(path.read_text()))), path.name
    bad = [({"model": {"beta": "nine"}}, "is not of type 'number'"),
           ({"model": {"geometry": "torus"}}, "is not one of"),
           ({"model": {"betta": 9.0}}, "Additional properties"),
           ({"modle": {}}, "Additional properties"),
           ({"time": {"adaptive": 1}}, "is not of type 'boolean'")]
    for cfg, message in bad:
        errors = [e.message for e in validator.iter_errors(cfg)]
        assert errors and message in errors[0], (cfg, errors)
        with pytest.raises(meanfield.errors.ConfigError):  # meanfield refuses them too
            meanfield.load_config(cfg)


def test_schema_command_prints_and_writes_without_clobbering(tmp_path, capsys):
    assert main(["schema"]) == 0 and json.loads(capsys.readouterr().out) == SCHEMA
    out = tmp_path / "s.json"
    assert main(["schema", "-o", str(out)]) == 0 and json.loads(out.read_text()) == SCHEMA
    out.write_text("mine")
    assert main(["schema", "-o", str(out)]) == 2 and out.read_text() == "mine"
    assert "exists" in capsys.readouterr().err


TRACKER = """
class Count:
    def __init__(self):
        self.t = []
    def snapshot(self, sim):
        self.t.append(sim.t)
    def finish(self, sim):
        print(f"COUNT {len(self.t)} {self.t[-1]:g}")

class Boom:
    def snapshot(self, sim):
        if sim.t > 0.25:
            raise ValueError("my tracker failed")
"""


def test_user_trackers_on_a_file_run(tmp_path, capfd):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[grid]\nmodes = 16\n[time]\nt_end = 0.5\ndt = 0.05\n[output]\ninterval = 0.1\n")
    (tmp_path / "tr.py").write_text(TRACKER)
    out = tmp_path / "o.h5"
    assert main(["run", str(cfg), "-o", str(out), "--quiet", "--tracker", f"{tmp_path / 'tr.py'}:Count"]) == 0
    assert "COUNT 6 0.5" in capfd.readouterr().out  # every snapshot, t = 0 .. 0.5
    for spec, message in (("nope", "allowed: MODULE:NAME or FILE.py:NAME"),
                          (f"{tmp_path / 'tr.py'}:Nope", "could not be loaded (AttributeError"),
                          ("math:pi", "has none of start / step / snapshot / finish"),
                          (f"{tmp_path / 'missing.py'}:Count", "is not a file")):
        assert main(["run", str(cfg), "-o", str(tmp_path / "x.h5"), "--quiet", "--tracker", spec]) == 2
        err = capfd.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x.h5").exists()
    assert main(["run", str(cfg), "-o", str(out), "--overwrite", "--quiet", "--tracker",
                 f"{tmp_path / 'tr.py'}:Boom"]) == 1
    err = capfd.readouterr().err
    assert "--tracker" in err and "snapshot raised ValueError: my tracker failed at t = 0.3" in err
    assert "internal error" not in err
    assert main(["run", str(cfg), "--resume", str(out), "--quiet"]) == 0  # the checkpoint continues the run
    assert meanfield.check(out).ok
