"""Batched token systems and the peers' residual updates (docs/ensembles.md, docs/variants.md).

Each update is checked against the equiangular reduction derived in docs/variants.md (a scalar ODE for the overlap,
solved by scipy at 1e-12) and its late-time law; a batch against single runs of the same systems; the peers'
diagnostics against numpy's matrix rank and a direct count.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import meanfield
from meanfield.errors import ConfigError
from meanfield.io.report import check
from meanfield.physics.theory import equiangular_overlap
from meanfield.tokens import BatchedTokenModel, TokenModel, TokenSolver
from meanfield.tokens.batch import cluster_count, pair_fraction

UPDATES = ("post-ln", "pre-ln", "peri-ln", "ngpt")


def equiangular(n: int, d: int, rho: float, seed: int = 1) -> np.ndarray:
    """n unit vectors of R^d with <x_i, x_j> = rho (i != j), rotated at random."""
    G = (1 - rho) * np.eye(n) + rho * np.ones((n, n))
    X = np.zeros((n, d))
    X[:, :n] = np.linalg.cholesky(G)
    R, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return X @ R.T


def overlap(X: np.ndarray) -> tuple[float, float]:
    """(mean 1 - <x_i, x_j> over pairs, from chords: no digits lost near 1; mean |z_i|)."""
    n = X.shape[0]
    u = X / np.linalg.norm(X, axis=1, keepdims=True)
    chord2 = np.sum((u[:, None] - u[None]) ** 2, axis=2) / 2
    return float(np.mean(chord2[~np.eye(n, dtype=bool)])), float(np.mean(np.linalg.norm(X, axis=1)))


def simulate(update, variant, heads, times, n=5, d=6, beta=2.0, rho0=-0.1, h=0.01, systems=2):
    """The equiangular systems advanced by RK4 through the package's solver: (1 - rho, r) at ``times``."""
    model = BatchedTokenModel(systems, np.full(n, 1 / n), beta, variant, d, heads=heads, update=update)
    solver = TokenSolver(model, np.concatenate([equiangular(n, d, rho0, s) for s in range(systems)]),
                         np.arange(systems * n), systems * n, "rk4", h)
    out, steps = [], 0
    for t in times[1:]:
        while steps * h < t - 1e-9:
            solver.advance(h)
            steps += 1
        per = [overlap(solver.x[s * n:(s + 1) * n]) for s in range(systems)]
        assert max(abs(p[0] / per[0][0] - 1) for p in per) < 1e-7  # every system the same (rotations of one)
        out.append(per[0])
    return np.array(out).T


@pytest.mark.parametrize("variant", ["sa", "usa"])
@pytest.mark.parametrize("update", UPDATES)
def test_equiangular_overlap_follows_the_derived_ode(update, variant):
    """Two heads (Q^T K = I and I / 2, V = I and 0.7 I): 1 - rho and r of the tokens against the scalar ODE."""
    d, beta = 6, 2.0
    heads = [(np.eye(d), np.eye(d), np.eye(d)), (np.eye(d) / math.sqrt(2), np.eye(d) / math.sqrt(2), 0.7 * np.eye(d))]
    # post-LN clusters fastest: its windows end while 1 - rho >= 1e-9 (unit vectors hold no finer overlap)
    times = np.linspace(0, {("post-ln", "sa"): 6.0, ("post-ln", "usa"): 1.5}.get((update, variant), 10.0), 6)
    fast = (update, variant) == ("post-ln", "usa")  # rate ~ 18: RK4's step shrinks to keep its error < 1e-7
    gap, r = simulate(update, variant, heads, times, h=0.002 if fast else 0.01)
    gap_ode, r_ode = equiangular_overlap(times, -0.1, 5, [(beta, 1.0), (beta / 2, 0.7)], update, variant)
    assert gap_ode[-1] < 0.2 * gap_ode[0]  # the tokens did cluster over the window
    assert np.max(np.abs(gap / gap_ode[1:] - 1)) < 1e-6
    assert np.max(np.abs(r / r_ode[1:] - 1)) < 1e-6


