"""TOML run configuration -> validated, frozen dataclasses.

Every key, its default and its range is documented in docs/config.md.  Any
problem raises ConfigError with one line naming ``section.key``, the value given
and what is allowed; the CLI turns it into exit status 2.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ..physics import theory
from .. import domains as _domains
from ..domains import DEFAULT_DEALIAS
from ..errors import ConfigError
from ..stepping import AUTO, EMBEDDED_SCHEMES, SCHEMES

#: Largest resolution per geometry (circle: 2^20 wavenumbers is already ~50 MB a snapshot;
#: sphere: L = 2047 is 2.1 M coefficients and a 3072 x 6144 grid).
MAX_MODES = {"circle": 1 << 20, "sphere": 2047, "zonal": 1 << 16}
GEOMETRIES = tuple(_domains.GEOMETRIES)
MAX_SNAPSHOTS = 10_000_000
MAX_STEPS = 1_000_000_000
#: Largest config file read (a config is text; tokens in bulk belong in an initial.path file).
MAX_CONFIG_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ModelConfig:
    """[model]: the equation."""

    geometry: str = "circle"
    variant: str = "sa"
    beta: float = 9.0
    viscosity: float = 0.0
    method: str = "spectral"
    dim: int = 0  # zonal: the ambient dimension d (tokens on S^{d-1}); 0 = the geometry's own


@dataclass(frozen=True)
class GridConfig:
    """[grid]: the resolution."""

    modes: int = 128
    dealias: float = DEFAULT_DEALIAS
    backend: str = "auto"  # sphere: spherical-harmonic library, "auto" | "ducc0" | "shtns"
    positions: int = 33  # causal density: nodes s_j = j / (positions - 1) of the position in the prompt


@dataclass(frozen=True)
class InitialConfig:
    """[initial]: the initial density."""

    kind: str = "random"
    amplitude: float = 1e-6
    seed: int = 0
    max_mode: int = 0  # random: perturb modes 1..max_mode only (0: every mode of the grid)
    modes: tuple = ()
    centers: tuple = ()
    concentrations: tuple = ()
    weights: tuple = ()
    path: str = ""
    time: float = math.nan  # file: snapshot time; nan = the last one
    positions: tuple = ()  # tokens: unit vectors in R^d (normalised here if not)
    position_power: float = 0.0  # causal density: the departure from uniform times s^position_power


@dataclass(frozen=True)
class TimeConfig:
    """[time]: the time stepping."""

    t_end: float = 10.0
    dt: float = 0.01
    stepper: str = "auto"  # "auto" picks by stiffness (simulation.pick_stepper) and says which
    adaptive: bool = False
    rtol: float = 1e-6
    atol: float = 1e-12
    cfl: float = 0.0  # step-doubling schemes only: dt <= cfl * spacing / max|X|; 0 = no bound
    threads: int = 0  # transforms, the token field, BLAS; 0 = every core for work large enough to gain, else 1
    dt_min: float = 1e-12
    dt_max: float = math.inf
    growth_check: str = "refuse"  # "refuse" | "warn" | "off": implicit steps too long for a growing mode
    growth_tol: float = 0.01  # largest relative error of the fastest growing mode's discrete rate


@dataclass(frozen=True)
class OutputConfig:
    """[output]: the HDF5 history."""

    path: str = "run.h5"
    interval: float = 0.1
    checkpoint_every: int = 1  # snapshots between checkpoints (OUT.h5.ckpt); 0 = none
    spacing: str = "linear"  # "linear" | "log" (geometric in time once that is sparser than interval)
    per_decade: int = 20  # snapshots per decade of time with spacing = "log"
    grid: bool = True  # also store rho on the grid (/rho); false: the coefficients alone
    compress: bool = True  # gzip the finished history (a running one stays uncompressed: crash-safe appends)


@dataclass(frozen=True)
class LongtimeConfig:
    """[longtime]: hand-off to tokens, merging, the token phase's tolerance, cluster diagnostics."""

    handoff: str = "none"  # "none" | "tokens"
    merge_tol: float = 1e-9  # radians; 0 = never merge
    tail_tol: float = 1e-8  # hand off when the spectral tail exceeds this plus twice its initial value
    oversample: int = 1  # hand-off nodes: the run's grid refined this many times per direction
    rtol: float = 1e-10  # error tolerance of the token phase (Dormand–Prince 5(4))
    atol: float = 1e-12
    cluster_radius: float = 0.0  # radians; 0 = min(0.2, pi / (4 l*))
    cluster_mass: float = 1e-3  # lighter clusters are not counted


