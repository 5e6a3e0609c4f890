"""Runs that never lose work: checkpoints and bit-for-bit restart after SIGKILL, SIGINT and SIGTERM,
the blow-up checkpoint, `meanfield info`, and refusals."""

import random
import signal

import h5py
import numpy as np
import pytest
from _proc import mf, paused, resume

from meanfield import config, io
from meanfield.simulation.simulation import Simulation
from meanfield.simulation.trackers import Checkpointer, HistoryTracker

# adaptive SBDF2: the richest state (solution, previous solution and N, previous step, dt)
LONG = """
[model]
beta = 12.0
viscosity = 0.02
[grid]
modes = 128
[initial]
kind = "random"
amplitude = 1e-5
seed = 4
[time]
t_end = {t_end}
dt = 0.005
stepper = "sbdf2"
adaptive = true
rtol = 1e-8
[output]
interval = 0.5
"""


def same_history(a, b):
    with h5py.File(a) as f, h5py.File(b) as g:
        keys = ["time", "rho_hat", "rho", "diagnostics/dt", "diagnostics/steps", "diagnostics/energy"]
        keys += [k for k in ("positions", "token_weights", "diagnostics/n_tokens", "diagnostics/n_clusters",
                             "clusters/mass", "merges/time", "merges/row", "merges/weight") if k in f]
        for key in keys:
            assert np.array_equal(f[key][:], g[key][:], equal_nan=True), key
        assert ("resume" in f) == ("resume" in g)
        if "resume" in f:  # the stored final state too: every attribute (merges counted across resumes) and array
            fa, ga = dict(f["resume"].attrs), dict(g["resume"].attrs)
            assert fa.keys() == ga.keys()
            for key in fa:
                if key != "run_id":
                    assert np.array_equal(np.asarray(fa[key]), np.asarray(ga[key])), f"resume@{key}"
            names = []
            f["resume"].visit(names.append)
            for name in names:
                if isinstance(f["resume"][name], h5py.Dataset):
                    assert np.array_equal(f["resume"][name][()], g["resume"][name][()], equal_nan=True), name


def kill(proc) -> None:
    """SIGKILL a paused run and reap it."""
    proc.kill()
    assert proc.wait() == -signal.SIGKILL


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    cfg = d / "long.toml"
    cfg.write_text(LONG.format(t_end=150.0))
    ref = d / "ref.h5"
    r = mf("run", cfg, "-o", ref, "--quiet")
    assert r.returncode == 0 and not r.stderr, r.stderr  # no warning: the run is resolved throughout
    return cfg, ref


def test_sigkill_at_five_random_steps_then_resume_is_bit_for_bit(reference, tmp_path):
    cfg, ref = reference
    total = int(io.read_history(ref)["diagnostics"]["steps"][-1])
    rng = random.Random(2026)
    for k, step in enumerate(sorted(rng.sample(range(1, total), 5))):
        out = tmp_path / f"killed{k}.h5"
        kill(paused(["run", cfg, "-o", out, "--quiet"], step=step))
        kept = io.read_history(out)["time"]  # the killed file is readable, with its snapshots
        assert kept.size >= 1
        r = mf("run", cfg, "--resume", out, "--quiet")
        assert r.returncode == 0, r.stderr
        same_history(ref, out)  # every snapshot, before and after the kill, bit for bit


HANDOFF = """
[model]
beta = 25.0
[grid]
modes = 128
[initial]
amplitude = 1e-4
seed = 2
[time]
t_end = 1e12
dt = 0.01
stepper = "etdrk4"
[output]
interval = 0.25
spacing = "log"
per_decade = 40
[longtime]
handoff = "tokens"
rtol = 1e-13
"""


def test_sigkill_in_the_token_phase_then_resume_is_bit_for_bit(tmp_path):
    """A hand-off run killed while it is tokens (positions, weights, rows, the integrator's carried
    derivative and step, the merge records) resumes to the same file bit for bit."""
    cfg = tmp_path / "handoff.toml"
    cfg.write_text(HANDOFF)
    ref = tmp_path / "ref.h5"
    assert mf("run", cfg, "-o", ref, "--quiet").returncode == 0
    h = io.read_history(ref)
    d = h["diagnostics"]
    first = int(d["steps"][np.argmax(d["n_tokens"] > 0)])  # a step count the token phase has reached
    total = int(d["steps"][-1])
    rng = random.Random(7)
    for k, step in enumerate(sorted(rng.sample(range(first, total), 3))):
        out = tmp_path / f"killed{k}.h5"
        kill(paused(["run", cfg, "-o", out, "--quiet"], step=step))
        assert io.read_checkpoint(io.checkpoint_path(out))["phase"] == "tokens"
        r = mf("run", cfg, "--resume", out, "--quiet")
        assert r.returncode == 0, r.stderr
        same_history(ref, out)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_checkpoint_and_say_how_to_resume(reference, tmp_path, sig, code):
    cfg, ref = reference
    out = tmp_path / "stopped.h5"
    proc = paused(["run", cfg, "-o", out, "--quiet"], step=500)
    proc.send_signal(sig)  # pending while it is stopped: handled once it goes on
    resume(proc)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "checkpoint written" in lines[0] and f"--resume {out}" in lines[0], err
    h = io.read_history(out)  # closed cleanly, a final snapshot at the stop time
    assert h["time"].size >= 2
    r = mf("run", cfg, "--resume", out, "--quiet")
    assert r.returncode == 0, r.stderr
    same_history(ref, out)


