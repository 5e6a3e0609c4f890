"""The config schema: one frozen dataclass per [section], its defaults, and the ranges users may give.

Every key, its default and its range is documented in docs/config.md.  The constants here are the
limits the range rules (``rules.py``) and the solvers refer to; nothing here reads a file or the machine.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import tomli_w

#: The geometries (domains.GEOMETRIES builds them) and the ambient dimension d of the fixed ones.
GEOMETRIES = ("circle", "sphere", "zonal")
GEOMETRY_DIM = {"circle": 2, "sphere": 3}
VARIANTS = ("sa", "usa")
#: particles.update: the residual update of the peers' transformers (docs/variants.md)
UPDATES = ("post-ln", "pre-ln", "peri-ln", "ngpt")
#: nGPT's step on the sphere, dx/dt = alpha P_x A / |A| (the value simuformer uses)
NGPT_ALPHA = 0.2
#: particles.batch: at most this many systems, and this many tokens in all (batch x n: 1.6 GB of positions at d = 2)
MAX_BATCH = 1_000_000
MAX_BATCH_TOKENS = 100_000_000
#: Largest beta accepted for USA.  Its velocity field scales like e^beta / beta; e^beta overflows
#: float64 at beta ~ 709, and products with the density on the grid need head-room, so we stop well before.
USA_MAX_BETA = 500.0
#: Largest beta accepted at all: the most unstable mode is ~sqrt(2 beta) = 14,142 there, already beyond
#: what the sphere grid resolves, and the exact argmax still scans a modest range.
MAX_BETA = 1e8
#: Default padding factor of the grid (docs/numerics.md has the measurements behind it).
DEFAULT_DEALIAS = 2.0
#: Largest resolution per geometry (circle: 2^20 wavenumbers is already ~50 MB a snapshot;
#: sphere: L = 2047 is 2.1 M coefficients and a 3072 x 6144 grid).
MAX_MODES = {"circle": 1 << 20, "sphere": 2047, "zonal": 1 << 16}
MAX_SNAPSHOTS = 10_000_000
MAX_STEPS = 1_000_000_000
#: Largest config file read (a config is text; tokens in bulk belong in an initial.path file).
MAX_CONFIG_BYTES = 64 * 2**20
#: attention.integrals: how the density's field integrals are evaluated.
INTEGRALS = ("auto", "funk_hecke", "quadrature")


def geometry_for_dim(dim: int) -> str:
    """The grid that carries the initial density and the density estimate of tokens in R^dim."""
    return {2: "circle", 3: "sphere"}.get(dim, "zonal")


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
    tokens: bool = True  # batched particles runs: also store every system's positions per snapshot


@dataclass(frozen=True)
class LongtimeConfig:
    """[longtime]: hand-off to tokens, merging, the token phase's tolerance, cluster diagnostics."""

    handoff: str = "none"  # "none" | "tokens"
    merge_tol: float = 1e-9  # radians; 0 = never merge
    tail_tol: float = 1e-8  # hand off when the spectral tail exceeds this plus twice its initial value ...
    departure: float = 1.0  # ... once max |rho / rho_bar - 1| has reached this (the linear phase is over)
    oversample: int = 1  # hand-off nodes: the run's grid refined this many times per direction
    rtol: float = 1e-10  # error tolerance of the token phase (Dormand–Prince 5(4))
    atol: float = 1e-12
    cluster_radius: float = 0.0  # radians; 0 = min(0.2, pi / (4 l*))
    cluster_mass: float = 1e-3  # lighter clusters are not counted
    check_factor: float = 0.0  # > 1: rerun with grid.modes times this and store the differences (0: no check)
    check_tol: float = 0.01  # warn when merger times differ by more than this (relative) in that check


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
    update: str = "post-ln"  # the residual update: "post-ln" | "pre-ln" | "peri-ln" | "ngpt" (docs/variants.md)
    alpha: float = NGPT_ALPHA  # update = "ngpt": dx/dt = alpha P_x A / |A|
    batch: int = 1  # independent systems solved together, system b from initial.seed + b (docs/ensembles.md)


