"""meanfield.gradients: the transposes (dot-product tests to 1e-12), the gradients against central finite
differences (1e-6 relative; measured 1e-8 to 1e-12), the losses against independent computations, and the
checkpoints' memory."""

import math

import numpy as np
import pytest

from meanfield.domains.circle import Circle
from meanfield.domains.sphere import Sphere, installed_backends
from meanfield.domains.zonal import Zonal
from meanfield.gradients import (KL, MMD, DensityDynamics, Energy, Problem, ParameterSchedule, SlicedWasserstein,
                                 TokenDynamics, Wasserstein)
from meanfield.gradients import adjoints as A
from meanfield.gradients.stepper import _step, _step_back

GEOMETRIES = {"circle": lambda: Circle(20), "zonal3": lambda: Zonal(12, dim=3), "zonal6": lambda: Zonal(10, dim=6),
              **{f"sphere-{b}": (lambda b=b: Sphere(10, backend=b)) for b in installed_backends()}}


def real_field(geo, rng, scale=1.0):
    """Random coefficients of a real field (the imaginary parts a real field does not have are 0)."""
    c = scale * (rng.standard_normal(geo.spectral_shape) + 1j * rng.standard_normal(geo.spectral_shape))
    if geo.name == "circle":
        c[0] = c[0].real
    elif geo.name == "sphere":
        c[geo.m == 0] = c[geo.m == 0].real
    else:
        c = c.real.astype(complex)
    return c


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b))


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_transposes_of_the_transforms(name):
    geo, rng = GEOMETRIES[name](), np.random.default_rng(0)
    c, g = real_field(geo, rng), rng.standard_normal(geo.grid_shape)
    v = rng.standard_normal(geo.grad(c).shape)
    assert rel(A.inner(geo.to_grid(c), g), A.inner(c, A.to_grid_T(geo, g))) < 1e-12
    assert rel(A.inner(geo.to_spectral(g), c), A.inner(g, A.to_spectral_T(geo, c))) < 1e-12
    assert rel(A.inner(geo.grad(c), v), A.inner(c, A.grad_T(geo, v))) < 1e-12
    assert rel(A.inner(geo.div(v), c), A.inner(v, A.div_T(geo, c))) < 1e-12


def mlp_values(rng, d, m=3, intervals=None, scale=0.3):
    shape = () if intervals is None else (intervals,)
    return {"W": scale * rng.standard_normal((*shape, d, m)), "A": rng.standard_normal((*shape, m, d)),
            "b": rng.standard_normal((*shape, m))}


@pytest.mark.parametrize("name", ["circle", "sphere-ducc0"])
def test_a_linear_step_and_its_transpose(name):
    """With attention off the density's dynamics is linear (a perceptron's transport and viscosity), so one
    step is a linear map: <step x, y> = <x, step^T y> holds to round-off."""
    geo, rng = GEOMETRIES[name](), np.random.default_rng(1)
    dyn = DensityDynamics(geo, attention=False, perceptron="tanh")
    p = {"viscosity": 0.1, **mlp_values(rng, geo.dim)}
    x, y = real_field(geo, rng), real_field(geo, rng)
    out, tape = _step(dyn, x, p, 0.05, keep=True)
    back = _step_back(dyn, tape, y, p, 0.05, {})
    assert rel(A.inner(out, y), A.inner(x, back)) < 1e-12


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_usa_right_hand_side_and_its_transpose(name):
    """USA's right-hand side is quadratic in c: its derivative is (N(c + d) - N(c - d)) / 2 exactly."""
    geo, rng = GEOMETRIES[name](), np.random.default_rng(2)
    dyn = DensityDynamics(geo, "usa")
    p = {"beta": 1.7}
    c, d, y = real_field(geo, rng), real_field(geo, rng), real_field(geo, rng)
    jd = (dyn.rhs(c + d, p)[0] - dyn.rhs(c - d, p)[0]) / 2
    back = dyn.rhs_T(dyn.rhs(c, p)[1], y, p, {})
    assert rel(A.inner(jd, y), A.inner(d, back)) < 1e-12


