"""The meanfield command: run | theory | rates | info | plot | validate | example.

Exit status: 0 on success, 2 on bad input (one line on stderr naming the key or
argument), 1 on a numerical failure (with the time and a hint).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from pathlib import Path

from . import __version__, config
from .config import NGPT_ALPHA
from .io import ownership as files
from .physics import theory
from .errors import ConfigError, NumericalError, OutputError, TrackerError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):  # noqa: D401 - argparse API
        """Print one line and exit 2 (argparse would print the usage too)."""
        sys.stderr.write(f"meanfield: error: {self.prog.removeprefix('meanfield').strip() or 'arguments'}: "
                         f"{message}\n")
        sys.exit(2)


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"meanfield: error: {message}\n")
    return status


def _warning_line(message, category, filename, lineno, line=None):
    return f"meanfield: warning: {message}\n"


# --------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    """`meanfield run`: validate, solve (or --resume), write the history (``runner.run``); 0, 1 on a
    numerical failure, 130 / 143 when stopped by SIGINT / SIGTERM (after a checkpoint)."""
    from .simulation.runner import run
    from .simulation.trackers import Interrupted, load_tracker

    if args.resume is not None and args.output is not None:
        raise ConfigError("-o: give either -o OUT.h5 or --resume OUT.h5, not both")
    target = args.resume if args.resume is not None else args.output
    if target is not None:  # an empty -o '' is a path to refuse, not "no -o"
        files.check_name(target, "--resume" if args.resume is not None else "-o")
    overrides = list(args.set) + ([f"output.path={_toml_str(target)}"] if target is not None else [])
    if args.check_resolution is not None:
        overrides.append(f"longtime.check_factor={args.check_resolution!r}")
    cfg = config.load(args.config, overrides)
    trackers = [load_tracker(spec) for spec in args.tracker]
    out = cfg.output.path
    resume_hint = f"meanfield run {args.config} --resume {out}" + "".join(f" --set {x}" for x in args.set)
    try:
        result = run(args.config, overwrite=args.overwrite, resume=args.resume is not None,
                     progress=False if args.quiet else None, overrides=overrides, trackers=trackers)
    except Interrupted as exc:
        name = "SIGINT" if exc.signum == 2 else "SIGTERM"
        sys.stderr.write(f"meanfield: stopped by {name} at t = {exc.t:.6g}, checkpoint written; "
                         f"resume with: {resume_hint}\n")
        return 130 if exc.signum == 2 else 143
    if result.status == "already complete":
        print(f"{out} is complete ({result.snapshots} snapshots, t = {result.t:g}): nothing to resume "
              "(raise time.t_end to extend it)", file=sys.stderr)
        return 0
    if not args.quiet:
        extra = ""
        if result.handoff is not None:
            h = result.handoff
            extra = (f"; continued as {h.tokens} tokens from t = {h.time:.6g} ({h.reason}), "
                     f"{result.merges} merges")
        print(f"wrote {result.snapshots} snapshots (t = 0 .. {result.t:g}, {result.steps} steps of "
              f"{result.stepper}, {result.wall:.1f} s{extra}) to {out}", file=sys.stderr)
        if result.backend:
            print(f"transforms: {result.backend}", file=sys.stderr)
        if result.resolution is not None:
            _print_resolution(result.resolution)
    return 0


def _print_resolution(a: dict) -> None:
    """The resolution check's summary (its attributes, as stored in the history)."""
    print(f"resolution check at grid.modes = {int(a['resolution_modes'])}: merger times moved by <= "
          f"{float(a['resolution_max_merger_time_error']):.2g} (relative, "
          f"{len(a['resolution_merger_times'])} mergers), cluster masses by <= {float(a['resolution_mass_error']):.2g}, "
          f"energies by <= {float(a['resolution_energy_error']):.2g}", file=sys.stderr)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------------------
