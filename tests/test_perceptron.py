"""The perceptron term in `meanfield run` ([perceptron]): a density on S^1 and S^2 and tokens, each against the
second implementation in meanfield.gradients (its own fixed-step Lawson RK4 and right-hand side)."""

import numpy as np
import pytest

import meanfield
from meanfield.domains.circle import Circle
from meanfield.domains.sphere import Sphere
from meanfield.errors import ConfigError
from meanfield.gradients import MMD, DensityDynamics, ParameterSchedule, Problem, TokenDynamics

W = [[0.15, -0.1, 0.05], [0.03, 0.12, -0.2], [0.06, 0.03, -0.1]]
A = [[1.0, 0.5, 0.4], [-0.7, 1.2, 0.4], [0.3, -0.9, 0.4]]
B = [0.1, -0.2, 0.3]


@pytest.mark.parametrize("geometry", ["circle", "sphere"])
def test_a_density_run_with_a_perceptron_matches_the_adjoint_solver(geometry):
    """The run (dop853 at rtol 1e-11, the model's right-hand side) and the gradients' solver (Lawson RK4,
    dt = 0.002, its own right-hand side) agree to 1e-10 at t = 1 (measured 2e-13 and 1e-13) while the density
    moves by 14 % and 25 %."""
    d = 2 if geometry == "circle" else 3
    Wd, Ad = W[:d], [r[:d] for r in A]
    center = [0.5] if d == 2 else [[0.0, 0.6, 0.8]]
    cfg = meanfield.load_config(meanfield.example("linear"), [
        f"model.geometry='{geometry}'", "model.beta=4.0", "model.viscosity=0.01", "grid.modes=32",
        "initial.kind='von_mises'", f"initial.centers={center}", "initial.concentrations=[2.0]", "time.t_end=1.0",
        "time.adaptive=true", "time.rtol=1e-11", "time.atol=1e-14", "time.stepper='dop853'", "output.interval=1.0",
        "perceptron.activation='tanh'", f"perceptron.W={Wd}", f"perceptron.A={Ad}", f"perceptron.b={B}"])
    run = meanfield.solve(cfg).to_dataset()["rho_hat"].values[-1]
    geo = Circle(32) if d == 2 else Sphere(32, backend="ducc0")
    c0 = geo.von_mises(center[0], 2.0)
    values = {"beta": 4.0, "viscosity": 0.01, "W": np.array(Wd), "A": np.array(Ad), "b": np.array(B)}
    other = Problem(DensityDynamics(geo, "sa", perceptron="tanh"), ParameterSchedule([0, 1], values), c0, 0.002,
                    MMD(geo.uniform())).solve().final
    scale = np.max(np.abs(other))
    assert np.max(np.abs(run - other)) / scale < 1e-10
    assert np.max(np.abs(other - c0)) / np.max(np.abs(c0)) > 0.1  # the perceptron moved it