def stopped_run(cfg, out):
    """A run stopped by SIGTERM after its third snapshot: a history with a checkpoint beside it."""
    proc = paused(["run", cfg, "-o", out, "--quiet"], snapshot=3)
    proc.send_signal(signal.SIGTERM)
    resume(proc)
    proc.communicate(timeout=600)
    assert proc.returncode == 143 and io.checkpoint_path(out).exists()


def test_resume_refusals_and_complete_runs(reference, tmp_path):
    cfg, ref = reference
    out = tmp_path / "stopped.h5"
    stopped_run(cfg, out)
    other = mf("run", cfg, "--resume", out, "--set", "model.beta=11.0")
    assert other.returncode == 2 and "another configuration" in other.stderr and other.stderr.count("\n") == 1
    both = mf("run", cfg, "--resume", out, "-o", out)
    assert both.returncode == 2 and "not both" in both.stderr
    io.checkpoint_path(out).unlink()
    none = mf("run", cfg, "--resume", out)
    assert none.returncode == 2 and "no checkpoint" in none.stderr
    # a run that completes removes its checkpoint; resuming it says so and succeeds
    done = tmp_path / "done.h5"
    short = tmp_path / "short.toml"
    short.write_text(LONG.format(t_end=2.0))
    assert mf("run", short, "-o", done, "--quiet").returncode == 0
    assert not io.checkpoint_path(done).exists()
    r = mf("run", short, "--resume", done)
    assert r.returncode == 0 and "complete" in r.stderr


def test_blow_up_keeps_the_last_good_state(tmp_path):
    cfg = tmp_path / "boom.toml"
    cfg.write_text("[model]\nvariant='usa'\nbeta=6.0\n[grid]\nmodes=32\n[initial]\nkind='modes'\nmodes=[[2, 0.5]]\n"
                   "[time]\nt_end=5.0\ndt=0.5\nstepper='sbdf2'\ngrowth_check='off'\n[output]\ninterval=0.5\n")
    out = tmp_path / "boom.h5"
    r = mf("run", cfg, "-o", out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]  # warnings (negative density) may come before
    assert line.startswith("meanfield: error: blow-up at t = ") and "dt" in line
    assert "last good state" in line and ".ckpt" in line
    with h5py.File(out, "r") as f:  # closed, shrunk to the snapshots written, readable by anyone
        n = f["time"].shape[0]
        assert n >= 1 and np.all(np.isfinite(f["time"][:])) and f["rho"].shape[0] == n
    point = io.read_checkpoint(io.checkpoint_path(out))
    assert np.all(np.isfinite(point["state"].u)) and point["t"] > 0
    assert io.read_history(out)["time"].size >= 1


@pytest.mark.parametrize("method", ["spectral", "particles", "handoff", "ragged", "batch"])
def test_restore_in_process_is_bit_for_bit(tmp_path, method):
    """Stop a run after a checkpoint (a tracker raising mid-interval), restore, finish: equal to an
    uninterrupted run; for particles with noise this includes the random generator's state; "ragged":
    a fixed-step t_end that is no multiple of dt (the last step is shorter), stopped in that interval; "batch":
    systems whose tokens merge before and after the checkpoint (the rows merged away and their leaders)."""
    crash, restart = 2.3, 2.0
    if method == "batch":
        base = dict(model=dict(method="particles", geometry="sphere", beta=1.0), longtime=dict(merge_tol=1e-4),
                    initial=dict(kind="uniform", seed=3), particles=dict(n=12, dim=3, batch=4),
                    time=dict(t_end=14.0, dt=0.05), output=dict(interval=1.0))
        make, crash, restart = Simulation, 11.3, 11.0
    elif method == "ragged":
        base = dict(model=dict(beta=9.0), grid=dict(modes=32), initial=dict(amplitude=1e-4),
                    time=dict(t_end=4.0537, dt=0.01, stepper="sbdf2"), output=dict(interval=0.5))
        make, crash, restart = Simulation, 4.02, 4.0
    elif method == "spectral":
        base = dict(model=dict(beta=9.0), grid=dict(modes=32), initial=dict(amplitude=1e-4),
                    time=dict(t_end=4.0, dt=0.01, stepper="etdrk4"), output=dict(interval=0.5))
        make = Simulation
    elif method == "particles":
        base = dict(model=dict(method="particles", geometry="sphere", beta=3.0, viscosity=0.05), grid=dict(modes=8),
                    initial=dict(kind="random", amplitude=0.0), particles=dict(n=64, dim=3, Q="random"),
                    time=dict(t_end=4.0, dt=0.05), output=dict(interval=0.5))
        make = Simulation
    else:  # crash in the token phase of a hand-off run (the hand-off is near t = 1.1)
        base = dict(model=dict(beta=9.0), grid=dict(modes=24),
                    initial=dict(kind="von_mises", centers=[0.5, 2.0, 4.0], concentrations=[1.0, 2.0, 1.5]),
                    time=dict(t_end=4.0, dt=0.01, stepper="etdrk4"), output=dict(interval=0.5),
                    longtime=dict(handoff="tokens", departure=0.0))  # the tail hands off while the bumps are mild
        make = Simulation
    cfg = config.from_dict(base)
    ref = make(cfg)
    ref.run([])

    class Crash(Exception):
        pass

    class CrashAt:
        def __init__(self, t):
            self.t = t

        def step(self, sim):
            if sim.t >= self.t:
                raise Crash

    ck = tmp_path / "ck.h5"

    class Writer:  # counts only; the checkpoint is what matters here
        count = 0
        merge_count = 0

    sim = make(cfg)
    with pytest.raises(Crash):
        sim.run([Checkpointer(ck, Writer(), "h", every=1), CrashAt(crash)])
    again = make(cfg)
    again.restore(io.read_checkpoint(ck))
    assert again.t == restart and again.phase == sim.phase
    merged = np.count_nonzero(again.weights == 0) if method == "batch" else 0
    again.run([])
    assert np.array_equal(again.state.u, ref.state.u) and again.steps == ref.steps
    if method == "batch":  # tokens merged before the checkpoint and after it
        assert 0 < merged < np.count_nonzero(again.weights == 0)
        assert np.array_equal(again.weights, ref.weights)
    if method == "handoff":
        assert again.phase == "tokens" and np.array_equal(again.weights, ref.weights)
        assert again.handoff == ref.handoff


