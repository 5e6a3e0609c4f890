"""``meanfield control``: optimise a run's parameters against a loss with exact gradients (meanfield.gradients).

    import meanfield.control as mc
    result = mc.control(meanfield.example("control_two_bumps"), "bumps.h5")
    result.final_loss, result.schedule["W"]

docs/control.md describes the control file and the output.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .. import __version__
from ..errors import ConfigError, NumericalError
from ..io import ownership as files
from ..gradients import Packing
from .build import build, switches
from .output import (CHECKPOINT_KIND, ControlResult, open_control, read_verified, write_checkpoint,
                     write_output)
from .spec import Spec, load_spec

#: where the loss is not defined at a trial point, it is replaced by a bowl this steep around the last good point
#: (L-BFGS-B's line search cannot back off from inf or nan; it interpolates the bowl to a shorter step)
WALL = 1e3

__all__ = ["ControlResult", "Spec", "control", "load_spec", "open_control"]


def _trajectory(problem, schedule, initial, count: int):
    """(times, states) of the solve at ``count`` step boundaries spread evenly over its steps."""
    from ..gradients.stepper import Plan, _step

    plan = Plan.make(schedule.times, problem.dt)
    n = len(plan.steps)
    keep = set(np.unique(np.round(np.linspace(0, n, min(count, n + 1))).astype(int)).tolist())
    times, states, u = [], [], np.array(initial, copy=True)
    if 0 in keep:
        times.append(plan.times[0])
        states.append(u)
    for i, (t, h, k) in enumerate(plan.steps):
        u, _ = _step(problem.dynamics, u, schedule.at(k), h, keep=False)
        if i + 1 in keep:
            times.append(t + h)
            states.append(u)
    return np.array(times), np.array(states)


def _torch():
    """torch, or one line saying the Adam optimiser needs it."""
    try:
        import torch
    except ImportError:
        raise ConfigError("optimize.method: got 'adam', which needs torch (pip install -e \".[torch]\"); allowed "
                          "without it: 'L-BFGS-B'") from None
    return torch


def _adam(fun, x, iterations: int, gtol: float, callback) -> str:
    """torch's Adam (learning rate 1 in the packed units: a first change of ``optimize.step`` per parameter) for
    ``iterations`` steps from x, or until the gradient's norm is at most gtol; the reason it stopped."""
    torch = _torch()
    p = torch.nn.Parameter(torch.from_numpy(np.array(x, dtype=float, copy=True)))
    opt = torch.optim.Adam([p], lr=1.0)
    for _ in range(iterations):
        v = p.detach().numpy()
        # at an iterate where the loss is not defined, fun answers with the bowl's gradient back to the last good one
        g = fun.grad if hasattr(fun, "good") and np.array_equal(fun.good[1], v) else fun(v)[1]
        if np.linalg.norm(g) <= gtol:
            return "the gradient's norm fell to optimize.gtol"
        p.grad = torch.from_numpy(np.array(g, copy=True))
        opt.step()
        callback(SimpleNamespace(x=p.detach().numpy().copy()))
    return "the iteration limit"


