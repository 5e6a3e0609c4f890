"""Sweeps: one base config, axes of values, every combination run on a Dask cluster (``meanfield sweep``).

    # sweep.toml
    base = "run.toml"                   # relative to this file, or "example:NAME" (a shipped example)
    runs = "sweep_runs"                 # the runs' histories (default: <table stem>_runs beside the table)
    [axes]                              # crossed with each other
    "model.beta" = [4.0, 8.0, 16.0]
    "initial.seed" = {start = 0, stop = 8}                    # range(0, 8)
    [[zip]]                             # keys of one [[zip]] table move together (equal lengths)
    "model.viscosity" = [0.0, 0.01]
    "grid.modes" = [128, 256]
    [summary]
    cluster_times = [5.0, 10.0]         # the number of clusters at these times, one column each
    rates = 3                           # the leading measured growth rates (spectral runs)

Ranges: ``{start, stop}`` (integers, stop excluded, optional ``step``), ``{start, stop, num}`` (evenly spaced,
stop included) and ``{start, stop, num, log = true}`` (geometric).  Every combination is validated before
anything runs.  A run's identity is the SHA-256 of its config as run (``io.config_hash``); its history is
``<runs>/<first 16 hex digits>.h5``, so a restarted sweep skips what it finished, a run whose worker was
killed resumes from its checkpoint, and two combinations that make the same config are one run.

The table (Parquet) has one row per run: the axes' values, ``status`` ("done" | "failed" | "killed"),
``error``, ``wall_time`` (s), ``path``, and the summaries: ``t_final``, ``energy_final``,
``n_clusters_final``, ``clusters_t<t>`` per cluster time, ``rate_<i>`` and ``rate_<i>_mode`` for the
leading measured rates; for batched runs (``particles.batch > 1``) ``energy_final`` is the systems' mean and
``pairs_final`` (mean clustered pairs) and ``clusters_median_final`` (median cluster count) are added.  It is
rewritten (atomically) after every run, so a killed sweep leaves it valid.
"""

from __future__ import annotations

import contextlib
from io import BytesIO
import itertools
import json
import math
import logging
import os
import time as _time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import config as _config
from .io import ownership as files
from .errors import ConfigError, NumericalError, OutputError, first_line
from .processes import check_address, dask_client

#: columns every table has, before the axes and the summaries
FIXED = ("run_id", "status", "error", "warning", "wall_time", "path")
#: the most runs one sweep may plan (its axes' product): each is a history on disk and a row of the table
MAX_RUNS = 100_000
#: the Parquet schema metadata key that marks a table as a meanfield sweep's, with its base config's hash
TABLE_KEY = b"meanfield.sweep"


@dataclass
class Sweep:
    """A parsed sweep file: the base config (a dict of sections), the runs' directory, the axes and the
    summaries to compute."""

    base: dict
    base_dir: Path | None  # relative paths in the base config (initial.path) are relative to it
    runs_dir: Path | None
    axes: dict = field(default_factory=dict)  # key -> values (crossed)
    zips: list = field(default_factory=list)  # [{key: values}] each zipped, crossed with the rest
    cluster_times: tuple = ()
    rates: int = 3
    source: Path | None = None

    @property
    def base_hash(self) -> str:
        """The SHA-256 hash of the base config (a table holds the runs of one base)."""
        import hashlib

        import tomli_w

        return hashlib.sha256(tomli_w.dumps(self.base).encode()).hexdigest()

    @property
    def keys(self) -> list[str]:
        """The swept keys, in the order of the file."""
        return list(self.axes) + [k for z in self.zips for k in z]

    def combinations(self) -> list[dict]:
        """Every combination as {key: value}: the axes crossed with each other and with every zipped group."""
        groups = [[{k: v} for v in vals] for k, vals in self.axes.items()]
        for z in self.zips:
            keys = list(z)
            groups.append([dict(zip(keys, vals)) for vals in zip(*z.values())])
        out = []
        for combo in itertools.product(*groups):
            merged = {}
            for part in combo:
                merged.update(part)
            out.append(merged)
        return out