def test_info_reports_and_checks(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(LONG.format(t_end=1.0))
    out = tmp_path / "o.h5"
    assert mf("run", cfg, "-o", out, "--quiet").returncode == 0
    r = mf("info", out)
    assert r.returncode == 0, r.stdout + r.stderr
    for needle in ("meanfield ", "numpy", "h5py", "config hash", "ok      times increase", "ok      data finite",
                   "ok      mass within 1e-10"):
        assert needle in r.stdout, needle
    with h5py.File(out, "r+") as f:
        f["rho"][1, 3] = np.nan
    r = mf("info", out)
    assert r.returncode == 1 and "FAILED  data finite" in r.stdout


def test_new_run_removes_a_stale_checkpoint(reference, tmp_path):
    """A new run over an old output must not leave the old checkpoint for --resume to pick up,
    even when it is killed before writing its own."""
    cfg, ref = reference
    out = tmp_path / "o.h5"
    stopped_run(cfg, out)
    assert io.checkpoint_path(out).exists()
    kill(paused(["run", cfg, "-o", out, "--quiet", "--overwrite", "--set", "output.checkpoint_every=0"], step=1))
    assert not io.checkpoint_path(out).exists()


def test_history_tracker_and_checkpointer_order_matter_for_count(tmp_path):
    """The checkpoint records the number of regular snapshots already in the history."""
    cfg = config.from_dict(dict(model=dict(beta=9.0), grid=dict(modes=16), time=dict(t_end=1.0, dt=0.1),
                                output=dict(interval=0.5)))
    sim = Simulation(cfg)
    out = tmp_path / "h.h5"
    w = io.HistoryWriter(out, sim.geometry, {"config": cfg.to_toml()}, 3)
    sim.run([HistoryTracker(w), Checkpointer(io.checkpoint_path(out), w, "x")])
    assert int(io.read_checkpoint(io.checkpoint_path(out))["count"]) == 3


def test_check_point_refuses_a_point_of_another_phase_or_shape():
    """A resume point that cannot belong to the run: a density point for a particles run (tokens never turn
    back into a density), a token point with another number of output rows, an unknown phase."""
    dens = Simulation(config.from_dict(dict(model=dict(beta=3.0), grid=dict(modes=16), time=dict(t_end=0.1))))
    part = Simulation(config.from_dict(dict(model=dict(method="particles", geometry="sphere", beta=3.0),
                                            grid=dict(modes=8), initial=dict(kind="random", amplitude=0.0),
                                            particles=dict(n=16, dim=3), time=dict(t_end=0.1, dt=0.05))))
    part.check_point(part.resume_point())  # its own point passes
    dens.check_point(dens.resume_point())
    with pytest.raises(ValueError, match="phase = 'density'"):
        part.check_point(dens.resume_point())
    with pytest.raises(ValueError, match="n_rows = 17"):
        part.check_point({**part.resume_point(), "n_rows": 17})
    with pytest.raises(ValueError, match="phase = 'fluid'"):
        dens.check_point({**dens.resume_point(), "phase": "fluid"})
    with pytest.raises(ValueError, match="state of shape"):
        Simulation(config.from_dict(dict(model=dict(beta=3.0), grid=dict(modes=32),
                                          time=dict(t_end=0.1)))).check_point(dens.resume_point())
