"""Attacks on the real ``meanfield`` command in subprocesses, by category.

Each attack takes a fresh directory and returns None when the command held, else what went wrong.
"Held" means: exit status 0, 1 or 2 only; a failure is exactly one ``meanfield: error:`` line and
no traceback; nothing outside the run's own files was created or changed; an existing file is
either intact or, with --overwrite, replaced whole; and no wrong answer with exit 0.

``tests/test_attacks.py`` runs them; ``python tests/attacks.py [ROOT]`` runs them all against the
package in ROOT (default: the installed one) and prints the counts per category.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
from _proc import paused, resume, wait_stopped

ENV = dict(os.environ)

CFG = """[model]
geometry = "circle"
beta = 9.0
[grid]
modes = 16
[initial]
amplitude = 1e-3
[time]
t_end = 0.4
dt = 0.01
stepper = "etdrk4"
[output]
interval = 0.05
"""


def mf(*args, cwd=None, timeout=600, preexec=None, env=None):
    """Run ``python -m meanfield.cli ARGS`` in its own process group; returns the CompletedProcess.  On the timeout
    the whole group is killed (no worker outlives the attack) and TimeoutExpired raised."""
    with subprocess.Popen([sys.executable, "-m", "meanfield.cli", *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, errors="replace", cwd=cwd, preexec_fn=preexec,
                          env=env or ENV, process_group=0) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def verdict(r, allowed=(0, 1, 2)) -> str | None:
    """None if the exit status is allowed and a failure says exactly one error line, no traceback."""
    if r.returncode not in allowed:
        return f"exit {r.returncode} (allowed {allowed}): {r.stderr.strip()[-300:]}"
    if "Traceback" in r.stderr:
        return "traceback: " + r.stderr.strip().splitlines()[-1][:200]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("meanfield: error:") or "error:" in ln[:40]]
    if r.returncode in (1, 2) and len(errors) != 1:
        return f"{len(errors)} error lines: {r.stderr.strip()[-300:]}"
    if "internal error" in r.stderr:
        return r.stderr.strip()[-300:]
    return None


def snapshot(*dirs) -> dict:
    """path -> (kind, digest) for everything under ``dirs`` (links not followed)."""
    out = {}
    for d in dirs:
        for root, subdirs, names in os.walk(d):
            for name in subdirs + names:
                p = os.path.join(root, name)
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    out[p] = ("link", os.readlink(p))
                elif stat.S_ISREG(st.st_mode):
                    out[p] = ("file", hashlib.sha256(Path(p).read_bytes()).hexdigest())
                elif stat.S_ISDIR(st.st_mode):
                    out[p] = ("dir", "")
                else:
                    out[p] = ("special", st.st_rdev)
    return out


def changed(before: dict, after: dict, allowed=()) -> str | None:
    """None if only ``allowed`` paths (and nothing else) were created, changed or removed."""
    allowed = {str(p) for p in allowed}
    diffs = [p for p in set(before) | set(after) if before.get(p) != after.get(p) and p not in allowed]
    return f"changed outside the run's files: {sorted(diffs)[:4]}" if diffs else None


def readable(path) -> str | None:
    """None if ``path`` is a readable history that ``meanfield info`` passes."""
    r = mf("info", path)
    return None if r.returncode == 0 else f"info on {Path(path).name}: exit {r.returncode}: {r.stdout[-300:]}{r.stderr[-200:]}"


def make_history(d: Path, name="run.h5", extra="", t_end=None) -> Path:
    cfg = d / "c.toml"
    text = CFG if t_end is None else CFG.replace("t_end = 0.4", f"t_end = {t_end}")
    cfg.write_text(text + extra)
    out = d / name
    r = mf("run", cfg, "-o", out, "--quiet")
    assert r.returncode == 0, r.stderr
    return out


def first(*checks) -> str | None:
    for c in checks:
        if c:
            return c
    return None


# ------------------------------------------------------------------------------------------
# numerics: a growing mode stepped implicitly with lambda dt >> 1 must not decay in silence
def _growth(d: Path, beta: float, stepper: str, dt: float, adaptive=False) -> str | None:
    cfg = d / "u.toml"
    cfg.write_text(f"""[model]\ngeometry = "circle"\nvariant = "usa"\nbeta = {beta}\n[grid]\nmodes = {64 if beta > 200 else 32}\n