def test_late_time_laws():
    """SA, one head: 1 - rho ~ e^{-2t} (post-LN), e^{-2 alpha t} (nGPT), r^{-2} with r ~ t (pre-LN, peri-LN),
    measured on the tokens to 1 %."""
    n, d, beta = 4, 5, 1.0
    eye = [(np.eye(d), np.eye(d), np.eye(d))]
    for update, t_end, h in (("post-ln", 12.0, 0.01), ("ngpt", 60.0, 0.05)):
        times = np.array([0.0, t_end - 1, t_end])
        gap, _ = simulate(update, "sa", eye, times, n, d, beta, 0.0, h)
        rate = math.log(gap[1] / gap[0])
        assert abs(rate / (-2.0 if update == "post-ln" else -0.4) - 1) < 0.01
    for update in ("pre-ln", "peri-ln"):
        times = np.array([0.0, 400.0, 440.0])
        gap, r = simulate(update, "sa", eye, times, n, d, beta, 0.0, 0.2)
        slope = math.log(gap[1] / gap[0]) / math.log(r[1] / r[0])
        assert abs(slope / -2.0 - 1) < 0.01
        assert abs((r[1] - r[0]) / 40.0 - 1) < 0.01  # r' -> 1: r grows like t


def test_token_model_updates_match_the_batch():
    """TokenModel's field under each update (general heads, causal) equals one system of BatchedTokenModel."""
    rng = np.random.default_rng(2)
    n, d = 9, 4
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = rng.uniform(0.5, 1.5, n)
    w /= w.sum()
    Q, K, V = ([rng.standard_normal((d, d)) for _ in range(2)] for _ in range(3))
    for update in UPDATES:
        for causal in (False, True):
            for variant in ("sa", "usa"):
                single = TokenModel(w, 3.0, variant, d, Q, K, V, causal, alibi=0.5, update=update)
                batch = BatchedTokenModel(1, w, 3.0, variant, d, causal, 0.5, heads=list(zip(Q, K, V)),
                                          update=update)
                v = single.velocity(x)
                assert np.max(np.abs(v - batch.velocity(x))) < 1e-13 * np.max(np.abs(v))


def _config(**particles):
    return {"model": {"method": "particles", "geometry": "sphere", "beta": 3.0},
            "particles": {"n": 10, "dim": 3, **particles}, "attention": {"Q": "random", "heads": 2, "seed": 5},
            "time": {"t_end": 1.0, "dt": 0.02}, "output": {"interval": 0.5}, "initial": {"seed": 3}}


@pytest.mark.parametrize("update", UPDATES)
def test_batch_systems_are_single_runs(update):
    """System b of a batch is the run with initial.seed + b and attention.seed + b (its own random heads)."""
    batch = meanfield.solve(_config(batch=3, update=update))
    assert batch["positions"].shape == (3, 3, 10, 3) and batch["diagnostics"]["pair_fraction"].shape == (3, 3)
    for b in range(3):
        cfg = _config(update=update)
        cfg["initial"]["seed"], cfg["attention"]["seed"] = 3 + b, 5 + b
        single = meanfield.solve(cfg)
        assert np.max(np.abs(batch["positions"][:, b] - single["positions"])) < 1e-13
        assert np.max(np.abs(batch["diagnostics"]["energy"][:, b] / single["diagnostics"]["energy"] - 1)) < 1e-13


def test_uniform_batches_are_single_runs():
    """initial.kind = "uniform" (exact draws g / |g|, no rejection): system b of a batch is the single run with
    initial.seed + b, and its first tokens are g / |g| of that seed's generator."""
    cfg = _config(batch=3)
    cfg["initial"]["kind"] = "uniform"
    cfg["attention"] = {}
    batch = meanfield.solve(cfg)
    for b in range(3):
        one = _config()
        one["initial"] = {"kind": "uniform", "seed": 3 + b}
        one["attention"] = {}
        single = meanfield.solve(one)
        assert np.max(np.abs(batch["positions"][:, b] - single["positions"])) < 1e-13
        g = np.random.default_rng(3 + b).standard_normal((10, 3))
        assert np.allclose(single["positions"][0], g / np.linalg.norm(g, axis=1, keepdims=True), rtol=0, atol=1e-15)


