"""The harness of the theorem catalogue (``meanfield validate``).

A *case* is one quantitative claim of the clustering literature: its source (paper, equation or
theorem), the runs it needs (configs built in code), a measurement computed from the runs' histories
through the public API (``meanfield.run``, ``io.read_history``), a prediction (``physics.theory`` or a
formula in the case), a tolerance and a figure.  A case returns an ``Outcome`` (measured, predicted, the
``Tolerance`` object that relates them, and any further named conditions of the claim); the harness
judges it (``judge``), so the tolerance's text and the logic that applies it are one object and cannot
drift apart.  Cases live in ``validate/cases``; each registers itself with ``@case``.  ``run`` executes the
chosen cases in worker processes (one BLAS thread each) and writes DIR/report.md (a summary table, then
one section per case with its figure), DIR/results.json and DIR/<case>.png.  A failing case is a finding:
the report says so plainly.
"""

from __future__ import annotations

import json
import math
import time
import traceback
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ConfigError

#: verdicts; "fail" and "error" make ``meanfield validate`` exit 1
PASS, FAIL, NOT_RUN, ERROR = "pass", "fail", "not run", "error"


class Tolerance:
    """How the measured number must relate to the predicted one: ``holds(measured, predicted)``, and its text
    (``str``) for the report.  A NaN never holds."""

    def holds(self, measured, predicted) -> bool:  # pragma: no cover - interface
        """Whether the measurement meets the prediction."""
        raise NotImplementedError


class AtMost(Tolerance):
    """measured <= limit (an error, a deviation, a distance)."""

    def __init__(self, limit: float):
        self.limit = float(limit)

    def holds(self, measured, predicted) -> bool:
        return bool(measured <= self.limit)

    def __str__(self) -> str:
        return f"<= {self.limit:g}"


class AtLeast(Tolerance):
    """measured >= limit."""

    def __init__(self, limit: float):
        self.limit = float(limit)

    def holds(self, measured, predicted) -> bool:
        return bool(measured >= self.limit)

    def __str__(self) -> str:
        return f">= {self.limit:g}"


class Within(Tolerance):
    """|measured - predicted| <= abs + rel |predicted|."""

    def __init__(self, rel: float = 0.0, abs: float = 0.0):  # noqa: A002 - the natural name
        self.rel, self.abs = float(rel), float(abs)

    def holds(self, measured, predicted) -> bool:
        return bool(abs(measured - predicted) <= self.abs + self.rel * abs(predicted))

    def __str__(self) -> str:
        parts = ([f"{100 * self.rel:g} %" if self.rel >= 1e-3 else f"{self.rel:g} relative"] if self.rel else []) + \
                ([f"{self.abs:g}"] if self.abs else [])
        return "within " + " + ".join(parts) + " of the prediction"


class Sigmas(Tolerance):
    """|measured - predicted| <= k standard errors (a Monte Carlo estimate against its expectation)."""

    def __init__(self, k: float, stderr: float):
        self.k, self.stderr = float(k), float(stderr)

    def holds(self, measured, predicted) -> bool:
        return bool(abs(measured - predicted) <= self.k * self.stderr)

    def __str__(self) -> str:
        return f"within {self.k:g} standard errors ({self.k * self.stderr:.3g})"


class Between(Tolerance):
    """lo <= measured <= hi."""

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = float(lo), float(hi)

    def holds(self, measured, predicted) -> bool:
        return bool(self.lo <= measured <= self.hi)

    def __str__(self) -> str:
        return f"in [{self.lo:g}, {self.hi:g}]"


class Exactly(Tolerance):
    """measured == predicted (counts, modes)."""

    def holds(self, measured, predicted) -> bool:
        return bool(measured == predicted)

    def __str__(self) -> str:
        return "equal"


class Conditions(Tolerance):
    """No numeric test: the claim is its named conditions (measured and predicted are shown, not compared)."""

    def holds(self, measured, predicted) -> bool:
        return True

    def __str__(self) -> str:
        return "the conditions below"


