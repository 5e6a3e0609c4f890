"""Shared by the validation scripts: run tokens in memory, keep snapshots, write figures."""

import argparse
import json
from pathlib import Path


from .. import config
from ..simulation.simulation import Simulation
from ..simulation.trackers import Recorder


def run_tokens(sections: dict):
    """Run a particles config given as sections; returns (sim, times, positions per snapshot, weights
    per snapshot).  Tokens that met merge (docs/longtime.md): their rows are NaN and weight 0 after."""
    sim = Simulation(config.from_dict(sections))
    rec = Recorder()
    sim.run([rec])
    return sim, rec.times, rec.states, rec.weights


def report_dir(description: str) -> Path:
    """Parse -o REPORT_DIR (default validation-out, in the current directory) and make it."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("-o", "--out", default="validation-out", help="directory for NAME.json and NAME.png")
    out = Path(p.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save(out: Path, name: str, numbers: dict, fig) -> None:
    """Write NAME.json (the measured numbers) and NAME.png, and print the numbers."""
    (out / f"{name}.json").write_text(json.dumps(numbers, indent=2))
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=120)
    print(json.dumps(numbers, indent=2))


def figure(ncols=1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(5 * ncols, 4))
