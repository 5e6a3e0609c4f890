"""Helpers shared by the whole-solve tests: run a config in memory and keep every snapshot."""

from meanfield import config
from meanfield.simulation.simulation import Simulation
from meanfield.simulation.trackers import BlowUpGuard, Recorder


def solve(c0=None, **sections):
    """Run the config given as sections (dicts); returns (sim, times, coefficients per snapshot)."""
    sim = Simulation(config.from_dict(sections), c0)
    rec = Recorder()
    sim.run([BlowUpGuard(), rec])
    return sim, rec.times, rec.states
