"""The Python entry point of a run: config in, HDF5 history out (``meanfield run`` calls this).

    import meanfield
    result = meanfield.run("clustering.toml", "clusters.h5")
    result = meanfield.run(cfg, "clusters.h5", resume=True)     # continue, or extend to a larger t_end

The history is written as the run goes (``io.HistoryWriter``), checkpoints next to it
(``OUT.h5.ckpt``), SIGINT / SIGTERM stop after the current step with a final snapshot and a
checkpoint (``trackers.Interrupted``), and a numerical failure leaves the last good state as the
checkpoint (``errors.NumericalError``).  A completed run keeps its final solver state in the
history (/resume), so ``resume=True`` with a larger ``time.t_end`` extends it.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import stat
import sys
import time as _time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import config as _config
from .. import io
from ..errors import ConfigError, NumericalError, OutputError
from ..io import ownership as files
from ..physics import perceptron
from .memory import keep_freed_memory
from . import resolution
from .schedules import output_times
from .simulation import Simulation
from .trackers import (MAX_CLUSTERS, BlowUpGuard, Checkpointer, HistoryTracker, ProgressBar, ResolutionMonitor,
                       SignalStop)


@dataclass
class Result:
    """What a run did: where it wrote, how far it went, and what it cost.

    Attributes
    ----------
    path : pathlib.Path
        The history written (HDF5, docs/output.md).
    t : float
        The time reached.
    steps : int
        Accepted steps, over every phase.
    snapshots : int
        Snapshots in the history.
    wall : float
        Wall-clock seconds of this call.
    status : str
        ``"complete"``, or ``"already complete"`` when ``resume=True`` found nothing left to do.
    handoff : object
        The hand-off to tokens (``longtime.HandOff``), if the run continued as tokens.
    merges : int
        Merge records (merged groups of tokens); a batch keeps none (its ``n_tokens`` diagnostic counts each
        system's tokens).
    stepper : str
        The scheme that ran, and why (``time.stepper = "auto"`` picks one).
    resolution : dict or None
        The resolution check's attributes (``--check-resolution``), if it ran.
    backend : str
        On the sphere, the transform library and why (``grid.backend = "auto"`` times each installed one).
    """

    path: Path
    t: float
    steps: int
    snapshots: int
    wall: float
    status: str  # "complete" | "already complete"
    handoff: object = None  # longtime.HandOff, if the run continued as tokens
    merges: int = 0  # merged groups of tokens
    stepper: str = ""  # the scheme that ran, and why (time.stepper = "auto" picks one)
    resolution: dict | None = None  # the resolution check's attributes (longtime.check_factor), if it ran
    backend: str = ""  # the sphere's transform library, and why (grid.backend = "auto" measures)

    @property
    def dataset(self):
        """The history as an xarray.Dataset (``meanfield.open_history(self.path)``)."""
        return io.open_history(self.path)


def load_config(source, overrides=(), base_dir=None) -> _config.Config:
    """Read and validate a run configuration.

    Every key's type and range is checked, and every check the solvers registered (a grid fine
    enough for the kernel, a scheme's name, torch on this machine). Memory and disk are checked when
    the run allocates, not here.

    Parameters
    ----------
    source : str, pathlib.Path, dict or Config
        A TOML file, a dict of sections (``{"model": {"beta": 9.0}, ...}``) or a Config.
    overrides : sequence of str
        ``section.key=value`` strings, applied in order, as ``meanfield run --set``.
    base_dir : str or pathlib.Path, optional
        Where a dict's relative ``initial.path`` is found (a file's own directory for a path).

    Returns
    -------
    Config
        The validated configuration (docs/config.md lists every key).

    Raises
    ------
    meanfield.errors.ConfigError
        One line naming the key, the value given and what is allowed.

    Examples
    --------
    >>> cfg = meanfield.load_config(meanfield.example("linear"), ["model.beta=4"])
    """
    if isinstance(source, _config.Config):
        if overrides:
            return _config.from_dict(_apply(source.to_dict(), overrides), feasible=True)
        return _config.check(source)
    if isinstance(source, dict):
        return _config.from_dict(_apply(_plain(source), overrides), base_dir=base_dir, feasible=True)
    return _config.load(source, list(overrides), feasible=True)


def _plain(value):
    """A deep copy with numpy arrays and scalars as lists and numbers (initial.positions = x works)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _apply(raw: dict, overrides) -> dict:
    for item in overrides:
        _config.apply_override(raw, item)
    return raw


