"""`meanfield validate`: the theorem catalogue.

A *case* is one quantitative claim of the clustering literature: its source (paper, equation or
theorem), the runs it needs (configs built in code), a measurement computed from the runs' HDF5
histories through the public API (``meanfield.run``, ``io.read_history``), a prediction (theory.py or a
formula in the case), a tolerance, a verdict and a figure.  Cases live in ``meanfield.cases``; each
registers itself with ``@case``.  ``run`` executes the chosen cases in worker processes (one BLAS thread
each) and writes DIR/report.md (a summary table, then one section per case with its figure),
DIR/results.json and DIR/<case>.png.  A failing case is a finding: the report says so plainly.
A case that needs a capability the package lacks says which, and is reported as not run.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

#: verdicts; "fail" and "error" make `meanfield validate` exit 1
PASS, FAIL, NOT_RUN, ERROR = "pass", "fail", "not run", "error"


@dataclass
class Outcome:
    """What a case found: the measured and predicted numbers (or short texts), the tolerance, the
    verdict, a markdown body (parameters, tables, derivation pointers), the numbers for results.json."""

    measured: float | str
    predicted: float | str
    tolerance: str
    verdict: str
    body: str = ""
    numbers: dict = field(default_factory=dict)
    figure: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Case:
    """One claim: ``fn(ctx) -> Outcome``; ``quick``: part of ``--quick``."""

    name: str
    claim: str
    source: str
    fn: Callable
    quick: bool = False


CASES: dict[str, Case] = {}


def case(name: str, claim: str, source: str, quick: bool = False):
    """Register ``fn(ctx) -> Outcome`` as the case ``name`` (decorator)."""
    def register(fn):
        if name in CASES:
            raise ValueError(f"case {name!r} registered twice")
        CASES[name] = Case(name, claim, source, fn, quick)
        return fn
    return register


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return PASS if ok else FAIL


class Context:
    """What a case gets: ``quick``, its working directory (histories), ``run`` and ``figure``."""

    def __init__(self, name: str, quick: bool, out: Path):
        self.name, self.quick, self.out = name, quick, Path(out)
        self.work = self.out / "runs" / name
        self.work.mkdir(parents=True, exist_ok=True)
        self._figure = None

    def run(self, sections: dict, label: str) -> dict:
        """Run the config ``sections`` through ``meanfield.run`` into runs/<case>/<label>.h5 and return
        the history (``io.read_history``): time, rho_hat, mode, diagnostics, attrs."""
        from .. import io
        from ..simulation.runner import run

        path = self.work / f"{label}.h5"
        run(sections, path, overwrite=True, progress=False)
        return io.read_history(path)

    def figure(self, ncols: int = 1, nrows: int = 1):
        """A matplotlib figure saved as <case>.png when the case returns."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self._figure = plt.figure(figsize=(5 * ncols, 4 * nrows), layout="constrained")
        return self._figure

    def save_figure(self) -> str | None:
        if self._figure is None:
            return None
        import matplotlib.pyplot as plt

        name = f"{self.name}.png"
        self._figure.savefig(self.out / name, dpi=110)
        plt.close(self._figure)
        return name


