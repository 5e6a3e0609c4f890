"""The control file of ``meanfield control``: what is solved, what is optimised, against which loss.

    [model]     method = "density" | "tokens"; geometry = "circle" | "sphere" | "zonal"; dim; variant = "sa" | "usa";
                attention (the attention term on or off); beta; viscosity; perceptron = "relu" | "tanh" |
                "sigmoid" | "softplus" | "none"; units; heads
    [grid]      modes; dealias                                  (density)
    [time]      t_end; dt; layers (intervals of equal length on which scheduled parameters are constant); snapshots
    [initial]   kind = "uniform" | "von_mises" | "tokens"; centers, concentrations, weights (a von Mises mixture,
                centers as angles on the circle or unit vectors); n, seed (random tokens) or positions
    [target]    the same keys as [initial]
    [loss]      kind = "kl" | "mmd" | "energy" | "w1" | "w2" | "sliced"; kappa (mmd); projections, seed (sliced)
    [optimize]  parameters (any of beta, viscosity, Q, K, V, W, A, b, initial); scheduled (those of them that
                change per layer); method = "L-BFGS-B" | "adam" (torch); iterations; gtol; seed, scale (the perceptron's
                random start); step (the size of the optimiser's first change of a parameter)

docs/control.md describes every key; a key out of its range is refused in one line naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import read_toml
from ..errors import ConfigError
from ..gradients.perceptron import ACTIVATIONS

LOSSES = ("kl", "mmd", "energy", "w1", "w2", "sliced", "l2")
PARAMETERS = ("beta", "viscosity", "Q", "K", "V", "W", "A", "b", "initial")
MAX_LAYERS = 10_000
MAX_ITERATIONS = 100_000


def _number(where, v, lo=-math.inf, hi=math.inf, integer=False, open_lo=False):
    ok = isinstance(v, int if integer else (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > lo if open_lo else v >= lo) and v <= hi
    if not ok:
        kind = "an integer" if integer else "a number"
        low = f"> {lo:g}" if open_lo else f">= {lo:g}"
        rng = f" {low}" + (f" and <= {hi:g}" if hi < math.inf else "") if lo > -math.inf else ""
        raise ConfigError(f"{where}: got {v!r}, allowed: {kind}{rng}")
    return v


def _choice(where, v, allowed):
    if v not in allowed:
        raise ConfigError(f"{where}: got {v!r}, allowed: {' | '.join(map(str, allowed))}")
    return v


def _numbers(where, v, lo=-math.inf, open_lo=False):
    if not isinstance(v, list):
        raise ConfigError(f"{where}: got {v!r}, allowed: a list of numbers")
    return tuple(_number(f"{where}[{i}]", x, lo, open_lo=open_lo) for i, x in enumerate(v))


@dataclass(frozen=True)
class Measure:
    """[initial] or [target]: a density (uniform, a von Mises mixture) or tokens."""

    kind: str = "uniform"
    centers: tuple = ()
    concentrations: tuple = ()
    weights: tuple = ()
    n: int = 64
    seed: int = 0
    positions: tuple = ()
    systems: tuple = ()  # several token systems: one list of points (or angles on the circle) each
    # kind = "synthetic" (an inverse problem): the run of the initial tokens with these parameters, observed at
    # ``times`` with Gaussian noise of standard deviation ``noise`` on each coordinate (then put back on the sphere)
    beta: float = 1.0
    V: tuple = ()
    noise: float = 0.0
    times: tuple = ()


@dataclass(frozen=True)
class Spec:
    """A validated control file."""

    method: str = "density"
    geometry: str = "circle"
    dim: int = 0
    variant: str = "sa"
    attention: bool = True
    beta: float = 1.0
    viscosity: float = 0.0
    perceptron: str = "none"
    units: int = 4
    heads: int = 1
    modes: int = 64
    dealias: float = 2.0
    t_end: float = 1.0
    dt: float = 0.01
    layers: int = 1
    snapshots: int = 21
    initial: Measure = field(default_factory=Measure)
    target: Measure = field(default_factory=Measure)
    loss: str = "kl"
    kappa: float = 4.0
    projections: int = 64
    loss_seed: int = 0
    parameters: tuple = ()
    scheduled: tuple = ()
    optimizer: str = "L-BFGS-B"
    iterations: int = 100
    gtol: float = 1e-9
    seed: int = 0
    scale: float = 0.1
    step: float = 0.01
    text: str = ""  # the file as read (stored in the output)

    @property
    def d(self) -> int:
        """The ambient dimension (tokens on S^{d-1})."""
        return {"circle": 2, "sphere": 3}.get(self.geometry, self.dim)


SECTIONS = {
    "model": ("method", "geometry", "dim", "variant", "attention", "beta", "viscosity", "perceptron", "units", "heads"),
    "grid": ("modes", "dealias"),
    "time": ("t_end", "dt", "layers", "snapshots"),
    "initial": ("kind", "centers", "concentrations", "weights", "n", "seed", "positions", "systems"),
    "target": ("kind", "centers", "concentrations", "weights", "n", "seed", "positions", "systems", "beta", "V",
               "noise", "times"),
    "loss": ("kind", "kappa", "projections", "seed"),
    "optimize": ("parameters", "scheduled", "method", "iterations", "gtol", "seed", "scale", "step"),
}


def _measure(section: str, raw: dict, spec_method: str) -> Measure:
    kinds = ("uniform", "von_mises", "tokens") + (("synthetic",) if section == "target" else ())
    kind = _choice(f"{section}.kind", raw.get("kind", "uniform"), kinds)
    if kind == "synthetic":
        if spec_method != "tokens":
            raise ConfigError("target.kind: got 'synthetic' with model.method = 'density', allowed: uniform | "
                              "von_mises (synthetic observations are of tokens)")
        times = _numbers("target.times", raw.get("times", []), 0, open_lo=True)
        if not times:
            raise ConfigError("target.times: got [], allowed: a non-empty list of observation times > 0")
        V = raw.get("V", [])
        if not (isinstance(V, list) and V and all(isinstance(r, list) and len(r) == len(V) for r in V)):
            raise ConfigError(f"target.V: got {V!r}, allowed: a square matrix (list of rows), the true V")
        rows = tuple(_numbers(f"target.V[{i}]", r) for i, r in enumerate(V))
        return Measure(kind, seed=_number("target.seed", raw.get("seed", 0), 0, integer=True),
                       beta=float(_number("target.beta", raw.get("beta", 1.0), 0, 500, open_lo=True)), V=rows,
                       noise=float(_number("target.noise", raw.get("noise", 0.0), 0, 1)), times=times)
    if spec_method == "tokens" and kind != "tokens":
        raise ConfigError(f"{section}.kind: got {kind!r} with model.method = 'tokens', allowed: 'tokens'")
    if spec_method == "density" and kind == "tokens":
        raise ConfigError(f"{section}.kind: got 'tokens' with model.method = 'density', allowed: uniform | von_mises")
    m = Measure(kind=kind)
    if kind == "von_mises":
        centers = raw.get("centers", [])
        if not isinstance(centers, list) or not centers:
            raise ConfigError(f"{section}.centers: got {centers!r}, allowed: a non-empty list of angles (circle) or "
                              "unit vectors")
        conc = _numbers(f"{section}.concentrations", raw.get("concentrations", []), 0, open_lo=True)
        weights = _numbers(f"{section}.weights", raw.get("weights", [1.0] * len(centers)), 0, open_lo=True)
        if not len(centers) == len(conc) == len(weights):
            raise ConfigError(f"{section}: got {len(centers)} centers, {len(conc)} concentrations and {len(weights)} "
                              "weights, allowed: equal lengths")
        m = Measure(kind, tuple(c if not isinstance(c, list) else tuple(c) for c in centers), conc, weights)
    elif kind == "tokens":
        n = _number(f"{section}.n", raw.get("n", 64), 1, 100_000, integer=True)
        seed = _number(f"{section}.seed", raw.get("seed", 0), 0, integer=True)
        positions = raw.get("positions", [])
        if not isinstance(positions, list):
            raise ConfigError(f"{section}.positions: got {positions!r}, allowed: a list of points")
        systems = raw.get("systems", [])
        if not isinstance(systems, list) or not all(isinstance(x, list) and x for x in systems):
            raise ConfigError(f"{section}.systems: got {systems!r}, allowed: a list of token systems, each a "
                              "non-empty list of points (or angles on the circle)")
        if systems and positions:
            raise ConfigError(f"{section}: got both positions and systems, allowed: one of them")

        def points(ps):
            return tuple(tuple(p) if isinstance(p, list) else p for p in ps)

        m = Measure(kind, n=n, seed=seed, positions=points(positions), systems=tuple(points(x) for x in systems))
    return m


def load_spec(path) -> Spec:
    """Read and check a control file (ConfigError naming the key on bad input)."""
    from pathlib import Path

    raw = read_toml(Path(path), "control")
    text = Path(path).read_text()
    extra = set(raw) - set(SECTIONS)
    if extra:
        raise ConfigError(f"control: unknown sections {sorted(extra)}, allowed: {', '.join(SECTIONS)}")
    for sec, keys in SECTIONS.items():
        tab = raw.get(sec, {})
        if not isinstance(tab, dict):
            raise ConfigError(f"{sec}: got {tab!r}, allowed: a table [{sec}]")
        bad = set(tab) - set(keys)
        if bad:
            raise ConfigError(f"{sec}: unknown keys {sorted(bad)}, allowed: {', '.join(keys)}")
    mo, gr, ti, lo, op = (raw.get(s, {}) for s in ("model", "grid", "time", "loss", "optimize"))
    method = _choice("model.method", mo.get("method", "density"), ("density", "tokens"))
    geometry = _choice("model.geometry", mo.get("geometry", "circle"), ("circle", "sphere", "zonal"))
    dim = _number("model.dim", mo.get("dim", 0), 0, 64, integer=True)
    if (geometry == "zonal" or method == "tokens") and geometry not in ("circle", "sphere") and dim < 2:
        raise ConfigError(f"model.dim: got {dim}, allowed: the ambient dimension d >= 2 (tokens on S^(d-1))")
    perceptron = _choice("model.perceptron", mo.get("perceptron", "none"), ("none", *ACTIVATIONS))
    if perceptron != "none" and method == "density" and geometry == "zonal":
        raise ConfigError("model.perceptron: got a perceptron on a zonal density; allowed: 'none' (a perceptron "
                          "field is not zonal), or the circle or the sphere")
    attention = mo.get("attention", True)
    if not isinstance(attention, bool):
        raise ConfigError(f"model.attention: got {attention!r}, allowed: true | false")
    if not attention and perceptron == "none":
        raise ConfigError("model.attention: got false with model.perceptron = 'none', allowed: at least one term "
                          "in the velocity field")
    spec = dict(
        method=method, geometry=geometry, dim=dim,
        variant=_choice("model.variant", mo.get("variant", "sa"), ("sa", "usa")),
        attention=attention,
        beta=float(_number("model.beta", mo.get("beta", 1.0), 0, 500, open_lo=True)),
        viscosity=float(_number("model.viscosity", mo.get("viscosity", 0.0), 0, 1e3)),
        perceptron=perceptron, units=_number("model.units", mo.get("units", 4), 1, 4096, integer=True),
        heads=_number("model.heads", mo.get("heads", 1), 1, 64, integer=True),
        modes=_number("grid.modes", gr.get("modes", 64), 2, 4096, integer=True),
        dealias=float(_number("grid.dealias", gr.get("dealias", 2.0), 1.5, 4)),
        t_end=float(_number("time.t_end", ti.get("t_end", 1.0), 0, 1e6, open_lo=True)),
        dt=float(_number("time.dt", ti.get("dt", 0.01), 0, 1e6, open_lo=True)),
        layers=_number("time.layers", ti.get("layers", 1), 1, MAX_LAYERS, integer=True),
        snapshots=_number("time.snapshots", ti.get("snapshots", 21), 2, 100_000, integer=True),
        loss=_choice("loss.kind", lo.get("kind", "kl"), LOSSES),
        kappa=float(_number("loss.kappa", lo.get("kappa", 4.0), 0, 500, open_lo=True)),
        projections=_number("loss.projections", lo.get("projections", 64), 1, 100_000, integer=True),
        loss_seed=_number("loss.seed", lo.get("seed", 0), 0, integer=True),
        optimizer=_choice("optimize.method", op.get("method", "L-BFGS-B"), ("L-BFGS-B", "adam")),
        iterations=_number("optimize.iterations", op.get("iterations", 100), 1, MAX_ITERATIONS, integer=True),
        gtol=float(_number("optimize.gtol", op.get("gtol", 1e-9), 0)),
        seed=_number("optimize.seed", op.get("seed", 0), 0, integer=True),
        scale=float(_number("optimize.scale", op.get("scale", 0.1), 0)),
        step=float(_number("optimize.step", op.get("step", 0.01), 0, open_lo=True)),
        text=text,
    )
    if spec["dt"] > spec["t_end"]:
        raise ConfigError(f"time.dt: got {spec['dt']:g}, allowed: at most time.t_end = {spec['t_end']:g}")
    if spec["t_end"] / spec["dt"] > 10_000_000:
        raise ConfigError(f"time.dt: got {spec['dt']:g}, allowed: at most 1e7 steps to time.t_end")
    params = op.get("parameters", [])
    if not isinstance(params, list) or not params or any(p not in PARAMETERS for p in params) \
            or len(set(params)) != len(params):
        raise ConfigError(f"optimize.parameters: got {params!r}, allowed: a non-empty list of distinct names among "
                          f"{', '.join(PARAMETERS)}")
    for p in params:
        if p in "WAb" and perceptron == "none":
            raise ConfigError(f"optimize.parameters: got {p!r} with model.perceptron = 'none', allowed: a "
                              "perceptron's W, A, b only with a perceptron")
        if p in ("Q", "K", "V", "beta") and not attention:
            raise ConfigError(f"optimize.parameters: got {p!r} with model.attention = false, allowed: attention "
                              "parameters only with attention")
        if p in ("Q", "K", "V") and method == "density":
            raise ConfigError(f"optimize.parameters: got {p!r} for a density, allowed: Q, K, V for tokens "
                              "(model.method = 'tokens')")
        if p == "viscosity" and method == "tokens":
            raise ConfigError("optimize.parameters: got 'viscosity' for tokens, allowed: beta, Q, K, V, W, A, b, initial")
    scheduled = op.get("scheduled", [])
    if not isinstance(scheduled, list) or any(p not in params or p in ("initial", "viscosity") for p in scheduled):
        raise ConfigError(f"optimize.scheduled: got {scheduled!r}, allowed: a list of optimised parameters (not "
                          "initial or viscosity) that change from layer to layer")
    spec.update(parameters=tuple(params), scheduled=tuple(scheduled),
                initial=_measure("initial", raw.get("initial", {}), method),
                target=_measure("target", raw.get("target", {}), method))
    if spec["loss"] in ("kl",) and method == "tokens":
        raise ConfigError("loss.kind: got 'kl' for tokens, allowed: mmd | energy | w1 | w2 | sliced (KL needs a density)")
    if spec["loss"] == "sliced" and method == "density":
        raise ConfigError("loss.kind: got 'sliced' for a density, allowed: kl | mmd | energy | w1 | w2 (sliced "
                          "Wasserstein compares tokens)")
    if spec["loss"] in ("w1", "w2") and method == "density" and spec["geometry"] != "circle":
        raise ConfigError(f"loss.kind: got {spec['loss']!r} for a density on the {spec['geometry']}, allowed: kl | "
                          "mmd | energy (W1 and W2 of densities: on the circle)")
    synthetic = spec["target"].kind == "synthetic"
    if synthetic != (spec["loss"] == "l2"):
        raise ConfigError(f"loss.kind: got {spec['loss']!r} with target.kind = {spec['target'].kind!r}, allowed: 'l2' "
                          "exactly when the target is an observed (synthetic) trajectory")
    if synthetic:
        if max(spec["target"].times) > spec["t_end"]:
            raise ConfigError(f"target.times: got {max(spec['target'].times):g}, allowed: times within time.t_end = "
                              f"{spec['t_end']:g}")
    if method == "tokens" and not synthetic and bool(spec["initial"].systems) != bool(spec["target"].systems):
        raise ConfigError("target.systems: give systems in both [initial] and [target] (one target per input "
                          "measure), or in neither")
    if spec["initial"].systems and len(spec["initial"].systems) != len(spec["target"].systems):
        raise ConfigError(f"target.systems: got {len(spec['target'].systems)} systems for "
                          f"{len(spec['initial'].systems)} in [initial], allowed: one target per input measure")
    return Spec(**spec)