[initial]\namplitude = 1e-6\n[time]\nt_end = 1.0\ndt = {dt}\nstepper = "{stepper}"\nadaptive = {str(adaptive).lower()}
[output]\ninterval = 0.1\n""")
    out = d / "u.h5"
    r = mf("run", cfg, "-o", out, "--quiet")
    bad = verdict(r)
    if bad or r.returncode:
        return bad
    with h5py.File(out, "r") as f:
        c = f["rho_hat"][:]
    first_amp, last_amp = np.max(np.abs(c[0, 1:])), np.max(np.abs(c[-1, 1:]))
    return f"exit 0 and the perturbation decayed {first_amp:.3g} -> {last_amp:.3g}" if last_amp < first_amp else None


def numerics_cases():
    for beta in (30, 100, 500):
        for stepper in ("sbdf2", "sbdf1"):
            yield f"usa-beta{beta}-{stepper}-dt0.01", lambda d, b=beta, s=stepper: _growth(d, b, s, 0.01)
    yield "usa-beta30-sbdf2-adaptive", lambda d: _growth(d, 30, "sbdf2", 0.01, True)
    yield "usa-beta12-sbdf2-dt0.05", lambda d: _growth(d, 12, "sbdf2", 0.05)


# ------------------------------------------------------------------------------------------
# resume: a checkpoint that does not belong to the history, kills while resuming
def _stopped_run(d: Path, t_end=6.0):
    """A run stopped by SIGTERM with a checkpoint: (config, history, checkpoint)."""
    cfg = d / "c.toml"
    cfg.write_text(CFG.replace("t_end = 0.4", f"t_end = {t_end}").replace("modes = 16", "modes = 64")
                   .replace("interval = 0.05", "interval = 0.01").replace("dt = 0.01", "dt = 0.001")
                   .replace("beta = 9.0", "beta = 9.0\nviscosity = 0.05"))
    out = d / "run.h5"
    p = paused(["run", cfg, "-o", out, "--quiet"], env=ENV, snapshot=30)
    _stop(p, signal.SIGTERM)
    ckpt = Path(str(out) + ".ckpt")
    return cfg, out, ckpt


def _stop(p, sig) -> str:
    """Send ``sig`` to the paused run ``p``, let it go on, reap it; returns its stderr."""
    p.send_signal(sig)
    resume(p)
    return p.communicate(timeout=600)[1]


def _count(path) -> int:
    try:
        with h5py.File(path, "r", locking=False) as f:
            t = f["time"][:]
        return int(np.sum(np.isfinite(t)))
    except (OSError, KeyError):
        return 0


def resume_from_backup(d: Path) -> str | None:
    cfg = d / "c.toml"
    cfg.write_text(CFG.replace("t_end = 0.4", "t_end = 40.0").replace("dt = 0.01", "dt = 0.001")
                   .replace("interval = 0.05", "interval = 0.01") + "checkpoint_every = 1\n")
    out = d / "run.h5"
    p = paused(["run", cfg, "-o", out, "--quiet"], env=ENV, snapshot=[5, 40])
    backup = d / "backup.h5"
    backup.write_bytes(out.read_bytes())  # a backup taken mid-run
    resume(p)
    wait_stopped(p)
    _stop(p, signal.SIGTERM)
    os.replace(backup, out)  # the history restored from the backup; the checkpoint is newer
    before = snapshot(d)
    r = mf("run", cfg, "--resume", out, "--quiet")
    if r.returncode == 0:
        with h5py.File(out, "r") as f:
            t = f["time"][:]
        if not np.all(np.isfinite(t)) or not np.all(np.diff(t) > 0):
            return f"exit 0 with {int(np.sum(~np.isfinite(t)))} unwritten rows in the middle"
        return None
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def resume_checkpoint_of_other_run(d: Path) -> str | None:
    cfg, out, ckpt = _stopped_run(d)
    other = d / "other"
    other.mkdir()
    cfg2, out2, ckpt2 = _stopped_run(other)
    os.replace(ckpt2, ckpt)  # same config, another run's checkpoint
    before = snapshot(d)
    r = mf("run", cfg, "--resume", out, "--quiet")
    if r.returncode == 0:
        return "exit 0 resuming another run's checkpoint"
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def info_spliced(d: Path) -> str | None:
    out = make_history(d)
    with h5py.File(out, "r+") as f:
        f["time"][3] = np.nan
    r = mf("info", out)
    if r.returncode != 1 or "Traceback" in r.stderr or "FAILED" not in r.stdout:
        return f"info: exit {r.returncode}, {'no ' if 'FAILED' not in r.stdout else ''}FAILED check: {r.stdout[-200:]}"
    return None


def _kill_resume_at(d: Path, when: int, sig="SIGKILL") -> str | None:
    """Resume a stopped run under strace, killed at its ``when``-th write-type system call; then the
    history must be readable and a further --resume must complete it."""
    cfg, out = d / "c.toml", d / "run.h5"
    r = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e",
                        f"inject=pwrite64,write,rename,renameat,renameat2,ftruncate,unlink:signal={sig}:when={when}",
                        sys.executable, "-m", "meanfield.cli", "run", str(cfg), "--resume", str(out), "--quiet"],
                       capture_output=True, text=True, env=ENV, timeout=600, process_group=0)
    if r.returncode == 0:
        return "done"  # the resume finished before the kill point
    if r.returncode not in (-9, 137):
        return f"the resume under strace ended with {r.returncode}, not the injected SIGKILL: {r.stderr[-200:]}"
    return first(readable(out), _resume_completes(cfg, out))


def _resume_completes(cfg, out) -> str | None:
    r = mf("run", cfg, "--resume", out, "--quiet")
    if r.returncode != 0:
        return f"--resume after the kill: exit {r.returncode}: {r.stderr.strip()[-200:]}"
    return readable(out)


def kill_at_writes(d: Path, points) -> str | None:
    """A stopped run, then for each kill point a fresh copy of it resumed and killed there."""
    import shutil

    base = d / "base"
    base.mkdir()
    _stopped_run(base, t_end=2.5)  # short: each kill point resumes it to the end
    killed = 0
    for when in points:
        work = d / f"k{when}"
        shutil.copytree(base, work)
        (work / "c.toml").write_text((base / "c.toml").read_text())
        bad = _kill_resume_at(work, when)
        if bad == "done":  # the resume ended before this write: later points cannot kill either
            break
        if bad:
            return f"killed at write {when}: {bad}"
        killed += 1
        shutil.rmtree(work)
    if killed < min(len(points), 2):  # the attack must have been made: the first points are early in any resume
        return f"only {killed} of the kill points killed the resume: the attack was not made"
    return None


def strace_works() -> bool:
    try:
        r = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "true"], capture_output=True, timeout=20)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _killed(args, step: int, sig) -> str | None:
    """Start ``meanfield ARGS``, send ``sig`` once it has taken ``step`` steps; a traceback, or None."""
    p = paused(args, env=ENV, step=step)
    if sig == signal.SIGKILL:
        p.kill()
        p.wait()
        return None
    err = _stop(p, sig)
    return "traceback: " + err.strip().splitlines()[-1] if "Traceback" in err else None


def kill_early_in_resume(d: Path, step: int, sig=signal.SIGTERM) -> str | None:
    cfg, out, ckpt = _stopped_run(d)
    return first(_killed(["run", cfg, "--resume", out, "--quiet"], step, sig), readable(out),
                 _resume_completes(cfg, out))


def kill_fresh_run(d: Path, step: int, sig=signal.SIGKILL) -> str | None:
    """A new run killed after ``step`` steps: what it leaves reads, and resumes to the end (or, with no
    checkpoint yet, --resume says so in one line and a new run on the same output works)."""
    cfg = d / "c.toml"
    cfg.write_text(CFG.replace("t_end = 0.4", "t_end = 3.0").replace("modes = 16", "modes = 64")
                   .replace("dt = 0.01", "dt = 0.002"))
    out, ckpt = d / "run.h5", d / "run.h5.ckpt"
    bad = _killed(["run", cfg, "-o", out, "--quiet"], step, sig)
    if bad:
        return bad
    if ckpt.exists():
        return first(readable(out), _resume_completes(cfg, out))
    r = mf("run", cfg, "--resume", out, "--quiet")
    bad = verdict(r, (0, 2) if out.exists() else (2,))
    if bad:
        return f"--resume without a checkpoint: {bad}"
    r = mf("run", cfg, "-o", out, "--quiet", "--overwrite")
    leftovers = [q.name for q in d.iterdir() if q.name.endswith((".partial", ".lock"))]
    return first(verdict(r, (0,)), f"leftovers {leftovers}" if leftovers else None, readable(out))


def killed_plot_leftovers(d: Path) -> str | None:
    """The temporary a killed ``plot`` left is removed by the next plot of that figure."""
    history = make_history(d)
    stale = d / ".fig.png.k1ll3d00.partial"
    stale.write_bytes(b"half a figure")
    r = mf("plot", history, "-o", d / "fig.png")
    return first(verdict(r, (0,)), "stale temporary left" if stale.exists() else None,
                 None if (d / "fig.png").stat().st_size > 1000 else "no figure")


# ------------------------------------------------------------------------------------------
# clobbering: links, devices, inputs, extensions
def _victim(d: Path) -> Path:
    v = d / "victim" / "precious.dat"
    v.parent.mkdir(exist_ok=True)
    v.write_bytes(b"precious " * 100)
    return v


def stale_link_at_temporary(d: Path, name: str) -> str | None:
    victim = _victim(d)
    (d / "c.toml").write_text(CFG)
    link = d / name
    link.symlink_to(victim)
    before = snapshot(d / "victim")
    r = mf("run", d / "c.toml", "-o", d / "OUT.h5", "--quiet")
    return first(verdict(r), changed(before, snapshot(d / "victim")))


def output_is_link(d: Path, overwrite: bool) -> str | None:
    victim = _victim(d)
    (d / "c.toml").write_text(CFG)
    (d / "OUT.h5").symlink_to(victim)
    before = snapshot(d)
    r = mf("run", d / "c.toml", "-o", d / "OUT.h5", "--quiet", *(["--overwrite"] if overwrite else []))
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def checkpoint_is_link(d: Path) -> str | None:
    victim = _victim(d)
    (d / "c.toml").write_text(CFG)
    Path(str(d / "OUT.h5") + ".ckpt").symlink_to(victim)
    before = snapshot(d / "victim")
    r = mf("run", d / "c.toml", "-o", d / "OUT.h5", "--quiet")
    return first(verdict(r), changed(before, snapshot(d / "victim")))


def output_is_device(d: Path, command: str) -> str | None:
    node = d / "node"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null twin, inside d
    except PermissionError:
        os.mkfifo(node)
    history = make_history(d) if command == "plot" else None
    cfg = _cfg(d) if command == "run" else None
    before = snapshot(d)
    if command == "plot":
        r = mf("plot", history, "-o", node, "--overwrite")
    else:
        r = mf("run", cfg, "-o", node, "--overwrite", "--quiet")
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def _cfg(d: Path) -> Path:
    (d / "c.toml").write_text(CFG)
    return d / "c.toml"


def output_is_config(d: Path) -> str | None:
    cfg = _cfg(d)
    before = snapshot(d)
    r = mf("run", cfg, "-o", cfg, "--overwrite", "--quiet")
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def output_is_initial_file(d: Path) -> str | None:
    src = make_history(d, "src.h5")
    cfg = d / "i.toml"
    cfg.write_text(CFG.replace('[initial]\namplitude = 1e-3', f'[initial]\nkind = "file"\npath = "{src}"'))
    before = snapshot(d)
    r = mf("run", cfg, "-o", src, "--overwrite", "--quiet")
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def plot_without_extension(d: Path) -> str | None:
    history = make_history(d)
    fig = d / "fig.png"
    fig.write_bytes(b"my figure")
    before = snapshot(d)
    r = mf("plot", history, "-o", d / "fig")
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def plot_bad_path(d: Path, name: str) -> str | None:
    history = make_history(d)
    before = snapshot(d)
    r = mf("plot", history, "-o", name if name.startswith("/") else d / name)
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def late_refusal_keeps_checkpoint(d: Path) -> str | None:
    cfg, out, ckpt = _stopped_run(d)
    huge = d / "huge.toml"  # 1e7 snapshots of K = 1024: refused by the disk-space check
    huge.write_text(CFG.replace("modes = 16", "modes = 1024").replace("t_end = 0.4", "t_end = 1.0")
                    .replace("dt = 0.01", "dt = 1e-7").replace("interval = 0.05", "interval = 1e-7"))
    before = snapshot(d)
    r = mf("run", huge, "-o", out, "--overwrite", "--quiet")
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def immutable_output(d: Path) -> str | None:
    history = make_history(d)
    if subprocess.run(["chattr", "+i", str(history)], capture_output=True).returncode:
        raise Skip("chattr +i is not permitted here")  # the attack was not made: never counted as held
    try:
        before = snapshot(d)
        r = mf("run", d / "c.toml", "-o", history, "--overwrite", "--quiet")
        return first(verdict(r, (2,)), changed(before, snapshot(d)))
    finally:
        subprocess.run(["chattr", "-i", str(history)], capture_output=True)


# ------------------------------------------------------------------------------------------
# concurrent runs on one output
def concurrent(d: Path, how: str) -> str | None:
    """Two runs on one output: started together ("together"), or the second while the first is stopped at its
    first step and holds the output ("while-running"): exactly one writes it, the other says why in one line."""
    cfg = d / "c.toml"
    cfg.write_text(CFG.replace("t_end = 0.4", "t_end = 3.0").replace("modes = 16", "modes = 64"))
    out = d / "OUT.h5"
    cmd = [sys.executable, "-m", "meanfield.cli", "run", str(cfg), "-o", str(out)]
    if how == "together":
        a = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=ENV, process_group=0)
        b = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=ENV, process_group=0)
        procs = (a, b)
    else:
        a = paused(["run", cfg, "-o", out], env=ENV, step=1)
        b = subprocess.run(cmd, capture_output=True, text=True, env=ENV, process_group=0, timeout=600)
        if b.returncode != 2 or "in use by another meanfield process" not in b.stderr:
            return f"a second run while the first holds the output: exit {b.returncode}: {b.stderr.strip()[-200:]}"
        resume(a)
        procs = (a,)
    results = [] if how == "together" else [b]
    for p in procs:
        _, err = p.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, "", err))
    for r in results:
        bad = verdict(r)
        if bad:
            return bad
    ok = [r for r in results if r.returncode == 0]
    if len(ok) != 1:
        return f"{len(ok)} of the two runs succeeded: {[r.stderr.strip()[-150:] for r in results]}"
    claimed = int(ok[0].stderr.split("wrote ")[1].split()[0])
    if _count(out) != claimed:
        return f"a run claims {claimed} snapshots, the file holds {_count(out)}"
    leftovers = [p.name for p in d.iterdir() if p.name.endswith((".partial", ".lock"))]
    return first(readable(out), f"leftovers {leftovers}" if leftovers else None)


# ------------------------------------------------------------------------------------------
# disk full (a file size limit stands in for it: writes fail with EFBIG)
def disk_full(d: Path, limit: int, expect: str) -> str | None:
    """A file size limit (``ulimit -f``) on a run: ``expect`` "refused" (too small for the history: refused up
    front, nothing written) or "complete" (room enough)."""
    cfg = _cfg(d)
    cfg.write_text(CFG.replace("t_end = 0.4", "t_end = 5.0").replace("modes = 16", "modes = 256"))
    out = d / "OUT.h5"
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = mf("run", cfg, "-o", out, "--quiet", preexec=cap)
    bad = verdict(r)
    if bad:
        return bad
    leftovers = [p.name for p in d.iterdir() if p.name.endswith((".partial", ".lock"))]
    if leftovers:
        return f"leftovers {leftovers}"
    if expect == "refused":
        if r.returncode != 2 or out.exists() or "ulimit -f" not in r.stderr:
            return f"expected a refusal up front: exit {r.returncode}, {r.stderr.strip()[-200:]}"
        return None
    if r.returncode != 0:
        return f"expected a complete run: exit {r.returncode}, {r.stderr.strip()[-200:]}"
    return readable(out)


def file_limit_mid_run(d: Path) -> str | None:
    """The file size limit of a running run lowered under its history's rows (prlimit): its next write fails
    mid-run.  One line saying what the history keeps, no temporaries, a readable history, and a --resume without
    the limit completes the run."""
    import resource

    cfg = _cfg(d)
    cfg.write_text(CFG.replace("t_end = 0.4", "t_end = 4.0").replace("modes = 16", "modes = 256")
                   .replace("interval = 0.05", "interval = 0.05\ncheckpoint_every = 2"))
    out = d / "OUT.h5"
    p = paused(["run", cfg, "-o", out, "--quiet"], env=ENV, snapshot=6)
    resource.prlimit(p.pid, resource.RLIMIT_FSIZE, (4096, 4096))  # every write past 4 KB now fails (EFBIG)
    err = _stop(p, signal.SIGCONT)
    r = subprocess.CompletedProcess(p.args, p.returncode, "", err)
    if r.returncode != 1 or "failed at t =" not in r.stderr:
        return f"expected a write failing mid-run (exit 1, 'failed at t ='): exit {r.returncode}, {err.strip()[-200:]}"
    leftovers = [q.name for q in d.iterdir() if q.name.endswith((".partial", ".lock"))]
    return first(verdict(r, (1,)), f"leftovers {leftovers}" if leftovers else None,
                 None if "keeps" in r.stderr else f"end state unclear: {r.stderr.strip()}",
                 readable(out), _resume_completes(cfg, out))


class Skip(Exception):
    """The attack cannot be made on this machine (e.g. no permission to mount a small file system)."""


def disk_fills_mid_run(d: Path) -> str | None:
    """A run on a small tmpfs whose free space another process takes while the run writes: one
    line saying what the history keeps, no temporaries left, the history readable, and once the
    space is back a --resume completes the run."""
    disk = d / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True).returncode:
        raise Skip("cannot mount a tmpfs here")
    try:
        cfg = disk / "c.toml"
        cfg.write_text(CFG.replace("beta = 9.0", "beta = 9.0\nviscosity = 0.05").replace("modes = 16", "modes = 256")
                       .replace("t_end = 0.4", "t_end = 60.0").replace("dt = 0.01", "dt = 0.002")
                       .replace("interval = 0.05", "interval = 0.5\ncheckpoint_every = 4"))
        out, fill = disk / "OUT.h5", disk / "fill"
        p = paused(["run", cfg, "-o", out, "--quiet"], env=ENV, snapshot=4)  # its first checkpoint is written
        try:  # take every free block; the open itself fails when the run has filled the disk already
            with open(fill, "wb") as f:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        except OSError:
            pass
        resume(p)
        err = p.communicate(timeout=600)[1]
        r = subprocess.CompletedProcess(p.args, p.returncode, "", err)
        fill.unlink(missing_ok=True)
        if r.returncode == 0:
            raise Skip("the run ended before the disk filled")
        leftovers = [q.name for q in disk.iterdir() if q.name.endswith((".partial", ".lock"))]
        return first(verdict(r, (1,)), f"leftovers {leftovers}" if leftovers else None,
                     None if "keeps" in r.stderr else f"end state unclear: {r.stderr.strip()}",
                     readable(out), _resume_completes(cfg, out))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# ------------------------------------------------------------------------------------------
# one line, not a traceback
def config_text(d: Path, text: str, output="OUT.h5") -> str | None:
    cfg = d / "c.toml"
    cfg.write_text(text)
    before = snapshot(d)
    r = mf("run", cfg, "-o", d / output if output else "", "--quiet")
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def config_special(d: Path, path: str) -> str | None:
    if path == "fifo":
        path = d / "fifo"
        os.mkfifo(path)
    before = snapshot(d)
    try:
        r = mf("run", path, "-o", d / "OUT.h5", "--quiet", timeout=120)
    except subprocess.TimeoutExpired:
        return "hangs"
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def output_path(d: Path, name: str) -> str | None:
    cfg = _cfg(d)
    before = snapshot(d)
    r = mf("run", cfg, "-o", name if not name or name.startswith("/") else d / name, "--quiet", cwd=d)
    if r.returncode == 0:
        return "accepted"
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def corrupt(d: Path, how: str, command: str) -> str | None:
    """A history damaged in one way, given to info / rates / plot / --resume / initial.path."""
    out = make_history(d)
    pristine = d / "pristine.h5"
    pristine.write_bytes(out.read_bytes())
    rng = np.random.default_rng(zlib.crc32(how.encode()))  # the same damage on every run
    if how.startswith("flip"):  # flip, flip1, flip4, ...: that many bytes (64 by default) inverted
        data = bytearray(out.read_bytes())
        for i in rng.integers(0, len(data), int(how[4:] or 64)):
            data[i] ^= 0xFF
        out.write_bytes(bytes(data))
    elif how == "truncate":
        data = out.read_bytes()
        out.write_bytes(data[: len(data) // 3])
    else:
        with h5py.File(out, "r+") as f:
            if how == "missing":
                del f["rho_hat"]
            elif how == "reshaped":
                t = f["time"][:]
                del f["time"]
                f["time"] = np.stack([t, t])
            elif how == "dtype":
                t = f["time"][:]
                del f["time"]
                f["time"] = t.astype("S8")
            elif how == "nan_rows":
                f["rho_hat"][2] = np.nan
            elif how == "decreasing":
                f["time"][3] = 0.0
            elif how == "attribute":
                f.attrs["beta"] = 25.0
            elif how == "attribute_type":
                f.attrs["modes"] = "many"
            elif how == "hole":
                f["time"][2] = np.nan
    # judged before the command runs (--resume extends the file): flipped bytes that change nothing meanfield
    # reads (free space, padding, a redundant header byte) are harmless, and a command may take the file
    harmless = how.startswith("flip") and _reads_the_same(pristine, out)
    cfg = d / "i.toml"
    cfg.write_text(CFG.replace('[initial]\namplitude = 1e-3', f'[initial]\nkind = "file"\npath = "{out}"'))
    before = snapshot(d)
    ckpt_ok = True
    if command == "info":
        r = mf("info", out)
        if r.returncode == 1 and "Traceback" not in r.stderr and "FAILED" in r.stdout:
            return None  # info reports what is wrong
        allowed = (2,)
    elif command == "rates":
        r = mf("rates", out)
        allowed = (2,) if how not in ("nan_rows",) else (0, 2)
    elif command == "plot":
        r = mf("plot", out, "-o", d / "fig.png")
        allowed = (2,) if how not in ("nan_rows",) else (0, 2)
        ckpt_ok = r.returncode != 0 or (d / "fig.png").exists()
    elif command == "resume":
        r = mf("run", d / "c.toml", "--resume", out, "--quiet", "--set", "time.t_end=0.6")
        allowed = (2,)
    else:
        r = mf("run", cfg, "-o", d / "new.h5", "--quiet")
        allowed = (2,) if how not in ("attribute", "decreasing", "hole") else (0, 2)
    nothing = command == "rates" and r.returncode == 1 and "no mode has a linear window" in r.stderr
    if how.startswith("flip") and (r.returncode == 0 or nothing) and command != "info":
        # harmless only if nothing read changed (rates may then say, as on the pristine file, that it
        # measured nothing)
        allowed = (0, 1, 2) if harmless else (2,)
    elif how.startswith("flip") and r.returncode == 0 and harmless:
        return None  # info found nothing because nothing that is read changed
    own = [d / "fig.png", d / "new.h5", out, Path(str(out) + ".ckpt")] if r.returncode == 0 else []
    return first(verdict(r, allowed), changed(before, snapshot(d), own),
                 None if ckpt_ok else "figure missing")


def _reads_the_same(a: Path, b: Path) -> bool:
    """Whether meanfield reads the same data (times, coefficients, grid, diagnostics, config) from both."""
    code = ("import sys, numpy as np\nfrom meanfield import io\nh, g = (io.read_history(p) for p in sys.argv[1:])\n"
            "same = all(np.array_equal(h[k], g[k], equal_nan=True) for k in ('time', 'rho_hat', 'rho', 'mode'))\n"
            "same &= all(np.array_equal(v, g['diagnostics'][k], equal_nan=True) for k, v in h['diagnostics'].items())\n"
            "same &= str(h['attrs']['config']) == str(g['attrs']['config'])\nprint(same)\n")
    r = subprocess.run([sys.executable, "-c", code, str(a), str(b)], capture_output=True, text=True, errors="replace",
                       env=ENV)
    return r.stdout.strip() == "True"


def _flip_bit(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))


def flipped_data_bit(d: Path, command: str) -> str | None:
    """One bit flipped in the raw data of one snapshot (a plausible number, no structure broken): info
    must fail a check, every reader must refuse the file instead of answering from it."""
    out = make_history(d)
    with h5py.File(out, "r") as f:
        offset = f["rho_hat"].id.get_chunk_info(3).byte_offset + 21
    _flip_bit(out, offset)
    return _damaged_file_refused(d, out, command)


def _damaged_file_refused(d: Path, out: Path, command: str) -> str | None:
    cfg = d / "i.toml"
    cfg.write_text(CFG.replace('[initial]\namplitude = 1e-3', f'[initial]\nkind = "file"\npath = "{out}"'))
    before = snapshot(d)
    if command == "info":
        r = mf("info", out)
        if r.returncode == 2 and "is damaged" in r.stderr and len(r.stderr.strip().splitlines()) == 1:
            return None  # a compressed chunk with a flipped bit cannot even be decompressed: refused, one line
        return None if r.returncode == 1 and "FAILED" in r.stdout else f"info: exit {r.returncode}: {r.stdout[-200:]}"
    if command == "rates":
        r = mf("rates", out)
    elif command == "plot":
        r = mf("plot", out, "-o", d / "fig.png")
    elif command == "resume":
        r = mf("run", d / "c.toml", "--resume", out, "--quiet", "--set", "time.t_end=0.6")
    else:
        r = mf("run", cfg, "-o", d / "new.h5", "--quiet")
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def flipped_checkpoint_bit(d: Path, where: str) -> str | None:
    """One bit flipped in a stopped run's checkpoint (at its end: state data) or in the final state a
    completed run keeps: --resume must refuse it, not continue from a silently different state."""
    if where == "checkpoint":
        cfg, out, ckpt = _stopped_run(d)
        _flip_bit(ckpt, ckpt.stat().st_size - 700)
    else:
        out = make_history(d)
        cfg = d / "c.toml"
        with h5py.File(out, "r") as f:
            offset = f["resume/state/u"].id.get_offset() + 13
        _flip_bit(out, offset)
    before = snapshot(d)
    r = mf("run", cfg, "--resume", out, "--quiet", "--set", "time.t_end=50")
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def lock_name_taken(d: Path, how: str) -> str | None:
    """The lock file's name is a hard link to, a symlink to, or a file of the user's own: never written."""
    cfg = _cfg(d)
    mine = d / "mine.txt"
    mine.write_text("the user's own notes, not a lock file\n")
    lock = d / ".OUT.h5.lock"
    if how == "hardlink":
        os.link(mine, lock)
    elif how == "symlink":
        lock.symlink_to(mine)
    else:
        lock.write_text("notes\n")
    before = snapshot(d)
    r = mf("run", cfg, "-o", d / "OUT.h5", "--quiet")
    return first(verdict(r, (2,)), changed(before, snapshot(d)))


def high_dimension(d: Path, kind: str, dim: int) -> str | None:
    if kind == "zonal":
        text = (f'[model]\ngeometry = "zonal"\ndim = {dim}\nbeta = 9.0\n[grid]\nmodes = 16\n[initial]\nkind = "modes"\n'
                'modes = [[2, 0.1]]\n'
                '[time]\nt_end = 0.1\ndt = 0.01\nstepper = "etdrk4"\n[output]\ninterval = 0.05\n')
    else:
        text = (f'[model]\nmethod = "particles"\nbeta = 9.0\n[particles]\nn = 50\ndim = {dim}\n'
                '[time]\nt_end = 0.1\ndt = 0.01\n[output]\ninterval = 0.05\n')
    (d / "c.toml").write_text(text)
    r = mf("run", d / "c.toml", "-o", d / "OUT.h5", "--quiet")
    if r.returncode == 2 and "dim" in r.stderr and "allowed" in r.stderr:
        return verdict(r)
    return first(verdict(r, (0,)), readable(d / "OUT.h5"))


BIG = "1" + "0" * 400



# ------------------------------------------------------------------------------------------
# one owner for every file (the surfaces beyond run: validate, example, sweep, plot, movie), verified readers
def _made(r, d, before, allowed=(2,)) -> str | None:
    return first(verdict(r, allowed), changed(before, snapshot(d)))


def validate_report_link(d: Path, name: str) -> str | None:
    """A link at a report file's name: refused before any case runs, its target untouched."""
    rep = d / "rep"
    rep.mkdir()
    (rep / ".meanfield").write_text("validate\n")
    (d / "precious.dat").write_text("my notes")
    (rep / name).symlink_to(d / "precious.dat")
    before = snapshot(d)
    r = mf("validate", "--quick", "--case", "mass", "-o", rep)
    return _made(r, d, before)


