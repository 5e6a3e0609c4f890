"""Every figure kind checked for what it shows (drawn on a matplotlib Figure, then inspected)."""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import meanfield  # noqa: E402
from meanfield.analysis import diagnostics
from meanfield import io
from meanfield.viz import plot
from meanfield.physics import theory  # noqa: E402
from meanfield.analysis import model_of  # noqa: E402
from meanfield.errors import ConfigError  # noqa: E402


def history(tmp_path, name, **cfg):
    out = tmp_path / f"{name}.h5"
    meanfield.run(cfg, out, progress=False)
    return io.read_history(out)


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    return history(tmp_path_factory.mktemp("p"), "lin", model=dict(beta=9.0, viscosity=0.02), grid=dict(modes=32),
                   initial=dict(amplitude=1e-7, seed=1), time=dict(t_end=8.0, dt=0.01, stepper="etdrk4"),
                   output=dict(interval=0.1))


def draw(h, kind, **kw):
    fig = Figure(figsize=(8, 5))
    plot.draw(h, kind, fig, **kw)
    return fig


def titles(fig):
    return " ".join(ax.get_title() for ax in fig.axes) + (fig._suptitle.get_text() if fig._suptitle else "")


def test_linear_kymograph_shows_the_shape_and_amplitude_of_the_perturbation(linear):
    fig = draw(linear, "kymograph")
    assert r"$\beta = 9$" in titles(fig) and r"$\nu = 0.02$" in titles(fig) and "$K = 32$" in titles(fig)
    main = fig.axes[0]
    (side,) = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    image = main.collections[0].get_array().reshape(linear["time"].size, -1)
    dev = linear["rho"] * 2 * np.pi - 1
    amp = np.max(np.abs(dev), axis=1)
    assert np.allclose(image, dev / amp[:, None])  # each row: the perturbation over its own maximum
    assert np.allclose(side.lines[0].get_xdata(), amp)
    assert any(r"\rho/\bar\rho - 1" in ax.get_ylabel() for ax in fig.axes)  # the colorbar says what it shows


def test_rates_plot_has_every_fit_and_its_residual(linear):
    fig = draw(linear, "rates", model=model_of(linear))
    top, res = fig.axes
    measured = top.lines[1]
    k = np.asarray(measured.get_xdata())
    assert len(k) == 32 and "32 fits" in top.get_legend().get_texts()[1].get_text()
    lam = theory.growth_rates(k, 9.0, "sa", 0.02)
    rel = np.abs(np.asarray(measured.get_ydata()) - lam) / np.abs(lam)
    assert np.allclose(res.lines[0].get_ydata(), np.maximum(rel, 1e-16)) and res.get_yscale() == "log"
    assert top.get_xlim()[1] >= 32  # every measured mode is inside the axes


def test_rates_plot_refuses_a_run_without_a_linear_window(tmp_path):
    h = history(tmp_path, "vm", model=dict(beta=9.0, viscosity=0.05), grid=dict(modes=32),
                initial=dict(kind="von_mises", centers=[1.0], concentrations=[2.0]),
                time=dict(t_end=1.0, dt=0.01), output=dict(interval=0.1))
    with pytest.raises(ConfigError, match="no mode has a linear window"):
        draw(h, "rates", model=model_of(h))


def test_clustering_kymograph_crops_the_flat_phase_and_marks_clusters(tmp_path):
    h = history(tmp_path, "cl", model=dict(beta=25.0), grid=dict(modes=128), initial=dict(amplitude=1e-6, seed=3),
                time=dict(t_end=19.0, dt=0.01, stepper="etdrk4"), output=dict(interval=0.1))
    fig = draw(h, "kymograph")
    ax = fig.axes[0]
    amp = np.max(np.abs(h["rho"] * 2 * np.pi - 1), axis=1)
    start = h["time"][np.argmax(amp > 0.05)]
    assert ax.get_ylim()[0] > 0.5 * h["time"][-1] and ax.get_ylim()[0] < start  # the flat part is cropped
    assert "not shown" in " ".join(t.get_text() for t in ax.texts)
    assert "rho" in fig.axes[1].get_ylabel()


