"""When trackers act (simulation/schedules.py): every n snapshots or steps, every dt, log-spaced, wall clock."""

from types import SimpleNamespace

from meanfield import load_config
from meanfield.simulation import Simulation, Tracker
from meanfield.simulation.schedules import AnyOf, EverySnapshot, EverySteps, EveryTime, EveryWall, LogTime, Never
from meanfield.simulation.trackers import Checkpointer


def _due(schedule, events):
    """Which of (event, t, steps) the schedule acts at."""
    return [i for i, (event, t, steps) in enumerate(events) if schedule.due(event, SimpleNamespace(t=t, steps=steps))]


def test_every_snapshot_and_every_steps():
    snaps = [("snapshot", 0.0, 0)] * 7
    assert _due(EverySnapshot(3), snaps) == [2, 5]
    assert _due(EverySnapshot(0), snaps) == []
    steps = [("step", 0.1 * k, k) for k in range(1, 11)]
    assert _due(EverySteps(4), steps) == [3, 7]
    assert _due(EverySteps(1), [("snapshot", 0.0, 0)]) == []


def test_every_time_and_log_time_act_at_the_first_step_past_each_time():
    steps = [("step", t, k) for k, t in enumerate([0.3, 0.9, 1.05, 1.5, 2.2, 2.4, 4.1], 1)]
    assert _due(EveryTime(1.0), steps) == [2, 4, 6]  # past 1, past 2, past 3 (and 4) at once
    logs = [("step", t, k) for k, t in enumerate([0.5, 1.0, 3.0, 9.0, 11.0, 120.0], 1)]
    assert _due(LogTime(1.0, per_decade=1), logs) == [1, 4, 5]  # t >= 1, >= 10, >= 100


def test_every_wall_follows_its_clock_and_any_of_counts_for_each():
    now = [0.0]
    wall = EveryWall(10.0, clock=lambda: now[0])
    events = []
    for t in (1.0, 9.0, 11.0, 15.0, 22.0):
        now[0] = t
        events.append(wall.due("step", None))
    assert events == [False, False, True, False, True]
    both = AnyOf(EverySnapshot(2), Never())
    assert [both.due("snapshot", None) for _ in range(4)] == [False, True, False, True]


def test_a_tracker_acts_on_its_schedule_in_a_run():
    class Count(Tracker):
        def __init__(self, schedule):
            super().__init__(schedule)
            self.at = []

        def act(self, sim):
            self.at.append(sim.steps)

    sim = Simulation(load_config({"model": {"beta": 9.0}, "grid": {"modes": 16},
                                  "time": {"t_end": 1.0, "dt": 0.01, "stepper": "etdrk4"}, "output": {"interval": 0.5}}))
    every25, snaps = Count(EverySteps(25)), Count(EverySnapshot(1))
    sim.run([every25, snaps])
    assert every25.at == [25, 50, 75, 100] and snaps.at == [0, 50, 100]


def test_the_checkpointer_writes_after_its_wall_time_between_snapshots(tmp_path):
    """With snapshots far apart a checkpoint still comes every CHECKPOINT_SECONDS of wall time (a fake clock)."""
    writes = []
    ck = Checkpointer(tmp_path / "c.ckpt", SimpleNamespace(count=0, merge_count=0), "h", every=1000)
    now = [0.0]
    ck.schedule.schedules[1].clock = lambda: now[0]
    ck.schedule.schedules[1].last = 0.0
    ck.write = lambda point, count: writes.append(count)
    sim = SimpleNamespace(resume_point=dict, t=0.0, steps=0)
    for t in (100.0, 400.0, 650.0, 700.0, 1300.0):
        now[0] = t
        ck.step(sim)
    assert len(writes) == 2  # at 650 s and at 1300 s
    assert Checkpointer(tmp_path / "d", None, "h", every=0).schedule.due("step", sim) is False