def validate_report_is_directory(d: Path) -> str | None:
    rep = d / "rep"
    (rep / "report.md").mkdir(parents=True)
    (rep / ".meanfield").write_text("validate\n")
    before = snapshot(d)
    r = mf("validate", "--quick", "--case", "mass", "-o", rep)
    return first(_made(r, d, before), "a case ran before the refusal" if "PASS" in r.stdout else None)


def odd_directory(d: Path, command: str, name: str) -> str | None:
    before = snapshot(d)
    args = {"validate": ["validate", "--quick", "--case", "mass", "-o", name],
            "example": ["example", "linear", "-o", name]}[command]
    return _made(mf(*args, cwd=d), d, before)


def run_onto_family(d: Path, name: str) -> str | None:
    """``-o`` a member of another run's family (its checkpoint, lock or temporary), even with --overwrite: refused
    before anything is touched, whatever is there."""
    cfg = _cfg(d)
    (d / name).write_bytes(b"another run's file")
    (d / ".run.h5.ckpt.abcd1234.partial").write_bytes(b"a run's checkpoint in flight")
    before = snapshot(d)
    return _made(mf("run", cfg, "-o", d / name, "--overwrite", "--quiet"), d, before)


def run_onto_running_checkpoint(d: Path) -> str | None:
    """A's run stopped mid-way (holding its output); B -o A's checkpoint name: refused, A finishes and its file
    passes info."""
    cfg = d / "a.toml"
    cfg.write_text(CFG.replace("t_end = 0.4", "t_end = 2.0").replace("interval = 0.05", "interval = 0.05\n"
                                                                          "checkpoint_every = 1"))
    out = d / "run.h5"
    a = paused(["run", cfg, "-o", out, "--quiet"], env=ENV, snapshot=4)
    try:
        temp = d / ".run.h5.ckpt.zzzzzzzz.partial"
        temp.write_bytes(b"A's checkpoint being written")
        r = mf("run", _cfg(d), "-o", d / "run.h5.ckpt", "--overwrite", "--quiet")
        bad = first(verdict(r, (2,)), None if temp.exists() else "B deleted A's checkpoint temporary")
    finally:
        err = _stop(a, signal.SIGCONT)
    return first(bad, None if a.returncode == 0 else f"A: exit {a.returncode}: {err.strip()[-200:]}", readable(out))


