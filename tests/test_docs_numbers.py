"""The docs' measured numbers come from scripts (docs/scripts/): the validation page points only at cases the
catalogue has, and the script refuses a report it cannot quote in full."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from meanfield.validate import CASES

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(path: Path, names, quick: bool = False) -> Path:
    path.mkdir()
    (path / "report.md").write_text("# meanfield validation" + (" (quick)" if quick else "") + "\n")
    results = {n: {"claim": f"claim of {n}", "measured": 1.5, "predicted": 1.0, "tolerance": "<= 1",
                   "conditions": {"a condition": True}, "body": f"body of {n}: measured 1.5", "verdict": "pass",
                   "seconds": 2.0} for n in names}
    (path / "results.json").write_text(json.dumps(results))
    return path


def test_validation_page_points_only_at_cases_of_the_catalogue():
    text = (DOCS / "validation.md").read_text()
    targets = set(re.findall(r"<measured-([a-z0-9-]+)>", text))
    assert targets and targets <= set(CASES), sorted(targets - set(CASES))
    # no derivation quotes a hand-written measurement: each points at the report's section (the one exception,
    # the literature note on KDE modes, is no case and quotes the numbers of the case it replaced)
    hand = [para[:60] for para in text.split("\n\n") if "Measured (" in para and not para.startswith("**Modes of")]
    assert not hand, hand


def test_validation_numbers_writes_every_case_and_refuses_partial_reports(tmp_path):
    mod = _script("validation_numbers")
    out = tmp_path / "gen"
    out.mkdir()
    mod.main([str(_report(tmp_path / "full", list(CASES))), "-o", str(out)])
    measured = (out / "validation_measured.md").read_text()
    for name in CASES:
        assert f"(measured-{name})=" in measured and f"body of {name}" in measured
    table = (out / "validation_results.md").read_text()
    assert f"{len(CASES)} cases: {len(CASES)} pass" in table
    with pytest.raises(SystemExit, match="quick"):
        mod.main([str(_report(tmp_path / "quick", list(CASES), quick=True)), "-o", str(out)])
    with pytest.raises(SystemExit, match="lacks the cases"):
        mod.main([str(_report(tmp_path / "part", list(CASES)[1:])), "-o", str(out)])