def test_batch_history_file(tmp_path):
    """A batched run's file: a system axis (labelled by seed) on positions and per-system diagnostics, read back by
    the verified reader and meanfield info; output.tokens = false leaves the positions out."""
    cfg = _config(batch=4, integrator="dopri5")
    cfg["time"].update(adaptive=True, rtol=1e-8)
    res = meanfield.run(cfg, tmp_path / "b.h5")
    ds = meanfield.open_history(res.path)
    assert ds.positions.dims == ("time", "system", "token", "component")
    assert list(ds.system.values) == [3, 4, 5, 6]
    assert ds.pair_fraction.dims == ("time", "system") and ds.dt.dims == ("time",)
    report = check(res.path)
    assert report.ok, [c.text for c in report.checks if not c.ok]
    cfg["output"]["tokens"] = False
    res = meanfield.run(cfg, tmp_path / "c.h5")
    ds2 = meanfield.open_history(res.path)
    assert "positions" not in ds2 and np.array_equal(ds2.cluster_count.values, ds.cluster_count.values)


def test_batch_refusals():
    """What a batch cannot do is refused in one line naming the key."""
    cfg = _config(batch=2)
    cfg["perceptron"] = {"activation": "tanh", "W": [[1.0]] * 3, "A": [[1.0, 0.0, 0.0]], "b": [0.0]}
    with pytest.raises(ConfigError, match="perceptron.activation.*particles.batch"):
        meanfield.solve(cfg)
    cfg = _config(batch=2)
    cfg["initial"] = {"kind": "tokens", "positions": [[1.0, 0.0, 0.0]] * 10}
    with pytest.raises(ConfigError, match="initial.kind"):
        meanfield.solve(cfg)
    with pytest.raises(ConfigError, match="particles.update: got 'layernorm'"):
        meanfield.solve(_config(update="layernorm"))


