"""The catalogue's harness (validate/harness.py): a case returns measured, predicted, a tolerance and named
conditions; the harness judges; the report states exactly what was judged; the validation scripts are entry
points over cases."""

import json
import math
import subprocess
import sys

import pytest

from meanfield import validate
from meanfield.validate import (AtLeast, AtMost, Between, Conditions, Exactly, Outcome, Sigmas, Within, judge)


@pytest.mark.parametrize("tolerance,measured,predicted,ok", [
    (AtMost(1e-4), 9.9e-5, 0.0, True), (AtMost(1e-4), 1.1e-4, 0.0, False), (AtMost(1e-4), math.nan, 0.0, False),
    (AtLeast(0.9), 0.95, 1.0, True), (AtLeast(0.9), 0.85, 1.0, False),
    (Within(rel=0.01), 1.009, 1.0, True), (Within(rel=0.01), 0.989, 1.0, False), (Within(abs=0.3), 1.75, 2.0, True),
    (Within(abs=0.3), 2.31, 2.0, False), (Sigmas(3, 0.1), 1.29, 1.0, True), (Sigmas(3, 0.1), 1.31, 1.0, False),
    (Between(-0.6, -0.4), -0.5, -0.5, True), (Between(-0.6, -0.4), -0.39, -0.5, False),
    (Exactly(), 3.0, 3.0, True), (Exactly(), 2.0, 3.0, False), (Conditions(), "U-shaped", ">= 1", True),
])
def test_tolerances_judge_the_number(tolerance, measured, predicted, ok):
    assert judge(Outcome(measured, predicted, tolerance)) == (validate.PASS if ok else validate.FAIL)


def test_a_failed_condition_fails_the_case_and_the_report_names_it(tmp_path):
    @validate.case("half-true", "a claim with two parts", "a test")
    def _half(ctx):
        return Outcome(1e-6, 0.0, AtMost(1e-4), {"the first part": True, "the second part": False})

    try:
        outcomes = validate.run(["half-true"], out=tmp_path / "r", progress=lambda s: None)
    finally:
        del validate.CASES["half-true"]
    o = outcomes["half-true"]
    assert o.verdict == validate.FAIL and o.failed_conditions == ["the second part"]
    report = (tmp_path / "r" / "report.md").read_text()
    assert "<= 0.0001; the first part; the second part" in report and "the second part: **no**" in report
    data = json.loads((tmp_path / "r" / "results.json").read_text())["half-true"]
    assert data["tolerance"] == "<= 0.0001" and data["conditions"] == {"the first part": True, "the second part": False}


def test_a_tolerance_given_as_text_is_an_error_not_a_pass(tmp_path):
    @validate.case("text-tolerance", "a case written the old way", "a test")
    def _old(ctx):
        return Outcome(1.0, 1.0, "exact")

    try:
        outcomes = validate.run(["text-tolerance"], out=tmp_path / "r", progress=lambda s: None)
    finally:
        del validate.CASES["text-tolerance"]
    assert outcomes["text-tolerance"].verdict == validate.ERROR and "Tolerance" in outcomes["text-tolerance"].body


def test_a_runs_warning_is_reported_with_its_case(tmp_path):
    """A run that is resolved only approximately warns; the harness names the case it belongs to (on the progress
    line and in the report) instead of leaving it on a worker's stderr."""
    @validate.case("under-resolved", "a case whose run outgrows its grid", "a test")
    def _coarse(ctx):  # beta = 9, 8 modes, to t = 6: clusters far sharper than the grid
        h = ctx.run(dict(model=dict(beta=9.0), grid=dict(modes=8), initial=dict(amplitude=1e-3),
                         time=dict(t_end=6.0, dt=0.01), output=dict(interval=1.0)), "run")
        return Outcome(float(h["time"][-1]), 6.0, Within(abs=1e-12))

    lines = []
    try:
        outcomes = validate.run(["under-resolved"], out=tmp_path / "r", progress=lines.append)
    finally:
        del validate.CASES["under-resolved"]
    o = outcomes["under-resolved"]
    assert o.verdict == validate.PASS and any("spectral tail" in w for w in o.warnings), o.warnings
    assert any(line.strip().startswith("under-resolved: warning: RuntimeWarning: t = ") for line in lines), lines
    report = (tmp_path / "r" / "report.md").read_text()
    assert "**Warnings of its runs.**" in report and "spectral tail" in report


def test_every_case_returns_a_judged_tolerance_object():
    """No case states its tolerance as text beside a verdict of its own: the source has no verdict() left."""
    import inspect

    from meanfield.validate import cases

    for module in (getattr(cases, name) for name in dir(cases) if not name.startswith("_")):
        if inspect.ismodule(module):
            assert "verdict(" not in inspect.getsource(module), module.__name__


def test_measure_runs_a_case_in_memory(tmp_path):
    out = validate.measure("theory-quadrature", quick=True)
    assert out.verdict == validate.PASS and out.measured <= 1e-10 and not list(tmp_path.iterdir())


def test_a_validation_script_runs_its_cases_and_prints_their_numbers(tmp_path):
    r = subprocess.run([sys.executable, "-m", "meanfield.validation.causal", "-o", str(tmp_path / "v")],
                       capture_output=True, text=True, timeout=900, process_group=0)
    assert r.returncode == 0, r.stderr
    numbers = json.loads(r.stdout[r.stdout.index("{"):])
    assert set(numbers) == {"causal-first-token-leads", "causal-density-lead"}
    assert all(v["verdict"] == "pass" for v in numbers.values())
    assert numbers["causal-first-token-leads"]["token0_displacement"] == 0.0
    for name in ("report.md", "results.json", "causal.json", "causal-first-token-leads.png"):
        assert (tmp_path / "v" / name).is_file(), name
