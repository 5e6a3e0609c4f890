"""Movies of a run and phase diagrams of a sweep table."""

import math

import numpy as np
import pytest

import meanfield
from meanfield import io
from meanfield.physics import theory
from meanfield.cli import main

RUN = dict(model=dict(geometry="circle", beta=4.0), grid=dict(modes=32),
           initial=dict(kind="random", amplitude=1e-6, seed=0), time=dict(t_end=16.0, dt=0.05),
           output=dict(interval=0.5), longtime=dict(handoff="tokens"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("phase")
    out = []
    for beta in (2.0, 6.0):
        for seed in (0, 1):
            cfg = {**RUN, "model": dict(geometry="circle", beta=beta), "initial": dict(RUN["initial"], seed=seed)}
            meanfield.run(cfg, d / f"b{beta:g}_s{seed}.h5", progress=False)
            out.append((beta, seed, str(d / f"b{beta:g}_s{seed}.h5")))
    return d, out


def test_movie_is_a_gif_with_the_asked_frames(runs, tmp_path):
    from PIL import Image

    path = runs[1][0][2]
    assert main(["plot", path, "--movie", "-o", str(tmp_path / "m.gif"), "--frames", "12"]) == 0
    with Image.open(tmp_path / "m.gif") as im:
        assert im.format == "GIF" and im.n_frames == 12
    assert main(["plot", path, "--movie", "-o", str(tmp_path / "m.gif")]) == 2  # exists: not replaced silently
    assert main(["plot", path, "--movie", "-o", str(tmp_path / "m.avi")]) == 2


def test_a_gif_that_would_not_fit_in_memory_is_refused_up_front(runs, tmp_path, monkeypatch, capsys):
    """The GIF writer keeps every frame (RGBA) until the end: 1000 frames took 3.1 GB.  With 100 MB available,
    12 frames of this figure (2.4 MB each) fit and the 33 snapshots do not: refused before a frame is drawn."""
    from meanfield.simulation import memory

    monkeypatch.setattr(memory, "available_memory", lambda: 100e6)
    path = runs[1][0][2]
    assert main(["plot", path, "--movie", "-o", str(tmp_path / "m.gif"), "--frames", "60"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("meanfield: error: --frames: the movie has 33 frames") \
        and ".mp4" in err[0], err
    assert not list(tmp_path.iterdir())
    assert main(["plot", path, "--movie", "-o", str(tmp_path / "m.gif"), "--frames", "12"]) == 0


def test_mp4_without_ffmpeg_is_one_line(runs, tmp_path, monkeypatch, capsys):
    from meanfield.viz import movie

    monkeypatch.setattr(movie, "_ffmpeg", lambda: None)
    assert main(["plot", runs[1][0][2], "--movie", "-o", str(tmp_path / "m.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ffmpeg" in err[0] and ".gif" in err[0]
    assert not list(tmp_path.iterdir())


def test_phase_diagram_averages_the_runs_cluster_counts(runs, tmp_path):
    import pandas as pd
    import pyarrow  # noqa: F401 - a dependency: a broken install fails here
    from meanfield.viz.phase import phase_data

    _, rows = runs
    df = pd.DataFrame([{"model.beta": b, "initial.seed": s, "status": "done", "path": p} for b, s, p in rows])
    d = phase_data(df, points=50)
    assert list(d["betas"]) == [2.0, 6.0] and list(d["runs"]) == [2, 2]
    for i, beta in enumerate(d["betas"]):
        for j in (10, 30, 49):
            t = d["times"][j]
            want = np.mean([io.read_history(p)["diagnostics"]["n_clusters"][
                np.searchsorted(io.read_history(p)["time"], t + 1e-9) - 1] for b, _, p in rows if b == beta])
            assert d["clusters"][i, j] == want
        assert d["t_lin"][i] == pytest.approx(math.log(1e6) / theory.growth_rates(
            [theory.most_unstable_mode(beta)], beta)[0])
        assert d["k_star"][i] == theory.most_unstable_mode(beta)
    from meanfield.sweep import read_table, write_table

    write_table(df, tmp_path / "t.parquet")  # a table of runs made by hand, sealed as a sweep's
    assert read_table(tmp_path / "t.parquet")["path"].tolist() == df["path"].tolist()
    assert main(["plot", str(tmp_path / "t.parquet"), "--kind", "phase", "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert main(["plot", str(tmp_path / "t.parquet"), "--kind", "energy"]) == 2


def test_token_sweeps_draw_the_same_diagram_and_movie(tmp_path):
    import pandas as pd
    from PIL import Image

    from meanfield.viz.phase import phase_data

    rows = []
    for beta in (3.0, 12.0):
        for seed in (0, 1):
            cfg = dict(model=dict(method="particles", geometry="circle", beta=beta), particles=dict(n=64, dim=2),
                       initial=dict(kind="random", seed=seed), time=dict(t_end=8.0, dt=0.05), output=dict(interval=0.5))
            p = tmp_path / f"b{beta:g}_s{seed}.h5"
            meanfield.run(cfg, p, progress=False)
            rows.append({"model.beta": beta, "initial.seed": seed, "status": "done", "path": str(p)})
    d = phase_data(pd.DataFrame(rows), points=20)
    assert d["method"] == "particles" and list(d["runs"]) == [2, 2]
    for i, beta in enumerate(d["betas"]):  # n iid tokens: a departure from uniform of size n^{-1/2}
        assert d["t_lin"][i] == pytest.approx(theory.linear_phase_end(64 ** -0.5, beta))
        assert d["clusters"][i, -1] == np.mean([io.read_history(r["path"])["diagnostics"]["n_clusters"][-1]
                                                for r in rows if r["model.beta"] == beta])
    assert main(["plot", rows[0]["path"], "--movie", "-o", str(tmp_path / "t.gif"), "--frames", "5"]) == 0
    with Image.open(tmp_path / "t.gif") as im:
        assert im.n_frames == 5


def test_zonal_movie_and_a_table_whose_history_is_gone(runs, tmp_path, capsys):
    import pandas as pd
    from PIL import Image

    z = tmp_path / "z.h5"
    meanfield.run(dict(model=dict(geometry="zonal", dim=8, beta=20.0), grid=dict(modes=32),
                       initial=dict(kind="random", amplitude=1e-6), time=dict(t_end=2.0, dt=0.02),
                       output=dict(interval=0.2)), z, progress=False)
    assert main(["plot", str(z), "--movie", "-o", str(tmp_path / "z.gif"), "--frames", "4"]) == 0
    with Image.open(tmp_path / "z.gif") as im:
        assert im.n_frames == 4
    from meanfield.sweep import write_table

    df = pd.DataFrame([{"model.beta": 2.0, "status": "done", "path": str(tmp_path / "gone.h5")}])
    write_table(df, tmp_path / "t.parquet")
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gone.h5" in err[0] and not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("make,says", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("not parquet"), "is not a sweep table"),
    (lambda p: p.mkdir(), "cannot be read"),
])
def test_plot_of_a_bad_table_is_one_line_naming_it(tmp_path, capsys, make, says):
    import pyarrow  # noqa: F401 - a dependency: a broken install fails here
    table = tmp_path / "t.parquet"
    make(table)
    assert main(["plot", str(table)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("meanfield: error: TABLE: ") and says in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if says == "does not exist" else ["t.parquet"])