def _values(key: str, spec) -> list:
    """An axis' values from a list or a range table."""
    where = f"axes.{key!r}"
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: got [], allowed: a non-empty list of values or a range table")
        return list(spec)
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: got {spec!r}, allowed: a list of values or a range table "
                          "({start, stop}, {start, stop, num}, {start, stop, num, log = true})")
    extra = set(spec) - {"start", "stop", "step", "num", "log"}
    if extra or not {"start", "stop"} <= set(spec):
        raise ConfigError(f"{where}: got keys {sorted(spec)}, allowed: start, stop and one of step (integers) or num "
                          "(optionally log = true)")
    start, stop = spec["start"], spec["stop"]
    if "num" in spec:
        num = spec["num"]
        if not isinstance(num, int) or isinstance(num, bool) or not 1 <= num <= 100_000:
            raise ConfigError(f"{where}.num: got {num!r}, allowed: an integer in [1, 100000]")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{where}.log: got {log!r}, allowed: true or false")
        if log:
            if not (start > 0 and stop > 0):
                raise ConfigError(f"{where}: got start = {start!r}, stop = {stop!r} with log = true, allowed: both > 0")
            return [float(v) for v in np.geomspace(start, stop, num)]
        return [float(v) for v in np.linspace(start, stop, num)]
    step = spec.get("step", 1)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, stop, step)) or step == 0:
        raise ConfigError(f"{where}: got start = {start!r}, stop = {stop!r}, step = {step!r}, allowed: integers "
                          "(step != 0) without num, or num for evenly spaced floats")
    vals = range(start, stop, step)
    if not vals:
        raise ConfigError(f"{where}: range({start}, {stop}, {step}) is empty")
    if len(vals) > MAX_RUNS:  # counted before anything is built
        raise ConfigError(f"{where}: range({start}, {stop}, {step}) has {len(vals)} values, allowed: at most "
                          f"{MAX_RUNS} runs in a sweep")
    return list(vals)


def load_sweep(path) -> Sweep:
    """Parse and check a sweep file (ConfigError naming the key on bad input)."""
    path = Path(path)
    raw = _config.read_toml(path, "sweep")
    extra = set(raw) - {"base", "runs", "axes", "zip", "summary"}
    if extra:
        raise ConfigError(f"sweep: unknown keys {sorted(extra)}, allowed: base, runs, axes, zip, summary")
    if not isinstance(raw.get("base"), str):
        raise ConfigError(f"sweep.base: got {raw.get('base')!r}, allowed: the path of a run config (TOML), relative "
                          "to the sweep file")
    if raw["base"].startswith("example:"):  # a shipped example config (meanfield example lists them)
        from .examples import example

        base_path = example(raw["base"][len("example:"):])
    else:
        base_path = path.parent / raw["base"]
    base = _config.read_toml(base_path, "sweep.base")
    runs = raw.get("runs")
    if runs is not None and not isinstance(runs, str):
        raise ConfigError(f"sweep.runs: got {runs!r}, allowed: a directory path (string)")
    axes = raw.get("axes", {})
    zips = raw.get("zip", [])
    if not isinstance(axes, dict) or not isinstance(zips, list) or not all(isinstance(z, dict) for z in zips):
        raise ConfigError("sweep: [axes] must be a table and [[zip]] an array of tables")
    sweep = Sweep(base=base, base_dir=base_path.parent, runs_dir=None if runs is None else path.parent / runs,
                  source=path,
                  axes={k: _values(k, v) for k, v in axes.items()})
    for i, z in enumerate(zips):
        group = {k: _values(k, v) for k, v in z.items()}
        lengths = {len(v) for v in group.values()}
        if len(lengths) > 1:
            raise ConfigError(f"zip[{i}]: got lengths {sorted(len(v) for v in group.values())}, allowed: equal lengths "
                              "(the keys of one [[zip]] table move together)")
        sweep.zips.append(group)
    keys = sweep.keys
    if not keys:
        raise ConfigError("sweep: no [axes] and no [[zip]]: nothing to sweep")
    count = math.prod([len(v) for v in sweep.axes.values()] + [len(next(iter(z.values()))) for z in sweep.zips])
    if count > MAX_RUNS:
        raise ConfigError(f"sweep: the axes make {count} combinations, allowed: at most {MAX_RUNS} runs in a sweep")
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ConfigError(f"sweep: {dup} appear more than once among [axes] and [[zip]], allowed: each key once")
    if "output.path" in keys:
        raise ConfigError("sweep: output.path may not be swept, allowed: any other key (the sweep names the outputs)")
    summary = raw.get("summary", {})
    extra = set(summary) - {"cluster_times", "rates"}
    if extra:
        raise ConfigError(f"summary: unknown keys {sorted(extra)}, allowed: cluster_times, rates")
    times = summary.get("cluster_times", [])
    if not isinstance(times, list) or not all(isinstance(t, (int, float)) and not isinstance(t, bool)
                                                and math.isfinite(t) and t >= 0 for t in times):
        raise ConfigError(f"summary.cluster_times: got {times!r}, allowed: a list of times >= 0")
    rates = summary.get("rates", 3)
    if not isinstance(rates, int) or isinstance(rates, bool) or not 0 <= rates <= 32:
        raise ConfigError(f"summary.rates: got {rates!r}, allowed: an integer in [0, 32]")
    sweep.cluster_times, sweep.rates = tuple(float(t) for t in times), rates
    return sweep


