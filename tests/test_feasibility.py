"""config imports no solver: the range rules decide from the config alone, the solvers register their own
checks with it, and the machine's state (memory) is checked where the run allocates."""

import subprocess
import sys

import pytest

import meanfield.simulation  # noqa: F401  (the solvers register their checks)
from meanfield import config
from meanfield.errors import ConfigError


def test_every_solver_registered_its_checks():
    names = config.registered()
    for module in ("domains.zonal", "physics.checks", "stepping.registry", "tokens.checks", "io.reader"):
        assert any(f"meanfield.{module}." in n for n in names), (module, names)


def test_parsing_alone_runs_only_the_range_rules():
    cfg = config.from_dict({"time": {"stepper": "rk45"}})  # a name only the stepping layer knows
    assert cfg.time.stepper == "rk45"
    with pytest.raises(ConfigError, match=r"^time\.stepper: got 'rk45', allowed: 'auto' \| 'sbdf1'"):
        config.check(cfg)
    with pytest.raises(ConfigError, match=r"^time\.stepper"):
        meanfield.load_config({"time": {"stepper": "rk45"}})


def test_importing_config_imports_no_solver():
    code = ("import sys, meanfield.config as c; c.loads('[model]\\nbeta = 4.0'); "
            "print(sorted(m for m in sys.modules if m.startswith('meanfield.')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, process_group=0)
    assert r.returncode == 0, r.stderr
    assert eval(r.stdout) == ["meanfield.config", "meanfield.config.feasibility", "meanfield.config.reading",
                              "meanfield.config.rules", "meanfield.config.schema", "meanfield.errors"]


def test_no_registered_check_is_an_error_not_a_silent_pass(monkeypatch):
    from meanfield.config import feasibility

    monkeypatch.setattr(feasibility, "_CHECKS", [])
    with pytest.raises(RuntimeError, match="no solver has registered"):
        config.check(config.Config())


def test_a_valid_config_stays_valid_when_memory_is_short(monkeypatch):
    """The same config parses on a busy and an idle machine; the run refuses it where it allocates."""
    from meanfield.simulation import Simulation, memory

    monkeypatch.setattr(memory, "available_memory", lambda: 1e4)  # bytes: less than the run needs
    cfg = meanfield.load_config({"grid": {"modes": 64}})
    assert config.loads(cfg.to_toml()) == cfg
    with pytest.raises(ConfigError, match=r"^grid\.modes: got 64, which needs about"):
        Simulation(cfg)