def diagnostics_of(cfg) -> list[str]:
    """The /diagnostics a run of ``cfg`` writes."""
    if cfg.model.method == "particles" and cfg.particles.batch > 1:  # one value per system (dt, steps: shared)
        return ["energy", "spread", "pair_fraction", "cluster_count", "n_tokens", "dt", "steps"]
    if cfg.model.method == "particles":  # with a perceptron, USA's free energy E + sum_i w_i Phi(x_i) too
        usa_mlp = cfg.model.variant == "usa" and cfg.perceptron.activation != "none"
        return ["mass", "energy", *(["free_energy"] if usa_mlp else []), "energy_rate", "spread", "n_clusters",
                "n_tokens", "dt", "steps"]
    names = ["mass", "energy", "energy_rate", "tail", "n_clusters", "dt", "steps"]
    if cfg.model.variant == "usa":
        names.insert(2, "free_energy")
    if cfg.longtime.handoff == "tokens":
        names.insert(-2, "n_tokens")
    return names


def record_shape(cfg, sim) -> dict:
    """What a history of ``cfg`` records besides the density: its diagnostics, token rows (rows, d) or None,
    clusters per snapshot, room for merge records (the same in a file and in memory)."""
    systems = cfg.particles.batch if sim.particles else 1
    if systems > 1:  # a batch: per-system rows, no clusters, no merge records; positions only where output.tokens asks
        tokens = (cfg.particles.n, sim.geometry.dim) if cfg.output.tokens else None
        return {"diagnostics": diagnostics_of(cfg), "tokens": tokens, "clusters": 0, "merges": 0, "systems": systems}
    tokens = (sim.token_rows(), sim.geometry.dim) if sim.particles or cfg.longtime.handoff == "tokens" else None
    return {"diagnostics": diagnostics_of(cfg), "tokens": tokens,
            "clusters": min(int(1 / cfg.longtime.cluster_mass + 1e-9), MAX_CLUSTERS),
            "merges": tokens[0] if tokens else 0, "systems": 1}


def seeded(cfg, rng):
    """``cfg`` with ``initial.seed`` and ``attention.seed`` drawn from ``rng`` (Scientific Python spec 7, on seeding: a
    numpy Generator, or anything ``numpy.random.default_rng`` takes); None keeps the config's seeds.  The seeds
    drawn are in the config as run (the history's ``config`` attribute), so the run can be repeated from it."""
    if rng is None:
        return cfg
    seeds = np.random.default_rng(rng).integers(0, 2**63 - 1, size=2)
    return load_config(cfg, [f"initial.seed={int(seeds[0])}", f"attention.seed={int(seeds[1])}"])


