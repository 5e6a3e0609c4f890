"""The verified reader: a flipped bit in any dataset's datatype is refused or reads the same numbers, never other
numbers; a reader that cannot finish is stopped at its deadline; damaged tokens are refused, never repaired."""

import math
import shutil
import time

import h5py
import numpy as np
import pytest

from meanfield import io
from meanfield.cli import main
from meanfield.errors import ConfigError
from meanfield.io import hdf5

CFG = """
[model]
geometry = "circle"
beta = 4.0
[grid]
modes = 8
[initial]
kind = "random"
amplitude = 1e-3
[time]
t_end = 0.3
dt = 0.01
[output]
interval = 0.1
"""

#: HDF5 datatype messages (version 1) of a little-endian float64, uint64 and int64: class and version, three
#: bytes of flags (bit 0 of the first: byte order), the size, then the class's properties.
TYPES = {"f8": bytes.fromhex("11203f000800000000004000340b0034ff030000"),
         "u8": bytes.fromhex("100000000800000000004000"), "i8": bytes.fromhex("100800000800000000004000")}


def _made(tmp_path_factory, name: str, text: str):
    d = tmp_path_factory.mktemp(name)
    (d / "c.toml").write_text(text)
    assert main(["run", str(d / "c.toml"), "-o", str(d / "c.h5"), "--quiet"]) == 0
    return d / "c.h5"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _made(tmp_path_factory, "small", CFG)


def _datatype_bits(data: bytes, which):
    """(offset of the byte, bit) of every datatype message of the TYPES in the file, for the bits ``which``
    (message byte, bit) picks."""
    out = []
    for pattern in TYPES.values():
        i = data.find(pattern)
        while i >= 0:
            out += [(i + byte, bit) for byte in range(len(pattern)) for bit in range(8) if which(byte, bit)]
            i = data.find(pattern, i + 1)
    return out


def _same_or_refused(original, path) -> str:
    try:
        h = io.read_history(path)
    except ConfigError as exc:
        return "refused" if str(exc).count("\n") == 0 else "two lines"
    for key in ("time", "rho_hat"):
        if not np.array_equal(h[key], original[key], equal_nan=True):
            return f"read other numbers in {key}"
    for key, value in original["diagnostics"].items():
        if not np.array_equal(h["diagnostics"][key], value, equal_nan=True):
            return f"read other numbers in diagnostics/{key}"
    return "same"


def _sweep(small, tmp_path, monkeypatch, which):
    monkeypatch.setattr(hdf5, "PROBE_SECONDS", 10.0)
    data = small.read_bytes()
    original = io.read_history(small)
    bits = _datatype_bits(data, which)
    assert len(bits) >= 39 * sum(1 for b in range(12) for k in range(8) if which(b, k)) // 2  # found the messages
    bad = {}
    for offset, bit in bits:
        damaged = bytearray(data)
        damaged[offset] ^= 1 << bit
        path = tmp_path / "d.h5"
        path.write_bytes(bytes(damaged))
        got = _same_or_refused(original, path)
        if got not in ("refused", "same"):
            bad[(offset, bit)] = got
    assert not bad, bad


def test_a_flipped_byte_order_or_class_bit_of_any_datatype_is_refused(small, tmp_path, monkeypatch):
    """Every datatype message's byte-order bit and class bits (the attack: /mode read as [0, 7.2e16, ...] while
    info said ok)."""
    _sweep(small, tmp_path, monkeypatch, lambda byte, bit: (byte, bit) == (1, 0) or (byte == 0 and bit < 4))


@pytest.mark.slow
def test_every_bit_of_every_datatype_is_refused_or_reads_the_same(small, tmp_path, monkeypatch):
    _sweep(small, tmp_path, monkeypatch, lambda byte, bit: True)


