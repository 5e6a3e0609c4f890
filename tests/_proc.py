"""Subprocesses for tests: the real ``meanfield`` command, each in its own process group, and runs that stop
themselves at a step, a snapshot or a phase the test chooses, so that a test kills or signals a run at a
point it names instead of after a sleep (a verdict never depends on how fast the machine is).

    proc = paused(["run", cfg, "-o", out, "--quiet"], step=40)   # returns once the run is stopped there
    proc.kill()                                                   # SIGKILL at exactly that point
    proc.wait()

``python tests/_proc.py POINT ARGS...`` is what ``paused`` starts: ``meanfield ARGS`` with a tracker that sends
its own process SIGSTOP at POINT (JSON: {"step": N} after the N-th step this process takes, {"snapshot": N} after
the N-th snapshot it writes, {"phase": "tokens"} after its first step in that phase; a list of counts stops at
each); SIGCONT lets it go on, ``wait_stopped`` waits for the next stop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "meanfield.cli"]
HERE = Path(__file__).resolve()


def mf(*args, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    """``meanfield ARGS`` to completion in its own process group: stdout and stderr captured as text.  On the
    timeout the whole group is killed (workers included: none is left running) and TimeoutExpired raised."""
    with subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          process_group=0, **kw) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_group(proc) -> None:
    """SIGKILL the process group of ``proc`` (it and every process it started) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def popen(*args, **kw) -> subprocess.Popen:
    """``meanfield ARGS`` started in its own process group (stdout dropped, stderr a text pipe)."""
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([*CLI, *map(str, args)], text=True, process_group=0, **kw)


class Ended(AssertionError):
    """The run ended before it reached the point the test asked for."""


def paused(args, env=None, **spec) -> subprocess.Popen:
    """Start ``meanfield ARGS`` and return once it has stopped itself at ``spec`` (``step=N``, ``snapshot=N``
    or ``phase="tokens"``).  Raises Ended (with its exit status and stderr) if it ended first."""
    proc = subprocess.Popen([sys.executable, str(HERE), json.dumps(spec), *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, process_group=0, env=env)
    wait_stopped(proc)
    return proc


def wait_stopped(proc: subprocess.Popen) -> None:
    """Wait until the paused run stops itself again (Ended if it ends instead)."""
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        return
    proc.returncode = os.waitstatus_to_exitcode(status)
    raise Ended(f"the run ended (exit {proc.returncode}) before its next pause: {proc.stderr.read()[-400:]}")


def strace_works() -> bool:
    """Whether strace (ptrace) can run here (containers may forbid it)."""
    try:
        return subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "true"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def killed_at_write(args, when: int, calls: str = "pwrite64,write,rename,renameat,renameat2,ftruncate,unlink",
                    timeout: float = 900) -> subprocess.CompletedProcess:
    """``meanfield ARGS`` under strace, SIGKILLed at its ``when``-th system call among ``calls``: a kill inside a
    write the test names by its count, whatever the machine's speed."""
    return subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"inject={calls}:signal=SIGKILL:when={when}",
                           *CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, process_group=0)


def resume(proc: subprocess.Popen) -> None:
    """Let a paused run go on."""
    os.kill(proc.pid, signal.SIGCONT)


class _Pause:
    """The tracker ``paused`` installs (see the module docstring)."""

    def __init__(self, spec: dict):
        counts = {k: v if isinstance(v, list) else [v] for k, v in spec.items() if k in ("step", "snapshot")}
        self.steps, self.snapshots = set(counts.get("step", [])), set(counts.get("snapshot", []))
        self.phase = spec.get("phase")
        self.taken, self.written = 0, 0

    @staticmethod
    def _stop() -> None:
        os.kill(os.getpid(), signal.SIGSTOP)

    def step(self, sim) -> None:
        self.taken += 1
        if self.taken in self.steps:
            self._stop()
        if self.phase is not None and sim.phase == self.phase:
            self.phase = None
            self._stop()

    def snapshot(self, sim) -> None:
        self.written += 1
        if self.written in self.snapshots:
            self._stop()


def _main(argv) -> int:
    from meanfield import cli
    from meanfield.simulation.simulation import Simulation

    pause = _Pause(json.loads(argv[0]))
    run = Simulation.run

    def run_paused(self, trackers=()):
        return run(self, [*trackers, pause])  # last: after the history row and the checkpoint are written

    Simulation.run = run_paused
    sys.argv = ["meanfield", *argv[1:]]
    return cli.main()  # as the console script calls it (argv=None: this process is the command)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