def solve(config, overrides=(), *, trackers=(), progress: bool | None = False, rng=None) -> io.History:
    """Run a configuration in memory: what `run` writes, without a file, a checkpoint or signal handling.

    Parameters
    ----------
    config : str, pathlib.Path, dict or Config
        As for `load_config`.
    overrides : sequence of str
        ``section.key=value`` strings, as ``--set``.
    trackers : sequence
        More trackers (a ``Tracker`` with a schedule, or any object with start / step / snapshot /
        finish methods), called after the run's own.
    progress : bool or None
        A progress bar (``None``: when stderr is a terminal; in a notebook, a widget).
    rng : numpy.random.Generator, int or None
        Where the run's randomness comes from (Scientific Python spec 7): draws ``initial.seed`` and ``attention.seed``,
        recorded in the config as run. None (default): the config's seeds.

    Returns
    -------
    meanfield.io.History
        The keys of `meanfield.io.read_history`; ``.to_dataset()`` gives the xarray view.

    Raises
    ------
    meanfield.errors.ConfigError, meanfield.errors.NumericalError
        As `run` does.
    """
    keep_freed_memory()
    cfg = seeded(load_config(config, overrides), rng)
    sim = Simulation(cfg)
    shape = record_shape(cfg, sim)
    fields = (["rho"] if cfg.output.grid else []) + ["rho_hat"] + [f"diagnostics/{d}" for d in shape["diagnostics"]]
    if shape["tokens"]:
        fields += ["positions", "token_weights"] + (["merges"] if shape["merges"] else [])
    if shape["clusters"]:
        fields += ["clusters/position", "clusters/mass"]
    writer = io.MemoryWriter(sim.geometry, fields, history_attrs(cfg, sim, io.config_hash(cfg)),
                             tokens=shape["tokens"], clusters=shape["clusters"],
                             systems=(shape["systems"], cfg.initial.seed))
    sim.run([BlowUpGuard(), ResolutionMonitor(), HistoryTracker(writer), ProgressBar(progress), *trackers])
    h = writer.history()
    if cfg.longtime.check_factor:
        h["attrs"].update(_check_resolution(cfg, h, progress))
    return h


def _check_resolution(cfg, h, progress) -> dict:
    """The resolution check's attributes for history ``h`` of ``cfg`` (its warnings issued)."""
    attrs, problems = resolution.check(cfg, h, lambda fine: solve(fine, progress=progress))
    for message in problems:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return attrs


def monotone_quantity(cfg) -> tuple[str, str]:
    """(the /diagnostics entry the theory says never decreases in this run, or "", and why not) for
    ``meanfield info`` (docs/theory.md): with Q = K = V = I, one set of parameters and viscosity 0, the energy
    without a perceptron, USA's free energy E + int Phi with a gradient perceptron grad Phi."""
    if cfg.model.viscosity != 0 or any(getattr(cfg.attention, k) != "identity" for k in "QKV"):
        return "", ""
    if cfg.schedule.times:
        return "", "the layers change the parameters (no single energy)"
    mlp = perceptron.from_config(cfg)
    if mlp is None:
        return "energy", ""
    if cfg.model.variant == "usa" and mlp.gradient_weights() is not None:
        return "free_energy", ""
    return "", ("the perceptron term is not a gradient of the energy ("
                + ("W is not A^T diag(c))" if cfg.model.variant == "usa" else "SA)"))


