"""Integrity of histories and checkpoints: digests of what was written (dtype, shape and bytes), the
checks a reader makes of a history's contents, and resealing after a deliberate edit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np

from ..errors import ConfigError
from .layout import STATIC, written

def row_digest(t: float, values) -> int:
    """The checksum of one snapshot: BLAKE2b (8 bytes) of its time and its rows' bytes."""
    h = hashlib.blake2b(np.float64(t).tobytes(), digest_size=8)
    for value in values:
        h.update(np.ascontiguousarray(value).tobytes())
    return int.from_bytes(h.digest(), "little")


def tree_digest(group) -> str:
    """BLAKE2b of every dataset (name, type, shape, bytes) and attribute under ``group``."""
    h = hashlib.blake2b(digest_size=16)

    def add(name, obj):
        h.update(name.encode())
        for key in sorted(k for k in obj.attrs if k != "checksum"):
            h.update(key.encode() + np.asarray(obj.attrs[key]).tobytes())
        if isinstance(obj, h5py.Dataset):
            h.update(f"{obj.dtype}{obj.shape}".encode() + np.ascontiguousarray(obj[()]).tobytes())

    add("", group)
    names = []
    group.visit(names.append)
    for name in sorted(names):
        add(name, group[name])
    return h.hexdigest()


def static_digest(f) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name in STATIC:
        if name in f:
            h.update(name.encode() + np.ascontiguousarray(f[name][()]).tobytes())
    if int(f.attrs.get("layout_version", 1)) >= 4:  # the config as run (its text; readers trust it)
        h.update(b"config" + str(f.attrs.get("config", "")).encode("utf-8", "backslashreplace"))
    return h.hexdigest()


def reseal(path: str | Path) -> None:
    """Recompute the checksums of a history after a deliberate edit (e.g. crafted initial data):
    every written snapshot's /row_checksum, the static_checksum and that of the final state."""
    with h5py.File(path, "r+") as f:
        if "row_checksum" not in f:
            raise ConfigError(f"file {str(path)!r} has no checksums (layout {f.attrs.get('layout_version', 1)})")
        times = f["time"][:]
        names = json.loads(f.attrs["row_datasets"])
        for i in range(written(times)):
            f["row_checksum"][i] = row_digest(times[i], [f[name][i] for name in names])
        f.attrs["static_checksum"] = static_digest(f)
        if "resume" in f:
            f["resume"].attrs["checksum"] = tree_digest(f["resume"])

TIMES_NOT_INCREASING = "times do not increase"
NON_FINITE = "non-finite values"
CHECKSUMS = "checksums do not match"


def history_problems(h: dict) -> list[str]:
    """What is wrong in a history read by ``read_history`` that a reader could be misled by: rows
    after an unwritten one, times not increasing, non-finite data, root attributes that disagree
    with the stored config.  Empty when the history is sound."""
    import tomllib

    out = []
    bad = h.get("checksum_mismatch", [])
    if bad:
        rows = [i for i in bad if i != "static"]
        what = ([f"{len(rows)} snapshot{'s' * (len(rows) > 1)} (first at t = {h['time'][rows[0]]:.6g})"] if rows else []) + \
               (["the grid, the mode datasets or the stored config"] if "static" in bad else [])
        out.append(f"{CHECKSUMS} in {' and '.join(what)}: the file was changed after it was written")
    if h["unwritten_before_written"]:
        out.append(f"{h['unwritten_before_written']} rows with a time follow an unwritten row (time NaN): "
                   "the history was spliced or its checkpoint resumed into another file")
    t = h["time"]
    if t.size > 1 and not np.all(np.diff(t) > 0):
        out.append(TIMES_NOT_INCREASING)
    if t.size and t[0] < 0:
        out.append(f"negative time {t[0]:g}")
    bad = [name for name in ("rho_hat", "rho") if name in h and not np.all(np.isfinite(h[name]))]
    if bad:
        out.append(NON_FINITE + " in /" + " and /".join(bad))
    if "cluster_mass" in h:  # NaN marks a missing cluster; anything else must be a mass and a unit vector
        m, x = h["cluster_mass"], h["cluster_position"]
        with np.errstate(invalid="ignore", over="ignore"):
            mass_ok = np.isnan(m) | ((m >= 0) & (m <= 1 + 1e-9))
            norm = np.sqrt(np.sum(x * x, axis=-1))
            pos_ok = np.isnan(norm) | (np.abs(norm - 1) <= 1e-6)
        if not (mass_ok.all() and pos_ok.all()):
            out.append("cluster masses outside [0, 1] or positions off the unit sphere in /clusters")
    a = h["attrs"]
    try:
        stored = tomllib.loads(str(a["config"]))
    except tomllib.TOMLDecodeError:
        return out + ["the stored config is not valid TOML"]
    model, grid = stored.get("model", {}), stored.get("grid", {})
    # the attributes readers rebuild the run from must say what the config says (they are outside the digests)
    for name, default, section in (("beta", None, model), ("variant", "sa", model), ("viscosity", 0.0, model),
                                   ("geometry", None, model), ("modes", None, grid), ("dealias", None, grid)):
        if name in section or default is not None:
            want = section.get(name, default)
            have = a.get(name)
            have = have.item() if isinstance(have, np.generic) else have
            if isinstance(want, (int, float)) and isinstance(have, (int, float)):
                same = float(want) == float(have)
            else:
                same = str(want) == str(have)
            if name == "geometry" and model.get("method") == "particles":
                continue
            if not same:
                out.append(f"attribute {name} = {have!r} disagrees with the stored config ({want!r})")
    return out


def config_hash(cfg) -> str:
    """SHA-256 of the configuration as run, without output.path (a resumed run may be moved)."""
    import hashlib

    import tomli_w

    d = cfg.to_dict()
    d["output"].pop("path", None)
    return hashlib.sha256(tomli_w.dumps(d).encode()).hexdigest()
