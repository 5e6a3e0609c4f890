"""Working with the HDF5 library: a failed write as an OSError, a probe that survives the crashes some
damaged files cause, datasets preallocated so that writing a row changes no metadata."""

from __future__ import annotations

import contextlib
import os
import re
from contextlib import contextmanager

import h5py
import numpy as np

from .layout import REQUIRED_ATTRS

@contextmanager
def writing():
    """h5py reports some failed writes (disk full while flushing or closing) as RuntimeError:
    make every failed write an OSError, which the run turns into "writing ... failed"."""
    try:
        yield
    except RuntimeError as exc:
        code = re.search(r"errno = (\d+)", str(exc))  # HDF5 names the system error in its message
        if code:
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1)))) from exc
        raise OSError(f"HDF5 write failed: {short(exc)}") from exc


def preallocated(group, name: str, shape: tuple, dtype, chunks: tuple, nan_fill: bool = False):
    """A chunked dataset with every chunk allocated now (so writing a row changes no metadata)."""
    dtype = np.dtype(dtype)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(chunks)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    if nan_fill:
        dcpl.set_fill_value(np.array(np.nan, dtype=dtype))
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
    else:
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # sparse: unwritten rows take no disk
    space = h5py.h5s.create_simple(shape, (h5py.h5s.UNLIMITED,) + shape[1:])
    parent, _, leaf = name.rpartition("/")
    where = group.require_group(parent) if parent else group
    h5py.h5d.create(where.id, leaf.encode(), h5py.h5t.py_create(dtype, logical=True), space, dcpl=dcpl)
    return group[name]


#: The probe's deadline: this many seconds, plus one per PROBE_RATE bytes of the file.
PROBE_SECONDS = 30.0
PROBE_RATE = 50e6


def probe(path) -> str | None:
    """Read everything in ``path`` in a forked child first: on some damaged files (a flipped byte in
    an attribute's heap, say) the HDF5 library does not fail but crashes the process, and on others it never
    returns.  Returns how the child died or that it ran past its deadline (it is then killed), or None
    (errors are left to the caller, who reads the file again to report them).  The child dies with its parent."""
    import signal
    import time

    from ..processes import die_with_parent

    if not hasattr(os, "fork"):
        return None
    deadline = PROBE_SECONDS + os.path.getsize(path) / PROBE_RATE
    pid = os.fork()
    if pid == 0:  # the child: read every attribute and dataset, report nothing but survival
        try:
            die_with_parent()
            _touch_everything(path)
        finally:
            os._exit(0)  # also on errors: no Python or HDF5 clean-up in a forked child
    end, pause = time.monotonic() + deadline, 1e-3
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > end:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return f"reading it did not finish in {deadline:.0f} s"
            time.sleep(pause)
            pause = min(2 * pause, 0.05)
    except BaseException:  # interrupted: the child goes too
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    if os.WIFSIGNALED(status):
        return f"the HDF5 library crashed reading it (signal {os.WTERMSIG(status)})"
    return None


#: Root attributes a history needs (the model is rebuilt from them), with their types.
#: a damaged name index can hide from iteration what a lookup still finds.
_LOOKED_UP_ATTRS = (*REQUIRED_ATTRS, "row_datasets", "static_checksum", "layout_version", "config_hash", "run_id",
                    "checksum", "__state__", "backend", "library_versions", "meanfield_version", "long_name")
_LOOKED_UP = ("time", "rho", "rho_hat", "mode", "degree", "order", "grid", "diagnostics", "positions",
              "token_weights", "clusters", "merges", "row_checksum", "resume")


def _touch_everything(path) -> None:
    """Read every attribute and dataset of ``path``, each on its own (an error stops nothing)."""
    def attempt(fn, *args):
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - only a crash matters here; the caller reports errors
            pass

    def read(obj):
        keys = []
        attempt(lambda: keys.extend(obj.attrs))
        for key in {*keys, *_LOOKED_UP_ATTRS}:
            attempt(lambda k: obj.attrs[k] if k in obj.attrs else None, key)
        if isinstance(obj, h5py.Dataset):
            attempt(lambda: obj[()])

    with h5py.File(path, "r", locking=False) as f:
        names = []
        attempt(f.visit, names.append)
        for name in ["/", *_LOOKED_UP, *names]:
            attempt(lambda n: read(f[n]) if n in f else None, name)


def short(exc) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."