def history_attrs(cfg, sim, chash: str) -> dict:
    """Root attributes of a new history: the config as run, its hash, and the versions that made it."""
    import h5py
    import scipy

    attrs = {
        "config": cfg.to_toml(), "config_hash": chash, "method": cfg.model.method, "variant": cfg.model.variant,
        "beta": cfg.model.beta, "viscosity": cfg.model.viscosity, "dim": cfg.dim, "modes": cfg.grid.modes,
        "dealias": cfg.grid.dealias, "stepper": sim.stepper,
        "energy_scale": "exp(-beta)", "cluster_radius": sim.cluster_finder().radius,
        "cluster_mass": sim.cluster_finder().min_mass,
    }
    if sim.particles:
        attrs.update(n_tokens=sim.token_rows(), bandwidth=sim.bandwidth)
    attrs["monotone"], attrs["monotone_note"] = monotone_quantity(cfg)
    if cfg.longtime.handoff == "tokens":  # after the hand-off /rho_hat holds the tokens' own coefficients
        attrs["token_coefficients"] = "exact"
    versions = {"python": sys.version.split()[0], "numpy": np.__version__, "scipy": scipy.__version__,
                "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version}
    backend = getattr(sim.geometry, "backend", None)
    if backend is not None:
        attrs["backend"] = f"{backend.name} {backend.version}"
        attrs["backend_choice"] = backend.chosen
        versions[backend.name] = backend.version
    attrs["library_versions"] = json.dumps(versions)
    return attrs


def _same_run(cfg, stored_toml: str, stored_hash: str) -> bool:
    """Whether cfg is the stored run's config, but for a time.t_end at least as large."""
    if io.config_hash(cfg) == stored_hash:
        return True
    try:
        old = _config.loads(stored_toml).time.t_end
    except ConfigError:
        return False
    same = dataclasses.replace(cfg, time=dataclasses.replace(cfg.time, t_end=old))
    return cfg.time.t_end >= old and io.config_hash(same) == stored_hash


def run(config, output=None, *, overwrite: bool = False, resume: bool = False, progress: bool | None = None,
        overrides=(), trackers=(), rng=None) -> Result:
    """Run a configuration and write its history: everything ``meanfield run`` does.

    The run owns its output while it runs (a second run on it is refused); the output may not be a
    directory, device, link, the config or an input. The history is flushed snapshot by snapshot,
    with a checkpoint (``OUT.h5.ckpt``) to resume from.

    Parameters
    ----------
    config : str, pathlib.Path, dict or Config
        As for `load_config`.
    output : str or pathlib.Path, optional
        The history to write (default: the config's ``output.path``).
    overwrite : bool
        Replace an existing history (refused otherwise).
    resume : bool
        Continue the run stored in ``output`` from its checkpoint, or extend a completed one whose
        config differs only by a larger ``time.t_end``.
    progress : bool or None
        A progress bar (``None``: when stderr is a terminal; in a notebook, a widget).
    overrides : sequence of str
        ``section.key=value`` strings, as ``--set``.
    trackers : sequence
        Your own trackers (a `meanfield.simulation.trackers.Tracker` with a schedule, or any
        object with start / step / snapshot / finish methods), called after the run's own.
    rng : numpy.random.Generator, int or None
        Where the run's randomness comes from (Scientific Python spec 7): draws ``initial.seed`` and ``attention.seed``,
        recorded in the config as run. None (default): the config's seeds. Not with ``resume``.

    Returns
    -------
    Result
        Where it wrote, how far it went, and what it cost.

    Raises
    ------
    meanfield.errors.ConfigError
        Bad input; nothing written.
    meanfield.errors.NumericalError
        Blow-up or loss of accuracy; the last good state is in the checkpoint.
    meanfield.errors.OutputError
        A write failed; the history keeps what was written before.
    meanfield.simulation.trackers.Interrupted
        SIGINT or SIGTERM; final snapshot and checkpoint written.

    Examples
    --------
    >>> result = meanfield.run(meanfield.example("linear"), "linear.h5")
    >>> result.dataset.rho_hat.sel(mode=3).pipe(abs).plot(yscale="log")
    """
    keep_freed_memory()
    cfg = load_config(config, overrides)
    if rng is not None and resume:
        raise ConfigError("rng: got a generator with resume=True, allowed: rng=None (a resumed run keeps its seeds)")
    cfg = seeded(cfg, rng)
    if output is not None:
        cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, path=str(output)))
    out = files.check_name(cfg.output.path, "output.path")
    inputs = [("the config file", config)] if isinstance(config, (str, Path)) else []
    if cfg.initial.kind == "file":
        inputs.append(("initial.path", cfg.initial.path))
    with files.OutputLock(out):
        try:
            result = _run_locked(cfg, out, overwrite, resume, progress, inputs, list(trackers))
            if cfg.longtime.check_factor and result.status == "complete":
                result.resolution = _check_resolution(cfg, io.read_history(out, key="output.path"), progress)
                io.add_attributes(out, result.resolution)
            return result
        except OSError as exc:  # building, growing or closing the history (mid-run writes say more)
            kept = f"{str(out)!r} keeps what it held before that write" if out.is_file() else "nothing was written"
            raise OutputError(f"writing {str(out)!r} failed ({exc.strerror or _first_line(exc)}); {kept}") from None