def _override(raw: dict, key: str, value) -> None:
    section, _, name = key.partition(".")
    if not name:
        raise ConfigError(f"axes: got {key!r}, allowed: section.key (e.g. model.beta)")
    raw.setdefault(section, {})
    if not isinstance(raw[section], dict):
        raise ConfigError(f"axes: {key!r}: [{section}] is not a table in the base config")
    raw[section][name] = value


def plan(sweep: Sweep) -> list[tuple[dict, _config.Config, str]]:
    """(values, Config, run id) of every combination, each validated (ConfigError names the combination).
    Every run uses one thread (time.threads = 1): the cluster has a worker per core."""
    from .io import config_hash
    from .simulation import load_config

    out, seen = [], set()
    for values in sweep.combinations():
        raw = {s: dict(v) if isinstance(v, dict) else v for s, v in sweep.base.items()}
        for key, value in values.items():
            _override(raw, key, value)
        raw.setdefault("time", {})["threads"] = 1
        raw.setdefault("output", {})["path"] = "sweep.h5"  # replaced by the run's own path
        try:
            cfg = load_config(raw, base_dir=sweep.base_dir)
        except ConfigError as exc:
            shown = ", ".join(f"{k} = {v!r}" for k, v in values.items())
            raise ConfigError(f"sweep: the combination {shown}: {exc}") from None
        rid = config_hash(cfg)
        if rid not in seen:
            seen.add(rid)
            out.append((values, cfg, rid))
    return out