def test_peers_diagnostics():
    """pair_fraction against a direct count; cluster_count against numpy's matrix rank (tight clusters, loose
    chains where "close" is not an equivalence, and random points)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 3))
    tight = centres[rng.integers(0, 3, 12)] + 1e-6 * rng.standard_normal((12, 3))
    chain = np.array([[math.cos(a), math.sin(a), 0.0] for a in np.arange(12) * 0.01])  # 0.01 rad apart: a chain
    X = np.stack([tight, chain, rng.standard_normal((12, 3))])
    X /= np.linalg.norm(X, axis=2, keepdims=True)
    for delta in (1e-4, 1e-3):
        G = X @ X.transpose(0, 2, 1)
        ranks = [np.linalg.matrix_rank((g > 1 - delta).astype(float)) for g in G]
        assert list(cluster_count(X, delta)) == ranks
        pairs = [sum(G[s, i, j] > 1 - delta for i in range(12) for j in range(12) if i != j) / 132 for s in range(3)]
        assert np.allclose(pair_fraction(X, delta), pairs, rtol=0, atol=0)
    assert cluster_count(X, 1e-4)[0] == len(np.unique(np.argmax(tight @ centres.T, axis=1)))


@pytest.mark.parametrize("n,d", [(32, 2), (70, 3)])
def test_cluster_count_on_mid_run_states(n, d):
    """The cluster count of states in the middle of clustering (tight clusters beside chains of tokens 0.008 rad
    apart, so "close" at 1 - 1e-4 is not an equivalence; n = 70 needs two 64-bit words per row) is numpy's
    matrix_rank of the thresholded Gram matrix, system by system."""
    rng = np.random.default_rng(5)
    B = 400
    centres = rng.standard_normal((B, 4, d))
    X = centres[np.arange(B)[:, None], rng.integers(0, 4, (B, n))]
    X += rng.choice([1e-7, 4e-3, 0.3], size=(B, 1, 1)) * rng.standard_normal((B, n, d))
    X /= np.linalg.norm(X, axis=2, keepdims=True)
    T = X @ X.transpose(0, 2, 1) > 1 - 1e-4
    ranks = np.linalg.matrix_rank(T.astype(float))
    assert len(set(ranks)) > 10  # the draw covers clusters, chains and scattered tokens
    assert np.array_equal(cluster_count(X, 1e-4), ranks)


def test_rank_of_an_unsymmetric_threshold():
    """A thresholded matrix that is not symmetric (rounding could make G so), or misses a diagonal entry, is ranked
    whole, as numpy does."""
    from meanfield.tokens.batch import _rank

    T = np.eye(6, dtype=bool)[None].repeat(2, axis=0)
    T[0, 0, 1] = T[0, 1, 2] = T[0, 2, 0] = True  # a cycle: rank 3 whole, 2 if read as symmetric
    T[1, 0, 1] = T[1, 2, 3] = T[1, 3, 2] = True
    assert list(_rank(T)) == list(np.linalg.matrix_rank(T.astype(float))) == [6, 5]
    T[1] = np.array([[0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1],  # symmetric, zeros on the
                     [0, 0, 1, 0, 0, 0], [1, 0, 1, 0, 0, 1], [0, 0, 1, 0, 1, 0]], dtype=bool)  # diagonal (a fuzzer's)
    assert _rank(T)[1] == np.linalg.matrix_rank(T[1].astype(float)) == 4


@pytest.mark.parametrize("diagonal", [True, False])
def test_rank_against_numpy_on_random_boolean_matrices(diagonal):
    """_rank against numpy's matrix_rank on 20,000 random symmetric boolean matrices of 6 and 9 rows (true
    diagonals, as from unit tokens, or random ones)."""
    from meanfield.tokens.batch import _rank

    rng = np.random.default_rng(11)
    for n in (6, 9):
        A = rng.random((10_000, n, n)) < 0.3
        A |= A.transpose(0, 2, 1)
        if diagonal:
            A[:, np.arange(n), np.arange(n)] = True
        assert np.array_equal(_rank(A), np.linalg.matrix_rank(A.astype(float)))


PARTICLES_BASE = """
[model]
method = "particles"
geometry = "circle"
beta = 3.0
[particles]
n = 12
dim = 2
[time]
t_end = 1.0
dt = 0.05
[output]
interval = 0.5
"""


def test_a_sweep_over_seeds_runs_as_one_batch_and_each_row_is_its_single_run(tmp_path):
    """meanfield sweep folds consecutive seeds of a particles base into one batched run per beta; each
    combination keeps its row, whose summaries are those of the single run with that seed."""
    from meanfield.sweep import batches, load_sweep, plan, run_sweep

    (tmp_path / "run.toml").write_text(PARTICLES_BASE)
    (tmp_path / "s.toml").write_text('base = "run.toml"\n[axes]\n"model.beta" = [2.0, 5.0]\n'
                                     '"initial.seed" = [0, 1, 2, 4]\n')
    sweep = load_sweep(tmp_path / "s.toml")
    runs = batches(plan(sweep), sweep.keys)
    assert sorted(len(m) for _, _, m in runs) == [1, 1, 3, 3]  # seeds 0-2 batched, seed 4 alone, per beta
    df = run_sweep(sweep, tmp_path / "t.parquet", workers=1, progress=False)
    assert len(df) == 8 and set(df["status"]) == {"done"} and df["path"].nunique() == 4
    for _, row in df.iterrows():
        cfg = meanfield.load_config(tmp_path / "run.toml", [f"model.beta={row['model.beta']}",
                                                            f"initial.seed={row['initial.seed']}"])
        single = meanfield.solve(cfg)
        assert abs(row["energy_final"] / single["diagnostics"]["energy"][-1] - 1) < 1e-12


def test_the_phase_plot_of_batched_runs(tmp_path):
    """The phase diagram of a sweep of batched runs shows the mean clustered pairs over (t, beta), read from the
    histories; its arrays are the histories' means and medians."""
    from meanfield.sweep import run_sweep
    from meanfield.viz.phase import phase_data, save

    (tmp_path / "run.toml").write_text(PARTICLES_BASE.replace("dim = 2", "dim = 2\nbatch = 16"))
    (tmp_path / "s.toml").write_text('base = "run.toml"\n[axes]\n"model.beta" = [1.0, 4.0, 9.0]\n')
    df = run_sweep(tmp_path / "s.toml", tmp_path / "t.parquet", workers=1, progress=False)
    d = phase_data(df)
    assert d["pairs"].shape == (3, 3) and d["batch"]
    for i, (_, row) in enumerate(df.sort_values("model.beta").iterrows()):
        h = meanfield.open_history(row["path"])
        assert np.allclose(d["pairs"][i], h.pair_fraction.mean("system").values, rtol=0, atol=0)
        assert d["final_clusters"][i] == row["clusters_median_final"]
    save(df, tmp_path / "phase.png")
    assert (tmp_path / "phase.png").stat().st_size > 10_000


