"""File surgery on histories: a structural change (rows grown or cut, compression, a final state) is made on
a copy that then replaces the file, so a kill leaves the old or the new file, never a half-changed one."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..errors import ConfigError
from . import ownership
from .hdf5 import preallocated, short, writing
from .layout import resizable, text

def _set_attr(obj, key: str, value, where: str) -> None:
    """Copy one attribute; text that is not UTF-8 (a damaged file whose checksums could not see it: layout <= 5)
    is refused in one line rather than copied on or crashed on."""
    try:
        obj.attrs[key] = value
    except UnicodeEncodeError:
        raise ConfigError(f"history: the attribute {key!r} of {where!r} is not valid UTF-8 text (the file is damaged; "
                          "meanfield info lists its checks)") from None


def edit_copy(path, edit, rows: int | None = None, compress: bool | None = None) -> None:
    """Apply ``edit(h5py.File)`` to a copy of the history ``path`` and rename the copy over it.

    ``rows``: the copy's row datasets get that many rows (cut, or grown with unwritten rows);
    ``compress``: True writes them gzip-compressed (a finished file), False uncompressed and fully
    allocated (a file a run writes into); None keeps the layout (a plain copy)."""
    path = Path(path)
    tmp = ownership.temporary(path)
    try:
        if rows is None and compress is None:
            ownership.sparse_copy(path, tmp)
        else:
            with writing(), h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
                repack(src, dst, rows, bool(compress))
        with writing(), h5py.File(tmp, "r+") as f:
            edit(f)
        ownership.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read(ds, where):
    """ds[where] (``"attrs"``: its attributes as a list); a part of the file that cannot be read (a damaged chunk) is a damaged input
    (ConfigError), not a failed write."""
    try:
        return list(ds.attrs.items()) if where == "attrs" else ds[where]
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise ConfigError(f"file {ds.file.filename!r} is damaged: {ds.name} cannot be read ({short(exc)}); "
                          "meanfield info lists every check") from None


COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
_SCALE_ATTRS = ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME")


def repack(src, dst, rows: int | None, compress: bool) -> None:
    """Copy the history ``src`` (an open h5py.File) into the empty file ``dst``: every group,
    dataset, attribute, hard link and dimension scale.  The row datasets (``_resizable``) get ``rows``
    rows (None: as many as now) and are gzip-compressed (``compress``) or preallocated for writing."""
    rows_of = set(resizable(src)) if "row_datasets" in src.attrs else set()
    made = {}  # object -> its first path in dst (h5py objects hash by file object: a second path is a hard link)
    datasets = []

    def copy(name, obj):
        if obj in made:
            dst[name] = dst[made[obj]]
            return
        if isinstance(obj, h5py.Group):
            out = dst.require_group(name)
        elif name in rows_of:
            n = obj.shape[0] if rows is None else int(rows)
            chunks = obj.chunks or (1, *obj.shape[1:])
            if compress:
                out = dst.create_dataset(name, shape=(n, *obj.shape[1:]), maxshape=(None, *obj.shape[1:]),
                                         dtype=obj.dtype, chunks=chunks, **COMPRESSION)
            else:
                out = preallocated(dst, name, (n, *obj.shape[1:]), obj.dtype, chunks,
                                    nan_fill=name in ("time", "merges/time"))
            step = max(1, 2**26 // max(1, obj.dtype.itemsize * int(np.prod(obj.shape[1:]))))
            for i in range(0, min(n, obj.shape[0]), step):
                j = min(i + step, n, obj.shape[0])
                out[i:j] = _read(obj, slice(i, j))
            datasets.append((obj, out))
        else:
            out = dst.create_dataset(name, data=_read(obj, ()), dtype=obj.dtype)
            datasets.append((obj, out))
        for key, value in _read(obj, "attrs"):
            if key not in _SCALE_ATTRS:
                _set_attr(out, key, value, name)
        made[obj] = name

    def walk(group):  # every link (visititems visits an object once, and would drop the hard links)
        for key in group:
            obj = group[key]
            copy(f"{group.name.rstrip('/')}/{key}".lstrip("/"), obj)
            if isinstance(obj, h5py.Group):
                walk(obj)

    for key, value in _read(src, "attrs"):
        _set_attr(dst, key, value, "/")
    walk(src)
    for old, new in datasets:  # scales first, then what refers to them
        if old.attrs.get("CLASS") == b"DIMENSION_SCALE":
            new.make_scale(text(old.attrs.get("NAME", b"")))
    for old, new in datasets:
        for axis in range(old.ndim):
            for scale in old.dims[axis].values():
                new.dims[axis].attach_scale(dst[scale.name])