def batches(planned, keys) -> list[tuple[_config.Config, str, list[tuple[str, int]]]]:
    """The runs that execute ``planned``: (config, run id, [(combination's run id, its system)]).  Particles runs
    that differ only in initial.seed, over consecutive seeds, with fixed heads, fixed steps, no noise and
    particles.batch = 1, become one batched run (particles.batch = the number of seeds; system b is exactly the run with the b-th seed:
    docs/ensembles.md).  Every other combination is a run of its own (system -1)."""
    import dataclasses

    from .io import config_hash

    groups: dict[str, list] = {}
    alone = []
    for values, cfg, rid in planned:
        # exactly the single runs: fixed steps (a batch shares its adaptive steps) and no noise (a batch draws it
        # from one stream)
        foldable = ("initial.seed" in keys and cfg.model.method == "particles" and cfg.particles.batch == 1
                    and not cfg.time.adaptive and cfg.model.viscosity == 0
                    and cfg.initial.kind not in ("tokens", "file") and not cfg.attention.resample
                    and cfg.perceptron.activation == "none" and not cfg.schedule.times and cfg.particles.backend == "numpy"
                    and cfg.particles.field != "funk_hecke"
                    and not any(isinstance(getattr(cfg.attention, k), str) and getattr(cfg.attention, k) in ("random", "gpt2")
                                for k in "QKV"))
        if not foldable:
            alone.append((cfg, rid, [(rid, -1)]))
            continue
        rest = config_hash(dataclasses.replace(cfg, initial=dataclasses.replace(cfg.initial, seed=0)))
        groups.setdefault(rest, []).append((cfg.initial.seed, cfg, rid))
    out = list(alone)
    for members in groups.values():
        members.sort(key=lambda m: m[0])
        start = 0
        for i in range(1, len(members) + 1):  # split into runs of consecutive seeds
            if i == len(members) or members[i][0] != members[i - 1][0] + 1:
                part = members[start:i]
                if len(part) == 1:
                    out.append((part[0][1], part[0][2], [(part[0][2], -1)]))
                else:
                    cfg = part[0][1]
                    folded = dataclasses.replace(cfg, particles=dataclasses.replace(cfg.particles, batch=len(part)))
                    out.append((folded, config_hash(folded), [(m[2], b) for b, m in enumerate(part)]))
                start = i
    return out


# ------------------------------------------------------------------------------------ on a worker


def summarise(path, cluster_times=(), rates: int = 3, system: int = -1) -> dict:
    """The table's summary columns of one finished history (``system`` >= 0: of that system of a batch, as the
    history of its own run would give them)."""
    from . import io
    from .analysis import model_of
    from .analysis.diagnostics import measure_growth_rates

    h = io.read_history(path)
    t, diag = np.asarray(h["time"]), h["diagnostics"]
    if system >= 0:  # one system of a folded batch: its own rows, its cluster count as n_clusters
        diag = {k: (v[:, system] if np.ndim(v) == 2 else v) for k, v in diag.items()}
        diag["n_clusters"] = diag.pop("cluster_count")
        diag.pop("pair_fraction")
    row = {"t_final": float(t[-1]) if t.size else math.nan,
           "energy_final": float(np.mean(diag["energy"][-1])) if "energy" in diag and t.size else math.nan}
    if "pair_fraction" in diag:  # a batch: the systems' mean clustered pairs and median cluster count at the end
        row["pairs_final"] = float(np.mean(diag["pair_fraction"][-1])) if t.size else math.nan
        row["clusters_median_final"] = float(np.median(diag["cluster_count"][-1])) if t.size else math.nan
    nc = np.asarray(diag.get("n_clusters", np.full(t.size, -1)))
    row["n_clusters_final"] = int(nc[-1]) if t.size else -1
    for tc in cluster_times:
        k = int(io.snapshot_before(t, tc))
        row[f"clusters_t{tc:g}"] = int(nc[k]) if k >= 0 and t[-1] >= tc * (1 - 1e-12) else -1
    if rates:
        found = []
        if h["attrs"].get("method") != "particles":
            keep = io.density_snapshots(h)  # a hand-off run: the density part only
            if keep >= 3:
                fits = measure_growth_rates(t[:keep], h["rho_hat"][:keep], model_of(h))
                found = sorted((f for f in fits if f.status == "ok"), key=lambda f: -f.measured)
        for i in range(rates):
            f = found[i] if i < len(found) else None
            row[f"rate_{i + 1}"] = float(f.measured) if f else math.nan
            row[f"rate_{i + 1}_mode"] = ",".join(str(x) for x in f.mode) if f else ""
    return row


