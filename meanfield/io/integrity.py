"""Integrity of histories and checkpoints: digests of what was written (dtype, shape and bytes), the
checks a reader makes of a history's contents, and resealing after a deliberate edit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np

from ..errors import ConfigError
from .layout import DESCRIBING, LAYOUT_VERSION, STATIC, written

def _native(value) -> np.ndarray:
    """``value`` as a C-contiguous array in native byte order (the values, whatever order the file stored)."""
    a = np.asarray(value)
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="), copy=False))


def _update(h, value, version: int) -> None:
    """Feed one array to a digest: from layout 5 its native type and shape too, so a changed datatype (a float
    read as an integer of the same bytes) or shape changes the digest; its values always in native order, so a
    flipped byte order does."""
    a = np.asarray(value)
    if a.dtype.kind == "O":  # variable-length strings: their text, never the objects' addresses
        h.update(repr([x.decode("utf-8", "backslashreplace") if isinstance(x, bytes) else x for x in a.ravel()])
                 .encode())
        return
    a = _native(a)
    if version >= 5:
        h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())


def row_digest(t: float, values, version: int = LAYOUT_VERSION) -> int:
    """The checksum of one snapshot: BLAKE2b (8 bytes) of its time and its rows (``version``: the file's layout;
    from 5 each row's type and shape are hashed with its values)."""
    h = hashlib.blake2b(np.float64(t).tobytes(), digest_size=8)
    for value in values:
        _update(h, value, version)
    return int.from_bytes(h.digest(), "little")


def layout_version(f) -> int:
    """The layout version of an open history (1 if it does not say)."""
    try:
        return int(f.attrs.get("layout_version", 1))
    except (TypeError, ValueError):
        return 1


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
    """BLAKE2b of the datasets written once (``STATIC``: the grid and the modes) and of the stored config."""
    h = hashlib.blake2b(digest_size=16)
    version = layout_version(f)
    for name in STATIC:
        if name in f:
            h.update(name.encode())
            _update(h, f[name][()], version)
    if version >= 5:  # every root attribute (readers rebuild the run from them): name, type, shape, value
        for key in sorted(k for k in f.attrs if k != "static_checksum"):
            value = f.attrs[key]
            h.update(key.encode())
            if isinstance(value, (str, bytes)):
                h.update(b"str" + (value.encode("utf-8", "backslashreplace") if isinstance(value, str) else value))
            else:
                _update(h, np.asarray(value), version)
    elif version >= 4:  # the config as run (its text; readers trust it)
        h.update(b"config" + str(f.attrs.get("config", "")).encode("utf-8", "backslashreplace"))
    if version >= 6:  # what each dataset says it is (the xarray view shows it; a resume copies it)
        names: list = []
        f.visit(names.append)
        for name in sorted(n for n in names if not n.startswith("resume")):  # /resume has its own checksum
            obj = f[name]
            if isinstance(obj, h5py.Dataset):
                for key in DESCRIBING:
                    if key in obj.attrs:
                        value = obj.attrs[key]
                        raw = value.encode("utf-8", "backslashreplace") if isinstance(value, str) else \
                            np.asarray(value).tobytes()
                        h.update(f"{name}:{key}:".encode() + raw)
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
            f["row_checksum"][i] = row_digest(times[i], [f[name][i] for name in names], layout_version(f))
        f.attrs["static_checksum"] = static_digest(f)
        if "resume" in f:
            f["resume"].attrs["checksum"] = tree_digest(f["resume"])

TIMES_NOT_INCREASING = "times do not increase"
NON_FINITE = "non-finite values"
CHECKSUMS = "checksums do not match"
WEIGHTS_SUM = "the token weights of a snapshot do not sum to 1"


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
    if "positions" in h:
        out += token_problems(h["positions"], h["token_weights"], h["time"])
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


#: How far from 1 the norm of a stored token position may be (round-off of a normalised float64 vector).
UNIT_TOL = 1e-12


def token_problems(x, w, times) -> list[str]:
    """What is wrong with stored tokens: on every row either a live token (finite position of unit norm, finite
    weight > 0) or none (position NaN, weight 0 or NaN); the live weights of a snapshot sum to 1."""
    out = []
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(x)
        live, dead = finite.all(axis=-1), np.isnan(x).all(axis=-1)
        wl = np.where(live, w, 1.0)
        if np.any(~live & ~dead):
            out.append("token positions partly NaN or infinite")
        if np.any(live & ~(np.isfinite(wl) & (wl > 0))):
            out.append("token weights not positive or not finite at live tokens")
        if np.any(dead & ~(np.isnan(w) | (w == 0))):
            out.append("token weights at rows without a token are not 0")
        norm = np.sqrt(np.sum(np.where(live[..., None], x, 0.0) ** 2, axis=-1))
        off = live & ~(np.abs(norm - 1) <= UNIT_TOL)
        if np.any(off):
            i = int(np.argmax(off.any(axis=-1)))
            out.append(f"token positions are not unit vectors (|x| = {float(norm[off].flat[0]):.6g} at t = "
                       f"{float(times[i]):.6g})")
        has = live.any(axis=-1)
        total = np.sum(np.where(live, w, 0.0), axis=-1)
        if np.any(has & ~(np.abs(total - 1) <= 1e-12)):
            out.append(WEIGHTS_SUM)
    return out


def config_hash(cfg) -> str:
    """SHA-256 of the configuration as run, without output.path (a resumed run may be moved)."""
    import hashlib

    import tomli_w

    d = cfg.to_dict()
    d["output"].pop("path", None)
    return hashlib.sha256(tomli_w.dumps(d).encode()).hexdigest()