def token_positions(d: Path, positions: str, weights: str = "") -> str | None:
    """Token positions or weights whose squared norm or sum overflows or underflows: the run normalises them (exit
    0, unit vectors) or refuses in one line."""
    cfg = d / "t.toml"
    cfg.write_text('[model]\nmethod = "particles"\ngeometry = "sphere"\nbeta = 4.0\n[grid]\nmodes = 8\n'
                   f'[particles]\ndim = 3\n[initial]\nkind = "tokens"\npositions = {positions}\n{weights}'
                   '[time]\nt_end = 0.2\ndt = 0.01\n[output]\ninterval = 0.1\n')
    r = mf("run", cfg, "-o", d / "t.h5", "--quiet")
    if r.returncode == 0:
        return readable(d / "t.h5")
    return verdict(r, (2,))


def attention_text(d: Path, text: str) -> str | None:
    return config_text(d, CFG + "[attention]\n" + text)


def command_line(d: Path, *args) -> str | None:
    """A command with a bad argument: one line, exit 2, nothing written."""
    make_history(d)
    before = snapshot(d)
    return _made(mf(*args, cwd=d), d, before)


def _damaged_tokens(d: Path, how: str) -> Path:
    src = d / "p.toml"
    src.write_text('[model]\nmethod = "particles"\ngeometry = "circle"\nbeta = 4.0\n[grid]\nmodes = 16\n'
                   '[particles]\nn = 20\ndim = 2\n[time]\nt_end = 0.2\ndt = 0.01\n[output]\ninterval = 0.1\n')
    out = d / "p.h5"
    assert mf("run", src, "-o", out, "--quiet").returncode == 0
    with h5py.File(out, "r+") as f:
        x, w = f["positions"][-1], f["token_weights"][-1]
        if how == "nan":
            x[3] = np.nan
        elif how == "negative":
            w[0], w[1] = w[0] - 0.5, w[1] + 0.5
        elif how == "zero":
            w[:] = 0
        elif how == "off-sphere":
            x *= 3
        f["positions"][-1], f["token_weights"][-1] = x, w
    from meanfield.io import reseal

    reseal(out)
    return out