def test_the_pinned_byte_order_flip_of_mode(tmp_path):
    """Pinned: the flip the fuzzer found by chance: the byte order of /mode's datatype, after which plain h5py
    reads /mode as [0, 7.2e16, ...]; the verified reader refuses it."""
    (tmp_path / "c.toml").write_text(CFG)
    out = tmp_path / "c.h5"
    assert main(["run", str(tmp_path / "c.toml"), "-o", str(out), "--quiet"]) == 0
    with h5py.File(out, "r") as f:
        mode = f["mode"][:]
    data = bytes(out.read_bytes())
    found = 0
    i = data.find(TYPES["i8"])
    while i >= 0:
        d = bytearray(data)
        d[i + 1] ^= 1  # byte order: big endian
        path = tmp_path / "flip.h5"
        path.write_bytes(bytes(d))
        with h5py.File(path, "r", locking=False) as f:
            changed = "mode" in f and not np.array_equal(f["mode"][:], mode)
        if changed:  # this message is /mode's
            found += 1
            with pytest.raises(ConfigError, match="checksums do not match"):
                io.read_history(path)
            assert main(["info", str(path)]) == 1
        i = data.find(TYPES["i8"], i + 1)
    assert found == 1


def test_a_reader_that_cannot_finish_is_stopped_at_its_deadline(tmp_path, monkeypatch):
    """The probe's child is killed at the deadline (it once waited for ever on a file that made HDF5 spin)."""
    (tmp_path / "c.toml").write_text(CFG)
    out = tmp_path / "c.h5"
    assert main(["run", str(tmp_path / "c.toml"), "-o", str(out), "--quiet"]) == 0
    monkeypatch.setattr(hdf5, "PROBE_SECONDS", 0.5)
    monkeypatch.setattr(hdf5, "_touch_everything", lambda path: time.sleep(3600))
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="did not finish in 1 s"):
        io.read_history(out)
    assert time.monotonic() - t0 < 10


# ------------------------------------------------------------------------------------------------- tokens

TOKENS = """
[model]
method = "particles"
geometry = "circle"
beta = 4.0
[grid]
modes = 16
[particles]
n = 20
dim = 2
[initial]
kind = "random"
seed = 3
[time]
t_end = 0.2
dt = 0.01
[output]
interval = 0.1
"""


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return _made(tmp_path_factory, "tokens", TOKENS)


def _edit(src, dst, fn):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f)
    io.reseal(dst)  # the documented way to craft initial data: the digests match again
    return dst


def _nan_token(f):
    f["positions"][-1, 3] = np.nan


def _negative_weight(f):
    w = f["token_weights"][-1]
    w[0], w[1] = -0.5 + w[0], 0.5 + w[1]
    f["token_weights"][-1] = w


def _zero_weights(f):
    f["token_weights"][-1] = 0.0


def _scaled(f):
    f["positions"][-1] = 3 * f["positions"][-1]


def _half_nan(f):
    x = f["positions"][-1]
    x[2, 0] = np.nan
    f["positions"][-1] = x


@pytest.mark.parametrize("edit, pattern", [(_nan_token, "not 0"), (_negative_weight, "not positive"),
                                           (_zero_weights, "not positive"), (_scaled, "not unit vectors"),
                                           (_half_nan, "partly NaN")])
def test_damaged_tokens_are_refused_by_info_and_as_initial_data_never_repaired(tokens, tmp_path, capsys, edit,
                                                                               pattern):
    bad = _edit(tokens, tmp_path / "bad.h5", edit)
    assert main(["info", str(bad)]) == 1
    assert pattern in capsys.readouterr().out
    cfg = TOKENS.replace('kind = "random"\nseed = 3', f'kind = "file"\npath = "{bad}"')
    (tmp_path / "q.toml").write_text(cfg)
    assert main(["run", str(tmp_path / "q.toml"), "-o", str(tmp_path / "q.h5"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "initial.path" in err[0] and pattern in err[0], err
    assert not (tmp_path / "q.h5").exists()


def test_sound_tokens_pass(tokens):
    h = io.read_history(tokens)
    norms = np.linalg.norm(h["positions"], axis=-1)
    assert np.nanmax(np.abs(norms - 1)) <= io.integrity.UNIT_TOL
    assert math.isclose(float(np.nansum(h["token_weights"][-1])), 1.0, abs_tol=1e-12)