def test_a_batch_is_bitwise_the_same_on_one_or_two_threads():
    """Blocks of systems spread over threads are computed alike whatever thread runs them."""
    model = [BatchedTokenModel(64, np.full(8, 1 / 8), 3.0, "sa", 3, threads=t, block_bytes=8 * 8 * 8 * 4)
             for t in (1, 2)]
    x = np.random.default_rng(3).standard_normal((64 * 8, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert np.array_equal(model[0].velocity(x), model[1].velocity(x))


def test_a_residual_stream_run_reports_its_directions():
    """Pre-LN on S^2: /positions hold the streams z (|z| grows), and the density estimate, the energy and the
    clusters are those of the directions z / |z|."""
    from meanfield.domains import Sphere
    from meanfield.tokens import smoothed_density

    cfg = _config(update="pre-ln")
    cfg["attention"] = {}
    cfg["time"]["t_end"] = 2.0
    h = meanfield.solve(cfg)
    z = h["positions"][-1]
    assert np.min(np.linalg.norm(z, axis=1)) > 1.2  # the streams grew
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    a = h["attrs"]
    g = Sphere(int(a["modes"]), float(a["dealias"]))
    expected = smoothed_density(g, u, h["token_weights"][-1], float(a["bandwidth"]))
    assert np.max(np.abs(h["rho_hat"][-1] - expected)) < 1e-13 * np.max(np.abs(expected))
    model = TokenModel(h["token_weights"][-1], 3.0, "sa", 3)
    assert abs(h["diagnostics"]["energy"][-1] / model.energy_scaled(u) - 1) < 1e-13


def test_the_phase_plot_of_a_sweep_whose_seeds_were_batched(tmp_path):
    """A token sweep over beta x consecutive seeds runs one batch per beta: its phase plot reads each batch once
    and draws the peers' diagram; a table mixing a batch and a single run is refused in one line."""
    from meanfield.sweep import run_sweep
    from meanfield.viz.phase import phase_data

    (tmp_path / "run.toml").write_text(PARTICLES_BASE)
    (tmp_path / "s.toml").write_text('base = "run.toml"\n[axes]\n"model.beta" = [1.0, 6.0]\n'
                                     '"initial.seed" = {start = 0, stop = 5}\n')
    df = run_sweep(tmp_path / "s.toml", tmp_path / "t.parquet", workers=1, progress=False)
    d = phase_data(df)
    assert d["batch"] and d["pairs"].shape == (2, 3) and d["systems"] == 5
    (tmp_path / "u.toml").write_text('base = "run.toml"\n[axes]\n"model.beta" = [1.0]\n"initial.seed" = [0, 1, 3]\n')
    df = run_sweep(tmp_path / "u.toml", tmp_path / "u.parquet", workers=1, progress=False)
    with pytest.raises(ConfigError, match="batched and single runs in one table"):
        phase_data(df)


# --- merging inside a batch (BatchTokenSolver) ------------------------------------------------------------------
def _merging(**particles):
    """Tokens on S^2 that cluster and merge (merge_tol 1e-4 rad) by t = 14."""
    return {"model": {"method": "particles", "geometry": "sphere", "beta": 1.0},
            "particles": {"n": 12, "dim": 3, "integrator": "rk4", **particles}, "longtime": {"merge_tol": 1e-4},
            "time": {"t_end": 14.0, "dt": 0.05}, "output": {"interval": 2.0}, "initial": {"seed": 3, "kind": "uniform"}}


def test_batched_systems_merge_as_their_single_runs(tmp_path):
    """System b of a merging batch is the single run with initial.seed + b, merges included: the same rows merged
    away (NaN), the same weights, the same token counts, positions to round-off; the file passes meanfield info."""
    from meanfield.io.report import check

    res = meanfield.run(_merging(batch=4), tmp_path / "b.h5")
    batch = meanfield.io.read_history(res.path)
    assert check(res.path).ok
    for b in range(4):
        cfg = _merging()
        cfg["initial"]["seed"] = 3 + b
        single = meanfield.solve(cfg)
        pb, ps = batch["positions"][:, b], single["positions"]
        assert np.array_equal(np.isnan(pb), np.isnan(ps)) and np.nanmax(np.abs(pb - ps)) < 1e-13
        assert np.max(np.abs(batch["token_weights"][:, b] - single["token_weights"])) < 1e-15
        tokens = batch["diagnostics"]["n_tokens"][:, b]
        assert np.array_equal(tokens, single["diagnostics"]["n_tokens"]) and tokens[0] == 12 and tokens[-1] <= 2
        assert single["merges"]["time"].size >= 5  # the single run's own records: it merged


def test_merging_leaves_the_peers_statistics_as_they_were():
    """rotf's setting (128 systems of 32 tokens on the circle, beta 4, Euler to t = 30) with tokens merging at
    1e-9 and without: clustered pairs and cluster counts equal at every snapshot, energies to round-off, while
    most tokens merged away."""
    cfg = {"model": {"method": "particles", "geometry": "circle", "beta": 4.0},
           "particles": {"n": 32, "dim": 2, "batch": 128, "integrator": "euler"}, "initial": {"kind": "uniform"},
           "time": {"t_end": 30.0, "dt": 0.1}, "output": {"interval": 1.0, "tokens": False}}
    runs = [meanfield.solve({**cfg, "longtime": {"merge_tol": tol}})["diagnostics"] for tol in (0.0, 1e-9)]
    assert np.array_equal(runs[0]["pair_fraction"], runs[1]["pair_fraction"])
    assert np.array_equal(runs[0]["cluster_count"], runs[1]["cluster_count"])
    assert np.max(np.abs(runs[1]["energy"] / runs[0]["energy"] - 1)) < 1e-13
    assert np.all(runs[0]["n_tokens"] == 32) and np.mean(runs[1]["n_tokens"][-1]) < 4


def _groups(labels) -> set:
    """A partition as a set of frozensets of members."""
    out: dict = {}
    for i, g in enumerate(labels):
        out.setdefault(g, set()).add(i)
    return {frozenset(s) for s in out.values()}


@pytest.mark.parametrize("d", [2, 3, 6])
def test_batched_merging_finds_the_groups_merge_groups_finds(d):
    """A fuzzer: systems with planted close pairs and chains (and rows merged away before) merge into exactly the
    groups ``merge_groups`` finds system by system; each group's weight is summed at its normalised weighted mean,
    kept on its smallest row, and the rows merged away before follow their new leader."""
    from meanfield.tokens import BatchTokenSolver, merge_groups

    rng = np.random.default_rng(d)
    S, n, tol = 24, 10, 1e-6
    for _ in range(10):
        x = rng.standard_normal((S * n, d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        for _ in range(3 * S):  # plant: a token near another of its system (chains when they repeat)
            s, i, j = rng.integers(S), *rng.choice(n, 2, replace=False)
            step = rng.standard_normal(d) * tol * rng.uniform(0.1, 0.8) / math.sqrt(d)
            x[s * n + j] = (x[s * n + i] + step) / np.linalg.norm(x[s * n + i] + step)
        w = rng.uniform(0.5, 1.5, (S, n))
        model = BatchedTokenModel(S, w / w.sum(axis=1, keepdims=True), 1.0, "sa", d)
        solver = BatchTokenSolver(model, x, np.arange(S * n), S * n, "rk4", 0.1, merge_tol=tol)
        # some rows already merged away, sitting on their leader
        w0, leader = model.w.copy(), np.arange(S * n)
        for s in rng.choice(S, S // 3, replace=False):
            a, b = s * n + np.sort(rng.choice(n, 2, replace=False))
            w0[a], w0[b], leader[b] = w0[a] + w0[b], 0.0, a
            x[b] = x[a]
        model.set_merged(w0, leader)
        solver.state = solver.scheme.start(x)
        live = leader == np.arange(S * n)
        solver.merge()
        for s in range(S):
            rows = s * n + np.flatnonzero(live[s * n:(s + 1) * n])
            want = _groups(merge_groups(x[rows], tol))
            assert _groups(model.leader[rows]) == want
            for g in want:
                members = rows[sorted(g)]
                keep = members[0]
                mean = w0[members] @ x[members]
                assert model.leader[keep] == keep and abs(model.w[keep] - w0[members].sum()) < 1e-15
                assert np.max(np.abs(solver.x[members] - mean / np.linalg.norm(mean))) < 1e-15
            followers = s * n + np.flatnonzero(~live[s * n:(s + 1) * n])
            for f in followers:  # merged away before: on its (new) leader, which is live
                assert live[model.leader[f]] and model.w[model.leader[f]] > 0
                assert np.array_equal(solver.x[f], solver.x[model.leader[f]])


def test_batched_merging_links_pairs_that_are_not_neighbours_in_projection():
    """Pinned: two tokens within merge_tol whose projections on the solver's axis have a third, distant token's
    between them (a search of neighbours in sorted order alone would miss them); and a leader merging into a
    smaller row hands it the rows that followed it."""
    from meanfield.tokens import BatchTokenSolver

    n, tol = 4, 1e-6
    model = BatchedTokenModel(1, np.full(n, 1 / n), 1.0, "sa", 3)
    x = np.zeros((n, 3))
    solver = BatchTokenSolver(model, np.eye(3)[[0, 1, 2, 0]], np.arange(n), n, "rk4", 0.1, merge_tol=tol)
    u = solver._axis
    a = np.cross(u, [0.3, -0.2, 0.9])
    a = 0.6 * u + 0.8 * a / np.linalg.norm(a)  # projection 0.6
    t = np.cross(a, np.cross(u, a))  # along the sphere at a, rising in projection
    c = a + 0.5 * tol * t / np.linalg.norm(t)
    c /= np.linalg.norm(c)
    mid = (a @ u + c @ u) / 2
    b = mid * u - math.sqrt(1 - mid * mid) * (a - (a @ u) * u) / np.linalg.norm(a - (a @ u) * u)  # opposite side
    x[:] = [b, a, c, b]
    x[3] = -x[1]  # far from all
    assert a @ u < b @ u < c @ u and np.linalg.norm(a - c) < tol / 2 and np.linalg.norm(a - b) > 1
    solver.state = solver.scheme.start(x)
    assert solver.merge() == 1 and list(model.leader) == [0, 1, 1, 3]
    # row 2 follows row 1; now row 1 (with its follower) meets row 0: row 0 keeps the group and row 2 follows it
    x = solver.x.copy()
    x[0] = x[1] = x[2] = x[1]
    x[0] = (x[1] + 0.3 * tol * np.cross(x[1], u)) / np.linalg.norm(x[1] + 0.3 * tol * np.cross(x[1], u))
    solver.state = solver.scheme.start(x)
    assert solver.merge() == 1 and list(model.leader) == [0, 0, 0, 3]
    assert np.array_equal(solver.x[2], solver.x[0]) and model.w[0] == pytest.approx(0.75, abs=1e-15)


def test_set_merged_refuses_inconsistent_leaders():
    """Weights and leaders that do not fit together are refused (a live row needs weight > 0, a merged-away one
    weight 0 and a live leader in its own system)."""
    model = BatchedTokenModel(2, np.full(3, 1 / 3), 1.0, "sa", 3)
    w = model.w.copy()
    for weights, leader in [(w, [0, 0, 2, 3, 4, 5]),                       # row 1 follows but keeps its weight
                            ([0.5, 0, 0.5, 1 / 3, 1 / 3, 1 / 3], [0, 2, 2, 3, 3, 5]),  # row 4 keeps its weight
                            ([2 / 3, 0, 1 / 3, 2 / 3, 0, 1 / 3], [0, 0, 2, 3, 2, 5]),  # a leader in another system
                            ([1 / 3, 0, 2 / 3, 1 / 3, 1 / 3, 1 / 3], [0, 2, 1, 3, 4, 5])]:  # a merged-away leader
        with pytest.raises(ValueError, match="leader"):
            model.set_merged(np.asarray(weights, dtype=float), np.asarray(leader))
