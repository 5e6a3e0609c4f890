"""The perceptron term in `meanfield run` ([perceptron]): a density on S^1 and S^2 and tokens, each against the
second implementation in meanfield.gradients (its own fixed-step Lawson RK4 and right-hand side)."""

import numpy as np
import pytest

import meanfield
from meanfield.domains.circle import Circle
from meanfield.domains.sphere import Sphere
from meanfield.errors import ConfigError
from meanfield.gradients import MMD, DensityDynamics, Problem, ParameterSchedule, TokenDynamics

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