def cmd_theory(args) -> int:
    """`meanfield theory`: print the growth-rate table and the most unstable mode (``theory.rate_table``)."""
    if args.geometry is not None and args.geometry not in theory.GEOMETRY_DIM:
        hint = ("; a zonal run's dimension is its own: use --dim D (tokens on S^{D-1}, as model.dim = D in a config)"
                if args.geometry == "zonal" else "")
        raise ConfigError(f"--geometry: got {args.geometry!r}, allowed: " + " | ".join(theory.GEOMETRY_DIM) + hint)
    dim = args.dim if args.dim is not None else theory.dim_of(args.geometry)
    if not (math.isfinite(args.alpha) and 0 < args.alpha <= 100):
        raise ConfigError(f"--alpha: got {args.alpha!r}, allowed: a number in (0, 100] (nGPT's step)")
    table = theory.rate_table(args.beta, args.variant, args.viscosity, dim, args.modes, update=args.update,
                              alpha=args.alpha)
    lam = table.lambda_star
    space = {2: "S^1 (circle)", 3: "S^2 (sphere)"}.get(dim, f"S^{dim - 1}")
    name = "k" if dim == 2 else "l"
    upd = f", update ngpt (alpha = {args.alpha:g})" if args.update == "ngpt" else ""
    print(f"# {space}, d = {dim}, variant {args.variant}, beta = {args.beta:g}, viscosity = {args.viscosity:g}{upd}")
    print(f"# most unstable mode {name}* = {table.kstar}, lambda* = {lam:.10g}", end="")
    if lam > 0:
        print(f", e-folding time {1 / lam:.6g}, linear phase ends near "
              f"t = log(1/eps)/lambda* = {math.log(1 / args.eps) / lam:.6g} for eps = {args.eps:g}")
    else:
        print(" (no mode grows: the uniform state is stable)")
    print(f"{name:>6} {'lambda':>22} {'':>9}")
    for k, r, tag in zip(table.modes, table.rates, table.tags):
        print(f"{k:>6d} {r:>22.15g}   {tag}")
    return 0


# --------------------------------------------------------------------------------------

def cmd_rates(args) -> int:
    """`meanfield rates`: every mode's rate fitted in its linear window, beside theory (``meanfield.measured_rates``)."""
    from .analysis import measured_rates

    table = measured_rates(args.history, tol=args.tol)
    a = table.attrs
    upd = f", update ngpt (alpha = {table.alpha:g})" if table.update == "ngpt" else ""
    print(f"# {args.history}: {a['geometry']}, variant {a['variant']}, beta = {float(a['beta']):g}, "
          f"viscosity = {float(a['viscosity']):g}{upd}; linear window: |N_k| <= {args.tol:g} |lambda_k c_k|")
    print(f"{'mode':>8} {'theory':>20} {'measured':>20} {'rel.err':>10} {'window':>17} {'pts':>5}  status")
    for row in table.rows:
        fit, label = row.fit, ",".join(str(x) for x in row.mode)
        if fit.status == "ok":
            print(f"{label:>8} {row.theory:>20.12g} {fit.measured:>20.12g} {row.rel_error:>10.2e} "
                  f"{fit.t_start:>8.4g}-{fit.t_stop:<8.4g} {fit.points:>5d}  ok")
        elif args.all:
            print(f"{label:>8} {row.theory:>20.12g} {'-':>20} {'-':>10} {'-':>17} {fit.points:>5d}  {fit.status}")
    count, skipped = len(table.measured), len(table.rows) - len(table.measured)
    note = ""
    if skipped:
        note = (f"; {skipped} modes not measurable (noise: below the round-off floor; nonlinear: no linear window)"
                + ("" if args.all else ", --all lists them"))
    if count == 0:
        print(f"# no mode measured{note}")
        sys.stderr.write(f"meanfield: error: {args.history}: no mode has a linear window (|N_k| <= {args.tol:g} "
                         "|lambda_k c_k| at 3 snapshots or more above the round-off floor); rates are measured on "
                         "runs that start from a small perturbation (--all lists why, mode by mode)\n")
        return 1
    print(f"# {count} modes measured, max relative error {table.worst:.3g}{note}")
    if table.scheme_bias is not None:
        z, bias = table.scheme_bias
        print(f"# note: {a['stepper']} treats the linear part implicitly; at |lambda| dt up to {z:.3g} its discrete "
              f"rates differ from lambda by {bias:.2g} relative; etdrk4 integrates it exactly")
    return 0