def density_problem(name, variant, rng, mlp=True):
    geo = GEOMETRIES[name]()
    mlp = mlp and geo.name != "zonal"
    c0 = geo.uniform() + 0.0125 * geo.uniform()[0].real * geo.random_perturbation(rng, 4)
    if geo.name == "zonal":
        c0 = c0.real.astype(complex)
    betas = [1.0, 1.4, 1.2] if geo.name == "sphere" else [1.5, 2.5, 2.0]
    values = {"beta": np.array(betas), "viscosity": 0.05, **(mlp_values(rng, geo.dim, intervals=3, scale=0.1)
                                                            if mlp else {})}
    schedule = ParameterSchedule([0, 0.5, 1.0, 1.5], values, scheduled=[k for k in values if k != "viscosity"])
    target = geo.to_grid(geo.uniform() + 0.02 * geo.uniform()[0].real * geo.random_perturbation(np.random.default_rng(9), 2))
    return Problem(DensityDynamics(geo, variant, perceptron="tanh" if mlp else None), schedule, c0, 0.05, KL(target))


def fd_errors(problem, rng, eps=1e-5):
    """Relative error of the gradient's directional derivative against a central difference, per parameter."""
    _, grad = problem.value_and_gradient()
    out = {}
    base = problem.initial
    d = rng.standard_normal(base.shape)
    if np.iscomplexobj(base):
        geo = problem.dynamics.geometry
        d = 1e-2 * real_field(geo, rng)
        d.flat[0] = 0  # keep the mass
    fd = (problem.value(initial=base + eps * d) - problem.value(initial=base - eps * d)) / (2 * eps)
    out["initial"] = rel(fd, A.inner(grad["initial"], d))
    s = problem.schedule
    for name, v in s.values.items():
        d = rng.standard_normal(v.shape)
        fd = (problem.value(schedule=s.replace(**{name: v + eps * d}))
              - problem.value(schedule=s.replace(**{name: v - eps * d}))) / (2 * eps)
        out[name] = rel(fd, float(np.sum(grad[name] * d)))
    return out


@pytest.mark.parametrize("variant", ["sa", "usa"])
@pytest.mark.parametrize("name", ["circle", "sphere-ducc0", "zonal3", "zonal6"])
def test_density_gradients_match_finite_differences(name, variant):
    rng = np.random.default_rng(3)
    errors = fd_errors(density_problem(name, variant, rng), rng)
    assert set(errors) >= {"initial", "beta", "viscosity"}
    assert max(errors.values()) < 1e-6, errors


def token_problem(variant, loss_kind, rng, n=6, d=3, heads=2):
    w = np.full(n, 1 / n)
    x0 = rng.standard_normal((n, d))
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    y = rng.standard_normal((n, d))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    values = {"beta": np.array([1.0, 2.0]), **{k: rng.standard_normal((2, heads, d, d)) / 2 for k in "QKV"},
              **mlp_values(rng, d, intervals=2, scale=1.0)}
    loss = {"mmd": MMD((y, w)), "sliced": SlicedWasserstein((y, w)), "w2": Wasserstein((y, w)),
            "energy": Energy(3.0)}[loss_kind]
    return Problem(TokenDynamics(w, variant, perceptron="tanh"), ParameterSchedule([0, 0.5, 1], values, scheduled=list(values)),
                   x0, 0.05, loss)


@pytest.mark.parametrize("loss", ["mmd", "sliced", "w2", "energy"])
@pytest.mark.parametrize("variant", ["sa", "usa"])
def test_token_gradients_match_finite_differences(variant, loss):
    rng = np.random.default_rng(4)
    errors = fd_errors(token_problem(variant, loss, rng), rng)
    assert set(errors) == {"initial", "beta", "Q", "K", "V", "W", "A", "b"}
    assert max(errors.values()) < 1e-6, errors


def test_gradients_are_deterministic_and_checkpoints_change_nothing():
    """Two gradients are bitwise equal; so is one whose backward pass recomputes from every step's checkpoint."""
    rng = np.random.default_rng(5)
    problem = density_problem("circle", "sa", rng)
    v1, g1 = problem.value_and_gradient()
    v2, g2 = problem.value_and_gradient()
    assert v1 == v2 and all(np.array_equal(g1[k], g2[k]) for k in g1)
    solve = problem.solve()
    solve.segment, solve.checkpoints = 1, {}
    u = problem.initial
    from meanfield.gradients.stepper import _step as step

    for i, (t, h, k) in enumerate(solve.plan.steps):  # every step a checkpoint: no recomputation in segments
        solve.checkpoints[i] = u
        u, _ = step(problem.dynamics, u, problem.schedule.at(k), h, keep=False)
    _, grad_target = problem.losses[1.5](solve.final, problem.dynamics)
    g0, pbar = solve.backward({len(solve.plan.steps): grad_target})
    assert np.array_equal(g0, g1["initial"]) and all(np.array_equal(pbar[k], g1[k]) for k in pbar)