def _execute(name: str, quick: bool, out: str) -> Outcome:
    """Run one case in this (worker) process, BLAS on one thread; an exception is an ERROR outcome."""
    from threadpoolctl import threadpool_limits

    from . import cases  # noqa: F401  (registers every case)

    t0 = time.process_time()
    ctx = Context(name, quick, Path(out))
    try:
        with threadpool_limits(1):
            outcome = CASES[name].fn(ctx)
    except Exception as exc:  # a crash is a finding too: reported, never hidden
        outcome = Outcome("-", "-", "-", ERROR, body="```\n" + "".join(traceback.format_exception_only(exc)).strip()
                          + "\n```\n\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:]))
    outcome.figure = ctx.save_figure()
    outcome.seconds = time.process_time() - t0
    return outcome


def selected(names=None, quick: bool = False) -> list[Case]:
    """The cases to run: ``names`` (ValueError naming an unknown one), else every (quick) case."""
    from . import cases  # noqa: F401

    if names:
        unknown = [n for n in names if n not in CASES]
        if unknown:
            raise ValueError(f"--case: got {unknown[0]!r}, allowed: " + " | ".join(CASES))
        return [CASES[n] for n in names]
    return [c for c in CASES.values() if c.quick or not quick]


def run(names=None, quick: bool = False, jobs: int = 1, out: str | Path = "validation-report",
        progress=print, scheduler: str | None = None) -> dict[str, Outcome]:
    """Run the chosen cases (``jobs`` worker processes, or the workers of the Dask scheduler at ``scheduler``,
    which must see ``out``: a shared filesystem), write the report into ``out``, return the outcomes."""
    out = Path(out)
    chosen = selected(names, quick)
    out.mkdir(parents=True, exist_ok=True)
    outcomes: dict[str, Outcome] = {}
    jobs = max(1, min(int(jobs), len(chosen) or 1))

    def report(c, o):
        outcomes[c.name] = o
        progress(f"{o.verdict.upper():<8} {c.name}: measured {_fmt(o.measured)}, predicted {_fmt(o.predicted)} "
                 f"({o.tolerance}; {o.seconds:.0f} s)")

    if scheduler:  # a Dask cluster (meanfield sweep's): one task per case
        from dask.distributed import Client

        with Client(scheduler, timeout="30s") as client:
            futures = {c.name: client.submit(_execute, c.name, quick, str(out.resolve()), pure=False,
                                             key=f"meanfield-validate-{c.name}") for c in chosen}
            for c in chosen:
                try:
                    o = futures[c.name].result()
                except Exception as exc:  # noqa: BLE001 - the worker died, or the task could not run: a finding
                    o = Outcome("-", "-", "-", ERROR, body=f"the Dask task running this case failed: {exc!r}")
                report(c, o)
    elif jobs == 1:  # in this process
        for c in chosen:
            report(c, _execute(c.name, quick, str(out)))
    else:
        with ProcessPoolExecutor(jobs) as pool:
            futures = {c.name: pool.submit(_execute, c.name, quick, str(out)) for c in chosen}
            for c in chosen:
                try:
                    o = futures[c.name].result()
                except Exception as exc:  # the worker itself died (killed, out of memory): a finding too
                    o = Outcome("-", "-", "-", ERROR, body=f"the worker process running this case died: {exc!r}")
                report(c, o)
    write_report(out, chosen, outcomes, quick)
    return outcomes


def failed(outcomes: dict[str, Outcome]) -> list[str]:
    """The cases whose verdict makes the command fail (FAIL or ERROR)."""
    return [n for n, o in outcomes.items() if o.verdict in (FAIL, ERROR)]


def _fmt(x) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.4g}"
    return str(x)


def _cell(text) -> str:
    """Text for a markdown table cell: a | inside would end the cell."""
    return _fmt(text).replace("|", "\\|").replace("\n", " ")


def write_report(out: Path, chosen: list[Case], outcomes: dict[str, Outcome], quick: bool) -> None:
    """DIR/report.md (summary table, then one section per case) and DIR/results.json."""
    counts = {v: sum(o.verdict == v for o in outcomes.values()) for v in (PASS, FAIL, NOT_RUN, ERROR)}
    lines = ["# meanfield validation" + (" (quick)" if quick else ""), "",
             ", ".join(f"{n} {v}" for v, n in counts.items()) + f" — {len(outcomes)} cases", "",
             "| case | claim | measured | predicted | tolerance | verdict |", "|---|---|---|---|---|---|"]
    for c in chosen:
        o = outcomes[c.name]
        lines.append(f"| [{c.name}](#{c.name}) | {_cell(c.claim)} | {_cell(o.measured)} | {_cell(o.predicted)} | "
                     f"{_cell(o.tolerance)} | {'**' + o.verdict.upper() + '**' if o.verdict != PASS else PASS} |")
    for c in chosen:
        o = outcomes[c.name]
        lines += ["", f"## {c.name}", "", f"**Claim.** {c.claim}", "", f"**Source.** {c.source}", "",
                  f"**Measured** {_fmt(o.measured)}, **predicted** {_fmt(o.predicted)}, tolerance {o.tolerance}: "
                  f"**{o.verdict.upper()}** ({o.seconds:.0f} s CPU).", ""]
        if o.body:
            lines += [o.body.strip(), ""]
        if o.figure:
            lines += [f"![{c.name}]({o.figure})", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    data = {c.name: {"claim": c.claim, "source": c.source, **asdict(outcomes[c.name])} for c in chosen}
    (out / "results.json").write_text(json.dumps(data, indent=2, default=_json))


def _json(x):
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return str(x)

