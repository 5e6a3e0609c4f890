"""Every test runs in its own tmp_path, and a test that leaves a file anywhere in the repository fails."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# The fuzzers run the same examples on every machine and every run (a failure is reproducible and then pinned
# with @example); `pytest --hypothesis-profile explore` draws new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
#: Not ours to police: environments, caches, and what an editable install or a build writes.
SKIP = {".venv", "venv", ".git", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist", ".ruff_cache"}


def _tree() -> set[str]:
    found = set()
    for top, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP and not d.endswith(".egg-info")]
        found.update(os.path.relpath(os.path.join(top, n), ROOT) for n in names)
    return found


@pytest.fixture(autouse=True)
def confined(tmp_path, monkeypatch):
    """Run in tmp_path (relative outputs land there); fail if the repository gained a file."""
    before = _tree()
    monkeypatch.chdir(tmp_path)
    yield
    new = sorted(_tree() - before)
    assert not new, f"the test wrote into the repository: {', '.join(new[:5])}"
