"""One owner for every file: a run's family is reserved, a refused command deletes nothing, a lock removes only
its own file, no write goes through a link, a failed write is one line and leaves the target as it was."""

import contextlib
import errno
import os
import sys

import pytest

from _proc import mf, paused
from meanfield.cli import main
from meanfield.errors import ConfigError, OutputError
from meanfield.io import ownership

CFG = """
[model]
geometry = "circle"
beta = 9.0
viscosity = 0.02
[grid]
modes = 32
[time]
t_end = {t_end}
dt = 0.01
[output]
interval = 0.1
"""


def _cfg(tmp_path, t_end=0.2, name="a.toml"):
    (tmp_path / name).write_text(CFG.format(t_end=t_end))
    return str(tmp_path / name)


@pytest.mark.parametrize("name, what", [("run.h5.ckpt", "checkpoint"), (".run.h5.lock", "lock file"),
                                        (".run.h5.abcd1234.partial", "temporary")])
def test_a_name_of_a_runs_family_is_refused_before_anything_is_touched(tmp_path, capsys, name, what):
    cfg = _cfg(tmp_path)
    (tmp_path / name).write_bytes(b"another run's")
    assert main(["run", cfg, "-o", str(tmp_path / name), "--overwrite", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and what in err[0] and "reserves" in err[0]
    assert (tmp_path / name).read_bytes() == b"another run's"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.toml", name])


def test_a_run_on_a_running_runs_checkpoint_leaves_it_alive(tmp_path):
    """The attack: run A writing run.h5; B -o run.h5.ckpt took A's checkpoint temporary for its own leftover."""
    a = _cfg(tmp_path, t_end=4.0)
    out = tmp_path / "run.h5"
    proc = paused(["run", a, "-o", out, "--quiet", "--set", "output.checkpoint_every=1"], snapshot=3)
    try:
        temps = [tmp_path / ".run.h5.ckpt.zzzzzzzz.partial", tmp_path / ".run.h5.zzzzzzzz.partial"]
        for t in temps:  # stand-ins for A's temporaries in flight
            t.write_bytes(b"A's")
        for args in (["-o", tmp_path / "run.h5.ckpt"], ["-o", tmp_path / "run.h5.ckpt", "--overwrite"],
                     ["-o", out, "--overwrite"]):
            got = mf("run", _cfg(tmp_path, name="b.toml"), *args, "--quiet", timeout=300)
            assert got.returncode == 2, got.stderr
            assert len(got.stderr.strip().splitlines()) == 1
        assert all(t.read_bytes() == b"A's" for t in temps)
    finally:
        proc.send_signal(__import__("signal").SIGCONT)
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert mf("info", out).returncode == 0


def test_a_refused_run_deletes_no_temporary(tmp_path):
    cfg = _cfg(tmp_path)
    assert mf("run", cfg, "-o", tmp_path / "run.h5", "--quiet").returncode == 0
    stale = tmp_path / ".run.h5.abcd1234.partial"
    stale.write_bytes(b"x")
    got = mf("run", cfg, "-o", tmp_path / "run.h5", "--quiet")  # exists, no --overwrite: refused
    assert got.returncode == 2 and "exists" in got.stderr
    assert stale.exists()
    assert mf("run", cfg, "-o", tmp_path / "run.h5", "--overwrite", "--quiet").returncode == 0
    assert not stale.exists()  # a run that may write cleans what a killed run of its output left


def test_a_lock_released_removes_only_its_own_file(tmp_path):
    lock = ownership.OutputLock(tmp_path / "run.h5").acquire()
    other = tmp_path / "other"
    other.write_text("someone else's history")
    os.replace(other, lock.lock_path)  # renamed over the lock's name while held
    lock.release()
    assert lock.lock_path.read_text() == "someone else's history"


def test_a_failed_write_is_one_output_error_and_leaves_the_target(tmp_path):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")

    def full(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError, match="No space left on device.*keeps what it held"):
        ownership.write_whole(target, (), True, full)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_replace_never_renames_over_a_link(tmp_path):
    (tmp_path / "precious").write_text("mine")
    (tmp_path / "out").symlink_to(tmp_path / "precious")
    tmp = ownership.temporary(tmp_path / "out")
    with pytest.raises(ConfigError, match="became a link"):
        ownership.replace(tmp, tmp_path / "out")
    assert (tmp_path / "out").is_symlink() and (tmp_path / "precious").read_text() == "mine"
    assert not tmp.exists()


# ------------------------------------------------------------------------------------------------- validate


@pytest.mark.parametrize("name", ["report.md", "results.json", "mass.png"])
def test_validate_never_writes_through_a_link_in_its_report(tmp_path, capsys, name):
    rep = tmp_path / "rep"
    assert main(["validate", "--quick", "--case", "mass", "-o", str(rep)]) == 0
    (tmp_path / "precious.dat").write_text("my notes")
    (rep / name).unlink(missing_ok=True)
    (rep / name).symlink_to(tmp_path / "precious.dat")
    capsys.readouterr()
    assert main(["validate", "--quick", "--case", "mass", "-o", str(rep)]) == 2
    err = capsys.readouterr()
    assert "symbolic link" in err.err and "cases on" not in err.out  # refused before any case ran
    assert (tmp_path / "precious.dat").read_text() == "my notes"


def test_validate_refuses_a_report_file_that_is_a_directory_before_any_case_runs(tmp_path, capsys):
    (tmp_path / "rep" / "report.md").mkdir(parents=True)
    (tmp_path / "rep" / ".meanfield").write_text("validate\n")
    assert main(["validate", "--quick", "--case", "mass", "-o", str(tmp_path / "rep")]) == 2
    captured = capsys.readouterr()
    assert "is a directory" in captured.err and "PASS" not in captured.out


@pytest.mark.parametrize("out, pattern", [("", "non-empty"), (" ", "non-empty"), ("a\nb", "control"),
                                          ("notes", "did not write"), ("file", "not a directory")])
def test_validate_refuses_odd_or_foreign_report_directories(tmp_path, capsys, out, pattern):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("x")
    (tmp_path / "file").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["validate", "--quick", "--case", "mass", "-o", out]) == 2
    assert pattern in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_validate_list_with_an_unknown_case_is_one_line(capsys):
    assert main(["validate", "--list", "--case", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--case: got 'nosuch'" in err[0]


@pytest.mark.parametrize("out", ["", "a\nb", " "])
def test_example_refuses_odd_directories(tmp_path, capsys, out):
    assert main(["example", "linear", "-o", out]) == 2
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ processes


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def _wait_for(predicate, timeout=120.0):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("timed out")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


CASES = ("linear-circle-all-modes", "synchronisation-blocked")
# the installed `meanfield` command's code: its start-up SIGTERM handler (raise) is in force all through validate,
# and a fork inherits it (meanfield.cli alone has none)
COMMAND = [sys.executable, "-m", "meanfield.console"]


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_validate_workers_die_with_it(tmp_path, sig):
    import signal
    import subprocess

    proc = subprocess.Popen([*COMMAND, "validate", "--quick", "--case", *CASES, "-j", "2",
                             "-o", str(tmp_path / "rep")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, process_group=0)
    try:
        workers = _wait_for(lambda: [c for c in _children(proc.pid)] if len(_children(proc.pid)) >= 2 else None)
        os.kill(proc.pid, getattr(signal, sig))  # the main process only, not its group
        _, err = proc.communicate(timeout=60)
        _wait_for(lambda: not any(_alive(w) for w in workers), timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group: workers too, whatever happened above
            os.killpg(proc.pid, signal.SIGKILL)
    if sig == "SIGTERM":  # one line, the status of a SIGTERM, however far the command had got
        assert proc.returncode == 143 and err.strip().splitlines()[-1] == "meanfield: error: terminated (SIGTERM)", err


def test_one_dead_worker_costs_no_case(tmp_path):
    import json
    import signal
    import subprocess

    proc = subprocess.Popen([*COMMAND, "validate", "--quick", "--case", *CASES, "-j", "2",
                             "-o", str(tmp_path / "rep")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            process_group=0)
    try:
        workers = _wait_for(lambda: _children(proc.pid) if len(_children(proc.pid)) >= 2 else None)
        os.kill(workers[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group: workers too, whatever happened above
            os.killpg(proc.pid, signal.SIGKILL)
    assert (tmp_path / "rep" / "results.json").exists(), err[-2000:]
    verdicts = {k: v["verdict"] for k, v in json.loads((tmp_path / "rep" / "results.json").read_text()).items()}
    assert verdicts == {c: "pass" for c in CASES}, (verdicts, err)
    assert proc.returncode == 0


# The two ways a killed worker took validate down, made deterministic (`meanfield validate -j` runs its cases in a
# pool of processes): _in_pool with the harness's _execute replaced, in a process of its own.
POOL_SCRIPT = r'''
import json, os, signal, sys, threading, time, types
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import meanfield.processes
from meanfield import console
from meanfield.simulation import run
from meanfield.validate import harness

signal.signal(signal.SIGTERM, console._terminate)  # as in the `meanfield` command: the workers inherit it

out, mode = Path(sys.argv[1]), sys.argv[2]
SECTIONS = dict(model=dict(geometry="circle", beta=1.0, viscosity=0.1), grid=dict(modes=32),
                time=dict(t_end=200.0, dt=0.01), output=dict(interval=50.0))


class Stepping:  # a tracker: the run has taken its signal handlers and steps
    def start(self, sim):
        (out / "stepping").write_text("")


def execute(name, quick, where):
    (out / f"try-{name}.{os.getpid()}").write_text("")
    if name == "slow":
        run(SECTIONS, out / "slow.h5", overwrite=True, progress=False, trackers=[Stepping()])
    return harness.Outcome(1.0, 1.0, "-", verdict="pass")


harness._execute = execute
verdicts, reported = {}, threading.Event()


def report(case, outcome):
    verdicts[case.name] = outcome.verdict
    reported.set()


if mode == "idle":  # kill the quick case's worker once it waits for work again, holding the task queue's lock
    def killer():
        reported.wait()
        while not (out / "stepping").exists():
            time.sleep(0.01)
        time.sleep(0.5)
        os.kill(int(next(out.glob("try-quick.*")).suffix[1:]), signal.SIGKILL)

    threading.Thread(target=killer, daemon=True).start()
    names = ("quick", "slow")
else:  # "start": the first pool's workers die as they start, before every case was handed out
    def first_pool_dies():
        if not (out / "died").exists():
            (out / "died").write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
        pool_worker()

    pool_worker, meanfield.processes.pool_worker = meanfield.processes.pool_worker, first_pool_dies

    class Pool(ProcessPoolExecutor):
        made = 0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            Pool.made += 1
            self.first = Pool.made == 1

        def submit(self, *args, **kwargs):
            end = time.monotonic() + 30
            while self.first and self._processes and not self._broken and time.monotonic() < end:
                time.sleep(0.01)  # the first pool: hand the next case out once its death is seen
            return super().submit(*args, **kwargs)

    harness.ProcessPoolExecutor = Pool
    names = ("a", "b")
harness._in_pool([types.SimpleNamespace(name=n) for n in names], False, 2, out, report)
tries = {n: len(list(out.glob(f"try-{n}.*"))) for n in names}
print(json.dumps({"verdicts": verdicts, "tries": tries}))
'''


@pytest.mark.parametrize("mode", ["idle", "start"])
def test_dead_worker_neither_hangs_nor_ends_validate(tmp_path, mode):
    """A worker killed while it waited for work holds the task queue's lock: the pool then stops the others with
    SIGTERM, which a run in them once took as "stop after this step", so they went back to the queue and waited on
    the dead worker's lock forever, and validate with them (mode "idle").  A worker dead before every case was
    handed out made submit raise, and validate ended without a report (mode "start").  Either way every case now
    runs again in a fresh pool and passes."""
    import json
    import signal
    import subprocess
    import sys

    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    (tmp_path / "out").mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, process_group=0)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        out, err = "", "hung"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-2000:]
    got = json.loads(out.splitlines()[-1])
    names = ("quick", "slow") if mode == "idle" else ("a", "b")
    assert got["verdicts"] == {n: "pass" for n in names}
    if mode == "idle":  # the slow case ran again: its worker was stopped, not left waiting
        assert got["tries"] == {"quick": 1, "slow": 2}
    else:  # each case ran (in the second pool, or in a worker of the first that outlived the death)
        assert min(got["tries"].values()) >= 1


def test_ctrl_c_ends_validate_and_its_workers(tmp_path):
    """Ctrl-C (SIGINT to the process group) during `meanfield validate -j 2`: exit 130 at once, the workers end,
    and no queued case starts (the workers once took SIGINT as "stop this run", then ran every queued case)."""
    import signal
    import subprocess
    import time

    cases = ("synchronisation-blocked", "linear-circle-all-modes", "mass", "order-sbdf2", "order-etdrk4")
    proc = subprocess.Popen([*COMMAND, "validate", "--quick", "--case", *cases, "-j",
                             "2", "-o", str(tmp_path / "rep")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, process_group=0,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal has it
    try:
        workers = _wait_for(lambda: _children(proc.pid) if len(_children(proc.pid)) >= 2 else None)
        _wait_for(lambda: (tmp_path / "rep" / "runs" / cases[0]).exists())
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "meanfield: error: interrupted"
    assert took < 5.0, took
    _wait_for(lambda: not any(_alive(w) for w in workers), timeout=10)
    started = {p.name for p in (tmp_path / "rep" / "runs").iterdir()}
    assert started <= set(cases[:3]), started  # at most the two running cases and one queued behind them
    assert not (tmp_path / "rep" / "results.json").exists()