def test_a_token_run_with_a_perceptron_matches_the_adjoint_solver(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 12, 3
    x0 = rng.standard_normal((n, d))
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    Wt, At, bt = 0.3 * rng.standard_normal((d, 4)), rng.standard_normal((4, d)), rng.standard_normal(4)
    cfg = meanfield.load_config(meanfield.example("particles"), [
        "particles.n=12", "particles.integrator='dop853'", "particles.field='direct'", "model.beta=2.0",
        "initial.kind='tokens'", f"initial.positions={x0.tolist()}", "initial.weights=[]", "initial.centers=[]",
        "initial.concentrations=[]", "time.t_end=1.0", "time.adaptive=true", "time.rtol=1e-12", "time.atol=1e-14",
        "output.interval=1.0", "longtime.merge_tol=0.0", "perceptron.activation='tanh'",
        f"perceptron.W={Wt.tolist()}", f"perceptron.A={At.tolist()}", f"perceptron.b={bt.tolist()}"])
    run = meanfield.solve(cfg).to_dataset()["positions"].values[-1]
    values = {"beta": 2.0, **{k: np.eye(3)[None] for k in "QKV"}, "W": Wt, "A": At, "b": bt}
    w = np.full(n, 1 / n)
    other = Problem(TokenDynamics(w, "sa", perceptron="tanh"), ParameterSchedule([0, 1], values), x0, 0.002,
                    MMD((x0, w))).solve().final
    assert np.max(np.abs(run - other)) < 1e-10 and np.max(np.abs(other - x0)) > 0.1


@pytest.mark.parametrize("sets, message", [
    (["perceptron.activation='gelu'"], "perceptron.activation: got 'gelu'"),
    (["perceptron.W=[[1.0]]"], "perceptron.W: got [[1.0]], allowed: nothing while perceptron.activation = 'none'"),
    (["perceptron.activation='relu'", "perceptron.W=[[1.0, 2.0]]"], "perceptron.W: got [[1.0, 2.0]], allowed: a "
     "finite 2 x m matrix"),
    (["perceptron.activation='relu'", "perceptron.W=[[1.0], [2.0]]", "perceptron.A=[[1.0, 0.0]]",
      "perceptron.b=[0.0, 1.0]"], "perceptron.b: got [0.0, 1.0], allowed: a list of 1 finite numbers"),
    (["model.geometry='zonal'", "model.dim=4", "perceptron.activation='relu'"], "perceptron.activation: got 'relu', "
     "allowed: 'none' for a zonal density"),
])
def test_bad_perceptron_keys_are_refused(sets, message):
    with pytest.raises(ConfigError) as info:
        meanfield.load_config(meanfield.example("linear"), sets)
    assert message in str(info.value) and "\n" not in str(info.value)


# --- [schedule]: parameters constant on layers ---------------------------------------------------------------
LW = [[[0.15, -0.1], [0.03, 0.12]], [[-0.1, 0.2], [0.1, -0.05]], [[0.05, 0.05], [-0.2, 0.1]]]
LA = [[[1.0, 0.5], [-0.7, 1.2]], [[0.3, -0.9], [1.1, 0.2]], [[0.5, 0.5], [-0.5, 0.8]]]
LB = [[0.1, -0.2], [0.3, 0.0], [-0.1, 0.2]]
BETAS = [4.0, 1.0, 8.0]


def layered_circle(extra=()):
    return meanfield.load_config(meanfield.example("linear"), [
        "model.geometry='circle'", "model.beta=4.0", "model.viscosity=0.01", "grid.modes=32",
        "initial.kind='von_mises'", "initial.centers=[0.5]", "initial.concentrations=[2.0]", "time.t_end=1.5",
        "time.adaptive=true", "time.rtol=1e-11", "time.atol=1e-14", "time.stepper='dop853'", "output.interval=0.75",
        "perceptron.activation='tanh'", f"perceptron.W={LW[0]}", f"perceptron.A={LA[0]}", f"perceptron.b={LB[0]}",
        "schedule.times=[0.5, 1.0, 1.5]", f"schedule.beta={BETAS}", f"schedule.W={LW}", f"schedule.A={LA}",
        f"schedule.b={LB}", *extra])


def test_a_layered_density_run_matches_the_adjoint_solver():
    """Three layers of (beta, W, A, b) on the circle: the run stops at each layer's end (a snapshot there) and
    agrees with the gradients' scheduled solve to 1e-10 at every end (measured 5e-14 .. 9e-13)."""
    ds = meanfield.solve(layered_circle()).to_dataset()
    assert np.allclose(ds.time.values, [0, 0.5, 0.75, 1.0, 1.5])
    geo = Circle(32)
    values = {"beta": np.array(BETAS), "viscosity": 0.01, "W": np.array(LW), "A": np.array(LA), "b": np.array(LB)}
    marks = {t: MMD(geo.uniform()) for t in (0.5, 1.0, 1.5)}
    s = Problem(DensityDynamics(geo, "sa", perceptron="tanh"),
                ParameterSchedule([0, 0.5, 1.0, 1.5], values, scheduled=["beta", "W", "A", "b"]),
                geo.von_mises(0.5, 2.0), 0.002, marks).solve()
    for t in (0.5, 1.0, 1.5):
        i = int(np.argmin(np.abs(ds.time.values - t)))
        assert np.max(np.abs(ds.rho_hat.values[i] - s.at(t))) / np.max(np.abs(s.at(t))) < 1e-10, t


def test_a_layered_run_resumed_mid_layer_is_the_uninterrupted_one():
    from meanfield.simulation.simulation import Simulation

    cfg = layered_circle()
    whole = Simulation(cfg)
    whole.run()
    first = Simulation(cfg)
    while first.t < 0.75:  # into the second layer (beta = 1), stepping by hand: the layers switch all the same
        first.step(0.75)
    assert first.t == 0.75 and first._layer == 1
    point = first.resume_point()
    second = Simulation(cfg)
    second.check_point(point)
    second.restore(point)
    second.run()
    assert second.t == whole.t == 1.5
    assert np.max(np.abs(second._phase.coefficients() - whole._phase.coefficients())) < 1e-12


def test_a_layered_token_run_matches_the_adjoint_solver():
    """Tokens on S^2 with beta, Q, K, V and the perceptron per layer (two layers)."""
    rng = np.random.default_rng(1)
    n, d = 10, 3
    x0 = rng.standard_normal((n, d))
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    Qs, Ks, Vs = (np.eye(3) + 0.3 * rng.standard_normal((2, 3, 3)) for _ in range(3))
    Ws, As, bs = 0.3 * rng.standard_normal((2, d, 2)), rng.standard_normal((2, 2, d)), rng.standard_normal((2, 2))
    cfg = meanfield.load_config(meanfield.example("particles"), [
        "particles.n=10", "particles.integrator='dop853'", "particles.field='direct'", "model.beta=2.0",
        "initial.kind='tokens'", f"initial.positions={x0.tolist()}", "initial.weights=[]", "initial.centers=[]",
        "initial.concentrations=[]", "time.t_end=1.0", "time.adaptive=true", "time.rtol=1e-12", "time.atol=1e-14",
        "output.interval=1.0", "longtime.merge_tol=0.0", "perceptron.activation='softplus'",
        f"perceptron.W={Ws[0].tolist()}", f"perceptron.A={As[0].tolist()}", f"perceptron.b={bs[0].tolist()}",
        "schedule.times=[0.4, 1.0]", "schedule.beta=[2.0, 5.0]", f"schedule.Q={Qs.tolist()}",
        f"schedule.K={Ks.tolist()}", f"schedule.V={Vs.tolist()}", f"schedule.W={Ws.tolist()}",
        f"schedule.A={As.tolist()}", f"schedule.b={bs.tolist()}"])
    run = meanfield.solve(cfg).to_dataset()["positions"].values[-1]
    values = {"beta": np.array([2.0, 5.0]), "Q": Qs[:, None], "K": Ks[:, None], "V": Vs[:, None], "W": Ws, "A": As,
              "b": bs}
    w = np.full(n, 1 / n)
    other = Problem(TokenDynamics(w, "sa", perceptron="softplus"),  # smooth: ReLU's kinks cost RK4 its order
                    ParameterSchedule([0, 0.4, 1.0], values, scheduled=list(values)), x0, 0.001,
                    MMD((x0, w))).solve().final
    assert np.max(np.abs(run - other)) < 1e-9 and np.max(np.abs(other - x0)) > 0.1


@pytest.mark.parametrize("sets, message", [
    (["schedule.beta=[1.0]"], "schedule.beta: got [1.0], allowed: nothing without schedule.times"),
    (["schedule.times=[2.0, 1.0]"], "schedule.times: got [2.0, 1.0], allowed: at most 100000 increasing times"),
    (["schedule.times=[1.0, 2.0]", "schedule.beta=[1.0]"], "schedule.beta: got [1.0], allowed: one value per layer"),
    (["schedule.times=[1.0, 2.0]", "schedule.beta=[1.0, -3.0]"], "schedule, layer 1 (until t = 2): model.beta: got "
     "-3.0"),
    (["schedule.times=[1.0, 2.0]", "longtime.handoff='tokens'", "model.viscosity=0.0"], "schedule.times: got [1.0, 2.0], allowed: [] with "
     "longtime.handoff = 'tokens'"),
])
def test_bad_schedules_are_refused(sets, message):
    with pytest.raises(ConfigError) as info:
        meanfield.load_config(meanfield.example("linear"), ["time.t_end=5.0", *sets])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_figure_titles_name_the_perceptron_and_the_layers(tmp_path):
    from meanfield.io import read_history
    from meanfield.viz.plot import parameters

    meanfield.run(layered_circle(["time.t_end=1.0", "schedule.times=[0.5, 1.0]", f"schedule.beta={BETAS[:2]}",
                                  f"schedule.W={LW[:2]}", f"schedule.A={LA[:2]}", f"schedule.b={LB[:2]}"]),
                  tmp_path / "l.h5")
    title = parameters(read_history(tmp_path / "l.h5"))
    assert "perceptron (tanh, 2 units)" in title and "per layer (2 layers)" in title


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "softplus"])
def test_a_gradient_perceptron_has_a_potential(name):
    """W = A^T diag(c) makes W sigma(A x + b) = grad Phi: Phi's central differences against the field (a unit
    with a_k = 0 adds a constant vector, the gradient of a linear function); any other W has no potential."""
    from meanfield.physics.perceptron import PerceptronField

    rng = np.random.default_rng(5)
    A, c, b = rng.standard_normal((4, 3)), rng.standard_normal(4), rng.standard_normal(4)
    W = A.T * c
    A[2], W[:, 2] = 0.0, rng.standard_normal(3)
    field = PerceptronField(name, W, A, b)
    assert field.gradient_weights() is not None
    x, eps = 2 * rng.standard_normal((6, 3)), 1e-6
    grad = np.stack([(field.potential(x + eps * e) - field.potential(x - eps * e)) / (2 * eps) for e in np.eye(3)],
                    axis=1)
    assert np.max(np.abs(grad - field.ambient(x))) < 1e-8
    assert PerceptronField(name, rng.standard_normal((3, 4)), A, b).gradient_weights() is None