@dataclass(frozen=True)
class ParticlesConfig:
    """[particles]: weighted tokens (model.method = "particles")."""

    n: int = 1000
    dim: int = 3
    integrator: str = "rk4"
    bandwidth: float = 0.0  # of the density estimate on the grid; 0 = n^{-1/(dim+3)}
    field: str = "auto"  # "auto" | "direct" | "funk_hecke" (Q = K = V = I on S^1, S^2: harmonic transforms)
    backend: str = "numpy"  # "numpy" | "torch": the direct field on PyTorch (float64), optional extra
    device: str = "cpu"  # "cpu" | "cuda": torch's device


@dataclass(frozen=True)
class AttentionConfig:
    """[attention]: the attention field, read by both methods (density and tokens)."""

    heads: int = 1
    Q: object = "identity"  # "identity" | "random" (N(0, 1/d) entries) | a d x d matrix | one per head
    K: object = "identity"
    V: object = "identity"
    seed: int = 0  # of "random" matrices (and of the resampled heads)
    causal: bool = False  # the token at position s attends to positions s' <= s
    alibi: float = 0.0  # ALiBi slope lambda of the causal kernel
    integrals: str = "auto"  # density: "auto" | "funk_hecke" | "quadrature" (how the field's integrals are evaluated)
    resample: bool = False  # tokens: fresh Gaussian heads every layer (random heads per layer)
    variance: float = 1.0  # resample: Q, K, V entries N(0, variance / d)


@dataclass(frozen=True)
class Config:
    """A validated run configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    initial: InitialConfig = field(default_factory=InitialConfig)
    time: TimeConfig = field(default_factory=TimeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    particles: ParticlesConfig = field(default_factory=ParticlesConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    longtime: LongtimeConfig = field(default_factory=LongtimeConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (TOML-serialisable: nan times are dropped)."""
        out = {}
        for f in dataclasses.fields(self):
            sec = dataclasses.asdict(getattr(self, f.name))
            out[f.name] = {k: _plain(v) for k, v in sec.items()
                           if not (isinstance(v, float) and math.isnan(v))}
        return out

    def to_toml(self) -> str:
        """The configuration as run, every key explicit."""
        return tomli_w.dumps(self.to_dict())

    @property
    def dim(self) -> int:
        """Ambient dimension d of the geometry (tokens on S^{d-1})."""
        if self.model.method == "particles":
            return self.particles.dim
        if self.model.geometry == "zonal":
            return self.model.dim
        return theory.dim_of(self.model.geometry)


SECTIONS = {"model": ModelConfig, "grid": GridConfig, "initial": InitialConfig,
            "time": TimeConfig, "output": OutputConfig, "particles": ParticlesConfig, "attention": AttentionConfig,
            "longtime": LongtimeConfig}
#: keys whose value is a string or a matrix (list of rows, or one per head)
MATRIX_KEYS = {("attention", "Q"), ("attention", "K"), ("attention", "V")}
#: [particles] keys that moved to [attention] (read from either; configs and histories written before keep working)
MOVED_TO_ATTENTION = ("heads", "causal", "Q", "K", "V", "seed")


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------------------------
# reading
def load(path: str | Path, overrides: list[str] | tuple = ()) -> Config:
    """Read, override (``section.key=value`` strings) and validate a TOML config file."""
    return loads(_read(Path(path), "config"), overrides, base_dir=Path(path).parent)


def loads(text: str, overrides: list[str] | tuple = (), base_dir: Path | None = None) -> Config:
    """Parse and validate TOML text (see ``load``)."""
    raw = _parse(text, "config")
    for item in overrides:
        apply_override(raw, item)
    return from_dict(raw, base_dir=base_dir)


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
        raise ConfigError(f"--set: got {_shown(item)}, allowed: section.key=value (e.g. grid.modes=64)")
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
        raise ConfigError(f"{where}: got {_shown(value)} ({type(value).__name__}), allowed: 'identity' | 'random' | "
                          "a matrix (list of rows), or one of those per head")
    if t is bool:
        ok = isinstance(value, bool)
    elif t is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(value, int) and abs(value) > 1e308:
            raise ConfigError(f"{where}: got {_shown(value)}, allowed: a number "
                              "within the float range (|x| < 1.8e308)")
        value = float(value) if ok else value
    elif t is str:
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, list)
        value = _freeze(value) if ok else value
    if not ok:
        raise ConfigError(f"{where}: got {_shown(value)} ({type(value).__name__}), allowed: {_type_name(t)}")
    return value


