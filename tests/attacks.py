"""Attacks on the real ``meanfield`` command in subprocesses, by category.

Each attack takes a fresh directory and returns None when the command held, else what went wrong.
"Held" means: exit status 0, 1 or 2 only; a failure is exactly one ``meanfield: error:`` line and
no traceback; nothing outside the run's own files was created or changed; an existing file is
either intact or, with --overwrite, replaced whole; and no wrong answer with exit 0.

``tests/test_attacks.py`` runs them; ``python tests/attacks.py [ROOT]`` runs them all against the
package in ROOT (default: the installed one) and prints the counts per category.
"""

from __future__ import annotations

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
    """Run ``python -m meanfield.cli ARGS`` in its own process group; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "meanfield.cli", *map(str, args)], capture_output=True, text=True,
                          errors="replace", cwd=cwd, timeout=timeout, preexec_fn=preexec, env=env or ENV,
                          process_group=0)


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
    for when in points:
        work = d / f"k{when}"
        shutil.copytree(base, work)
        (work / "c.toml").write_text((base / "c.toml").read_text())
        bad = _kill_resume_at(work, when)
        if bad == "done":
            return None
        if bad:
            return f"killed at write {when}: {bad}"
        shutil.rmtree(work)
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
        return None  # not supported here: nothing to attack
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
def disk_full(d: Path, limit: int) -> str | None:
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
    if r.returncode == 0:
        return readable(out)
    if not out.exists():
        return None  # refused before anything was written
    if "keeps" not in r.stderr and "snapshots" not in r.stderr:
        return f"end state unclear: {r.stderr.strip()}"
    if readable(out):
        return readable(out)
    if Path(str(out) + ".ckpt").exists():
        return _resume_completes(cfg, out)
    return None


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
        allowed = (0, 1, 2) if _reads_the_same(pristine, out) else (2,)
    elif how.startswith("flip") and r.returncode == 0 and _reads_the_same(pristine, out):
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
    for limit in (20_000, 200_000, 1_500_000):
        yield "disk", f"file-size-limit-{limit}", lambda d, x=limit: disk_full(d, x)
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


def main(root: str | None = None) -> int:
    import tempfile
    from collections import Counter

    if root:
        ENV["PYTHONPATH"] = root
    held, failed = Counter(), Counter()
    for category, name, fn in cases():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                bad = fn(Path(tmp))
            except Skip as exc:
                print(f"skip   {category}/{name}: {exc}", flush=True)
                continue
            except Exception as exc:  # noqa: BLE001 - the attack itself broke: count as failed
                bad = f"{type(exc).__name__}: {exc}"
        (failed if bad else held)[category] += 1
        print(f"{'FAILED' if bad else 'held  '} {category}/{name}" + (f": {str(bad)[:300]}" if bad else ""),
              flush=True)
    for category in sorted(set(held) | set(failed)):
        print(f"{category:<12} held {held[category]:>3}  failed {failed[category]:>3}")
    print(f"{'all':<12} held {sum(held.values()):>3}  failed {sum(failed.values()):>3}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
