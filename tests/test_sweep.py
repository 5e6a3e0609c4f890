"""meanfield sweep: parsing, a local Dask cluster, a killed worker, a restart."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import dask.distributed  # noqa: F401 - a dev dependency: a broken install fails here, it is not skipped
import pandas as pd

from meanfield import io
from meanfield.cli import main
from meanfield.errors import ConfigError
from meanfield.sweep import load_sweep, plan, run_sweep

BASE = """
[model]
geometry = "circle"
beta = 4.0
[grid]
modes = 32
[initial]
kind = "random"
amplitude = 1e-7
[time]
t_end = {t_end}
dt = 0.02
[output]
interval = 0.2
[longtime]
handoff = "tokens"
"""


def _write(tmp_path, axes: str, t_end: float = 6.0, extra: str = "") -> str:
    (tmp_path / "run.toml").write_text(BASE.format(t_end=t_end))
    (tmp_path / "sweep.toml").write_text(f'base = "run.toml"\n{extra}\n[axes]\n{axes}\n')
    return str(tmp_path / "sweep.toml")


def _pause_at_first_step_of_run(number: int):
    """Installed in one worker process (``client.run``): the ``number``-th run it starts stops the process
    (SIGSTOP) after its first step, so the test kills a worker that is in the middle of a run, whatever the
    machine's speed."""
    import os
    import signal

    from meanfield.simulation.simulation import Simulation

    state = {"runs": 0}
    run = Simulation.run

    class Pause:
        def __init__(self):
            state["runs"] += 1
            self.armed = state["runs"] == number

        def step(self, sim):
            if self.armed:
                self.armed = False
                os.kill(os.getpid(), signal.SIGSTOP)

    def paused(self, trackers=()):
        return run(self, [*trackers, Pause()])

    Simulation.run = paused


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0] == "T"


def _kill_a_worker_mid_sweep(path, table, cluster, client, run_number):
    """Run the sweep in a thread on ``cluster``; one worker stops itself in the middle of the ``run_number``-th run
    it starts, and is SIGKILLed there; return the sweep's table."""
    address, pid = next(iter(client.run(os.getpid).items()))
    client.run(_pause_at_first_step_of_run, run_number, workers=[address])
    result = {}
    sweep = threading.Thread(target=lambda: result.update(df=run_sweep(path, table, scheduler=cluster.scheduler_address,
                                                                       progress=False)))
    sweep.start()
    deadline = time.monotonic() + 900  # a wait for the pause, not a verdict: it is reached on any machine
    while not _stopped(pid):
        assert sweep.is_alive() and time.monotonic() < deadline, "the worker never reached its pause"
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    sweep.join(timeout=900)
    assert not sweep.is_alive()
    return result["df"]


def test_axes_ranges_zip_and_crossing(tmp_path):
    path = _write(tmp_path, '"model.beta" = {start = 1.0, stop = 100.0, num = 3, log = true}\n'
                            '"initial.seed" = {start = 0, stop = 4, step = 2}\n'
                            '[[zip]]\n"model.variant" = ["sa", "usa"]\n"grid.modes" = [32, 64]\n')
    sw = load_sweep(path)
    assert sw.axes["model.beta"] == pytest.approx([1.0, 10.0, 100.0])
    assert sw.axes["initial.seed"] == [0, 2]
    combos = sw.combinations()
    assert len(combos) == 3 * 2 * 2
    assert {(c["model.variant"], c["grid.modes"]) for c in combos} == {("sa", 32), ("usa", 64)}  # zipped, not crossed
    runs = plan(sw)
    assert len({rid for _, _, rid in runs}) == 12
    assert all(cfg.time.threads == 1 for _, cfg, _ in runs)


@pytest.mark.parametrize("axes, pattern", [
    ('"model.beta" = []', r"axes\.'model\.beta'"),
    ('"model.beta" = {start = 1, stop = 1}', "is empty"),
    ('"model.beta" = [-1.0]', "model.beta"),
    ('"output.path" = ["a.h5"]', "output.path may not be swept"),
    ('"nosuch.key" = [1]', "nosuch"),
    ('[[zip]]\n"model.beta" = [1.0, 2.0]\n"initial.seed" = [1]', "equal lengths"),
])
def test_bad_sweeps_name_the_key(tmp_path, axes, pattern):
    path = _write(tmp_path, axes)
    with pytest.raises(ConfigError, match=pattern):
        plan(load_sweep(path))