def test_memory_grows_like_the_square_root_of_the_steps():
    geo = Circle(16)
    problem = Problem(DensityDynamics(geo, "sa"), ParameterSchedule([0, 10], {"beta": 2.0}), geo.uniform() * 1.0,
                      0.01, MMD(geo.uniform()))
    solve = problem.solve()
    n = len(solve.plan.steps)
    assert n == 1000 and solve.segment == 32 and len(solve.checkpoints) == 32  # 0, 32, ..., 992
    g = solve.backward({n: np.ones(geo.spectral_shape)})[0]
    assert solve.rhs_calls == 8 * n  # the forward pass and one recomputation: nothing more
    # with the adjoint announced, the forward pass keeps the last segment's stages (steps 992 .. 999): not recomputed
    solve = problem.solve(adjoint=True)
    assert len(solve.tapes) == 8
    assert np.array_equal(solve.backward({n: np.ones(geo.spectral_shape)})[0], g)
    assert solve.rhs_calls == 8 * n - 4 * 8


# --- the losses against independent computations ---------------------------------------------------------
def test_kl_of_two_von_mises_densities():
    """KL(vM(k1, 0) | vM(k2, mu)) = A(k1) (k1 - k2 cos mu) + log(I0(k2) / I0(k1)), A = I1 / I0."""
    from scipy.special import i0, i1

    geo = Circle(64)
    k1, k2, mu = 2.0, 1.0, 0.7
    c = geo.von_mises(0.0, k1)
    target = geo.to_grid(geo.von_mises(mu, k2))
    value, _ = KL(target)(c, DensityDynamics(geo))
    exact = i1(k1) / i0(k1) * (k1 - k2 * math.cos(mu)) + math.log(i0(k2) / i0(k1))
    assert rel(value, exact) < 1e-12


def test_density_mmd_equals_its_double_integral():
    geo, rng = Circle(24), np.random.default_rng(6)
    a = geo.uniform() + 0.01 * geo.random_perturbation(rng, 5)
    b = geo.uniform() + 0.01 * geo.random_perturbation(rng, 5)
    value, _ = MMD(b, kappa=3.0)(a, DensityDynamics(geo))
    r = geo.to_grid(a - b)
    kernel = np.exp(3.0 * (np.cos(geo.theta[:, None] - geo.theta[None, :]) - 1))
    direct = float(geo.weights * r @ kernel @ (geo.weights * r))
    assert rel(value, direct) < 1e-10


def test_token_wasserstein_on_the_circle_matches_pot_circle_solver():
    """The plan from the geodesic cost matrix (ot.emd) against POT's own circle algorithm
    (ot.wasserstein_circle, which sorts on [0, 1) with periodic cost): W_1 and W_2^2."""
    import ot

    rng = np.random.default_rng(7)
    a, b = rng.uniform(0, 2 * math.pi, 9), rng.uniform(0, 2 * math.pi, 9)
    x, y = np.stack([np.cos(a), np.sin(a)], 1), np.stack([np.cos(b), np.sin(b)], 1)
    w = np.full(9, 1 / 9)
    dyn = TokenDynamics(w)
    for p in (1, 2):
        value, _ = Wasserstein((y, w), p=p)(x, dyn)
        theirs = float(ot.wasserstein_circle(a / (2 * math.pi), b / (2 * math.pi), p=p)[0]) * (2 * math.pi) ** p  # W_p^p
        assert rel(value, theirs) < 1e-9


