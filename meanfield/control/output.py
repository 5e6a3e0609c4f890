"""The control output (OUT.h5) and its checkpoint (OUT.h5.ckpt): written whole through a temporary and
sealed with a checksum of everything in them; read back only if the checksum holds.

Layout (HDF5 attributes ``kind = "meanfield control"``, ``spec`` (the control file), ``meanfield_version``,
``checksum``):
    /loss, /gradient_norm, /evaluations      per iteration (iteration 0: the start)
    /schedule/times                          the layers' boundaries
    /schedule/<name>, /start/<name>          the optimised and the starting values of each parameter
    /trajectory/time, /trajectory/state      the controlled solve at ``time.snapshots`` step boundaries
                                             (density: coefficients; tokens: positions (snapshots, n, d))
    /trajectory/rho                          density: the same on the grid
    /target                                  the target (density on the grid, or token positions)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import ConfigError
from ..io import ownership as files
from ..io.integrity import tree_digest

KIND = "meanfield control"
CHECKPOINT_KIND = "meanfield control checkpoint"


def _seal(f) -> None:
    f.attrs["checksum"] = tree_digest(f)


def _write(path: Path, kind: str, attrs: dict, data: dict) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = kind
        for k, v in attrs.items():
            f.attrs[k] = v
        for name, value in data.items():
            f.create_dataset(name, data=np.asarray(value))
        _seal(f)


def write_checkpoint(out: Path, attrs: dict, data: dict) -> None:
    """Replace OUT.ckpt by a new one (the caller holds OUT's lock)."""
    ckpt = Path(str(out) + ".ckpt")
    tmp = files.temporary(ckpt)
    try:
        _write(tmp, CHECKPOINT_KIND, attrs, data)
        files.replace(tmp, ckpt, "--resume")
    finally:
        tmp.unlink(missing_ok=True)


def read_verified(path, kind: str, key: str) -> tuple[dict, dict]:
    """(attributes, datasets) of a control output or checkpoint whose checksum holds; ConfigError otherwise."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("kind") != kind:
                raise ConfigError(f"{key}: {str(path)!r} is not a {kind} file")
            if f.attrs.get("checksum") != tree_digest(f):
                raise ConfigError(f"{key}: {str(path)!r} is damaged (its checksum does not match its content); "
                                  "it is left as it is")
            attrs = {k: f.attrs[k] for k in f.attrs}
            data = {}
            f.visititems(lambda n, o: data.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    except FileNotFoundError:
        raise ConfigError(f"{key}: {str(path)!r} not found") from None
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {str(path)!r} as HDF5 ({exc})") from None
    return attrs, data


@dataclass
class ControlResult:
    """A control output, verified: the loss history, the optimised schedule, the controlled trajectory."""

    loss: np.ndarray
    gradient_norm: np.ndarray
    evaluations: np.ndarray
    times: np.ndarray
    schedule: dict
    start: dict
    time: np.ndarray
    state: np.ndarray
    rho: np.ndarray | None
    target: np.ndarray
    spec: str
    attrs: dict

    @property
    def final_loss(self) -> float:
        """The loss of the optimised schedule, the best iterate (L-BFGS-B's last one, not always Adam's)."""
        return float(self.attrs["final_loss"])


def open_control(path) -> ControlResult:
    """Read a ``meanfield control`` output (OUT.h5), verified by its checksum.

    Parameters
    ----------
    path : str or pathlib.Path
        The output of ``meanfield control`` or `meanfield.control.control`.

    Returns
    -------
    ControlResult
        Its loss history, optimised and starting schedule, controlled trajectory and target.
    """
    attrs, d = read_verified(path, KIND, "control output")
    sched = {k.split("/", 1)[1]: v for k, v in d.items() if k.startswith("schedule/") and k != "schedule/times"}
    start = {k.split("/", 1)[1]: v for k, v in d.items() if k.startswith("start/")}
    return ControlResult(d["loss"], d["gradient_norm"], d["evaluations"], d["schedule/times"], sched, start,
                         d["trajectory/time"], d["trajectory/state"], d.get("trajectory/rho"), d["target"],
                         str(attrs.get("spec", "")), attrs)


def write_output(out: Path, overwrite: bool, inputs, attrs: dict, data: dict) -> None:
    """Write OUT.h5 whole (the caller holds its lock)."""
    files.write_whole(out, inputs, overwrite, lambda tmp: _write(tmp, KIND, attrs, data), key="-o", locked=True)
