"""nGPT for the density (particles.update = "ngpt" in a density run): X = alpha P_x A / |A|, checked against the
token field of the density's quadrature atoms (a second method), the linear growth rates against the theory
(SA's times alpha I_{d/2-1} / I_{d/2}), SA = USA, the energy's monotonicity, and the config's refusals."""

import math

import numpy as np
import pytest

import meanfield
from meanfield.analysis.rates import measured_rates
from meanfield.domains import Circle, Sphere
from meanfield.errors import ConfigError
from meanfield.physics import theory
from meanfield.physics.model import AttentionModel
from meanfield.tokens import TokenModel


def _bumps(g, dim):
    """A smooth, far-from-uniform density: two von Mises bumps and the uniform floor."""
    if dim == 2:
        c = 0.6 * g.von_mises(0.3, 3.0) + 0.3 * g.von_mises(2.5, 6.0)
    else:
        c = 0.6 * g.von_mises([1.0, 0.2, 0.3], 3.0) + 0.3 * g.von_mises([-0.2, 1.0, -0.5], 6.0)
    return c + 0.1 * g.uniform()


@pytest.mark.parametrize("variant", ["sa", "usa"])
@pytest.mark.parametrize("dim", [2, 3])
def test_ngpt_density_field_is_the_tokens_field(dim, variant):
    """The density's nGPT velocity on its grid equals, to 1e-12, the nGPT velocity of tokens placed at the grid's
    quadrature nodes with the density's quadrature weights (the token code's direct sums, own terms included):
    two methods, one field; SA and USA give the same field (the factor 1 / psi cancels in A / |A|)."""
    beta, alpha = 4.0, 0.3
    g = Circle(24) if dim == 2 else Sphere(16, backend="ducc0")
    c = _bumps(g, dim)
    X = AttentionModel(g, variant, beta, update="ngpt", alpha=alpha).velocity(c)  # (components, grid...)
    nodes, w, rho = g.quadrature(c)
    tokens = TokenModel(w * rho, beta, variant, dim, update="ngpt", alpha=alpha).velocity(nodes)
    frame = g.tangent_frame()  # (components, N, dim)
    want = np.einsum("cnd,nd->cn", frame, tokens)
    got = X.reshape(X.shape[0], -1)
    assert np.max(np.abs(got - want)) < 1e-12 * np.max(np.abs(want))
    assert np.max(np.linalg.norm(tokens, axis=1)) < alpha  # |X| = alpha |P_x A| / |A| < alpha
    other = AttentionModel(g, "usa" if variant == "sa" else "sa", beta, update="ngpt", alpha=alpha).velocity(c)
    assert np.max(np.abs(other - X)) < 1e-13 * np.max(np.abs(X))


def test_ngpt_rates_are_sa_rates_over_the_uniform_field():
    """theory: nGPT's rates are SA's times alpha I_{d/2-1}(beta) / I_{d/2}(beta) (viscosity apart)."""
    for dim, beta in ((2, 9.0), (3, 20.0), (5, 3.0)):
        l = np.arange(0, 12)
        sa = theory.growth_rates(l, beta, "sa", 0.0, dim)
        ng = theory.growth_rates(l, beta, "usa", 0.0, dim, update="ngpt", alpha=0.2)
        ratio = 0.2 / float(theory.kernel_ratio(1, beta, dim))
        assert np.allclose(ng, ratio * sa, rtol=1e-14, atol=0)


@pytest.mark.parametrize("geometry", ["circle", "sphere", "zonal"])
def test_ngpt_density_grows_at_the_theory_rates(geometry, tmp_path):
    """A run from a perturbation of 1e-7 up to 1e-3: every mode with a linear window grows at the nGPT theory's
    rate to 1e-5 (``meanfield rates``' reader: the fit measures the full right-hand side), not at post-LN's."""
    dim = {"circle": 2, "sphere": 3, "zonal": 5}[geometry]
    top = float(np.max(theory.growth_rates(np.arange(1, 20), 9.0, "sa", 0.0, dim, update="ngpt", alpha=0.5)))
    cfg = {"model": {"geometry": geometry, "beta": 9.0, **({"dim": 5} if geometry == "zonal" else {})},
           "particles": {"update": "ngpt", "alpha": 0.5},
           "grid": {"modes": 16 if geometry == "circle" else 12}, "initial": {"amplitude": 1e-7, "seed": 2},
           "time": {"t_end": round(math.log(1e4) / top, 1), "dt": 0.02}, "output": {"interval": 0.2}}
    meanfield.run(cfg, tmp_path / "r.h5", progress=False)
    table = measured_rates(tmp_path / "r.h5")
    assert (table.update, table.alpha) == ("ngpt", 0.5)
    rows = table.measured
    modes = [r.mode[0] for r in rows]
    lam = theory.growth_rates(modes, 9.0, "sa", 0.0, dim, update="ngpt", alpha=0.5)
    post = theory.growth_rates(modes, 9.0, "sa", 0.0, dim)
    assert len(rows) >= 3 and np.allclose([r.theory for r in rows], lam, rtol=1e-14, atol=0)
    assert max(abs(r.measured - l) / abs(l) for r, l in zip(rows, lam)) < 1e-5
    assert np.min(np.abs(lam - post) / np.abs(post)) > 0.3  # not post-LN's rates (by 37 % and more)


def test_ngpt_density_energy_never_decreases():
    """dE/dt = alpha int rho |grad psi|^2 / |A| >= 0: a clustering run's energy rises (10 % by t = 9) and never
    falls; its recorded rate is >= 0 and integrates to the energy's change (trapezoids, to 1 %)."""
    cfg = {"model": {"geometry": "circle", "beta": 9.0}, "particles": {"update": "ngpt", "alpha": 1.0},
           "grid": {"modes": 64}, "initial": {"amplitude": 1e-3, "seed": 1},
           "time": {"t_end": 9.0, "dt": 0.05}, "output": {"interval": 0.25}}
    res = meanfield.solve(cfg)
    e, rate, t = res["diagnostics"]["energy"], res["diagnostics"]["energy_rate"], res["time"]
    assert e[-1] > 1.05 * e[0]
    assert np.all(np.diff(e) >= 0) and np.all(rate >= 0)
    assert abs(np.trapezoid(rate, t) / (e[-1] - e[0]) - 1) < 0.01


@pytest.mark.parametrize("extra,match", [
    ({"particles": {"update": "pre-ln"}}, r"^particles\.update: got 'pre-ln', allowed: 'post-ln' \| 'ngpt' for a density"),
    ({"particles": {"update": "ngpt"}, "attention": {"Q": "random"}}, r"^attention\.Q: got 'random', allowed: 'identity'"),
    ({"particles": {"update": "ngpt"}, "attention": {"causal": True}}, r"^attention\.(Q|causal): got"),
    ({"particles": {"update": "ngpt"}, "longtime": {"handoff": "tokens"}}, r"^longtime\.handoff: got 'tokens', allowed: 'none'"),
])
def test_density_updates_refused(extra, match):
    cfg = {"model": {"geometry": "circle", "beta": 4.0}, "time": {"t_end": 0.1}, **extra}
    with pytest.raises(ConfigError, match=match):
        meanfield.solve(cfg)
