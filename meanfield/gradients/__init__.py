"""Gradients through the solver: exact (discrete-adjoint) gradients of a loss of a run with respect to its
initial state and its parameters (beta, viscosity, Q, K, V per head, a perceptron's W, A, b), each of them
piecewise constant over the intervals of a schedule.

    from meanfield.gradients import DensityDynamics, Problem, ParameterSchedule, KL
    problem = Problem(DensityDynamics(circle, "sa"), ParameterSchedule([0, 5], {"beta": 4.0}), c0, dt=0.02, loss=KL(target))
    value, grad = problem.value_and_gradient()      # grad["beta"], grad["initial"]

docs/gradients.md explains the adjoint and its checks.
"""

from .density import DensityDynamics
from .losses import KL, MMD, Energy, SlicedWasserstein, Squared, Systems, Wasserstein
from .packing import Packing
from .problem import Problem
from .schedule import ParameterSchedule
from .tokens import TokenDynamics

__all__ = ["DensityDynamics", "Energy", "KL", "MMD", "Packing", "Problem", "ParameterSchedule", "SlicedWasserstein", "Squared", "Systems", "TokenDynamics",
           "Wasserstein"]