@dataclass
class Outcome:
    """What a case found: the measured and predicted numbers (or short texts), the tolerance relating them, the
    claim's further named ``conditions`` (name -> whether it holds), a markdown body (parameters, tables,
    derivation pointers), the numbers for results.json.  The verdict is the harness's (``judge``)."""

    measured: float | str
    predicted: float | str
    tolerance: Tolerance | str
    conditions: dict = field(default_factory=dict)
    body: str = ""
    numbers: dict = field(default_factory=dict)
    figure: str | None = None
    seconds: float = 0.0
    verdict: str = ""
    warnings: list = field(default_factory=list)

    @property
    def failed_conditions(self) -> list[str]:
        """The names of the conditions that do not hold."""
        return [name for name, ok in self.conditions.items() if not ok]

    def criterion(self) -> str:
        """The tolerance and the conditions, as the report states them."""
        return "; ".join([str(self.tolerance)] + list(self.conditions))


def judge(outcome: Outcome) -> str:
    """PASS if the tolerance holds for (measured, predicted) and every condition holds, else FAIL."""
    tol = outcome.tolerance
    if not isinstance(tol, Tolerance):
        raise TypeError(f"a case's tolerance must be a Tolerance, got {tol!r}")
    try:
        ok = tol.holds(outcome.measured, outcome.predicted)
    except TypeError:  # a text where a number was expected: the case is broken
        ok = False
    return PASS if ok and not outcome.failed_conditions else FAIL


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


class Context:
    """What a case gets: ``quick``, ``run`` (a config in, its History out), ``figure``.  A case run by the
    harness writes its histories to runs/<case>/<label>.h5 under ``out``; ``Context.in_memory()`` runs them in
    memory (``meanfield.solve``: the same History, no file) and draws nothing to disk (tests, scripts)."""

    def __init__(self, name: str, quick: bool, out: Path | None):
        self.name, self.quick = name, quick
        self.out = None if out is None else Path(out)
        self.work = None
        if self.out is not None:
            self.work = self.out / "runs" / name
            self.work.mkdir(parents=True, exist_ok=True)
        self._figure = None

    @classmethod
    def in_memory(cls, name: str = "memory", quick: bool = False) -> "Context":
        """A context whose runs stay in memory and whose figure is not saved."""
        return cls(name, quick, None)

    def run(self, sections: dict, label: str):
        """Run the config ``sections`` and return its History (``io.History``: time, rho_hat, mode,
        diagnostics, attrs, tokens, clusters, merges): through ``meanfield.run`` into runs/<case>/<label>.h5,
        read back by the verified reader, or in memory (``meanfield.solve``)."""
        from .. import io
        from ..simulation import run, solve

        if self.work is None:
            return solve(sections)
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
        """Save the case's figure (if it drew one and has a directory); its file name."""
        if self._figure is None:
            return None
        import matplotlib.pyplot as plt

        from ..io import ownership

        name = None
        try:
            if self.out is not None:
                name = f"{self.name}.png"  # the report directory's lock is held by the command
                if self.quick:  # a quick case runs fewer parameters: its figure says so, not only the report
                    self._figure.text(0.99, -0.01, "quick mode: fewer runs than the full case", ha="right",
                                      va="top", fontsize=7, color="0.4")  # below the axes (saved with a tight box)
                ownership.write_whole(self.out / name, (), True, lambda tmp: self._figure.savefig(tmp, dpi=110,
                                      format="png", bbox_inches="tight"), "-o", locked=True)
        finally:
            plt.close(self._figure)
        return name