def _freeze(v):
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def from_dict(raw: dict, base_dir: Path | None = None) -> Config:
    """Validate a nested dict (as parsed from TOML) into a Config."""
    for name, value in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"{name}: unknown section, allowed: {', '.join(SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: got {_shown(value)}, allowed: a [{name}] table")
    moved = [k for k in MOVED_TO_ATTENTION if k in raw.get("particles", {})]
    raw = _move_attention_keys(raw)
    try:
        return _build(raw, base_dir)
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
        p = Path(cfg.initial.path)
        if not p.is_absolute() and not p.exists() and (base_dir / p).exists():
            cfg = dataclasses.replace(cfg, initial=dataclasses.replace(cfg.initial, path=str(base_dir / p)))
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


# ---------------------------------------------------------------------------------
# checks
def _need(cond: bool, where: str, value, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: got {_shown(value)}, allowed: {allowed}")


def _shown(value) -> str:
    """repr(value), cut to one readable line (an error must stay one line)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"  # no str(): 4300 max
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _finite(x) -> bool:
    try:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    except OverflowError:  # an integer beyond the float range
        return False


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_modes(modes, geometry: str, top: int) -> None:
    """initial.modes: [k, a] (circle), [l, m, a] (sphere), [l, a] (zonal), 1 <= k, l <= top."""
    shape = {"circle": "[k, amplitude]", "sphere": "[l, m, amplitude]", "zonal": "[l, amplitude]"}[geometry]
    _need(len(modes) > 0, "initial.modes", list(modes), f"a non-empty list of {shape}")
    width = 3 if geometry == "sphere" else 2
    for entry in modes:
        ok = (isinstance(entry, tuple) and len(entry) == width and all(_is_int(x) for x in entry[:-1])
              and 1 <= entry[0] <= top and _finite(entry[-1]))
        if ok and geometry == "sphere":
            ok = abs(entry[1]) <= entry[0]
        _need(ok, "initial.modes", _plain(entry),
              f"entries {shape} with integer 1 <= {'k' if geometry == 'circle' else 'l'} <= grid.modes = {top}"
              + (", |m| <= l" if geometry == "sphere" else "") + " and a finite amplitude")


def _check_centers(centers, geometry: str) -> None:
    """initial.centers: angles (circle), vectors in R^3 (sphere), 0 or pi (zonal: the two poles)."""
    ok = len(centers) > 0
    if geometry == "circle":
        ok = ok and all(_finite(c) for c in centers)
        allowed = "a non-empty list of angles (radians)"
    elif geometry == "sphere":
        ok = ok and all(isinstance(c, tuple) and len(c) == 3 and all(_finite(x) for x in c)
                        and any(x != 0 for x in c) for c in centers)
        allowed = "a non-empty list of non-zero vectors [x, y, z]"
    else:
        ok = ok and all(_finite(c) and (c == 0 or abs(c - math.pi) < 1e-12) for c in centers)
        allowed = "colatitudes 0 (north pole) or pi (south pole): a zonal bump sits on the axis"
    _need(ok, "initial.centers", _plain(centers), allowed)


def _check_zonal_dim(where: str, d: int, L: int) -> None:
    """A zonal density of degree L on S^{d-1} must be representable in float64 (it is stored with
    respect to the surface measure, which underflows as d grows: |S^{399}| ~ 1e-273)."""
    from ..domains.zonal import max_dimension

    if _is_int(L) and 1 <= L <= 100_000 and d > 3:
        top = max_dimension(L)
        _need(d <= top, where, d, f"<= {top} with grid.modes = {L} (a density with respect to the surface measure "
              f"of S^{{d-1}} and its degree-{L} normalisation leave the float64 range beyond; fewer modes allow a "
              "little more)")


def _validate_particles(cfg: Config) -> None:
    """[particles] and its consistency with [model] and [time]."""
    from ..tokens import EMBEDDED, INTEGRATORS, attention_matrices, particle_geometry_name

    p, m = cfg.particles, cfg.model
    _need(1 <= p.n <= 1_000_000, "particles.n", p.n, "an integer in [1, 1000000]")
    _need(2 <= p.dim <= 1000, "particles.dim", p.dim, "an integer in [2, 1000] (tokens on S^{dim-1})")
    if p.dim >= 4:  # the density estimate lives on the zonal grid
        _check_zonal_dim("particles.dim", p.dim, cfg.grid.modes)
    _need(p.integrator in INTEGRATORS, "particles.integrator", p.integrator,
          " | ".join(repr(k) for k in INTEGRATORS))
    _need(_finite(p.bandwidth) and p.bandwidth >= 0, "particles.bandwidth", p.bandwidth,
          "a finite number >= 0 (0: n^{-1/(dim+3)})")
    from ..tokens import FIELDS

    _need(p.field in FIELDS, "particles.field", p.field, " | ".join(repr(f) for f in FIELDS))
    _need(p.backend in ("numpy", "torch"), "particles.backend", p.backend, "'numpy' | 'torch'")
    _need(p.device in ("cpu", "cuda"), "particles.device", p.device, "'cpu' | 'cuda'")
    _need(p.device == "cpu" or p.backend == "torch", "particles.device", p.device,
          "'cpu' with particles.backend = 'numpy' (set backend = 'torch' for a GPU)")
    _need(p.backend == "numpy" or p.field != "funk_hecke", "particles.backend", p.backend,
          "'numpy' with particles.field = 'funk_hecke' (torch evaluates the direct field)")
    if p.backend == "torch":
        from ..tokens.torch_field import load_torch

        load_torch(p.device)
    geometry = particle_geometry_name(p.dim)
    _need(m.geometry == geometry, "model.geometry", m.geometry,
          f"{geometry!r} with particles.dim = {p.dim} (the grid of the density estimate and of the initial density)")
    if geometry == "zonal":
        _need(m.dim in (0, p.dim), "model.dim", m.dim, f"0 or particles.dim = {p.dim}")
    _need(not cfg.time.adaptive or p.integrator in EMBEDDED, "time.adaptive", cfg.time.adaptive,
          f"false with particles.integrator = {p.integrator!r} (adaptive steps need an embedded pair: "
          + " | ".join(repr(k) for k in EMBEDDED) + ")")
    _need(p.integrator not in EMBEDDED or m.viscosity == 0, "particles.integrator", p.integrator,
          "'rk4' | 'euler' with model.viscosity > 0 (noise); 'dopri5' and 'dop853' are for deterministic runs")
    _need(cfg.longtime.handoff == "none", "longtime.handoff", cfg.longtime.handoff,
          "'none' with model.method = 'particles' (the run is tokens from the start)")
    import numpy as np

    from ..physics.general import attention_heads
    from ..tokens import is_identity, pick_field

    heads = attention_heads(cfg, p.dim)
    a = cfg.attention
    pick_field(p.field, p.dim, a.heads, a.causal, is_identity(p.dim, *zip(*heads)), p.n, m.beta)
    if a.resample:
        _need(all(getattr(a, k) == "random" for k in "QKV"), "attention.resample", a.resample,
              "false unless attention.Q, K and V are 'random' (the law the heads are drawn from every layer)")
        _need(not cfg.time.adaptive, "attention.resample", a.resample,
              "false with time.adaptive = true (a layer is one step of time.dt)")
        _need(m.viscosity == 0, "attention.resample", a.resample, "false with model.viscosity > 0")
        _need(p.backend == "numpy", "attention.resample", a.resample, "false with particles.backend = 'torch'")
        layers = cfg.time.t_end / cfg.time.dt
        _need(abs(layers - round(layers)) <= 1e-9 * layers, "time.t_end", cfg.time.t_end,
              f"a multiple of time.dt = {cfg.time.dt:g} with attention.resample = true (every layer is one step of dt)")


def _validate_attention_ranges(cfg: Config) -> None:
    """[attention]'s own ranges: checked first, since the particles checks already draw the heads."""
    from ..physics.general import INTEGRALS

    a, g = cfg.attention, cfg.grid
    _need(_is_int(a.heads) and 1 <= a.heads <= 64, "attention.heads", a.heads, "an integer in [1, 64]")
    _need(0 <= a.seed < 2**63, "attention.seed", a.seed, "an integer in [0, 2**63) (stored as int64)")
    _need(_finite(a.alibi) and 0 <= a.alibi <= 50, "attention.alibi", a.alibi, "a number in [0, 50]")
    _need(a.alibi == 0 or a.causal, "attention.alibi", a.alibi, "0 unless attention.causal = true")
    _need(a.integrals in INTEGRALS, "attention.integrals", a.integrals, " | ".join(repr(k) for k in INTEGRALS))
    _need(_finite(a.variance) and 0 < a.variance <= 100, "attention.variance", a.variance, "a number in (0, 100]")
    _need(2 <= g.positions <= 4097, "grid.positions", g.positions, "an integer in [2, 4097]")
    _need(_finite(cfg.initial.position_power) and 0 <= cfg.initial.position_power <= 20, "initial.position_power",
          cfg.initial.position_power, "a number in [0, 20]")


def _validate_attention(cfg: Config) -> None:
    """[attention]: what each method and geometry can evaluate (the ranges: ``_validate_attention_ranges``)."""
    from ..physics.general import attention_heads, check_quadrature, funk_hecke_heads, is_plain, kernel_radius

    a, m, g = cfg.attention, cfg.model, cfg.grid
    if a.resample:
        _need(m.method == "particles", "attention.resample", a.resample,
              "false with model.method = 'spectral' (random heads per layer move tokens)")
    if m.method == "particles" or is_plain(cfg):
        return
    heads = attention_heads(cfg, cfg.dim)
    if a.causal:
        _need(m.geometry in ("circle", "sphere"), "attention.causal", a.causal,
              "false on geometry 'zonal' (the causal density is for 'circle' | 'sphere')")
    _need(cfg.longtime.handoff == "none" or (m.geometry != "zonal" and not a.causal), "longtime.handoff",
          cfg.longtime.handoff, "'none' with general attention on geometry 'zonal' or with attention.causal "
          "(the tokens of a hand-off carry one position and the circle's or sphere's heads)")
    spectral = funk_hecke_heads(heads)
    if m.geometry == "zonal":
        _need(spectral and a.integrals != "quadrature", "attention.Q", _plain(a.Q),
              "on geometry 'zonal', heads that keep zonal symmetry: Q^T K = c I (c > 0) and V = v I per head")
    if a.integrals == "funk_hecke":
        _need(spectral, "attention.integrals", a.integrals, "'auto' | 'quadrature' for these heads (Funk–Hecke "
              "needs Q^T K = c I, c > 0, and V = v I in every head)")
    if m.variant == "usa":
        top = max(kernel_radius(m.beta, Q, K) for Q, K, _ in heads)
        _need(top <= theory.USA_MAX_BETA, "model.beta", m.beta, f"beta ||K^T Q|| <= {theory.USA_MAX_BETA:g} for "
              f"variant 'usa' (here {top:.4g}: e^(beta <Qx, Ky>) overflows); use variant 'sa'")
    if not spectral or a.integrals == "quadrature":
        check_quadrature(m.geometry, g.modes, g.dealias, m.beta, heads)


def _validate_longtime(cfg: Config) -> None:
    """[longtime] and its consistency with the model."""
    lt, m = cfg.longtime, cfg.model
    _need(lt.handoff in ("none", "tokens"), "longtime.handoff", lt.handoff, "'none' | 'tokens'")
    if lt.handoff == "tokens":
        _need(m.viscosity == 0, "longtime.handoff", lt.handoff,
              "'none' with model.viscosity > 0 (tokens carry the inviscid equation; viscosity keeps "
              "the density resolved)")
    _need(_finite(lt.merge_tol) and 0 <= lt.merge_tol <= 0.1, "longtime.merge_tol", lt.merge_tol,
          "a number of radians in [0, 0.1] (0: tokens never merge)")
    _need(_finite(lt.tail_tol) and 0 < lt.tail_tol < 1, "longtime.tail_tol", lt.tail_tol, "a number in (0, 1)")
    _need(1 <= lt.oversample <= 8, "longtime.oversample", lt.oversample, "an integer in [1, 8]")
    _need(_finite(lt.rtol) and 0 <= lt.rtol < 1, "longtime.rtol", lt.rtol, "a number in [0, 1)")
    _need(_finite(lt.atol) and lt.atol >= 0, "longtime.atol", lt.atol, "a finite number >= 0")
    _need(lt.rtol + lt.atol >= 1e-15, "longtime.rtol", lt.rtol,
          "rtol + atol >= 1e-15 (positions are unit vectors: below that is round-off)")
    _need(_finite(lt.cluster_radius) and (lt.cluster_radius == 0 or 1e-9 <= lt.cluster_radius <= math.pi / 2),
          "longtime.cluster_radius", lt.cluster_radius,
          "0 (min(0.2, pi / (4 l*))) or a number of radians in [1e-9, pi/2]")
    _need(_finite(lt.cluster_mass) and 1e-12 <= lt.cluster_mass <= 1, "longtime.cluster_mass", lt.cluster_mass,
          "a number in [1e-12, 1]")


def _check_tokens(cfg: Config) -> None:
    """initial.kind = "tokens": unit vectors of the run's dimension and optional weights."""
    i, d = cfg.initial, cfg.dim
    _need(cfg.model.method == "particles" or cfg.longtime.handoff == "tokens", "initial.kind", i.kind,
          "'tokens' with model.method = 'particles', or with longtime.handoff = 'tokens' (a run that "
          "starts as tokens)")
    ok = (0 < len(i.positions) <= 1_000_000
          and all(isinstance(x, tuple) and len(x) == d and all(_finite(v) for v in x) and any(v != 0 for v in x)
                  for x in i.positions))
    _need(ok, "initial.positions", _short(_plain(i.positions)),
          f"a non-empty list of non-zero vectors of length {d} (tokens on S^{d - 1}; normalised)")
    if i.weights:
        n = len(i.positions)
        _need(len(i.weights) == n and all(_finite(w) and w >= 0 for w in i.weights) and sum(i.weights) > 0,
              "initial.weights", _short(_plain(i.weights)), f"{n} numbers >= 0, not all zero (normalised to sum 1)")


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def memory_estimate(cfg: Config) -> tuple[float, str]:
    """(bytes, key) a run will hold at its peak, roughly, and the key that sets it."""
    g, m = cfg.grid, cfg.model
    L = g.modes
    if m.method == "particles":
        n = len(cfg.initial.positions) if cfg.initial.kind == "tokens" else cfg.particles.n
        d = cfg.particles.dim
        return 64 * 2**20 + 40.0 * n * d * 8 + _grid_bytes(cfg.model.geometry, L, g.dealias, cfg.dim), "particles.n"
    need = _grid_bytes(m.geometry, L, g.dealias, cfg.dim)
    a = cfg.attention
    if a.causal:
        need *= g.positions
    from ..physics.general import is_plain, uses_quadrature

    if not is_plain(cfg) and uses_quadrature(cfg):  # the kernel matrices, heads x N^2 doubles, built once
        n = _grid_points(m.geometry, L, g.dealias)
        return need + 8.0 * a.heads * n * n, "grid.modes"
    if cfg.longtime.handoff == "tokens":
        # tokens on the (oversampled) grid: blocked point fields (<= 64 MB), or zonal rings' dense n x n kernels
        n = cfg.longtime.oversample ** (2 if m.geometry == "sphere" else 1) * _grid_points(m.geometry, L, g.dealias)
        need += 12 * 8.0 * n * n if m.geometry == "zonal" else 64 * 2**20 + 40.0 * n * cfg.dim * 8
    return need, "grid.modes"


def _grid_points(geometry: str, L: int, dealias: float) -> int:
    """Number of grid nodes (the hand-off's tokens at oversample 1)."""
    if geometry == "circle":
        return int(dealias * (2 * L + 1)) + 2
    if geometry == "sphere":
        return int(dealias * (L + 1) + 32) * int(dealias * (2 * L + 1) + 2)
    return int(dealias * (L + 1)) + 2


def _grid_bytes(geometry: str, L: int, dealias: float, dim: int) -> float:
    # ~20 grid-sized float arrays alive in a step (stages, temporaries), plus the transform tables
    if geometry == "circle":
        return 20 * 8.0 * dealias * (2 * L + 1)
    if geometry == "sphere":
        return 20 * 8.0 * dealias**2 * (L + 1) * (2 * L + 1) + 16.0 * (L + 1) ** 2
    return 3 * 8.0 * (L + 1) * dealias * (L + 1)  # zonal: R_l and R_l' tables, (L+1) x n


def available_memory() -> float:
    """Bytes of memory available to this process now (MemAvailable; total RAM where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def check_memory(cfg: Config) -> None:
    """Refuse, before anything is allocated, a run whose estimated memory exceeds what is available."""
    need, key = memory_estimate(cfg)
    have = available_memory()
    if need > 0.8 * have:
        value = cfg.particles.n if key == "particles.n" else cfg.grid.modes
        raise ConfigError(f"{key}: got {value}, which needs about {need / 2**30:.3g} GiB of memory; "
                          f"{have / 2**30:.3g} GiB are available: lower {key}")


def validate(cfg: Config) -> None:
    """Check ranges and consistency; raise ConfigError naming the first bad key."""
    m, g, i, t, o = cfg.model, cfg.grid, cfg.initial, cfg.time, cfg.output
    _need(m.geometry in GEOMETRIES, "model.geometry", m.geometry, " | ".join(repr(x) for x in GEOMETRIES))
    _need(m.method in ("spectral", "particles"), "model.method", m.method, "'spectral' | 'particles'")
    _validate_attention_ranges(cfg)
    if m.method == "particles":
        _validate_particles(cfg)
    elif m.geometry == "zonal":
        _need(_is_int(m.dim) and 2 <= m.dim <= 1000, "model.dim", m.dim,
              "an integer in [2, 1000] for geometry 'zonal' (tokens on S^{dim-1})")
        _check_zonal_dim("model.dim", m.dim, g.modes)
    else:
        own = theory.dim_of(m.geometry)
        _need(m.dim in (0, own), "model.dim", m.dim, f"0 or {own} for geometry {m.geometry!r} (use geometry 'zonal' for other d)")
    _need(m.variant in theory.VARIANTS, "model.variant", m.variant, "'sa' | 'usa'")
    _need(_finite(m.beta) and 0 < m.beta <= theory.MAX_BETA, "model.beta", m.beta,
          f"a number in (0, {theory.MAX_BETA:g}]")
    if m.variant == "usa":
        _need(m.beta <= theory.USA_MAX_BETA, "model.beta", m.beta,
              f"<= {theory.USA_MAX_BETA:g} for variant 'usa' (e^beta overflows); use variant 'sa'")
    _need(_finite(m.viscosity) and m.viscosity >= 0, "model.viscosity", m.viscosity, "a finite number >= 0")

    cap = MAX_MODES[m.geometry]
    _need(1 <= g.modes <= cap, "grid.modes", g.modes, f"an integer in [1, {cap}] for geometry {m.geometry!r}")
    _need(_finite(g.dealias) and 1.0 <= g.dealias <= 4.0, "grid.dealias", g.dealias,
          "a number in [1, 4] (1.5 = the 3/2 rule)")
    _need(g.backend in ("auto", "ducc0", "shtns"), "grid.backend", g.backend, "'auto' | 'ducc0' | 'shtns'")
    kstar = theory.most_unstable_mode(m.beta, m.variant, m.viscosity, cfg.dim)
    if g.modes < 2 * kstar and m.method == "spectral":  # particles: the grid only carries an estimate
        name = "k*" if m.geometry == "circle" else "l*"
        raise ConfigError(
            f"grid.modes: got {g.modes}, allowed: >= {2 * kstar} for beta = {m.beta:g} "
            f"(twice the most unstable mode {name} = {kstar}, so that it is well resolved)"
        )

    kinds = ("random", "modes", "von_mises", "file", "tokens")
    _need(i.kind in kinds, "initial.kind", i.kind, " | ".join(repr(k) for k in kinds))
    _need(_finite(i.amplitude) and 0 <= i.amplitude < 1, "initial.amplitude", i.amplitude,
          "a number in [0, 1)")
    _need(0 <= i.seed < 2**63, "initial.seed", i.seed, "an integer in [0, 2**63) (stored as int64)")
    _need(0 <= i.max_mode <= g.modes, "initial.max_mode", i.max_mode,
          f"an integer in [0, grid.modes = {g.modes}] (0: every mode)")
    if i.kind == "modes":
        _check_modes(i.modes, m.geometry, g.modes)
    if i.kind == "tokens":
        _check_tokens(cfg)
    if i.kind == "von_mises":
        _check_centers(i.centers, m.geometry)
        n = len(i.centers)
        _need(len(i.concentrations) == n and all(_finite(k) and k > 0 for k in i.concentrations),
              "initial.concentrations", _plain(i.concentrations),
              f"{n} finite numbers > 0 (one per center)")
        if i.weights:
            _need(len(i.weights) == n and all(_finite(w) and w >= 0 for w in i.weights)
                  and sum(i.weights) > 0, "initial.weights", _plain(i.weights),
                  f"{n} numbers >= 0, not all zero (normalised to sum 1)")
    if i.kind == "file":
        _need(bool(i.path) and "\x00" not in i.path, "initial.path", i.path,
              "the path of an earlier meanfield output (.h5)")
        _need(Path(i.path).is_file(), "initial.path", i.path, "an existing meanfield output file")
        _need(math.isnan(i.time) or (math.isfinite(i.time) and i.time >= 0), "initial.time", i.time,
              "a snapshot time >= 0 of that file")

    _need(_finite(t.t_end) and t.t_end > 0, "time.t_end", t.t_end, "a finite number > 0")
    _need(_finite(t.dt) and 0 < t.dt <= t.t_end, "time.dt", t.dt, f"a number in (0, t_end = {t.t_end:g}]")
    _need(t.stepper in (AUTO, *SCHEMES), "time.stepper", t.stepper, " | ".join(repr(s) for s in (AUTO, *SCHEMES)))
    if not t.adaptive and cfg.longtime.handoff == "none":  # else dt is only the first step
        _need(t.t_end / t.dt <= MAX_STEPS, "time.dt", t.dt,
              f">= t_end / {MAX_STEPS:g} (it would take {t.t_end / t.dt:.3g} steps; at most {MAX_STEPS:g})")
    _need(_finite(t.rtol) and 0 < t.rtol < 1, "time.rtol", t.rtol, "a number in (0, 1)")
    _need(_finite(t.atol) and t.atol >= 0, "time.atol", t.atol, "a finite number >= 0")
    _need(_finite(t.cfl) and 0 <= t.cfl <= 10, "time.cfl", t.cfl, "a number in [0, 10] (0: no CFL bound)")
    _need(t.cfl == 0 or not t.adaptive or t.stepper not in (AUTO, *EMBEDDED_SCHEMES), "time.cfl", t.cfl,
          f"0 with adaptive time.stepper = {t.stepper!r} (an embedded error estimate already rejects unstable "
          "steps; the CFL bound is for the step-doubling schemes 'sbdf1' | 'sbdf2' | 'etdrk4')")
    _need(0 <= t.threads <= 1024, "time.threads", t.threads, "an integer in [0, 1024] (0: all cores)")
    _need(_finite(t.dt_min) and 0 < t.dt_min <= t.dt, "time.dt_min", t.dt_min, f"a number in (0, dt = {t.dt:g}]")
    _need(not math.isnan(t.dt_max) and t.dt_max >= t.dt, "time.dt_max", t.dt_max, f"a number >= dt = {t.dt:g} (or inf)")
    _need(t.growth_check in ("refuse", "warn", "off"), "time.growth_check", t.growth_check,
          "'refuse' | 'warn' | 'off'")
    _need(_finite(t.growth_tol) and 0 < t.growth_tol < 1, "time.growth_tol", t.growth_tol, "a number in (0, 1)")

    _need(bool(o.path) and "\x00" not in o.path, "output.path", o.path, "a file path, e.g. run.h5")
    _need(_finite(o.interval) and o.interval > 0, "output.interval", o.interval, "a finite number > 0")
    _need(o.checkpoint_every >= 0, "output.checkpoint_every", o.checkpoint_every,
          "an integer >= 0 (snapshots between checkpoints; 0: none)")
    _need(o.spacing in ("linear", "log"), "output.spacing", o.spacing, "'linear' | 'log'")
    _need(1 <= o.per_decade <= 10_000, "output.per_decade", o.per_decade, "an integer in [1, 10000]")
    if o.spacing == "linear":
        _need(t.t_end / o.interval <= MAX_SNAPSHOTS, "output.interval", o.interval,
              f">= t_end / {MAX_SNAPSHOTS:g} (at most {MAX_SNAPSHOTS:g} snapshots; or output.spacing = 'log')")
    else:
        count = o.per_decade * math.log10(max(t.t_end / o.interval, 1.0)) + o.per_decade / math.log(10) + 2
        _need(count <= MAX_SNAPSHOTS, "output.per_decade", o.per_decade,
              f"at most {MAX_SNAPSHOTS:g} snapshots in all (this would write about {count:.3g})")
    _validate_longtime(cfg)
    _validate_attention(cfg)
    check_memory(cfg)
    if not t.adaptive:
        for where, value in (("output.interval", o.interval), ("time.t_end", t.t_end)):
            ratio = value / t.dt
            if not math.isfinite(ratio):
                raise ConfigError(f"{where}: got {value:g}, allowed with fixed steps: at most {MAX_STEPS:g} "
                                  f"steps of time.dt = {t.dt:g}")
        # snapshots fall on multiples of dt; t_end may not (the run ends with one shorter step)
        ratio = o.interval / t.dt
        if ratio >= 1 and abs(ratio - round(ratio)) > 1e-9 * ratio:
            raise ConfigError(f"output.interval: got {o.interval:g}, allowed with fixed steps: a multiple of "
                              f"time.dt = {t.dt:g} (or set time.adaptive = true)")
        _need(o.interval >= t.dt, "output.interval", o.interval, f">= time.dt = {t.dt:g} with fixed steps")