# --------------------------------------------------------------------------------------
def cmd_plot(args) -> int:
    """`meanfield plot`: draw one figure from a history, a movie of it, or a sweep table's phase diagram."""
    from . import io
    from .analysis import model_of
    from .viz import plot

    if Path(args.history).suffix == ".parquet":
        return _plot_table(args)
    if args.kind == "phase":
        raise ConfigError(f"--kind: got 'phase' for {args.history!r}, allowed: a sweep table (TABLE.parquet from "
                          "meanfield sweep)")
    h = io.read_history(args.history)
    if args.movie:
        return _movie(args, h)
    kind = plot.resolve_kind(h, args.kind)
    if args.output is not None:
        files.check_name(args.output, "-o")
    out, fmt = plot.figure_path(args.output if args.output is not None else Path(args.history).with_suffix(f".{kind}.png"))
    files.check_name(out, "-o")
    fig_kind = files.write_whole(out, ("the history", args.history), args.overwrite, lambda tmp: plot.save(
        h, kind, tmp, model_of(h) if kind == "rates" else None, args.time, fmt))
    print(f"wrote {fig_kind} plot to {out}", file=sys.stderr)
    return 0


def _movie(args, h) -> int:
    """`meanfield plot OUT.h5 --movie -o run.gif|run.mp4`."""
    from .viz import movie

    if args.kind != "auto":
        raise ConfigError(f"--kind: got {args.kind!r} with --movie, allowed: auto (the movie picks its view)")
    if not 1 <= args.frames <= 10000 or not 1 <= args.fps <= 120:
        raise ConfigError(f"--frames / --fps: got {args.frames} / {args.fps}, allowed: 1..10000 frames, 1..120 fps")
    out = files.check_name(args.output if args.output is not None else Path(args.history).with_suffix(".gif"), "-o")
    fmt = movie.check_format(out)
    n = files.write_whole(out, ("the history", args.history), args.overwrite,
                     lambda tmp: movie.save_movie(h, tmp, fmt, args.frames, args.fps, progress=os.isatty(2)))
    print(f"wrote a {n}-frame movie to {out}", file=sys.stderr)
    return 0


