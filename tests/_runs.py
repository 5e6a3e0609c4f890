"""Helpers shared by the whole-solve tests: run a config in memory and keep every snapshot."""

import numpy as np

from meanfield import config
from meanfield.simulation import BlowUpGuard, Simulation


class Recorder:
    """A tracker that keeps (t, coefficients) at every snapshot."""

    def __init__(self):
        self.t, self.c = [], []

    def snapshot(self, sim):
        self.t.append(sim.t)
        self.c.append(sim.c.copy())


def solve(c0=None, **sections):
    """Run the config given as sections (dicts); returns (sim, times, coefficients per snapshot)."""
    sim = Simulation(config.from_dict(sections), c0)
    rec = Recorder()
    sim.run([BlowUpGuard(), rec])
    return sim, np.array(rec.t), np.array(rec.c)
