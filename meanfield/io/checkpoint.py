"""Checkpoints: the full solver state of a run, written atomically next to its history (OUT.h5.ckpt), and
the final state a completed run keeps in its history (/resume), so a resume continues bit for bit."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from ..errors import ConfigError
from . import ownership
from .hdf5 import probe, short, writing
from .integrity import tree_digest
from .reader import open_file


class StoredState(NamedTuple):
    """A solver state as a checkpoint holds it: the solution ``u`` and the scheme's ``history`` (previous
    values, right-hand sides, steps).  Any object with these two attributes is stored this way."""

    u: np.ndarray
    history: tuple


def checkpoint_path(history: str | Path) -> Path:
    """Where the checkpoint of history OUT.h5 lives: OUT.h5.ckpt."""
    history = Path(history)
    return history.with_name(history.name + ".ckpt")


def write_tree(group, obj) -> None:
    """Store a resume point (nested dicts of arrays, numbers, strings, None, solver states) in an HDF5 group."""
    for key, value in obj.items():
        if hasattr(value, "u") and hasattr(value, "history"):
            g = group.create_group(key)
            g.attrs["__state__"] = len(value.history)
            ds = g.create_dataset("u", data=value.u)
            ds.attrs.update(long_name=f"solver state: {key} (read by --resume)", units="1")
            write_tree(g.create_group("history"), {str(i): v for i, v in enumerate(value.history)})
        elif isinstance(value, dict) and key != "rng":
            write_tree(group.create_group(key), value)
        elif isinstance(value, np.ndarray):
            ds = group.create_dataset(key, data=value)
            ds.attrs.update(long_name=f"solver state: {key} (read by --resume)", units="1")
        elif key == "rng" or value is None:
            group.attrs[key] = json.dumps(value)
        else:
            group.attrs[key] = value


def read_tree(group) -> dict:
    """A resume point stored by ``write_tree`` (solver states as StoredState)."""
    out = {}
    for key, value in group.attrs.items():
        out[key] = json.loads(value) if key == "rng" or (isinstance(value, str) and value == "null") else value
        if isinstance(out[key], np.generic):
            out[key] = out[key].item()
    for key, item in group.items():
        if isinstance(item, h5py.Dataset):
            out[key] = item[()]
        elif "__state__" in item.attrs:
            hist = read_tree(item["history"])
            out[key] = StoredState(item["u"][()], tuple(hist[str(i)] for i in range(int(item.attrs["__state__"]))))
        else:
            out[key] = read_tree(item)
    return out


def write_checkpoint(path: str | Path, point: dict, count: int, config_hash: str, merge_count: int = 0) -> None:
    """Write a resume point (Simulation.resume_point()), the number of regular snapshots and of
    merge records in the history, atomically: a complete temporary file is renamed over the
    previous checkpoint."""
    path = Path(path)
    partial = ownership.temporary(path)
    try:
        with writing(), h5py.File(partial, "w", userblock_size=_USERBLOCK) as f:
            write_tree(f, {**point, "count": int(count), "merge_count": int(merge_count),
                            "config_hash": config_hash})
        with open(partial, "r+b") as f:  # the digest of everything after the user block, in the user block
            digest = _file_digest(f)
            f.seek(0)
            f.write(_CKPT_MAGIC + digest.encode())
            f.flush()
            os.fsync(f.fileno())
        ownership.replace(partial, path, "checkpoint")
    finally:
        partial.unlink(missing_ok=True)


#: A checkpoint starts with a user block (ignored by HDF5) holding this tag and the BLAKE2b digest of
#: the rest of the file: a flipped byte anywhere in the state is found before a resume uses it.
_USERBLOCK = 512
_CKPT_MAGIC = b"meanfield-checkpoint blake2b "


def _file_digest(f) -> str:
    f.seek(_USERBLOCK)
    h = hashlib.blake2b(digest_size=32)
    for chunk in iter(lambda: f.read(1 << 22), b""):
        h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> dict:
    """A resume point written by write_checkpoint (plus "count", "merge_count" and "config_hash")."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint {str(path)!r} (the run wrote none before it stopped); "
                          "start it again with --overwrite (overwrite=True in Python)")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_CKPT_MAGIC) + 64)
            # a plain HDF5 file (no user block) is a checkpoint of meanfield <= 0.1.0: nothing to check
            if not head.startswith(b"\x89HDF") and head[len(_CKPT_MAGIC):].decode(errors="replace") != _file_digest(f):
                raise ValueError("its checksum does not match: the file was changed after it was written")
        crash = probe(path) if head.startswith(b"\x89HDF") else None  # no digest: HDF5 may crash on damage
        if crash:
            raise ValueError(crash)
        with h5py.File(path, "r") as f:
            point = read_tree(f)
        for key in ("t", "dt", "steps", "next_output", "t0", "j", "count", "config_hash", "state"):
            point[key]  # noqa: B018 - a missing key is an unreadable checkpoint
        return point
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
        raise ConfigError(f"--resume: checkpoint {str(path)!r} is unreadable ({type(exc).__name__}: "
                          f"{short(exc)}); remove it to resume from the history's final state, or start again "
                          "with --overwrite (overwrite=True in Python)") from None


def read_final_state(history: str | Path) -> dict | None:
    """The final resume point stored by ``HistoryWriter.close`` (None if there is none)."""
    with open_file(history, "--resume") as f:
        if "resume" not in f:
            return None
        group = f["resume"]
        if "checksum" in group.attrs and str(group.attrs["checksum"]) != tree_digest(group):
            raise ConfigError(f"--resume: the final state stored in {str(history)!r} does not match its checksum "
                              "(the file was changed after it was written); start again with --overwrite (overwrite=True in Python)")
        return read_tree(group)