def _plot_table(args) -> int:
    """`meanfield plot TABLE.parquet --kind phase`: the (t, beta) phase diagram of a sweep."""
    from .sweep import read_table
    from .viz import phase, plot

    if args.kind not in ("auto", "phase"):
        raise ConfigError(f"--kind: got {args.kind!r} for a sweep table, allowed: phase")
    df = read_table(args.history)
    out, fmt = plot.figure_path(args.output if args.output is not None else Path(args.history).with_suffix(".phase.png"))
    files.check_name(out, "-o")
    files.write_whole(out, ("the table", args.history), args.overwrite, lambda tmp: phase.save(df, tmp, fmt))
    print(f"wrote phase plot to {out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    """`meanfield info`: provenance of a history and integrity checks (``meanfield.check``); 0 if every check
    passes, else 1."""
    from .io import check

    report = check(args.history)
    for label, text in report.lines:
        print(f"{label:<15} {text}")
    for c in report.checks:
        print(f"{'ok    ' if c.ok else 'FAILED'}  {c.text}")
    return 0 if report.ok else 1


# --------------------------------------------------------------------------------------
def cmd_validate(args) -> int:
    """`meanfield validate`: the theorem catalogue (meanfield.validate); 0 if no case fails, else 1."""
    from . import validate

    if args.list:
        for c in validate.selected(args.case, args.quick):
            print(f"{c.name:<28} {'quick ' if c.quick else '      '}{c.claim}")
        return 0
    chosen = validate.selected(args.case, args.quick)
    if args.jobs < 1:
        raise ConfigError(f"-j: got {args.jobs}, allowed: an integer >= 1")
    outcomes = validate.run([c.name for c in chosen], args.quick, args.jobs, args.output,
                            progress=lambda line: print(line, flush=True), scheduler=args.scheduler)
    bad = validate.failed(outcomes)
    counts = {v: sum(o.verdict == v for o in outcomes.values()) for v in ("pass", "fail", "not run", "error")}
    print(", ".join(f"{n} {v}" for v, n in counts.items()) + f"; report in {args.output}/report.md")
    return 1 if bad else 0


# --------------------------------------------------------------------------------------
def cmd_sweep(args) -> int:
    """`meanfield sweep`: every combination of a sweep file on a Dask cluster, one table row per run; 0 if every
    run is done, 1 if some failed or were killed (their rows say why)."""
    from . import sweep

    try:
        import dask.distributed  # noqa: F401
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:  # the sweep extra is missing
        raise ConfigError(f"meanfield sweep needs dask.distributed, pandas and pyarrow ({exc.name} is missing): "
                          'pip install "meanfield[sweep]"') from None
    spec = sweep.load_sweep(args.sweep)
    table = args.output if args.output is not None else Path(args.sweep).with_suffix(".parquet")
    if args.workers is not None and not 1 <= args.workers <= 1024:
        raise ConfigError(f"--workers: got {args.workers}, allowed: an integer in [1, 1024]")
    try:
        df = sweep.run_sweep(spec, table, scheduler=args.scheduler, workers=args.workers,
                             progress=False if args.quiet else None,
                             announce=lambda line: print(line, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        if not Path(table).is_file():
            raise
        return _fail(f"interrupted; {table} keeps the runs finished so far (the same command runs the rest)", 130)
    print(f"{sweep.describe(df)}; table {table}", file=sys.stderr)
    bad = df[df["status"] != "done"]
    for _, row in bad.iterrows():
        print(f"  {row['status']}: {row['path']}: {row['error']}", file=sys.stderr)
    return 1 if len(bad) else 0


# --------------------------------------------------------------------------------------
def cmd_example(args) -> int:
    """`meanfield example`: list the shipped configs and validation scripts, or copy configs to -o."""
    from . import examples
    from .validation import SCRIPTS

    if args.name is None:
        width = max(map(len, examples.names()))
        print("example configs (meanfield example NAME [-o DIR] copies one, 'all' every one):")
        for name in examples.names():
            print(f"  {name:<{width}}  {examples.summary(name)}")
        print("example sweeps (meanfield sweep NAME.toml):")
        for name in examples.sweep_names():
            print(f"  {name:<{width}}  {examples.summary(name)}")
        print("example control files (meanfield control NAME.toml -o OUT.h5):")
        for name in examples.control_names():
            print(f"  {name:<{width}}  {examples.summary(name)}")
        print("validation scripts (python -m meanfield.validation.NAME [-o DIR]):")
        for name, (what, _) in SCRIPTS.items():
            print(f"  {name:<{width}}  {what}")
        return 0
    names = (examples.names() + examples.sweep_names() + examples.control_names() if args.name == "all"
             else [examples.example(args.name).stem])
    out = files.check_directory(args.output, "-o")
    if out.exists():  # an old directory is checked first, whole: nothing is written if one target is refused
        for n in names:
            files.check_target(out / f"{n}.toml", "-o", args.overwrite)
    else:
        try:
            out.mkdir()
        except OSError as exc:
            raise ConfigError(f"-o: cannot make the directory {str(out)!r} ({exc.strerror})") from None
    for name in names:  # each written whole through its own lock: never half a file, never through a link
        text = examples.example(name).read_text()
        target = out / f"{name}.toml"
        files.write_whole(target, (), args.overwrite, lambda tmp: Path(tmp).write_text(text), "-o")
        print(f"wrote {target}", file=sys.stderr)
    return 0


def cmd_control(args) -> int:
    """`meanfield control`: optimise the parameters a control file declares against its loss; OUT.h5."""
    from .control import control

    if args.iterations is not None and args.iterations < 1:
        raise ConfigError(f"--iterations: got {args.iterations}, allowed: an integer >= 1")
    try:
        r = control(args.control, args.output, overwrite=args.overwrite, resume=args.resume,
                    iterations=args.iterations, progress=False if args.quiet else None)
    except KeyboardInterrupt:
        kept = Path(str(args.output) + ".ckpt").exists()
        sys.stderr.write("meanfield: interrupted; " + (f"{args.output}.ckpt keeps the iterations done: continue with "
                         f"meanfield control {args.control} -o {args.output} --resume\n" if kept else
                         "nothing was written\n"))
        return 130
    if not args.quiet:
        print(f"control: loss {r.loss[0]:.4g} -> {r.final_loss:.4g} in {r.attrs['iterations']} iterations "
              f"({r.evaluations[-1]} solves with gradients, {r.attrs['wall_time']:.1f} s; stopped by "
              f"{r.attrs['stopped_by']}); {r.attrs['switches']} switches over {r.attrs['layers']} layers; wrote "
              f"{args.output}", file=sys.stderr)
    return 0


def cmd_versions(args) -> int:
    """`meanfield versions`: ``meanfield.show_versions()``."""
    from .versions import show_versions

    show_versions()
    return 0


def cmd_schema(args) -> int:
    """`meanfield schema`: the config's JSON schema (shipped with the package), printed or written to -o."""
    from importlib import resources

    text = (resources.files("meanfield.config") / "meanfield.schema.json").read_text()
    if args.output is None:
        sys.stdout.write(text)
        return 0
    files.check_name(args.output, "-o")
    files.write_whole(Path(args.output), (), args.overwrite, lambda tmp: Path(tmp).write_text(text), "-o")
    print(f"wrote the config schema to {args.output}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `meanfield` command."""
    from .viz import plot

    p = _Parser(prog="meanfield", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"meanfield {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("run", help="solve from a TOML config, write an HDF5 history")
    r.add_argument("config", help="TOML config file (docs/config.md)")
    r.add_argument("-o", "--output", help="output HDF5 file (overrides output.path)")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key (repeatable); VALUE is TOML, or a bare string")
    r.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    r.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    r.add_argument("--resume", metavar="OUT.h5",
                   help="continue a stopped or killed run from its checkpoint OUT.h5.ckpt (same config and --set)")
    r.add_argument("--check-resolution", nargs="?", const=1.5, type=float, metavar="FACTOR",
                   help="rerun at grid.modes x FACTOR (default 1.5) and store how far merger times, cluster masses "
                        "and energies moved (sets longtime.check_factor; docs/longtime.md)")
    r.add_argument("--tracker", action="append", default=[], metavar="MODULE:NAME",
                   help="a tracker of your own, called after the run's (MODULE:NAME or FILE.py:NAME: an object with "
                        "start / step / snapshot / finish, or a class or function making one; repeatable)")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("theory", help="linear growth rates and the most unstable mode")
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--geometry", help="circle (d = 2) or sphere (d = 3); zonal runs on S^{d-1}: give --dim")
    g.add_argument("--dim", type=int, help="ambient dimension d (tokens on S^{d-1}), >= 2")
    t.add_argument("--beta", type=float, required=True, help="inverse temperature, > 0")
    t.add_argument("--variant", choices=list(theory.VARIANTS), default="sa",
                   help="sa (softmax) or usa (unnormalised) attention (default: sa)")
    t.add_argument("--viscosity", type=float, default=0.0, help="nu >= 0 (default: 0)")
    t.add_argument("--update", choices=["post-ln", "ngpt"], default="post-ln",
                   help="the density's residual update (particles.update): post-ln or ngpt (default: post-ln)")
    t.add_argument("--alpha", type=float, default=NGPT_ALPHA, help=f"ngpt's step alpha (default: {NGPT_ALPHA})")
    t.add_argument("--modes", type=int, help="list modes 0..MODES (default: 2 k* + 4)")
    t.add_argument("--eps", type=float, default=1e-6, help="perturbation size for the end of the linear phase")
    t.set_defaults(func=cmd_theory)

    a = sub.add_parser("rates", help="growth rates measured in the linear phase, beside theory")
    a.add_argument("history", help="HDF5 output of meanfield run")
    a.add_argument("--tol", type=float, default=1e-5,
                   help="linear window: |N_k| <= tol |lambda_k c_k| (default 1e-5)")
    a.add_argument("--all", action="store_true", help="also list modes that could not be measured")
    a.set_defaults(func=cmd_rates)

    c = sub.add_parser("control", help="optimise a control file's parameters against its loss (exact gradients)")
    c.add_argument("control", help="control TOML: [model], [time], [initial], [target], [loss], [optimize] "
                                   "(docs/control.md)")
    c.add_argument("-o", "--output", required=True, help="output HDF5 file (the optimised schedule, the loss "
                                                         "history, the controlled trajectory)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    c.add_argument("--resume", action="store_true", help="continue from OUT.h5.ckpt (written every iteration)")
    c.add_argument("--iterations", type=int, help="override optimize.iterations (the total, resumed ones included)")
    c.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    c.set_defaults(func=cmd_control)

    ve = sub.add_parser("versions", help="versions of meanfield and its dependencies, threads, BLAS, GPU (bug reports)")
    ve.set_defaults(func=cmd_versions)

    sc = sub.add_parser("schema", help="the JSON schema of the run config (for editors' TOML completion)")
    sc.add_argument("-o", "--output", help="write it to this file (default: print it)")
    sc.add_argument("--overwrite", action="store_true", help="replace an existing file")
    sc.set_defaults(func=cmd_schema)

    i = sub.add_parser("info", help="provenance of a history, and integrity checks")
    i.add_argument("history", help="HDF5 output of meanfield run")
    i.set_defaults(func=cmd_info)

    v = sub.add_parser("validate", help="the theorem catalogue: every case against its prediction; a report")
    v.add_argument("--quick", action="store_true", help="the quick cases at small sizes (CI: a few minutes)")
    v.add_argument("--case", nargs="+", metavar="NAME", help="only these cases (--list names them)")
    v.add_argument("--list", action="store_true", help="list the cases and exit")
    v.add_argument("-j", "--jobs", type=int, default=1, help="worker processes (default: %(default)s)")
    v.add_argument("-o", "--output", default="validation-report", help="report directory (default: %(default)s)")
    v.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the cases on this Dask scheduler's workers (they must see the report directory)")
    v.set_defaults(func=cmd_validate)

    w = sub.add_parser("sweep", help="every combination of a sweep file's axes, on a Dask cluster; a table")
    w.add_argument("sweep", help="sweep TOML: base = run config, [axes], [[zip]], [summary] (docs/sweep.md)")
    w.add_argument("-o", "--output", help="table (Parquet; default: SWEEP.parquet); rerunning skips finished runs")
    w.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler (default: a local cluster)")
    w.add_argument("--workers", type=int, help="local cluster: worker processes (default: one per core)")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=cmd_sweep)

    pl = sub.add_parser("plot", help="figures from an HDF5 history, or a sweep table's phase diagram")
    pl.add_argument("history", help="HDF5 output of meanfield run, or TABLE.parquet of meanfield sweep")
    pl.add_argument("-o", "--output", help="figure file (default: HISTORY.<kind>.png)")
    pl.add_argument("--kind", default="auto", choices=["auto", *plot.KINDS, "phase"],
                    help="what to draw (default auto: kymograph, sphere, positions or phase, from the file)")
    pl.add_argument("--time", type=float, help="the snapshot nearest this time (sphere, profile beside a kymograph, "
                                               "a line on figures over time; default: the last)")
    pl.add_argument("--overwrite", action="store_true", help="replace an existing figure")
    pl.add_argument("--movie", action="store_true", help="a movie of the run (-o run.gif | run.mp4; default HISTORY.gif)")
    pl.add_argument("--frames", type=int, default=150, help="--movie: at most this many frames (default: %(default)s)")
    pl.add_argument("--fps", type=int, default=15, help="--movie: frames per second (default: %(default)s)")
    pl.set_defaults(func=cmd_plot)

    e = sub.add_parser("example", help="list the shipped example configs, or copy one (or all) to a directory")
    e.add_argument("name", nargs="?", help="example name, or 'all' (default: list them)")
    e.add_argument("-o", "--output", default=".", help="directory to copy into (default: the current one)")
    e.add_argument("--overwrite", action="store_true", help="replace existing files of the same name")
    e.set_defaults(func=cmd_example)
    return p


def main(argv=None) -> int:
    """Entry point of the ``meanfield`` console script."""
    warnings.formatwarning = _warning_line
    for stream in (sys.stdout, sys.stderr):  # a path or damaged attribute that is not UTF-8 prints escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `meanfield` alone: what it can do
        parser.print_help()
        return 0
    if getattr(args, "eps", 1e-6) is not None and args.command == "theory" and not (0 < args.eps < 1):
        return _fail(f"--eps: got {args.eps:g}, allowed: 0 < eps < 1", 2)
    try:
        return args.func(args)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except (NumericalError, TrackerError) as exc:
        return _fail(str(exc), 1)
    except OutputError as exc:
        code = _fail(str(exc), 1)
        if argv is None:  # the process is this command: leave without C exit handlers, because HDF5
            # crashes (SIGSEGV in H5_term_library) on a file whose write failed; ours are all closed
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:  # `meanfield rates ... | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except RecursionError:
        return _fail("input nested too deeply", 2)
    except MemoryError:
        return _fail("out of memory; lower grid.modes, particles.n or the number of snapshots", 1)
    except Exception as exc:  # noqa: BLE001 - a bug: one line for the user, the traceback on request
        if os.environ.get("MEANFIELD_DEBUG"):
            raise
        return _fail(f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} (a bug in "
                     "meanfield: please report it with the command; MEANFIELD_DEBUG=1 shows the traceback)", 1)


if __name__ == "__main__":
    sys.exit(main())