def damaged_tokens(d: Path, how: str, command: str) -> str | None:
    """A token snapshot damaged and resealed: info fails a check; as initial data it is refused, never repaired."""
    bad = _damaged_tokens(d, how)
    if command == "info":
        r = mf("info", bad)
        return None if r.returncode == 1 and "FAILED" in r.stdout else f"info: exit {r.returncode}: {r.stdout[-300:]}"
    cfg = d / "q.toml"
    cfg.write_text((d / "p.toml").read_text().replace("[time]", f'[initial]\nkind = "file"\npath = "{bad}"\n[time]'))
    before = snapshot(d)
    return _made(mf("run", cfg, "-o", d / "q.h5", "--quiet"), d, before)


def byte_order_flip(d: Path, command: str) -> str | None:
    """The byte order of an int64 dataset's datatype flipped (it then reads as other numbers): refused by every
    reader (info fails a check)."""
    out = make_history(d)
    data = bytearray(out.read_bytes())
    pattern = bytes.fromhex("100800000800000000004000")  # int64 little endian, version 1: the first is @dim's
    i = data.find(pattern)
    if i < 0:
        return "no int64 datatype message found: the attack was not made"
    data[i + 1] ^= 1
    out.write_bytes(bytes(data))
    with h5py.File(out, "r", locking=False) as f:
        if f.attrs["dim"] == 2:
            return "the flip changed nothing: the attack was not made"
    args = {"info": ["info", out], "plot": ["plot", out, "-o", d / "f.png"], "rates": ["rates", out]}[command]
    r = mf(*args)
    if command == "info":
        return None if r.returncode == 1 and "FAILED" in r.stdout else f"info: exit {r.returncode}: {r.stdout[-300:]}"
    return first(verdict(r, (2,)), "a figure was written" if (d / "f.png").exists() else None)


