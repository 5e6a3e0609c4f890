"""The run's clock (stepping/clock.py): time in double-double, landing on output times, fixed-step counts."""

import pytest

from meanfield.stepping import Clock, fixed_step_count


def test_clock_counts_steps_far_below_the_resolution_of_t():
    clock = Clock(1.0)
    clock.t = 1e18
    for _ in range(1000):
        clock.advance(2e18, 1.0, 1.0, 1.0, adaptive=True)
    assert (clock.t - 1e18) + clock.t_lo == pytest.approx(1000.0, abs=1e-9) and clock.steps == 1000


def test_short_steps_just_before_a_far_output_time_are_not_skipped():
    """At t = 1e18 with an output time 5e5 ahead, a step of 1 advances the clock by 1 (a relative
    landing tolerance would have jumped to the output time); a step cut to the output lands on it."""
    clock = Clock(1.0)
    clock.t, t_out = 1e18, 1e18 + 5e5
    h = clock.step_size(t_out, adaptive=True)
    clock.advance(t_out, h, h, 1.0, adaptive=True)
    assert h == 1.0 and (clock.t - 1e18) + clock.t_lo == 1.0
    clock.dt = 1e7
    h = clock.step_size(t_out, adaptive=True)
    clock.advance(t_out, h, h, 1e7, adaptive=True)
    assert clock.t == t_out and clock.t_lo == 0.0
    assert clock.dt == 1e7  # a step cut only to land says nothing against the step in use


def test_fixed_steps_are_counted_from_the_interval_start_and_the_last_is_shorter():
    """t = t0 + j dt, never a running sum; an interval that is no multiple of dt ends with one shorter step."""
    clock = Clock(0.1)
    t_out = 1.05
    assert fixed_step_count(t_out, 0.1) == 11
    hs = []
    while clock.remaining(t_out) > 0:
        h = clock.step_size(t_out, adaptive=False)
        hs.append(h)
        clock.advance(t_out, h, h, 0.1, adaptive=False)
    assert len(hs) == 11 and hs[:10] == [0.1] * 10 and hs[-1] == pytest.approx(0.05, abs=1e-15)
    assert clock.t == t_out and clock.j == 11
    assert clock.t0 == 0.0 and [clock.t0 + j * 0.1 for j in (3,)] == [0.30000000000000004]
    clock.output_reached()
    assert clock.t0 == t_out and clock.j == 0 and clock.next_output == 1


def test_state_round_trip():
    clock = Clock(0.25, fixed_dt=0.5)
    clock.t, clock.t_lo, clock.steps, clock.next_output, clock.t0, clock.j = 3.5, 1e-17, 7, 2, 3.0, 1
    again = Clock(1.0)
    again.load(clock.state())
    assert again.state() == clock.state()
