"""The catalogue can fail: deliberately broken solvers, each caught by a case that passes on the real one."""

import pytest

from meanfield.domains.circle import Circle
from meanfield.physics.model import AttentionModel
from meanfield.validate import measure


def test_a_flux_off_by_1e_3_fails_the_linear_rates(monkeypatch):
    """The runs of linear-circle-all-modes step the full right-hand side explicitly, so the rates come out of the
    flux: scaling it by 1.001 moves every growing mode's rate by 1e-3, ten times the case's tolerance.  (With ETDRK4, which
    integrates the linear operator exactly, the rates would not have moved.)"""
    assert measure("linear-circle-all-modes", quick=True).verdict == "pass"
    real = AttentionModel.transport
    monkeypatch.setattr(AttentionModel, "transport", lambda self, mu, f: 1.001 * real(self, mu, f))
    broken = measure("linear-circle-all-modes", quick=True)
    assert broken.verdict == "fail"
    # the growing modes move by 1e-3: the rate reader (measure_growth_rates) reads none of them
    # (22 of 32 modes read, the decaying ones, whose rates the viscosity dominates)
    assert broken.failed_conditions == ["all 32 modes measured"]
    assert broken.numbers["modes_measured"] <= 24


def test_a_hand_off_quadrature_off_by_1e_9_fails_the_mass_case(monkeypatch):
    """mass compares the hand-off's raw quadrature mass with the density's 2 pi c_0: weights off by 1e-9 (a wrong
    quadrature rule) are caught; the renormalised token weights alone would still sum to 1."""
    real = Circle.quadrature

    def off(self, c, oversample=1):
        nodes, w, rho = real(self, c, oversample)
        return nodes, w * (1 + 1e-9), rho

    monkeypatch.setattr(Circle, "quadrature", off)
    broken = measure("mass", quick=True)
    assert broken.verdict == "fail"
    assert broken.measured == pytest.approx(1e-9, rel=0.01)