def test_a_base_config_reads_its_initial_file_beside_it_from_any_directory(tmp_path, monkeypatch):
    import meanfield

    meanfield.run(dict(grid=dict(modes=32), time=dict(t_end=0.1, dt=0.05)), tmp_path / "start.h5", progress=False)
    (tmp_path / "run.toml").write_text(BASE.format(t_end=1.0).replace('kind = "random"\namplitude = 1e-7',
                                                                     'kind = "file"\npath = "start.h5"'))
    (tmp_path / "sweep.toml").write_text('base = "run.toml"\n[axes]\n"model.beta" = [2.0, 4.0]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runs = plan(load_sweep(tmp_path / "sweep.toml"))
    assert [cfg.initial.path for _, cfg, _ in runs] == [str(tmp_path / "start.h5")] * 2


def test_unreadable_sweep_and_base_files_are_one_line_naming_them(tmp_path):
    with pytest.raises(ConfigError, match=r"^sweep: file .* not found"):
        load_sweep(tmp_path / "none.toml")
    (tmp_path / "sweep.toml").write_text('base = "none.toml"\n[axes]\n"model.beta" = [2.0]\n')
    with pytest.raises(ConfigError, match=r"^sweep\.base: file .*none\.toml' not found"):
        load_sweep(tmp_path / "sweep.toml")
    (tmp_path / "bad.toml").write_text("[model\n")
    with pytest.raises(ConfigError, match=r"^sweep: invalid TOML"):
        load_sweep(tmp_path / "bad.toml")


def test_cli_bad_sweep_is_one_line_exit_2(tmp_path, capsys):
    path = _write(tmp_path, '"model.beta" = {start = 1, stop = 5, num = 0}')
    assert main(["sweep", path, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "num" in err[0]
    assert not (tmp_path / "sweep.parquet").exists()


def test_killed_worker_and_restart_leave_every_row_once(tmp_path):
    from dask.distributed import Client, LocalCluster

    path = _write(tmp_path, '"model.beta" = [2.0, 4.0, 6.0, 8.0]\n"initial.seed" = [0, 1]',
                  extra="[summary]\ncluster_times = [3.0]\nrates = 1")
    table = tmp_path / "table.parquet"
    planned = {rid for _, _, rid in plan(load_sweep(path))}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        df = _kill_a_worker_mid_sweep(path, table, cluster, client, run_number=2)  # its first run is done
    assert sorted(df["run_id"]) == sorted(planned)  # every run once
    assert (df["status"] == "done").all(), df[["status", "error"]]
    for p in df["path"]:  # each history complete (a run the killed worker held was resumed or rerun)
        assert io.read_history(p)["time"][-1] == pytest.approx(6.0)
    # the summaries are the histories' own numbers
    row = df.iloc[0]
    h = io.read_history(row["path"])
    assert row["energy_final"] == h["diagnostics"]["energy"][-1]
    assert row["clusters_t3"] == h["diagnostics"]["n_clusters"][np.searchsorted(h["time"], 3.0 + 1e-9) - 1]
    # a restart runs nothing and changes nothing
    again = run_sweep(path, table, workers=1, progress=False)
    pd.testing.assert_frame_equal(again.sort_values("run_id").reset_index(drop=True),
                                  df.sort_values("run_id").reset_index(drop=True))


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    # beta 2 with 16 modes and no hand-off blows up; beta 1 with viscosity 0.5 decays quietly
    (tmp_path / "run.toml").write_text(BASE.format(t_end=30.0).replace("modes = 32", "modes = 16")
                                       .replace('handoff = "tokens"', 'handoff = "none"')
                                       .replace("amplitude = 1e-7", "amplitude = 1e-3"))
    (tmp_path / "sweep.toml").write_text('base = "run.toml"\n[[zip]]\n"model.beta" = [8.0, 1.0]\n'
                                         '"model.viscosity" = [0.0, 0.5]\n')
    code = main(["sweep", str(tmp_path / "sweep.toml"), "--workers", "1", "--quiet"])
    df = pd.read_parquet(tmp_path / "sweep.parquet")
    assert code == 1 and sorted(df["status"]) == ["done", "failed"]
    failed = df[df["status"] == "failed"].iloc[0]
    assert failed["model.beta"] == 8.0 and "NumericalError: blow-up" in failed["error"]
    assert "failed" in capsys.readouterr().err


def test_the_shipped_phase_sweep_plans_80_valid_runs(tmp_path):
    assert main(["example", "phase_sweep", "-o", str(tmp_path)]) == 0
    sw = load_sweep(tmp_path / "phase_sweep.toml")  # its base is the shipped example phase_base
    runs = plan(sw)
    assert len(runs) == 80 and len({rid for *_, rid in runs}) == 80
    betas = sorted({v["model.beta"] for v, _, _ in runs})
    assert betas[0] == pytest.approx(2.0) and betas[-1] == pytest.approx(40.0) and len(betas) == 10


def test_a_run_whose_worker_dies_is_recorded_killed_then_rerun(tmp_path):
    import dask
    from dask.distributed import Client, LocalCluster

    path = _write(tmp_path, '"model.beta" = [2.0, 3.0, 4.0, 5.0]')
    table = tmp_path / "table.parquet"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        df = _kill_a_worker_mid_sweep(path, table, cluster, client, run_number=1)
    assert len(df) == 4 and set(df["status"]) <= {"done", "killed"} and (df["status"] == "killed").sum() >= 1  # with the tasks queued on it
    assert df.loc[df["status"] == "killed", "error"].str.startswith("KilledWorker").all()
    again = run_sweep(path, table, workers=2, progress=False)  # the killed run resumes from its checkpoint
    assert len(again) == 4 and (again["status"] == "done").all()
    for p in again["path"]:
        assert io.read_history(p)["time"][-1] == pytest.approx(6.0)


@pytest.mark.parametrize("make, pattern", [
    (lambda d: (d / "sweep.parquet").mkdir(), "is a directory"),
    (lambda d: (d / "sweep.parquet").write_text("not parquet"), "not a sweep table"),
    (lambda d: (d / "sweep_runs").write_text("a file"), "not a directory"),
])
def test_bad_outputs_are_refused_before_anything_runs(tmp_path, capsys, make, pattern):
    path = _write(tmp_path, '"model.beta" = [2.0]')
    make(tmp_path)
    assert main(["sweep", path, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert pattern in err[-1]
    assert not list(tmp_path.glob("*.h5"))


def test_validate_runs_its_cases_on_a_dask_cluster(tmp_path):
    from dask.distributed import LocalCluster

    from meanfield import validate

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = validate.run(["theory-quadrature", "linear-circle-all-modes"], quick=True, out=tmp_path / "rep",
                           scheduler=cluster.scheduler_address, progress=lambda line: None)
    assert {n: o.verdict for n, o in out.items()} == {"theory-quadrature": "pass", "linear-circle-all-modes": "pass"}
    assert (tmp_path / "rep" / "report.md").is_file() and (tmp_path / "rep" / "linear-circle-all-modes.png").is_file()


# ----------------------------------------------------------------- ownership of the table and the histories


def _sweep_once(tmp_path, axes='"initial.seed" = [0, 1]', t_end=0.4):
    path = _write(tmp_path, axes, t_end=t_end)
    df = run_sweep(path, tmp_path / "t.parquet", workers=1, progress=False)
    assert (df["status"] == "done").all()
    return path, df


def test_a_history_of_another_config_at_a_run_path_is_never_replaced(tmp_path):
    path = _write(tmp_path, '"initial.seed" = [0, 1]', t_end=0.4)
    rid = plan(load_sweep(path))[0][2]
    runs = tmp_path / "t_runs"
    runs.mkdir()
    other = tmp_path / "other.toml"
    other.write_text(BASE.format(t_end=0.8))
    assert main(["run", str(other), "-o", str(runs / f"{rid[:16]}.h5"), "--quiet"]) == 0
    before = (runs / f"{rid[:16]}.h5").read_bytes()
    df = run_sweep(path, tmp_path / "t.parquet", workers=1, progress=False)
    row = df[df["run_id"] == rid].iloc[0]
    assert row["status"] == "failed" and "another config" in row["error"]
    assert (runs / f"{rid[:16]}.h5").read_bytes() == before  # the user's history, untouched
    assert (df["status"] == "done").sum() == 1


def test_a_changed_base_config_is_refused_instead_of_mixed_into_the_table(tmp_path):
    path, _ = _sweep_once(tmp_path)
    before = (tmp_path / "t.parquet").read_bytes()
    (tmp_path / "run.toml").write_text(BASE.format(t_end=0.4).replace("beta = 4.0", "beta = 5.0"))
    with pytest.raises(ConfigError, match="another base config"):
        run_sweep(path, tmp_path / "t.parquet", workers=1, progress=False)
    assert (tmp_path / "t.parquet").read_bytes() == before


def test_a_parquet_file_the_sweep_did_not_write_is_refused_and_kept(tmp_path, capsys):
    path = _write(tmp_path, '"initial.seed" = [0]', t_end=0.4)
    for frame in (pd.DataFrame({"run_id": ["u1", "u2"], "mydata": [3.14, 2.71]}), pd.DataFrame({"x": [1.0]})):
        frame.to_parquet(tmp_path / "t.parquet")
        before = (tmp_path / "t.parquet").read_bytes()
        assert main(["sweep", path, "-o", str(tmp_path / "t.parquet"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not a sweep table" in err[0], err  # refused before the announcement
        assert (tmp_path / "t.parquet").read_bytes() == before


def test_a_changed_value_in_a_done_row_is_found_by_every_reader(tmp_path, capsys):
    import pyarrow.parquet as pq

    path, _ = _sweep_once(tmp_path)
    table = pq.read_table(tmp_path / "t.parquet")
    df = table.to_pandas()
    df.loc[0, "energy_final"] = np.nextafter(df.loc[0, "energy_final"], 1.0)  # one ulp
    import pyarrow as pa

    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(table.schema.metadata),
                   tmp_path / "t.parquet")
    with pytest.raises(ConfigError, match="row 0 .* was changed"):
        run_sweep(path, tmp_path / "t.parquet", workers=1, progress=False)
    assert main(["plot", str(tmp_path / "t.parquet"), "--kind", "phase", "-o", str(tmp_path / "p.png")]) == 2
    assert "was changed" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_the_phase_plot_refuses_a_damaged_history(tmp_path, capsys):
    import h5py

    _write(tmp_path, '"model.beta" = [4.0]', t_end=0.4)
    _, df = _sweep_once(tmp_path, '"model.beta" = [4.0]')
    with h5py.File(df["path"].iloc[0], "r+") as f:
        f["diagnostics/n_clusters"][:] = 40
    assert main(["plot", str(tmp_path / "t.parquet"), "--kind", "phase", "-o", str(tmp_path / "p.png")]) == 2
    assert "checksums do not match" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("make", ["link", "dangling"])
def test_a_table_path_that_is_a_link_is_refused_and_left_alone(tmp_path, make):
    path = _write(tmp_path, '"initial.seed" = [0]', t_end=0.4)
    target = tmp_path / "real.parquet"
    if make == "link":
        target.write_bytes(b"PAR1 not mine")
    (tmp_path / "t.parquet").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        run_sweep(path, tmp_path / "t.parquet", workers=1, progress=False)
    assert (tmp_path / "t.parquet").is_symlink()
    assert not target.exists() or target.read_bytes() == b"PAR1 not mine"


@pytest.mark.parametrize("axes", ['"initial.seed" = {start = 0, stop = 1000000000000000000}',
                                  '"model.beta" = {start = 1.0, stop = 9.0, num = 1000}\n'
                                  '"initial.amplitude" = {start = 1e-3, stop = 0.1, num = 1000}'])
def test_huge_axes_are_refused_before_anything_is_built(tmp_path, axes):
    path = _write(tmp_path, axes)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="at most 100000 runs"):
        load_sweep(path)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("address, pattern", [("not an address", "host and port"), ("", "scheduler address"),
                                              ("tcp://127.0.0.1:1", "no Dask scheduler answered")])
def test_a_bad_scheduler_is_one_line(tmp_path, capsys, address, pattern):
    path = _write(tmp_path, '"initial.seed" = [0]', t_end=0.4)
    assert main(["sweep", path, "--scheduler", address, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert pattern in err[-1] and err[-1].startswith("meanfield: error: --scheduler")


def test_log_must_be_a_boolean(tmp_path):
    path = _write(tmp_path, '"model.beta" = {start = 1.0, stop = 4.0, num = 3, log = "yes"}')
    with pytest.raises(ConfigError, match=r"log: got 'yes', allowed: true or false"):
        load_sweep(path)


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_in_one_line_and_the_same_command_finishes_it(tmp_path):
    """Ctrl-C reaches the whole process group (the command and its Dask workers): one line, exit 130, no
    worker traceback, no worker left, the table keeps what finished; the same command then runs the rest,
    and a sweep that ends normally prints no Dask warning ("worker still alive, killing")."""
    import subprocess
    import sys

    sweep = _write(tmp_path, '"initial.seed" = {start = 0, stop = 12}', t_end=6.0)
    table = tmp_path / "t.parquet"
    cmd = [sys.executable, "-m", "meanfield", "sweep", sweep, "-o", str(table), "--workers", "2", "--quiet"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until a run has finished (its row is in the table)
            if table.is_file() and (pd.read_parquet(table)["status"] == "done").any():
                break
            time.sleep(0.2)
        else:
            pytest.fail("no run finished within 120 s")
        children = subprocess.run(["pgrep", "-g", str(p.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 3  # the command and its workers
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, err
    assert not any(w in err for w in ("WARNING", "ERROR", "Traceback")) and len(err.strip().splitlines()) <= 2, err
    assert "keeps the runs finished so far" in err.splitlines()[-1]

    def alive():  # the group's processes that still run (an exited worker not yet reaped by init is no harm)
        ps = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True).stdout.split("\n")
        return [ln for ln in ps if ln.split()[:1] == [str(p.pid)] and not ln.split()[1].startswith("Z")]

    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive()  # nobody left
    done = int((pd.read_parquet(table)["status"] == "done").sum())
    assert 1 <= done < 12
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, start_new_session=True)
    assert again.returncode == 0, again.stderr
    assert not any(w in again.stderr for w in ("WARNING", "ERROR", "Traceback")), again.stderr
    df = pd.read_parquet(table)
    assert len(df) == 12 and set(df["status"]) == {"done"}
