"""time.threads: the transforms give the same bits with any thread count where the libraries allow it."""

import numpy as np
import pytest

from meanfield.domains import Circle, Sphere
from meanfield.physics.model import AttentionModel
from meanfield.simulation.setup import blas_threads, token_threads, transform_threads


@pytest.mark.parametrize("make", [lambda t: Circle(300, threads=t), lambda t: Sphere(40, backend="ducc0", threads=t)])
def test_rhs_is_bitwise_independent_of_the_thread_count(make):
    out = []
    for threads in (1, 2, 0):
        g = make(threads)
        rng = np.random.default_rng(5)
        c = g.uniform() + 1e-3 * g.random_perturbation(rng) * np.exp(-4 * g.degrees() / g.modes)
        out.append(AttentionModel(g, "sa", 12.0).rhs(c))
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])


def test_threads_zero_uses_cores_only_where_they_gain():
    from meanfield.simulation.runner import load_config

    assert transform_threads(0, "circle", 8192) == 1  # 1-D transforms: no gain measured
    assert transform_threads(0, "sphere", 63) == 1
    assert transform_threads(0, "sphere", 255) >= 1 and transform_threads(3, "sphere", 63) == 3
    small = load_config({"model": {"method": "particles", "geometry": "sphere"}, "particles": {"n": 100}})
    assert blas_threads(small) == 1 and token_threads(small) == 1
    many = load_config({"model": {"method": "particles", "geometry": "sphere"}, "particles": {"n": 5000}})
    assert token_threads(many) >= 1 and blas_threads(many) == 1  # the field threads itself: BLAS on one
    assert blas_threads(load_config({"time": {"threads": 2}})) == 2