def _pushes_from_the_pole(d):
    """Phi = -1.5 log cosh(2 x_d) + 0.2 log cosh(x_1 + 0.1): mass leaves the pole x_d = 1, against clustering."""
    A = np.zeros((2, d))
    A[0, -1], A[1, 0] = 2.0, 1.0
    c = np.array([-1.5, 0.2])
    return ["model.variant='usa'", "model.beta=1.0", "model.viscosity=0.0", "perceptron.activation='tanh'",
            f"perceptron.W={(A.T * c).tolist()}", f"perceptron.A={A.tolist()}", "perceptron.b=[0.0, 0.1]"]


@pytest.mark.parametrize("method", ["density", "particles"])
def test_usa_free_energy_with_a_gradient_perceptron_never_decreases(tmp_path, method):
    """USA with a gradient perceptron grad Phi is the gradient flow of F = E + int Phi rho: meanfield info checks F
    (and it holds: no decrease) while the energy E alone falls by more than 10 % (the perceptron spreads the
    mass against clustering), and F with the potential's sign flipped falls too. SA with a perceptron has no such
    structure: the report says so and checks nothing."""
    import h5py

    if method == "density":
        cfg = meanfield.load_config(meanfield.example("linear"), [
            *_pushes_from_the_pole(2), "grid.modes=128", "initial.kind='von_mises'", "initial.centers=[1.5707963]",
            "initial.concentrations=[3.0]", "time.t_end=0.3", "output.interval=0.02"])
    else:
        cfg = meanfield.load_config(meanfield.example("particles"), [
            *_pushes_from_the_pole(3), "particles.n=200", "time.t_end=2.0", "output.interval=0.1",
            "initial.centers=[[0.0, 0.0, 1.0]]", "initial.concentrations=[10.0]", "initial.weights=[1.0]"])
    out = tmp_path / "o.h5"
    meanfield.run(cfg, out, progress=False)
    report = meanfield.check(out)
    checked = [c for c in report.checks if "free energy E + int Phi non-decreasing" in c.text]
    assert len(checked) == 1 and checked[0].ok and report.ok
    with h5py.File(out) as f:
        E, F = f["diagnostics/energy"][:], f["diagnostics/free_energy"][:]
    assert np.min(np.diff(F)) > 0
    assert E[-1] < 0.9 * E[0]
    assert np.min(np.diff(E - (F - E))) < 0



def test_sa_with_a_perceptron_reports_no_energy_check(tmp_path):
    cfg = meanfield.load_config(meanfield.example("particles"), [
        *_pushes_from_the_pole(3), "model.variant='sa'", "particles.n=50", "time.t_end=0.6", "output.interval=0.2"])
    out = tmp_path / "o.h5"
    meanfield.run(cfg, out, progress=False)
    report = meanfield.check(out)
    assert not [c for c in report.checks if "energy" in c.text]
    assert ("energy", "not checked: the perceptron term is not a gradient of the energy (SA)") in report.lines