def run_one(cfg_toml: str, path: str, cluster_times=(), rates: int = 3, systems=(-1,)) -> list[dict]:
    """Run one run into ``path`` (resuming a run a killed worker left there) and summarise it: one row per entry of
    ``systems`` (-1: the run itself; b >= 0: system b of a folded batch).  Never raises for the run's own
    failures: they come back as status "failed" with the error's first line."""
    from .simulation.runner import run

    t0 = _time.time()
    row = {"status": "done", "error": "", "warning": "", "path": path}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cfg = _config.loads(cfg_toml)
            out = Path(path)
            resume = os.path.lexists(out)
            if resume:
                _check_ours(out, cfg)
            try:
                run(cfg, out, resume=resume, progress=False)
            except ConfigError:
                if not resume:
                    raise
                # the history is this run's (its stored config hash is this run's) but cannot be continued
                # (killed before its first checkpoint): the sweep owns it, start it again
                run(cfg, out, overwrite=True, progress=False)
            rows = [{**row, **summarise(out, cluster_times, rates, b), **({"system": b} if b >= 0 else {})}
                    for b in systems]
        except (ConfigError, NumericalError, OutputError, OSError, ValueError) as exc:
            row.update(status="failed", error=f"{type(exc).__name__}: {first_line(exc)}")
            rows = [dict(row) for _ in systems]
    for r in rows:
        if caught:  # the run's warnings (under-resolution, ...) go into the table, not the worker's log
            r["warning"] = f"{len(caught)} warnings; first: {first_line(caught[0].message)}"
        r["wall_time"] = _time.time() - t0
    return rows


def _check_ours(out: Path, cfg) -> None:
    """ConfigError unless ``out`` is a history of ``cfg`` (its stored config hash): a sweep replaces or continues
    only its own runs, never a file someone else put at one of its paths."""
    from . import io

    try:
        stored = str(io.read_attrs(out).get("config_hash", ""))
    except ConfigError as exc:
        raise ConfigError(f"{str(out)!r} exists and is not a readable history ({first_line(exc)}); the sweep "
                          "replaces only its own runs: move it away") from None
    if stored != io.config_hash(cfg):
        raise ConfigError(f"{str(out)!r} holds a history of another config (config hash {stored[:16] or '?'}); "
                          "the sweep replaces only its own runs: move it away")


# ------------------------------------------------------------------------------------ the client


def read_table(path, what: str = "TABLE"):
    """A sweep table as a pandas DataFrame, safely while the sweep still runs: the file is read in one open
    (pyarrow opens a path more than once, and a sweep replaces the table after every run).  ConfigError naming
    ``what`` for a missing file, a file that is not Parquet, or a missing pandas / pyarrow."""
    try:
        import pandas  # noqa: F401 - the table's type
        import pyarrow  # noqa: F401 - its file format
    except ImportError:
        raise ConfigError('a sweep table needs pandas and pyarrow: pip install "meanfield[sweep]"') from None
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what}: {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what}: {str(path)!r} cannot be read ({exc.strerror})") from None
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(BytesIO(data))
        df = arrow.to_pandas()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a file that is not a table
        raise ConfigError(f"{what}: {str(path)!r} is not a sweep table ({type(exc).__name__})") from None
    meta = (arrow.schema.metadata or {}).get(TABLE_KEY)
    if meta is None or "row_checksum" not in df.columns or "run_id" not in df.columns:
        raise ConfigError(f"{what}: {str(path)!r} is not a sweep table (a Parquet file that meanfield sweep did not "
                          "write)")
    bad = [i for i, (digest, want) in enumerate(zip(_row_digests(df), df["row_checksum"])) if digest != want]
    if bad:
        raise ConfigError(f"{what}: {str(path)!r} is damaged: row {bad[0]} (run {str(df['run_id'].iloc[bad[0]])[:16]}"
                          f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}) was changed after the sweep wrote "
                          "it; rerun the sweep into another table")
    df.attrs["base_hash"] = json.loads(meta).get("base_hash", "")
    return df.drop(columns="row_checksum")


