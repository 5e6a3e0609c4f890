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


SOURCES = ("{include} generated/", "../benchmarks/results.md", "<measured-", "<examples-measured>", "measured-",
           "regenerate.py", "Checked by tests/", "A record of", "A design record")


def test_every_measured_paragraph_says_where_its_numbers_come_from():
    """A paragraph of docs/*.md that quotes a measurement ("Measured") takes its numbers from a file the scripts
    regenerate (an include of docs/generated or benchmarks/results.md, a reference to the catalogue's or the
    examples' measured section), names the test that checks it, or says it is a record of a past measurement."""
    bad = []
    for page in sorted(DOCS.glob("*.md")):
        paragraphs = re.split(r"\n\s*\n", page.read_text())
        for i, para in enumerate(paragraphs):
            if "Measured" not in para and "measured here" not in para.lower():
                continue
            around = "\n".join(paragraphs[i:i + 3])  # the paragraph and the include or table right after it
            if not any(s in around for s in SOURCES):
                bad.append(f"{page.name}: {para[:90]!r}")
    assert not bad, "\n".join(bad)


def test_the_regenerate_script_knows_every_generated_file():
    """Every file of docs/generated/ is written by a section of docs/scripts/regenerate.py (directly or through
    the script it runs), so one command regenerates them all."""
    text = (DOCS / "scripts" / "regenerate.py").read_text() + (DOCS / "scripts" / "longtime_numbers.py").read_text() \
        + (DOCS / "scripts" / "validation_numbers.py").read_text()
    for path in sorted((DOCS / "generated").glob("*.md")):
        assert path.stem in text or path.name in text, path.name


def _examples() -> dict[str, dict]:
    """The rows of docs/generated/examples.md: name -> {wall, text}."""
    rows = {}
    for line in (DOCS / "generated" / "examples.md").read_text().splitlines():
        m = re.match(r"\| `(\w+)` \| ([\d.]+) s \| .*? \| .*? \| (.*) \|$", line)
        if m:
            rows[m[1]] = {"wall": float(m[2]), "text": m[3]}
    return rows


def test_the_readme_quotes_what_the_examples_measure():
    """The README's quick start quotes the generated examples table (docs/scripts/regenerate.py examples): its
    wall times within a factor 2 (they are "~" numbers), its counts and times as measured."""
    rows = _examples()
    readme = (DOCS.parent / "README.md").read_text()
    quoted = 0
    for name, wall in re.findall(r"examples/(\w+)\.toml -o \S+ +#[^\n]*?\(~(\d+(?:\.\d+)?) s", readme):
        if name in rows and "--set" not in name:
            assert float(wall) / 2 <= rows[name]["wall"] <= 2 * float(wall), (name, wall, rows[name]["wall"])
            quoted += 1
    assert quoted >= 6
    assert "k* = 3" in rows["linear"]["text"] and "k* = 3" in readme
    m = re.search(r"(\d+) modes measured \((\d+) growing\), worst relative error ([\d.e-]+)", rows["linear"]["text"])
    assert (int(m[1]), int(m[2])) == (32, 5) and float(m[3]) <= 5e-6
    assert "all 32 modes, the 5 growing and the 27 decaying" in readme and "5e-6 or better" in readme
    t_form = float(re.search(r"clusters form near t = ([\d.]+)", rows["sphere"]["text"])[1])
    assert "8 clusters by the cluster diagnostics" in rows["sphere"]["text"] and "8 clusters form near t = 50" in readme
    assert abs(t_form - 50) <= 5
    peaks = int(re.search(r"(\d+) density peaks", rows["clustering"]["text"])[1])
    assert "~7 clusters form near t = 19" in readme and peaks == 7
