"""The layers (docs/architecture.md): imports only point down, io rebuilds no physics, no package has a cycle
between its modules, and the facade's names resolve."""

import subprocess
import sys
from pathlib import Path

import meanfield

ROOT = Path(__file__).resolve().parents[1]


def test_imports_follow_the_layers_contract():
    """lint-imports (import-linter, a dev dependency) with the contracts of pyproject.toml; delayed imports count."""
    exe = Path(sys.executable).parent / "lint-imports"  # this environment's, even when its bin is not on PATH
    r = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       process_group=0)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]
    assert "3 kept, 0 broken" in r.stdout


def test_the_facade_and_the_old_module_paths_resolve():
    for name in meanfield.__all__:
        assert getattr(meanfield, name) is not None, name
    import warnings

    sys.modules.pop("meanfield.theory", None)  # an earlier test may have imported it already
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from meanfield.theory import growth_rates  # a path of meanfield 0.1.0, now meanfield.physics.theory
    assert growth_rates.__module__ == "meanfield.physics.theory"
    assert any("meanfield.physics.theory" in str(w.message) for w in caught)