@dataclass(frozen=True)
class AttentionConfig:
    """[attention]: the attention field, read by both methods (density and tokens)."""

    heads: int = 1
    Q: object = "identity"  # "identity" | "random" (N(0, variance/d) entries) | "gpt2" | a d x d matrix | one per head
    K: object = "identity"
    V: object = "identity"
    seed: int = 0  # of "random" matrices (and of the resampled heads)
    causal: bool = False  # the token at position s attends to positions s' <= s
    alibi: float = 0.0  # ALiBi slope lambda of the causal kernel
    integrals: str = "auto"  # density: "auto" | "funk_hecke" | "quadrature" (how the field's integrals are evaluated)
    resample: bool = False  # tokens: fresh Gaussian heads every layer (random heads per layer)
    variance: float = 1.0  # "random" matrices and resampled heads: entries N(0, variance / d)


@dataclass(frozen=True)
class PerceptronConfig:
    """[perceptron]: a perceptron (MLP) term P_x W sigma(A x + b) in the velocity, beside attention."""

    activation: str = "none"  # "none" | "relu" | "tanh" | "sigmoid" | "softplus"
    W: tuple = ()  # d x m (list of rows)
    A: tuple = ()  # m x d
    b: tuple = ()  # m numbers


@dataclass(frozen=True)
class ScheduleConfig:
    """[schedule]: parameters constant on layers of time (layer k until times[k]; the base values after the last)."""

    times: tuple = ()  # the layers' end times, increasing, within (0, time.t_end]
    beta: tuple = ()  # one model.beta per layer ([]: model.beta throughout)
    Q: tuple = ()  # one attention.Q per layer (any form attention.Q takes)
    K: tuple = ()
    V: tuple = ()
    W: tuple = ()  # one perceptron.W per layer
    A: tuple = ()
    b: tuple = ()


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
    perceptron: PerceptronConfig = field(default_factory=PerceptronConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

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
        return GEOMETRY_DIM.get(self.model.geometry, 0)


SECTIONS = {"model": ModelConfig, "grid": GridConfig, "initial": InitialConfig,
            "time": TimeConfig, "output": OutputConfig, "particles": ParticlesConfig, "attention": AttentionConfig,
            "longtime": LongtimeConfig, "perceptron": PerceptronConfig, "schedule": ScheduleConfig}
#: per-layer values of [schedule]: the key of the base config each replaces
SCHEDULED = {"beta": ("model", "beta"), "Q": ("attention", "Q"), "K": ("attention", "K"), "V": ("attention", "V"),
             "W": ("perceptron", "W"), "A": ("perceptron", "A"), "b": ("perceptron", "b")}


def layer_config(cfg: Config, k: int) -> Config:
    """The config of layer k of [schedule] (k = len(times): the base config, after the last layer), without a
    schedule of its own."""
    s = cfg.schedule
    out = dataclasses.replace(cfg, schedule=ScheduleConfig())
    if k >= len(s.times):
        return out
    for key, (section, name) in SCHEDULED.items():
        values = getattr(s, key)
        if values:
            out = dataclasses.replace(out, **{section: dataclasses.replace(getattr(out, section),
                                                                           **{name: values[k]})})
    return out


def layer_at(cfg: Config, t: float) -> int:
    """The layer whose interval [times[k-1], times[k]) holds t (len(times) beyond the last)."""
    times = cfg.schedule.times
    return next((k for k, end in enumerate(times) if t < end * (1 - 1e-12)), len(times))
#: keys whose value is a string or a matrix (list of rows, or one per head)
MATRIX_KEYS = {("attention", "Q"), ("attention", "K"), ("attention", "V")}
#: [particles] keys that moved to [attention] (read from either; configs and histories written before keep working)
MOVED_TO_ATTENTION = ("heads", "causal", "Q", "K", "V", "seed")


def plain_attention(cfg: Config) -> bool:
    """Q = K = V = I, one head, not causal: the attention of the Funk–Hecke model, unchanged."""
    a = cfg.attention
    return (a.heads == 1 and not a.causal and a.integrals != "quadrature"
            and all(getattr(a, k) == "identity" for k in "QKV"))


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