def _canonical(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value))  # int and float columns alike: pandas turns ints with gaps into floats
    return "None" if value is None else repr(str(value))


def _row_digests(df) -> list[str]:
    """A checksum per row over every column but row_checksum (names and values)."""
    import hashlib

    cols = sorted(c for c in df.columns if c != "row_checksum")
    out = []
    for values in zip(*(df[c] for c in cols)):
        text = "\x1f".join(f"{c}={_canonical(v)}" for c, v in zip(cols, values))
        out.append(hashlib.blake2b(text.encode(), digest_size=8).hexdigest())
    return out


def _read_table(path: Path, base_hash: str):
    """The table at ``path`` if there is one, verified and of this base config; ConfigError else."""
    if not path.exists():
        return None
    try:
        df = read_table(path, "-o")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; choose another path") from None
    if df.attrs["base_hash"] != base_hash:
        raise ConfigError(f"-o: {str(path)!r} holds the runs of another base config (base hash "
                          f"{df.attrs['base_hash'][:16] or '?'}, this sweep's {base_hash[:16]}); choose another table")
    return df


def _write_table(rows: dict, keys: list[str], path: Path, base_hash: str) -> None:
    """Rewrite the table whole (``ownership.write_whole`` under the sweep's lock), each row with its checksum and
    the base config's hash in the file's metadata."""
    import pandas as pd

    df = pd.DataFrame(list(rows.values()))
    first = [c for c in (*FIXED, *keys) if c in df.columns]
    _seal(df[first + [c for c in df.columns if c not in first]], path, base_hash, locked=True)


def _seal(df, path, base_hash: str, locked: bool, overwrite: bool = True) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = df.assign(row_checksum=_row_digests(df))
    arrow = pa.Table.from_pandas(df, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                           TABLE_KEY: json.dumps({"base_hash": base_hash}).encode()})
    files.write_whole(path, (), overwrite, lambda tmp: pq.write_table(arrow, tmp), "-o", locked=locked)


def write_table(df, path, overwrite: bool = False) -> None:
    """Write the pandas DataFrame ``df`` as a sweep table at ``path``: with the marker and a checksum per row, as
    ``meanfield sweep`` writes them, so that ``read_table`` and ``meanfield plot TABLE --kind phase`` take it (a
    table of runs made some other way: columns ``model.beta``, ``status``, ``path``...).  A sweep rerun refuses it
    (its base config is not recorded)."""
    if "run_id" not in df.columns:
        df = df.assign(run_id=[f"row{i}" for i in range(len(df))])
    _seal(df, path, "", locked=False, overwrite=overwrite)


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        with dask_client(scheduler) as client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    # one thread per worker; BLAS and OpenMP pinned to one thread in the worker processes.  Ctrl-C while the
    # cluster starts is held until it stands (Dask cannot take it half-started) and then stops the sweep
    with _held_sigint() as held:
        cl = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                          env={v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
                          preload=["meanfield.processes"])  # workers leave Ctrl-C to us (processes.dask_setup)
    logger = logging.getLogger("distributed")
    level = logger.level
    try:
        with cl, Client(cl) as client:
            if held:
                raise KeyboardInterrupt
            try:
                yield client
            finally:  # we close our own cluster: "still alive, killing", cancelled tasks, a heartbeat to a
                logger.setLevel(logging.CRITICAL)  # scheduler already closed are expected then
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _held_sigint():
    """Defer SIGINT for the block (main thread only); the list yielded is non-empty if one came."""
    import signal
    import threading

    got: list = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    previous = signal.signal(signal.SIGINT, lambda *_: got.append(1))
    try:
        yield got
    finally:
        signal.signal(signal.SIGINT, previous)