def _tmpfs(d: Path, size: str) -> Path:
    disk = d / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                      capture_output=True).returncode:
        raise Skip("cannot mount a tmpfs here")
    return disk


def full_disk(d: Path, command: str) -> str | None:
    """plot, movie and example onto a file system with no room: one line, nothing left behind on it."""
    history = make_history(d)
    disk = _tmpfs(d, "16k")
    try:
        with contextlib.suppress(OSError), open(disk / "fill", "wb", buffering=0) as f:  # take what is left
            while True:
                f.write(b"\0" * 4096)
        before = snapshot(disk)
        args = {"plot": ["plot", history, "--kind", "energy", "-o", disk / "f.png"],
                "movie": ["plot", history, "--movie", "-o", disk / "m.gif"],
                "example": ["example", "all", "-o", disk / "ex"]}[command]
        r = mf(*args)
        if r.returncode == 0:
            return "exit 0 on a full disk"
        allowed = [p for p in snapshot(disk) if p not in before]
        return first(verdict(r, (1, 2)), None if command == "example" else changed(before, snapshot(disk)),
                     f"left {allowed}" if command == "example" and any(p.endswith(".partial") for p in allowed)
                     else None)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def end_copy_does_not_fit(d: Path) -> str | None:
    """A history that fits the disk once but not twice (the end-of-run copy beside it): refused up front, not
    failed after all its work."""
    disk = _tmpfs(d, "3m")
    try:
        cfg = disk / "c.toml"
        cfg.write_text(CFG.replace("modes = 16", "modes = 256").replace("t_end = 0.4", "t_end = 2.0")
                       .replace("interval = 0.05", "interval = 0.02"))
        before = snapshot(disk)
        r = mf("run", cfg, "-o", disk / "run.h5", "--quiet")
        if r.returncode == 0:
            return first(readable(disk / "run.h5"))
        return first(verdict(r, (2,)), None if "end-of-run copy" in r.stderr else f"not refused up front: "
                     f"{r.stderr.strip()[-200:]}", changed(before, snapshot(disk)))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


SWEEP_BASE = CFG.replace("t_end = 0.4", "t_end = 0.2")


def _sweep_files(d: Path, axes='"initial.seed" = [0]') -> Path:
    (d / "base.toml").write_text(SWEEP_BASE)
    (d / "s.toml").write_text(f'base = "base.toml"\n[axes]\n{axes}\n')
    return d / "s.toml"


def sweep_table(d: Path, how: str) -> str | None:
    """The table ``-o`` is something the sweep did not write: refused before anything runs, left as it was."""
    sweep = _sweep_files(d)
    table = d / "t.parquet"
    if how == "link":
        (d / "real.parquet").write_bytes(b"PAR1")
        table.symlink_to(d / "real.parquet")
    elif how in ("foreign-run-id", "no-run-id"):
        import pandas as pd

        cols = {"run_id": ["u1", "u2"], "mydata": [3.14, 2.71]} if how == "foreign-run-id" else {"x": [1.0]}
        pd.DataFrame(cols).to_parquet(table)
    elif how == "trailing-slash":
        table = str(d / "t") + "/"
    before = snapshot(d)
    return _made(mf("sweep", sweep, "-o", table, "--workers", "1", "--quiet"), d, before)