def test_token_kymograph_draws_the_tokens(tmp_path):
    h = history(tmp_path, "tok", model=dict(method="particles", beta=6.0), grid=dict(modes=32),
                particles=dict(n=60, dim=2), time=dict(t_end=2.0, dt=0.05), output=dict(interval=0.5))
    ax = draw(h, "kymograph").axes[0]
    (tokens,) = [c for c in ax.collections if c.get_label() == "tokens"]
    angles = np.mod(np.arctan2(h["positions"][..., 1], h["positions"][..., 0]), 2 * np.pi)
    assert len(tokens.get_offsets()) == angles.size
    assert np.allclose(np.sort(tokens.get_offsets()[:, 0]), np.sort(angles.ravel()))


def test_sphere_plot_is_complete_with_graticule_tokens_and_labels(tmp_path):
    h = history(tmp_path, "sp", model=dict(method="particles", geometry="sphere", beta=4.0), grid=dict(modes=12),
                particles=dict(n=200, dim=3), time=dict(t_end=0.5, dt=0.05), output=dict(interval=0.25))
    fig = draw(h, "sphere")
    ortho, moll = fig.axes[0], fig.axes[1]
    assert len(ortho.lines) == 5 + 6  # 30 degree parallels and meridians
    mesh = moll.collections[0]
    lat = mesh.get_coordinates()[..., 1]
    assert lat.max() == pytest.approx(np.pi / 2) and lat.min() == pytest.approx(-np.pi / 2)  # no hole at the poles
    scatters = [c for c in moll.collections[1:] if len(c.get_offsets())]
    assert len(scatters[0].get_offsets()) == 200
    assert "$S^2$" in titles(fig) and "rho" in fig.axes[-1].get_xlabel()


def test_energy_and_spectrum_and_clusters_show_their_quantities(linear):
    fig = draw(linear, "energy")
    ax = fig.axes[0]
    assert np.allclose(ax.lines[0].get_ydata(), linear["diagnostics"]["energy"])
    assert r"e^{-\beta}" in ax.get_legend().get_texts()[0].get_text()
    fig = draw(linear, "spectrum")
    assert "log_{10}" in fig.axes[1].get_ylabel() and "wavenumber" in fig.axes[0].get_xlabel()
    fig = draw(linear, "clusters")
    assert np.array_equal(fig.axes[0].lines[0].get_ydata(), linear["diagnostics"]["n_clusters"])


def test_mean_overlap_is_the_weighted_mean_over_distinct_pairs():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = rng.random(7)
    pairs = [(i, j) for i in range(7) for j in range(7) if i != j]
    brute = sum(w[i] * w[j] * x[i] @ x[j] for i, j in pairs) / sum(w[i] * w[j] for i, j in pairs)
    assert diagnostics.mean_overlap(x, w) == pytest.approx(brute, rel=1e-13)
    assert diagnostics.mean_overlap(np.tile(x[:1], (4, 1))) == pytest.approx(1.0, abs=1e-15)  # synchronised


def test_random_heads_plot_is_the_mean_overlap_beside_the_law(tmp_path):
    h = history(tmp_path, "layers", model=dict(method="particles", geometry="zonal", beta=1e-6), grid=dict(modes=4),
                particles=dict(n=12, dim=16), initial=dict(kind="random", amplitude=0.0, seed=2),
                attention=dict(heads=2, Q="random", K="random", V="random", resample=True, seed=2),
                time=dict(t_end=0.5, dt=0.01), output=dict(interval=0.1))
    assert plot.resolve_kind(h, "auto") == "overlap"
    ax = draw(h, "overlap").axes[0]
    tokens, law = ax.lines
    x = h["positions"]
    gram = np.einsum("tid,tjd->tij", x, x)
    assert np.allclose(tokens.get_ydata(), (gram.sum((1, 2)) - 12) / (12 * 11), atol=1e-14)
    assert law.get_ydata()[0] == tokens.get_ydata()[0]
    # the law solved independently: rho' = (1/n + (1 - 1/n) rho)(1 - rho)(1 - (2 + rho)/d), small steps of RK4
    r, t, dt = tokens.get_ydata()[0], 0.0, 1e-4
    f = lambda r: (1 / 12 + 11 / 12 * r) * (1 - r) * (1 - (2 + r) / 16)
    while t < 0.5 - 1e-12:
        k1 = f(r); k2 = f(r + dt / 2 * k1); k3 = f(r + dt / 2 * k2); k4 = f(r + dt * k3)  # noqa: E702
        r, t = r + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), t + dt
    assert law.get_ydata()[-1] == pytest.approx(r, rel=1e-8)
    assert "random heads" in titles(ax.figure)