def run_sweep(sweep, table, *, scheduler: str | None = None, workers: int | None = None,
              progress: bool | None = None, announce=None):
    """Run every combination of ``sweep`` (a Sweep or a sweep file) not already done in ``table`` (Parquet) on
    a Dask cluster (``scheduler``: its address; default a local cluster of ``workers`` processes, one per core)
    and return the table as a pandas DataFrame.  Finished rows are skipped; failed and killed ones run again.
    The table is verified (each row's checksum) and belongs to one base config: a table of another base, a
    Parquet file the sweep did not write, a link or a directory is refused before anything runs.  A history at
    a run's path that is not that run's is never replaced (its row says so).  ``announce``: called with one line
    once every check has passed."""
    from dask.distributed import as_completed
    from distributed.scheduler import KilledWorker

    from .simulation.trackers import progress_bar, show_progress

    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    if scheduler is not None:
        check_address(scheduler)
    inputs = [("the sweep file", sweep.source)] if sweep.source else []
    table = files.check_target(table, "-o", True, inputs)
    runs_dir = files.check_directory(sweep.runs_dir or table.with_name(f"{table.stem}_runs"), "sweep.runs")
    keys = sweep.keys
    planned = plan(sweep)
    base_hash = sweep.base_hash
    with files.OutputLock(table, "-o"):
        old = _read_table(table, base_hash)
        if announce:
            todo = sum(1 for _, _, rid in planned if old is None or not (old["run_id"] == rid).any()
                       or (old.loc[old["run_id"] == rid, "status"] != "done").any())
            where = scheduler or f"a local cluster of {workers or os.cpu_count()} workers"
            announce(f"{len(planned)} runs ({todo} to do) on {where}; table {table}")
        rows = {}
        if old is not None:
            rows = {r["run_id"]: r for r in old.to_dict("records")}
        todo = []
        values_of = {rid: values for values, _, rid in planned}
        for cfg, brid, members in batches(planned, keys):
            path = runs_dir / f"{brid[:16]}.h5"
            if all(rows.get(rid, {}).get("status") == "done" and Path(rows[rid]["path"]).exists()
                   for rid, _ in members):
                continue
            for rid, b in members:
                rows[rid] = {"run_id": rid, "status": "pending", "error": "", "warning": "", "wall_time": math.nan,
                             "path": str(path), **({"system": b} if b >= 0 else {}), **values_of[rid]}
            todo.append((brid, cfg, path, members))
        if not todo:
            if old is None or len(old) != len(rows):
                _write_table(rows, keys, table, base_hash)
            return _read_table(table, base_hash)
        show = show_progress(progress)
        with _client(scheduler, workers) as client:  # a cluster first: a refused scheduler leaves nothing behind
            runs_dir.mkdir(exist_ok=True)
            _write_table(rows, keys, table, base_hash)
            futures = {client.submit(run_one, cfg.to_toml(), str(path), sweep.cluster_times, sweep.rates,
                                     tuple(b for _, b in members), key=f"meanfield-{brid[:16]}", pure=False): members
                       for brid, cfg, path, members in todo}
            bar = progress_bar(total=len(todo), desc="runs", unit="run", disable=not show)
            for fut in as_completed(futures):
                members = futures[fut]
                try:
                    got = fut.result()
                except KilledWorker as exc:  # its workers kept dying (memory, a kill): record and go on
                    got = [{"status": "killed", "error": f"KilledWorker: {first_line(exc)}"}] * len(members)
                except Exception as exc:  # noqa: BLE001 - anything else the run raised: record and go on
                    got = [{"status": "failed", "error": f"{type(exc).__name__}: {first_line(exc)}"}] * len(members)
                for (rid, _), one in zip(members, got):
                    rows[rid].update(one)
                _write_table(rows, keys, table, base_hash)
                bar.update(1)
            bar.close()
        return _read_table(table, base_hash)


def describe(df) -> str:
    """One line: how many runs are done, failed, killed."""
    counts = df["status"].value_counts().to_dict()
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


__all__ = ["Sweep", "load_sweep", "plan", "run_sweep", "run_one", "summarise", "describe", "read_table",
           "write_table"]