def sweep_bad(d: Path, how: str) -> str | None:
    """A sweep that must be refused in one line before any worker starts."""
    axes = {"huge-range": '"initial.seed" = {start = 0, stop = 1000000000000000000}',
            "huge-product": '"model.beta" = {start = 1.0, stop = 9.0, num = 1000}\n'
                            '"initial.amplitude" = {start = 1e-3, stop = 0.1, num = 1000}'}.get(how, '"initial.seed" = [0]')
    sweep = _sweep_files(d, axes)
    extra = {"scheduler-garbage": ["--scheduler", "garbage-address"], "scheduler-empty": ["--scheduler", ""],
             "output-empty": ["-o", ""]}.get(how, [])
    before = snapshot(d)
    return _made(mf("sweep", sweep, *extra, "--workers", "1", "--quiet", timeout=120), d, before)


def sweep_silent_scheduler(d: Path) -> str | None:
    """--scheduler at a server that accepts and never answers (it hung for ever): one line within a minute."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    try:
        sweep = _sweep_files(d)
        before = snapshot(d)
        try:
            r = mf("sweep", sweep, "--scheduler", f"tcp://127.0.0.1:{server.getsockname()[1]}", "--quiet",
                   timeout=60)
        except subprocess.TimeoutExpired:
            return "hangs"
        return _made(r, d, before)
    finally:
        server.close()


def sweep_other_history(d: Path) -> str | None:
    """A history of another config at one of the sweep's run paths: never replaced; its row says why."""
    sweep = _sweep_files(d)
    from meanfield.sweep import load_sweep, plan

    rid = plan(load_sweep(sweep))[0][2]
    runs = d / "t_runs"
    runs.mkdir()
    (d / "other.toml").write_text(CFG)
    assert mf("run", d / "other.toml", "-o", runs / f"{rid[:16]}.h5", "--quiet").returncode == 0
    before = (runs / f"{rid[:16]}.h5").read_bytes()
    r = mf("sweep", sweep, "-o", d / "t.parquet", "--workers", "1", "--quiet")
    if (runs / f"{rid[:16]}.h5").read_bytes() != before:
        return "the sweep replaced a history it did not write"
    if r.returncode != 1 or "Traceback" in r.stderr or "another config" not in r.stderr:  # 1: a run failed
        return f"exit {r.returncode}, the failed row not explained: {r.stderr[-300:]}"
    return None


