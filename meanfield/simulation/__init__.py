"""A run: its phases (the density, tokens), the clock they step on, the trackers that watch it on their own
schedules, and the runner that gives it its files (``meanfield.run``).

    simulation  Simulation: the phase stepped on the clock, trackers called at their moments
    phases      DensityPhase, TokenPhase: one interface (step, state, checkpoint, diagnostics)
    handoff     the density handed to weighted tokens when the grid stops resolving it
    setup       the geometry, model, stepper, initial state and token solvers of a config
    schedules   output times, and when trackers act (every n steps, every dt, log-spaced, wall clock)
    trackers    guards, history, checkpoints, progress, signals, the in-memory Recorder
    memory      what a run will hold, checked where it allocates
    runner      meanfield.run and meanfield.load_config
"""

# The solvers' checks of a config, registered with config.feasibility when their modules are imported: every
# config this layer accepts has passed them (load_config, Simulation).
from ..domains import zonal as _zonal  # noqa: F401
from ..io import reader as _reader  # noqa: F401
from ..physics import checks as _physics_checks  # noqa: F401
from ..stepping import registry as _stepping_registry  # noqa: F401
from ..tokens import checks as _token_checks  # noqa: F401
from .runner import Result, load_config, run, solve
from .simulation import Simulation
from .trackers import (BlowUpGuard, Checkpointer, HistoryTracker, Interrupted, ProgressBar, Recorder,
                       ResolutionMonitor, SignalStop, Tracker)

__all__ = ["BlowUpGuard", "Checkpointer", "HistoryTracker", "Interrupted", "ProgressBar", "Recorder",
           "ResolutionMonitor", "Result", "SignalStop", "Simulation", "Tracker", "load_config", "run",
           "solve"]