def test_density_wasserstein_on_the_circle():
    """Densities on the circle, against two other methods on the grid's masses: POT's circle algorithm
    (ot.wasserstein_circle: W_1 and W_2^2) and the optimal plan of the geodesic cost (ot.emd2: W_1, which we
    compute in closed form); a density turned by k grid steps is at most |delta| (W_1) and delta^2 (W_2^2)
    away (the rotation is one plan)."""
    import ot

    geo = Circle(32, 2.0)
    dyn = DensityDynamics(geo)
    u = geo.theta / (2 * math.pi)
    dist = np.abs(u[:, None] - u[None, :])
    dist = 2 * math.pi * np.minimum(dist, 1 - dist)
    rng = np.random.default_rng(11)
    for _ in range(3):
        centers, kappas = rng.uniform(0, 2 * math.pi, 2), rng.uniform(0.5, 4, 3)
        c = 0.6 * geo.von_mises(centers[0], kappas[0]) + 0.4 * geo.von_mises(centers[1], kappas[1])
        target = geo.to_grid(geo.von_mises(rng.uniform(0, 2 * math.pi), kappas[2]))
        rho = geo.to_grid(c)
        a, b = rho / rho.sum(), target / target.sum()
        for p, tol in ((1, 1e-12), (2, 1e-9)):  # POT's W_2 is a binary search to its default tolerance
            theirs = float(np.ravel(ot.wasserstein_circle(u, u, a, b, p=p))[0]) * (2 * math.pi) ** p
            assert rel(Wasserstein(target, p)(c, dyn)[0], theirs) < tol
        assert rel(Wasserstein(target, 1)(c, dyn)[0], float(ot.emd2(a, b, dist))) < 1e-12
        for k in (3, -5):
            delta = abs(k) * 2 * math.pi / geo.npoints
            assert Wasserstein(np.roll(rho, k), 1)(c, dyn)[0] <= delta * (1 + 1e-12)
            assert Wasserstein(np.roll(rho, k), 2)(c, dyn)[0] <= delta**2 * (1 + 1e-12)


@pytest.mark.parametrize("p", [1, 2])
def test_density_wasserstein_gradients_match_finite_differences(p):
    rng = np.random.default_rng(3)
    problem = density_problem("circle", "sa", rng)
    target = next(iter(problem.losses.values())).target
    problem = Problem(problem.dynamics, problem.schedule, problem.initial, problem.dt, Wasserstein(target, p))
    errors = fd_errors(problem, rng)
    assert set(errors) == {"initial", "beta", "viscosity", "W", "A", "b"}
    assert max(errors.values()) < 1e-6, errors


def test_density_w2_refuses_a_negative_density():
    geo = Circle(16)
    c = geo.uniform() + 0.5 * geo.mode_function((1,))  # 1/(2 pi) + cos(theta)/2 < 0 near pi
    with pytest.raises(FloatingPointError, match="negative on the grid"):
        Wasserstein(geo.to_grid(geo.uniform()), 2)(c, DensityDynamics(geo))


def test_sliced_wasserstein_matches_pot():
    import ot

    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    loss = SlicedWasserstein((y, None), projections=50, seed=3)
    value, _ = loss(x, TokenDynamics(np.full(12, 1 / 12)))
    theirs = ot.sliced_wasserstein_distance(x, y, n_projections=50, projections=loss.theta.T, p=2) ** 2
    assert rel(value, float(theirs)) < 1e-12


def test_density_energy_is_the_models():
    from meanfield.physics.model import AttentionModel

    geo, rng = Sphere(12, backend="ducc0"), np.random.default_rng(9)
    c = geo.uniform() + 0.02 * geo.random_perturbation(rng, 4)
    value, _ = Energy(3.0)(c, DensityDynamics(geo))
    assert rel(-value, AttentionModel(geo, "usa", 3.0).energy_scaled(c)) < 1e-13


# --- refusals -------------------------------------------------------------------------------------------
def test_bad_input_is_refused_in_one_line():
    geo = Circle(8)
    with pytest.raises(ValueError, match="schedule times: got"):
        ParameterSchedule([1, 0], {"beta": 1.0})
    with pytest.raises(ValueError, match="schedule value 'beta': got shape"):
        ParameterSchedule([0, 1, 2], {"beta": [1.0]}, scheduled=["beta"])
    with pytest.raises(ValueError, match="activation: got 'gelu'"):
        DensityDynamics(geo, perceptron="gelu")
    with pytest.raises(ValueError, match="perceptron field is not zonal"):
        DensityDynamics(Zonal(8), perceptron="relu")
    with pytest.raises(ValueError, match="KL target"):
        KL(np.zeros(geo.grid_shape))
    with pytest.raises(ValueError, match="loss time: got 5"):
        Problem(DensityDynamics(geo), ParameterSchedule([0, 1], {"beta": 1.0}), geo.uniform(), 0.1, {5.0: MMD(geo.uniform())})
