"""One History, in a file or in memory (io/history.py): meanfield.solve and meanfield.run give the same arrays,
and both views of it in xarray hold the same variables."""

import numpy as np
import pytest

import meanfield
from meanfield import io

CASES = {
    "density": {"model": {"beta": 9.0}, "grid": {"modes": 32}, "initial": {"amplitude": 1e-3},
                "time": {"t_end": 2.0, "dt": 0.01, "stepper": "etdrk4"}, "output": {"interval": 0.5}},
    "hand-off": {"model": {"beta": 9.0}, "grid": {"modes": 24},
                 "initial": {"kind": "von_mises", "centers": [0.5, 2.0, 4.0], "concentrations": [1.0, 2.0, 1.5]},
                 "time": {"t_end": 3.0, "dt": 0.01, "stepper": "etdrk4"}, "output": {"interval": 0.5},
                 "longtime": {"handoff": "tokens"}},
    "tokens": {"model": {"method": "particles", "geometry": "sphere", "beta": 3.0}, "grid": {"modes": 8},
               "particles": {"n": 40, "dim": 3}, "time": {"t_end": 1.0, "dt": 0.05}, "output": {"interval": 0.5}},
}


@pytest.mark.parametrize("name", list(CASES))
def test_solve_in_memory_equals_run_to_a_file(tmp_path, name):
    mem = meanfield.solve(CASES[name])
    meanfield.run(CASES[name], tmp_path / "h.h5", progress=False)
    disk = io.read_history(tmp_path / "h.h5")
    assert isinstance(mem, io.History) and isinstance(disk, io.History) and mem.path is None
    for key in ("time", "rho", "rho_hat", "positions", "token_weights", "cluster_mass", "cluster_position", "mode",
                "weights"):
        if key in disk:
            assert np.array_equal(mem[key], disk[key], equal_nan=True), key
    assert set(mem["diagnostics"]) == set(disk["diagnostics"])
    for key, value in disk["diagnostics"].items():
        assert np.array_equal(mem["diagnostics"][key], value, equal_nan=True), key
    if "merges" in disk:
        for key, value in disk["merges"].items():
            assert np.array_equal(mem["merges"][key], value), key
    a, b = mem.to_dataset(), disk.to_dataset()
    assert set(a.data_vars) == set(b.data_vars)
    for var in a.data_vars:
        assert a[var].dims == b[var].dims, var
        assert np.array_equal(a[var].values, b[var].values, equal_nan=True), var
        assert a[var].attrs["units"] == b[var].attrs["units"], var


def test_the_recorder_keeps_a_history():
    from meanfield.simulation import Recorder, Simulation

    rec = Recorder()
    Simulation(meanfield.load_config(CASES["density"])).run([rec])
    h = rec.history
    assert np.array_equal(h["time"], rec.times) and np.array_equal(h["rho_hat"], rec.states)
    assert h.to_dataset().rho_hat.dims == ("time", "mode")
