"""Reading a config: TOML text (a file, or a string), ``--set`` overrides, types, then the range rules.

``load``, ``loads`` and ``from_dict`` return a Config whose every key has the right type and lies in
its range (``rules.validate``).  What only a solver can judge (a grid too coarse for the kernel, a
stepper's name, torch on this machine) is checked afterwards by ``feasibility.check``; what depends
on the machine's state (memory, disk) when the run allocates.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .feasibility import check
from .rules import shown, validate
from .schema import MATRIX_KEYS, MAX_CONFIG_BYTES, MOVED_TO_ATTENTION, SECTIONS, Config


def load(path: str | Path, overrides: list[str] | tuple = (), feasible: bool = False) -> Config:
    """Read, override (``section.key=value`` strings) and validate a TOML config file (``feasible``: also run
    the solvers' registered checks, ``feasibility.check``)."""
    return loads(_read(Path(path), "config"), overrides, base_dir=Path(path).parent, feasible=feasible)


def loads(text: str, overrides: list[str] | tuple = (), base_dir: Path | None = None, feasible: bool = False) -> Config:
    """Parse and validate TOML text (see ``load``)."""
    raw = _parse(text, "config")
    for item in overrides:
        apply_override(raw, item)
    return from_dict(raw, base_dir=base_dir, feasible=feasible)


def read_toml(path: str | Path, where: str = "config") -> dict:
    """The tables of a TOML file, unvalidated (a sweep's base config, the sweep file itself): the checks of
    ``load``, its errors named ``where``."""
    return _parse(_read(Path(path), where), where)


def _read(path: Path, where: str) -> str:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # /dev/zero, /dev/urandom or a FIFO would never end or block
            raise ConfigError(f"{where}: {str(path)!r} is not a regular file, allowed: a TOML file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{where}: {str(path)!r} is {st.st_size / 1e6:.3g} MB, allowed: at most "
                              f"{MAX_CONFIG_BYTES / 1e6:g} MB (tokens in bulk belong in an initial.path file)")
        with open(path, "rb") as f:
            return f.read(MAX_CONFIG_BYTES + 1).decode()
    except FileNotFoundError:
        raise ConfigError(f"{where}: file {str(path)!r} not found") from None
    except ConfigError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read {str(path)!r}: {exc}") from None


def _parse(text: str, where: str) -> dict:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # e.g. a damaged history's stored config, read with surrogate escapes
        raise ConfigError(f"{where}: not valid UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    except ValueError:  # Python refuses to convert integers of more than 4300 digits
        raise ConfigError(f"{where}: an integer with more than 4300 digits, allowed: numbers in float range") from None
    except RecursionError:
        raise ConfigError(f"{where}: arrays or tables nested too deeply, allowed: a flat TOML config") from None


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``--set section.key=value``; value is parsed as TOML, else taken as a string."""
    key, sep, value = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name or "." in name:
        raise ConfigError(f"--set: got {shown(item)}, allowed: section.key=value (e.g. grid.modes=64)")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except ValueError:  # not TOML (TOMLDecodeError), or an integer of more than 4300 digits
        parsed = value.strip()
    except RecursionError:
        raise ConfigError(f"--set: {key.strip()}: value nested too deeply") from None
    sec = raw.setdefault(section, {})
    if not isinstance(sec, dict):
        raise ConfigError(f"{section}: got a value, allowed: a [{section}] table")
    sec[name] = parsed


def _type_name(t) -> str:
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string",
            tuple: "a list"}.get(t, str(t))


def _coerce(section: str, key: str, value: Any, default: Any):
    where = f"{section}.{key}"
    t = type(default)
    if (section, key) in MATRIX_KEYS:
        if isinstance(value, (list, str)):
            return _freeze(value) if isinstance(value, list) else value
        raise ConfigError(f"{where}: got {shown(value)} ({type(value).__name__}), allowed: 'identity' | 'random' | "
                          "a matrix (list of rows), or one of those per head")
    if t is bool:
        ok = isinstance(value, bool)
    elif t is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(value, int) and abs(value) > 1e308:
            raise ConfigError(f"{where}: got {shown(value)}, allowed: a number "
                              "within the float range (|x| < 1.8e308)")
        value = float(value) if ok else value
    elif t is str:
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, list)
        value = _freeze(value) if ok else value
    if not ok:
        raise ConfigError(f"{where}: got {shown(value)} ({type(value).__name__}), allowed: {_type_name(t)}")
    return value


def _freeze(v):
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def from_dict(raw: dict, base_dir: Path | None = None, feasible: bool = False) -> Config:
    """Validate a nested dict (as parsed from TOML) into a Config (``feasible``: also run the solvers' registered
    checks).  An error in a key given under its old name ([particles] Q, K, V, heads, causal, seed) names it
    there."""
    for name, value in raw.items():
        if name not in SECTIONS:
            hint = (" (a control file has [target], [loss] and [optimize]: run it with meanfield control)"
                    if name in ("target", "loss", "optimize") else "")
            raise ConfigError(f"{name}: unknown section, allowed: {', '.join(SECTIONS)}{hint}")
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: got {shown(value)}, allowed: a [{name}] table")
    moved = [k for k in MOVED_TO_ATTENTION if k in raw.get("particles", {})]
    raw = _move_attention_keys(raw)
    try:
        cfg = _build(raw, base_dir)
        return check(cfg) if feasible else cfg
    except ConfigError as e:  # name the key where the user wrote it
        raise _old_name(e, moved) from None


def _build(raw: dict, base_dir: Path | None) -> Config:
    sections = {}
    for name, cls in SECTIONS.items():
        given = raw.get(name, {})
        defaults = cls()
        allowed = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key, value in given.items():
            if key not in allowed:
                raise ConfigError(f"{name}.{key}: unknown key, allowed: {', '.join(allowed)}")
            kwargs[key] = _coerce(name, key, value, getattr(defaults, key))
        sections[name] = cls(**kwargs)
    cfg = Config(**sections)
    if cfg.initial.kind == "file" and cfg.initial.path and base_dir is not None:
        # stored absolute: the config as run (and its hash) names one file, from whatever directory it was run or
        # resumed (a relative path is tried from the current directory, then from the config's)
        p = Path(cfg.initial.path)
        if not p.is_absolute():
            p = p if p.exists() or not (base_dir / p).exists() else base_dir / p
            cfg = dataclasses.replace(cfg, initial=dataclasses.replace(cfg.initial, path=os.path.abspath(p)))
    validate(cfg)
    return cfg


def _old_name(error: ConfigError, moved: list[str]) -> ConfigError:
    """``error`` with ``attention.KEY`` named ``particles.KEY`` where the config gave it under its old name."""
    msg = str(error)
    for key in moved:
        head = f"attention.{key}"
        if msg.startswith(head) and not msg[len(head):len(head) + 1].isalnum():
            return ConfigError(f"particles.{key} (read as {head}){msg[len(head):]}")
    return error


def _move_attention_keys(raw: dict) -> dict:
    """[particles] heads, causal, Q, K, V, seed are [attention] keys now: move them (a key set in both is refused)."""
    old = raw.get("particles")
    if not isinstance(old, dict) or not any(k in old for k in MOVED_TO_ATTENTION):
        return raw
    new = raw.get("attention", {})
    if not isinstance(new, dict):  # from_dict names the bad [attention]
        return raw
    raw, new, old = dict(raw), dict(new), dict(old)
    for key in MOVED_TO_ATTENTION:
        if key in old:
            if key in new:
                raise ConfigError(f"particles.{key}: also given as attention.{key}; allowed: one of them "
                                  f"([attention] is read by both methods, [particles].{key} is its old name)")
            new[key] = old.pop(key)
    raw["particles"], raw["attention"] = old, new
    return raw