def test_overlap_needs_tokens_and_causal_runs_take_positions(tmp_path, linear):
    with pytest.raises(ConfigError, match=r"^--kind: got 'overlap' for a density run without tokens"):
        plot.save(linear, "overlap", tmp_path / "x.png")
    no_tokens = dict(time=np.zeros(1), attrs={}, positions=np.full((1, 3, 2), np.nan), token_weights=np.zeros((1, 3)))
    with pytest.raises(ConfigError, match=r"^--kind: got 'overlap' for a run with fewer than two live tokens"):
        draw(no_tokens, "overlap")
    assert np.isnan(diagnostics.mean_overlap(np.ones((1, 2))))
    h = history(tmp_path, "causal", model=dict(beta=3.0), grid=dict(modes=8, positions=5),
                attention=dict(causal=True), initial=dict(amplitude=1e-3, seed=1), time=dict(t_end=0.5, dt=0.05),
                output=dict(interval=0.25))
    assert plot.save(h, "auto", tmp_path / "c.png") == "positions" and (tmp_path / "c.png").stat().st_size > 0
    fig = draw(h, "positions")
    bar, right = fig.axes[1].get_position(), fig.axes[2].get_position()
    assert right.x0 - bar.x1 > 0.1  # the first colour bar's label fits between the panels (0.07 overlapped)


def test_few_tokens_on_the_sphere_are_drawn_as_weighted_diracs_without_a_density(tmp_path):
    # three tokens of weights 0.5, 0.3, 0.2: no density field (smoothing would draw each as a wide blob),
    # marker areas proportional to the weights, the count in the title
    x = np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]])
    h = history(tmp_path, "few", model=dict(method="particles", geometry="sphere", beta=4.0), grid=dict(modes=12),
                particles=dict(n=3, dim=3), initial=dict(kind="tokens", positions=x.tolist(), weights=[0.5, 0.3, 0.2]),
                time=dict(t_end=0.1, dt=0.05), output=dict(interval=0.1), longtime=dict(merge_tol=0.0))
    fig = draw(h, "sphere")
    assert not [c for ax in fig.axes for c in ax.collections if type(c).__name__ == "QuadMesh"]
    moll = fig.axes[1]
    (dots,) = [c for c in moll.collections if len(c.get_offsets())]
    w = h["token_weights"][-1]
    assert np.allclose(np.sort(dots.get_sizes()), np.sort(400 * w / w.max()))
    assert "3 tokens (weighted Dirac masses)" in titles(fig)


def test_many_tokens_are_a_faint_sample_over_their_density_estimate(tmp_path):
    h = history(tmp_path, "many", model=dict(method="particles", geometry="sphere", beta=4.0), grid=dict(modes=12),
                particles=dict(n=5000, dim=3), time=dict(t_end=0.1, dt=0.05), output=dict(interval=0.1))
    fig = draw(h, "sphere")
    moll = fig.axes[1]
    (dots,) = [c for c in moll.collections[1:] if len(c.get_offsets())]
    assert len(dots.get_offsets()) <= plot.DOTS and dots.get_alpha() <= 0.3
    assert "5000 tokens (a sample of" in titles(fig) and "smoothed" in fig.axes[-1].get_xlabel()


def test_plot_time_outside_the_snapshots_is_refused_and_inside_is_drawn(linear):
    with pytest.raises(ConfigError, match=r"--time: got 1000, allowed: a time within the history's snapshots, 0 \.\. 8"):
        draw(linear, "kymograph", time=1000.0)
    with pytest.raises(ConfigError, match="--time: got a time for --kind rates"):
        draw(linear, "rates", model=model_of(linear), time=1.0)
    fig = draw(linear, "kymograph", time=4.03)
    i = int(np.argmin(np.abs(linear["time"] - 4.03)))
    profile = fig.axes[-1]
    assert np.allclose(profile.lines[0].get_ydata(), linear["rho"][i] * 2 * np.pi)  # rho / rho_bar at that snapshot
    assert f"t = {linear['time'][i]:.4g}" in profile.get_title()
    marks = [ln for ax in fig.axes for ln in ax.lines if ln.get_label().startswith("--time")]
    assert marks and np.allclose(marks[0].get_ydata(), linear["time"][i])
    for kind in ("energy", "spectrum", "clusters"):
        fig = draw(linear, kind, time=4.03)
        assert any(ln.get_label().startswith("--time") for ax in fig.axes for ln in ax.lines), kind