def _backend_of(sim) -> str:
    """The transform library of a sphere run and why it was chosen ("" elsewhere)."""
    backend = getattr(sim.geometry, "backend", None)
    return "" if backend is None else f"{backend.name} ({backend.chosen})"


def _first_line(exc) -> str:
    return " ".join(str(exc).split())[:200]


def _check_resumable(out: Path, ckpt_path: Path) -> None:
    """The history to resume is a regular file (not a link), and its checkpoint, if any, too."""
    for key, path in (("--resume", out), ("checkpoint", ckpt_path)):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if path == out:
                raise ConfigError(f"--resume: file {str(out)!r} not found") from None
            continue
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{key}: {str(path)!r} is not a regular file (a link, directory or device), "
                              "allowed: the history and checkpoint a run wrote")


def _resume_point(cfg, out: Path, ckpt_path: Path, times):
    """The resume point of ``out``: its checkpoint, or the final state of a completed run; None if
    the run is complete up to cfg's t_end.  Refuses a checkpoint that does not belong to the history."""
    h = io.read_history(out, key="--resume")  # a damaged history is not continued
    attrs = h["attrs"]
    stored = str(attrs.get("config_hash", ""))
    if not _same_run(cfg, str(attrs.get("config", "")), stored):
        raise ConfigError(f"--resume: {str(out)!r} was written with another configuration (config hash differs; "
                          "only time.t_end may grow); resume with the same config file and --set overrides")
    done = h["time"].size
    if ckpt_path.is_file():
        point = io.read_checkpoint(ckpt_path)
        if not _same_run(cfg, str(attrs.get("config", "")), point["config_hash"]) and point["config_hash"] != stored:
            raise ConfigError(f"--resume: checkpoint {str(ckpt_path)!r} belongs to another configuration")
        run_id = attrs.get("run_id")
        if run_id is not None and point.get("run_id") not in (None, str(run_id)):
            raise ConfigError(f"--resume: checkpoint {str(ckpt_path)!r} belongs to another run than {str(out)!r} "
                              "(run_id differs); remove it, or start again with --overwrite (overwrite=True in Python)")
        if int(point["count"]) > done:
            raise ConfigError(f"--resume: checkpoint {str(ckpt_path)!r} is ahead of the history: it follows "
                              f"{int(point['count'])} snapshots, {str(out)!r} holds {done} (was the history "
                              "replaced or restored from a backup?); start again with --overwrite (overwrite=True in Python)")
        return point
    point = io.read_final_state(out)
    if point is None:
        raise ConfigError(f"--resume: {str(out)!r} has no checkpoint and no final state to continue from; "
                          "start it again with --overwrite (overwrite=True in Python)")
    point["count"], point["merge_count"] = done, h["merges"]["time"].size if "merges" in h else 0
    return point