def control(path, output, overwrite: bool = False, resume: bool = False, iterations: int | None = None,
            progress: bool | None = None) -> ControlResult:
    """Optimise the parameters a control file declares against its loss, and write OUT.h5.

    Parameters
    ----------
    path : str or pathlib.Path
        The control file (TOML; docs/control.md).
    output : str or pathlib.Path
        The output to write (refused if it exists, unless ``overwrite``).
    overwrite : bool
        Replace an existing output.
    resume : bool
        Continue from OUT.h5.ckpt (the optimiser restarts from the checkpoint's parameters; L-BFGS's
        curvature memory starts afresh).
    iterations : int, optional
        Override ``optimize.iterations`` (the total, counting those done before a resume).
    progress : bool, optional
        A progress bar (default: when stderr is a terminal or a notebook runs us).

    Returns
    -------
    ControlResult
        The output as read back (verified).
    """
    from scipy.optimize import minimize

    from ..simulation.trackers import progress_bar, show_progress

    spec = load_spec(path)
    out = files.check_name(output, "-o")
    total = spec.iterations if iterations is None else int(iterations)
    if total < 1:
        raise ConfigError(f"--iterations: got {total}, allowed: an integer >= 1")
    if spec.optimizer == "adam":
        _torch()  # before anything is solved or written
    problem, target = build(spec)
    packing = Packing(problem, spec.parameters, spec.step)
    spec_hash = hashlib.sha256(spec.text.encode()).hexdigest()
    inputs = [("the control file", Path(path))]
    ckpt = Path(str(out) + ".ckpt")
    from threadpoolctl import threadpool_limits

    with files.OutputLock(out, "-o"), threadpool_limits(1):  # BLAS gains nothing on these small products
        if not resume:
            files.check_target(out, "-o", overwrite, inputs)
        x = packing.pack(problem.schedule, problem.initial)
        history = {"loss": [], "gradient_norm": [], "evaluations": []}
        best = None
        if resume:
            attrs, d = read_verified(ckpt, CHECKPOINT_KIND, "--resume")
            if attrs.get("spec_hash") != spec_hash:
                raise ConfigError(f"--resume: {str(ckpt)!r} was written for another control file (its hash differs); "
                                  "allowed: the control file it was started with")
            x = d["x"]
            history = {k: list(d[k]) for k in history}
            best = d["best"] if "best" in d else x
        start_schedule, start_initial = problem.schedule, problem.initial
        count = {"evaluations": int(history["evaluations"][-1]) if history["evaluations"] else 0}
        t0 = time.perf_counter()

        def fun(v):
            schedule, initial = packing.unpack(v)
            count["evaluations"] += 1
            try:
                value, grad = problem.value_and_gradient(schedule, initial)
            except FloatingPointError:
                # a trial step of the line search where the loss is not defined (a density no longer positive on
                # the grid): a steep bowl around the last good point makes the search shorten the step
                f0, x0 = fun.good
                wall = WALL * (1.0 + abs(f0))
                return f0 + wall * float(np.sum((v - x0) ** 2)), 2 * wall * (v - x0)
            if not math.isfinite(value):
                raise NumericalError(f"control: the loss is {value} at evaluation {count['evaluations']}; the solve "
                                     "lost accuracy (lower time.dt, or raise grid.modes)")
            g = packing.gradient(v, grad)
            fun.good, fun.norm, fun.grad = (value, v.copy()), float(np.linalg.norm(g)), g
            return value, g

        def record(v):
            if not (hasattr(fun, "good") and np.array_equal(fun.good[1], v)):  # L-BFGS-B ends on its iterate
                fun(v)
            value, gnorm = fun.good[0], fun.norm
            if not history["loss"] or value <= min(history["loss"]) or not hasattr(record, "x"):
                record.x = np.array(v, copy=True)  # the best iterate (L-BFGS-B's are decreasing; Adam's need not be)
            history["loss"].append(value)
            history["gradient_norm"].append(gnorm)
            history["evaluations"].append(count["evaluations"])
            write_checkpoint(out, {"spec_hash": spec_hash, "meanfield_version": __version__},
                             {"x": v, "best": record.x, **{k: np.asarray(h) for k, h in history.items()}})

        if best is not None:
            record.x = best
        if not history["loss"]:
            fun(x)
            record(x)
        done = len(history["loss"]) - 1
        bar = progress_bar(total=total, initial=min(done, total), desc="control", unit="it") \
            if show_progress(progress) else None
        message = "the iteration limit"

        def callback(intermediate_result):
            record(intermediate_result.x)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{history['loss'][-1]:.4g}")

        if done < total and spec.optimizer == "adam":
            message = _adam(fun, x, total - done, spec.gtol, callback)
        elif done < total:
            res = minimize(fun, x, jac=True, method="L-BFGS-B", callback=callback,
                           options={"maxiter": total - done, "gtol": spec.gtol, "ftol": 0.0})
            message = res.message if isinstance(res.message, str) else str(res.message)
        if bar is not None:
            bar.close()
        schedule, initial = packing.unpack(getattr(record, "x", x))  # the best iterate recorded
        times, states = _trajectory(problem, schedule, initial, spec.snapshots)
        value = problem.value(schedule, initial)
        data = {"loss": np.asarray(history["loss"]), "gradient_norm": np.asarray(history["gradient_norm"]),
                "evaluations": np.asarray(history["evaluations"]), "schedule/times": schedule.times,
                "trajectory/time": times, "trajectory/state": states, "target": np.asarray(target)}
        for name, v in schedule.values.items():
            data[f"schedule/{name}"] = v
            data[f"start/{name}"] = start_schedule.values[name]
        if "initial" in spec.parameters:
            data["schedule/initial"] = initial
            data["start/initial"] = start_initial
        if spec.method == "density":
            g = problem.dynamics.geometry
            data["trajectory/rho"] = np.array([g.to_grid(c) for c in states])
        attrs = {"spec": spec.text, "meanfield_version": __version__, "final_loss": value,
                 "iterations": len(history["loss"]) - 1, "stopped_by": message,
                 "switches": switches(schedule, spec.scheduled), "layers": spec.layers,
                 "wall_time": time.perf_counter() - t0}
        write_output(out, overwrite or resume, inputs, attrs, data)
        ckpt.unlink(missing_ok=True)
    return open_control(out)