def validate_killed(d: Path, sig: str) -> str | None:
    """validate -j 2 killed (the main process only): none of its workers outlives it."""
    import time

    proc = subprocess.Popen([sys.executable, "-m", "meanfield.cli", "validate", "--quick", "--case",
                             "linear-circle-all-modes", "synchronisation-blocked", "-j", "2", "-o", str(d / "rep")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, process_group=0)
    try:
        end = time.monotonic() + 120
        kids = []
        while time.monotonic() < end and len(kids) < 2:
            try:
                kids = [int(x) for x in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
            except OSError:
                kids = []
            time.sleep(0.05)
        if len(kids) < 2:
            return "the workers never started: the attack was not made"
        os.kill(proc.pid, getattr(signal, sig))
        proc.wait(timeout=60)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            alive = [k for k in kids if Path(f"/proc/{k}").exists()
                     and Path(f"/proc/{k}/stat").read_text().split(")")[-1].split()[0] != "Z"]
            if not alive:
                return None
            time.sleep(0.1)
        return f"workers {alive} outlived validate"
    except FileNotFoundError:
        return None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def cases():
    """(category, name, attack(tmp_dir) -> None | failure)."""
    for name, fn in numerics_cases():
        yield "numerics", name, fn
    yield "resume", "checkpoint-newer-than-history", resume_from_backup
    yield "resume", "checkpoint-of-another-run", resume_checkpoint_of_other_run
    yield "resume", "info-on-spliced-history", info_spliced
    for step in (1, 2, 10, 60):
        yield "kill", f"sigterm-at-step-{step}-of-resume", lambda d, x=step: kill_early_in_resume(d, x)
        yield "kill", f"sigkill-at-step-{step}-of-resume", lambda d, x=step: kill_early_in_resume(d, x, signal.SIGKILL)
    yield "kill", "sigkill-at-writes-1-40", lambda d: kill_at_writes(d, range(1, 41, 3))
    for step in (1, 300, 1000):
        yield "kill", f"sigkill-at-step-{step}-of-a-new-run", lambda d, x=step: kill_fresh_run(d, x)
    yield "kill", "sigterm-at-step-600-of-a-new-run", lambda d: kill_fresh_run(d, 600, signal.SIGTERM)
    yield "kill", "killed-plot-leaves-nothing", killed_plot_leftovers
    for name in (".OUT.h5.partial", "OUT.h5.ckpt.partial"):
        yield "clobber", f"stale-link-{name}", lambda d, n=name: stale_link_at_temporary(d, n)
    yield "clobber", "output-is-link", lambda d: output_is_link(d, False)
    yield "clobber", "output-is-link-overwrite", lambda d: output_is_link(d, True)
    yield "clobber", "checkpoint-is-link", checkpoint_is_link
    yield "clobber", "run-onto-device", lambda d: output_is_device(d, "run")
    yield "clobber", "plot-onto-device", lambda d: output_is_device(d, "plot")
    yield "clobber", "output-is-config", output_is_config
    yield "clobber", "output-is-initial-file", output_is_initial_file
    yield "clobber", "plot-without-extension", plot_without_extension
    yield "clobber", "late-refusal-keeps-checkpoint", late_refusal_keeps_checkpoint
    yield "clobber", "immutable-output", immutable_output
    for how in ("together", "while-running"):
        yield "concurrent", f"two-runs-{how}", lambda d, h=how: concurrent(d, h)
    for limit, expect in ((20_000, "refused"), (200_000, "refused"), (4_000_000, "complete")):
        yield "disk", f"file-size-limit-{limit}", lambda d, x=limit, e=expect: disk_full(d, x, e)
    yield "disk", "file-size-limit-mid-run", file_limit_mid_run
    yield "disk", "disk-fills-mid-run", disk_fills_mid_run
    for name, text in {
        "beta-huge-int": CFG.replace("beta = 9.0", "beta = 100000000000000000000000000000"),
        "t_end-10**400": CFG.replace("t_end = 0.4", f"t_end = {BIG}"),
        "amplitude-10**400": CFG.replace("amplitude = 1e-3", f"amplitude = {BIG}"),
        "modes-entry-10**400": CFG.replace("amplitude = 1e-3", f'kind = "modes"\nmodes = [[2, {BIG}]]'),
        "interval-ratio-overflow": CFG.replace("interval = 0.05", "interval = 1e300").replace("t_end = 0.4", "t_end = 1e300")
                                      .replace("dt = 0.01", "dt = 1e-300"),
        "deep-nesting": CFG + "[particles]\nQ = " + "[" * 3000 + "]" * 3000 + "\n",
        "seed-10**400": CFG.replace("amplitude = 1e-3", f"amplitude = 1e-3\nseed = {BIG}"),
        "binary": "\x00\x01\x02[model]\n",
        "dim-huge": CFG.replace('geometry = "circle"', f'geometry = "zonal"\ndim = {BIG}'),
        "beta-subnormal": CFG.replace("beta = 9.0", "beta = 1e-320"),
        "viscosity-1e308": CFG.replace("beta = 9.0", "beta = 9.0\nviscosity = 1e308"),
        "cluster_mass-subnormal": CFG + "[longtime]\ncluster_mass = 1e-320\n",
        "cluster_radius-subnormal": CFG + "[longtime]\ncluster_radius = 1e-320\n",
    }.items():
        yield "oneline", f"config-{name}", lambda d, t=text: config_text(d, t)
    for path in ("/dev/zero", "/dev/urandom", "fifo", "/"):
        yield "oneline", f"config-is-{path.strip('/') or 'root'}", lambda d, p=path: config_special(d, p)
    for name in ("", " ", "a\nb.h5", "x\x07.h5", "n" * 250 + ".h5", "/proc/version", "no/such/dir/x.h5"):
        yield "oneline", f"output-path-{name[:12]!r}", lambda d, n=name: output_path(d, n)
    yield "oneline", "plot-unknown-extension", lambda d: plot_bad_path(d, "x.jpgx")
    yield "oneline", "plot-missing-directory", lambda d: plot_bad_path(d, "/no/such/dir/x.png")
    for how in ("flip", "flip1", "flip4", "flip16", "truncate", "missing", "reshaped", "dtype", "nan_rows", "decreasing", "attribute",
                "attribute_type", "hole"):
        for command in ("info", "rates", "plot", "resume", "initial"):
            yield "corrupt", f"{how}-{command}", lambda d, h=how, c=command: corrupt(d, h, c)
    for command in ("info", "rates", "plot", "resume", "initial"):
        yield "integrity", f"one-bit-in-data-{command}", lambda d, c=command: flipped_data_bit(d, c)
    for where in ("checkpoint", "final-state"):
        yield "integrity", f"one-bit-in-{where}", lambda d, w=where: flipped_checkpoint_bit(d, w)
    for how in ("hardlink", "symlink", "file"):
        yield "clobber", f"lock-name-is-{how}", lambda d, h=how: lock_name_taken(d, h)
    yield "oneline", "config-integer-5000-digits", lambda d: config_text(d, CFG.replace("beta = 9.0", "beta = 1" + "0" * 5000))
    for kind in ("zonal", "particles"):
        for dim in (345, 1000):
            yield "dimension", f"{kind}-d{dim}", lambda d, k=kind, n=dim: high_dimension(d, k, n)
    # issue 28: one owner for every file, one verified reader
    for name in ("report.md", "results.json", "mass.png"):
        yield "owner", f"validate-link-at-{name}", lambda d, n=name: validate_report_link(d, n)
    yield "owner", "validate-report-is-directory", validate_report_is_directory
    for command in ("validate", "example"):
        for name in ("", " ", "a\nb"):
            yield "owner", f"{command}-o-{name!r}", lambda d, c=command, n=name: odd_directory(d, c, n)
    for name in ("run.h5.ckpt", ".run.h5.lock", ".run.h5.abcd1234.partial"):
        yield "owner", f"run-onto-family-{name}", lambda d, n=name: run_onto_family(d, n)
    yield "owner", "run-onto-running-checkpoint", run_onto_running_checkpoint
    for name, (pos, w) in {"overflow": ("[[1e200, 1e200, 0.0], [0.0, 1.0, 0.0]]", ""),
                           "max": ("[[1.7e308, 1.7e308, 1.7e308], [0.0, 1.0, 0.0]]", ""),
                           "underflow": ("[[1e-200, 1e-200, 0.0], [0.0, 1.0, 0.0]]", ""),
                           "subnormal": ("[[5e-324, 0.0, 0.0], [0.0, 1.0, 0.0]]", ""),
                           "weights": ("[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]", "weights = [1.7e308, 1.7e308]\n")}.items():
        yield "oneline", f"tokens-{name}", lambda d, p=pos, x=w: token_positions(d, p, x)
    for name, text in {"Q-400-digits": "Q = [[1" + "0" * 400 + ", 0], [0, 1]]\n",
                       "QK-1e300": "Q = [[1e300, 0], [0, 1e300]]\nK = [[1e300, 0], [0, 1e300]]\n",
                       "Q-1e150-density": "Q = [[1e150, 0], [0, 1e150]]\n"}.items():
        yield "oneline", f"attention-{name}", lambda d, t=text: attention_text(d, t)
    for name, args in {"info-dot": ["info", "."], "info-root": ["info", "/"],
                       "rates-tol-nan": ["rates", "run.h5", "--tol", "nan"],
                       "rates-tol-negative": ["rates", "run.h5", "--tol", "-1"],
                       "rates-tol-inf": ["rates", "run.h5", "--tol", "inf"],
                       "validate-list-unknown": ["validate", "--list", "--case", "nosuch"],
                       "validate-scheduler-garbage": ["validate", "--quick", "--case", "mass", "--scheduler", "x y"],
                       "plot-frames-not-int": ["plot", "run.h5", "--movie", "--frames", "x"]}.items():
        yield "oneline", f"cli-{name}", lambda d, a=args: command_line(d, *a)
    for how in ("nan", "negative", "zero", "off-sphere"):
        for command in ("info", "initial"):
            yield "initfile", f"tokens-{how}-{command}", lambda d, h=how, c=command: damaged_tokens(d, h, c)
    for command in ("info", "plot", "rates"):
        yield "integrity", f"byte-order-flip-{command}", lambda d, c=command: byte_order_flip(d, c)
    for command in ("plot", "movie", "example"):
        yield "disk", f"full-disk-{command}", lambda d, c=command: full_disk(d, c)
    yield "disk", "end-of-run-copy-does-not-fit", end_copy_does_not_fit
    for how in ("link", "foreign-run-id", "no-run-id", "trailing-slash"):
        yield "sweep", f"table-{how}", lambda d, h=how: sweep_table(d, h)
    for how in ("huge-range", "huge-product", "scheduler-garbage", "scheduler-empty", "output-empty"):
        yield "sweep", f"refused-{how}", lambda d, h=how: sweep_bad(d, h)
    yield "sweep", "history-of-another-config", sweep_other_history
    yield "sweep", "scheduler-that-never-answers", sweep_silent_scheduler
    for sig in ("SIGTERM", "SIGKILL"):
        yield "processes", f"validate-{sig}-leaves-no-worker", lambda d, x=sig: validate_killed(d, x)


def main(root: str | None = None) -> int:
    import tempfile
    from collections import Counter

    if root:
        ENV["PYTHONPATH"] = root
    held, failed, skipped = Counter(), Counter(), Counter()
    for category, name, fn in cases():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                bad = fn(Path(tmp))
            except Skip as exc:  # not made here: listed, never counted as held
                print(f"skip   {category}/{name}: {exc}", flush=True)
                skipped[category] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - the attack itself broke: count as failed
                bad = f"{type(exc).__name__}: {exc}"
        (failed if bad else held)[category] += 1
        print(f"{'FAILED' if bad else 'held  '} {category}/{name}" + (f": {str(bad)[:300]}" if bad else ""),
              flush=True)
    for category in sorted(set(held) | set(failed) | set(skipped)):
        print(f"{category:<12} held {held[category]:>3}  failed {failed[category]:>3}  not made {skipped[category]:>3}")
    print(f"{'all':<12} held {sum(held.values()):>3}  failed {sum(failed.values()):>3}  "
          f"not made {sum(skipped.values()):>3}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