def _run_locked(cfg, out: Path, overwrite: bool, resume: bool, progress, inputs, extra: list) -> Result:
    chash = io.config_hash(cfg)
    ckpt_path = io.checkpoint_path(out)
    if resume:
        _check_resumable(out, ckpt_path)
    else:
        files.check_target(out, "output.path", overwrite, inputs)
        files.check_target(ckpt_path, "output.path (its checkpoint)", True, inputs, member=True)
    for stale in files.stale_temporaries(out):  # left by a killed run of this output: ours, now that we may write
        stale.unlink(missing_ok=True)
    sim = Simulation(cfg)
    times = output_times(cfg)
    wall = _time.monotonic()
    if resume:
        point = _resume_point(cfg, out, ckpt_path, times)
        if not ckpt_path.is_file() and float(point["t"]) >= cfg.time.t_end * (1 - 1e-12):
            return Result(out, float(point["t"]), int(point["steps"]), int(point["count"]), 0.0, "already complete")
        if cfg.time.t_end < float(point["t"]):
            raise ConfigError(f"time.t_end: got {cfg.time.t_end:g}, allowed: >= {float(point['t']):g}, where the "
                              f"run in {str(out)!r} stands")
        try:
            sim.check_point(point)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"--resume: the resume point in {str(ckpt_path if ckpt_path.is_file() else out)!r} "
                              f"does not fit this run ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); "
                              "start again with --overwrite (overwrite=True in Python)") from None
        sim.restore(point)
        count = int(point["count"])
        if io.config_hash(cfg) != point["config_hash"]:  # extended: continue on the new schedule
            sim.clock.reschedule(times)
        planned = count + len(times) - sim.next_output
        writer = io.reopen_history(out, planned, count, int(point.get("merge_count", 0)),
                                   {"config": cfg.to_toml(), "config_hash": chash})
        run_id = str(writer.f.attrs.get("run_id", ""))
    else:
        shape = record_shape(cfg, sim)
        run_id = uuid.uuid4().hex
        # an old checkpoint must not be resumed into the new history: removed only once that is complete
        writer = io.HistoryWriter(out, sim.geometry, {**history_attrs(cfg, sim, chash), "run_id": run_id},
                                  len(times), shape["diagnostics"], tokens=shape["tokens"], clusters=shape["clusters"],
                                  merges=shape["merges"], on_replace=lambda: ckpt_path.unlink(missing_ok=True),
                                  compress=cfg.output.compress, grid=cfg.output.grid,
                                  systems=(shape["systems"], cfg.initial.seed))
    history = HistoryTracker(writer, final_hash=chash)
    ckpt = Checkpointer(ckpt_path, writer, chash, cfg.output.checkpoint_every, run_id)

    def on_stop(s):
        regular = writer.count
        history.snapshot(s)  # a final snapshot at the interrupt time (dropped again on --resume)
        ckpt.write(s.resume_point(), regular)

    guards = [BlowUpGuard()] + ([] if sim.particles else [ResolutionMonitor()])
    try:
        sim.run([*guards, history, ckpt, SignalStop(on_stop), ProgressBar(progress), *extra])
    except NumericalError as exc:
        if sim.last_good is not None:
            ckpt.write(sim.last_good, writer.count)
        raise NumericalError(f"{exc} (history up to the last snapshot kept in {out}; last good state, "
                             f"t = {sim.last_good['t'] if sim.last_good else 0:.6g}, in {ckpt_path})") from None
    except OSError as exc:  # disk full, file size limit, I/O error: say what is kept
        try:
            writer.f.close() if writer.f.id.valid else None
        except (OSError, RuntimeError):
            pass  # HDF5 cannot close after a failed write; the rows it flushed before are on disk
        # from the writer, not the file: HDF5 refuses to reopen a file it failed to close
        held = writer.count
        last = f"t <= {writer.last_time:.6g}" if held else "none"
        room = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # only then is room what is missing
        resumable = (f"resume from {ckpt_path} with --resume (resume=True in Python)" + (" once there is room" if room else "")
                     if ckpt_path.is_file() else "no checkpoint was written")
        raise OutputError(f"writing {str(out)!r} failed at t = {sim.t:.6g} ({exc.strerror or _first_line(exc)}); the history "
                          f"keeps {held} snapshots ({last}); {resumable}") from None
    ckpt_path.unlink(missing_ok=True)  # complete: nothing left to resume
    return Result(out, sim.t, sim.steps, writer.count, _time.monotonic() - wall, "complete", sim.handoff,
                  sim.merge_count, f"{sim.stepper} ({sim.stepper_reason})", backend=_backend_of(sim))