def _judged(ctx: Context) -> Outcome:
    """Run the case of ``ctx`` and judge it, with the warnings its runs gave (each message once, in order): a
    case whose runs warn of under-resolution says so in the report instead of on a worker's stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = CASES[ctx.name].fn(ctx)
    outcome.verdict = judge(outcome)
    outcome.warnings = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    return outcome


def measure(name: str, quick: bool = False) -> Outcome:
    """Run the case ``name`` in memory (``Context.in_memory``) and judge it: its Outcome (with the warnings its
    runs gave), figure not saved."""
    ctx = Context.in_memory(name, quick)
    outcome = _judged(ctx)
    ctx.save_figure()
    return outcome


def _execute(name: str, quick: bool, out: str) -> Outcome:
    """Run one case in this (worker) process, BLAS on one thread; an exception is an ERROR outcome."""
    from threadpoolctl import threadpool_limits

    t0 = time.process_time()
    ctx = Context(name, quick, Path(out))
    try:
        with threadpool_limits(1):
            outcome = _judged(ctx)
    except Exception as exc:  # a crash is a finding too: reported, never hidden
        outcome = _error("```\n" + "".join(traceback.format_exception_only(exc)).strip()
                         + "\n```\n\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:]))
    outcome.figure = ctx.save_figure()
    outcome.seconds = time.process_time() - t0
    return outcome


def selected(names=None, quick: bool = False) -> list[Case]:
    """The cases to run: ``names`` (ConfigError naming an unknown one), else every (quick) case."""
    if names:
        unknown = [n for n in names if n not in CASES]
        if unknown:
            raise ConfigError(f"--case: got {unknown[0]!r}, allowed: " + " | ".join(CASES))
        return [CASES[n] for n in names]
    return [c for c in CASES.values() if c.quick or not quick]


def run(names=None, quick: bool = False, jobs: int = 1, out: str | Path = "validation-report",
        progress=print, scheduler: str | None = None) -> dict[str, Outcome]:
    """Run the chosen cases (``jobs`` worker processes, or the workers of the Dask scheduler at ``scheduler``,
    which must see ``out``: a shared filesystem), write the report into ``out``, return the outcomes."""
    from ..io import ownership

    chosen = selected(names, quick)
    if scheduler is not None:
        from ..processes import check_address

        check_address(scheduler)
    out = ownership.claim_directory(out, "-o", "validate", legacy=("report.md", "results.json"))
    with ownership.OutputLock(out, "-o"):  # one validate per report directory; its files are this command's
        _check_report_targets(out, chosen)
        where = f"the Dask scheduler at {scheduler}" if scheduler else f"{min(jobs, len(chosen))} processes"
        progress(f"{len(chosen)} cases on {where}; report in {out}/report.md")
        outcomes = _run_cases(chosen, quick, jobs, out, progress, scheduler)
        write_report(out, chosen, outcomes, quick)
    return outcomes


def report_files(chosen) -> list[str]:
    """The files a report of ``chosen`` writes into its directory."""
    return ["results.json", "report.md"] + [f"{c.name}.png" for c in chosen]


def _check_report_targets(out: Path, chosen) -> None:
    """Before any case runs: every file the report will write may be replaced (absent or a regular file, never
    a link, a directory or a special file), and runs/ and runs/<case> are directories, not links."""
    import os
    import stat

    from ..io import ownership

    for name in report_files(chosen):
        ownership.check_target(out / name, "-o", True)
    for sub in [out / "runs"] + [out / "runs" / c.name for c in chosen]:
        try:
            st = os.lstat(sub)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"-o: {str(sub)!r} is a link or a file, allowed: a directory of case histories "
                              "(made if missing)")


def _run_cases(chosen, quick: bool, jobs: int, out: Path, progress, scheduler) -> dict:
    outcomes: dict[str, Outcome] = {}
    jobs = max(1, min(int(jobs), len(chosen) or 1))

    def report(c, o):
        outcomes[c.name] = o
        progress(f"{o.verdict.upper():<8} {c.name}: measured {_fmt(o.measured)}, predicted {_fmt(o.predicted)} "
                 f"({o.criterion()}; {o.seconds:.0f} s)")
        for w in o.warnings:
            progress(f"         {c.name}: warning: {w}")

    if scheduler:  # a Dask cluster (meanfield sweep's): one task per case
        from ..processes import dask_client

        with dask_client(scheduler) as client:
            futures = {c.name: client.submit(_execute, c.name, quick, str(out.resolve()), pure=False,
                                             key=f"meanfield-validate-{c.name}") for c in chosen}
            for c in chosen:
                try:
                    o = futures[c.name].result()
                except Exception as exc:  # noqa: BLE001 - the worker died, or the task could not run: a finding
                    o = _error(f"the Dask task running this case failed: {exc!r}")
                report(c, o)
    elif jobs == 1:  # in this process
        for c in chosen:
            report(c, _execute(c.name, quick, str(out)))
    else:
        _in_pool(chosen, quick, jobs, out, report)
    return outcomes


def _in_pool(chosen, quick: bool, jobs: int, out: Path, report) -> None:
    """Run the cases in ``jobs`` worker processes that die with this one.  A dead worker breaks the whole pool:
    its unfinished cases run again in a fresh one, and a case whose second try also breaks it is an ERROR.
    Ctrl-C (which the workers ignore) or any other exception here ends the workers and cancels what is queued."""
    from ..processes import pool_worker

    pending, broke = list(chosen), set()
    while pending:
        again = []
        with ProcessPoolExecutor(min(jobs, len(pending)), initializer=pool_worker) as pool:
            try:
                futures = {c.name: _submit(pool, _execute, c.name, quick, str(out)) for c in pending}
                for c in pending:
                    try:
                        o = futures[c.name].result()
                    except BrokenProcessPool as exc:  # a worker died (killed, out of memory): maybe not this case's
                        if c.name not in broke:
                            broke.add(c.name)
                            again.append(c)
                            continue
                        o = _error(f"the worker process running this case died twice: {exc!r}")
                    except Exception as exc:  # noqa: BLE001 - the task could not run: a finding too
                        o = _error(f"the worker process running this case failed: {exc!r}")
                    report(c, o)
            except BaseException:
                _stop(pool)
                raise
        pending = again


def _stop(pool: ProcessPoolExecutor) -> None:
    """End ``pool`` now: its queued tasks are cancelled and its workers get SIGTERM, which ends a pool worker
    (``processes.pool_worker``) at once, mid-run."""
    workers = list((pool._processes or {}).values())  # CPython's own record of the pool's processes
    pool.shutdown(wait=False, cancel_futures=True)
    for w in workers:
        w.terminate()


def _submit(pool, fn, *args) -> Future:
    """``pool.submit(fn, *args)``, or a future holding the BrokenProcessPool that a worker dead before every task
    was handed out makes ``submit`` raise: that task is tried again, as those the dead worker took."""
    try:
        return pool.submit(fn, *args)
    except BrokenProcessPool as exc:
        future = Future()
        future.set_exception(exc)
        return future


def _error(body: str) -> Outcome:
    """The outcome of a case that could not be judged (it raised, or its worker died)."""
    return Outcome("-", "-", "-", body=body, verdict=ERROR)


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
                     f"{_cell(o.criterion())} | {'**' + o.verdict.upper() + '**' if o.verdict != PASS else PASS} |")
    for c in chosen:
        o = outcomes[c.name]
        lines += ["", f"## {c.name}", "", f"**Claim.** {c.claim}", "", f"**Source.** {c.source}", "",
                  f"**Measured** {_fmt(o.measured)}, **predicted** {_fmt(o.predicted)}, tolerance {o.tolerance}"
                  + "".join(f"; {name}: {'yes' if ok else '**no**'}" for name, ok in o.conditions.items())
                  + f": **{o.verdict.upper()}** ({o.seconds:.0f} s CPU).", ""]
        if o.body:
            lines += [o.body.strip(), ""]
        if o.warnings:
            lines += ["**Warnings of its runs.**", ""] + [f"- {w}" for w in o.warnings] + [""]
        if o.figure:
            lines += [f"![{c.name}]({o.figure})", ""]
    data = {c.name: {"claim": c.claim, "source": c.source, **asdict(outcomes[c.name]),
                     "tolerance": str(outcomes[c.name].tolerance)} for c in chosen}
    # the numbers first: if the text cannot be written they are kept.  The caller holds the directory's lock
    write_text(out / "results.json", json.dumps(data, indent=2, default=_json) + "\n")
    write_text(out / "report.md", "\n".join(lines) + "\n")


def write_text(path: Path, text: str, locked: bool = True) -> None:
    """Write a report file whole (a temporary renamed over it: never through a link, never half a file);
    ``locked``: the caller holds the report directory's lock (else the file's own is taken)."""
    from ..io import ownership

    ownership.write_whole(path, (), True, lambda tmp: Path(tmp).write_text(text), "-o", locked=locked)


def _json(x):
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return str(x)

