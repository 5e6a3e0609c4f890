"""Clusters of a measure: how many, where, how heavy — one criterion for densities and tokens.

A point x is in a cluster's *core* when the measure puts at least ``RATIO`` = 2 times the
uniform measure's mass in the ball of angular radius r around it; cores closer than r belong to
the same cluster (density-based clustering, DBSCAN with weights); points within r of a core are
its border.  A cluster's mass is the mass of its core and border, its position the normalised
weighted mean of that mass; clusters lighter than ``min_mass`` (stragglers) are not counted.
So the uniform state and its small perturbations have no cluster, and a cluster of tokens (or
a peak of the density) of mass m >> |cap(r)| is one.

The measure is first binned onto a fixed *cluster grid* of spacing r/3 (circle: equispaced;
S^2: a Fibonacci lattice of near-equal cells; zonal rings: equal steps in colatitude), so the
cost is that of a sparse product on that grid whatever the number of tokens or grid points.
Point tokens on S^{d-1}, d >= 4, are clustered directly (k-d tree balls).

Defaults: r = min(0.2, pi / (4 l*)) with l* the most unstable mode (its clusters are 2 pi / l*
apart on the circle), min_mass = 1e-3.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

#: A core holds at least this multiple of the uniform measure's mass in its ball.
RATIO = 2.0
#: Default smallest mass counted as a cluster.
MIN_MASS = 1e-3


def default_radius(lstar: int) -> float:
    """r = min(0.2, pi / (4 l*)): well inside the spacing 2 pi / l* of the clusters that form."""
    return min(0.2, math.pi / (4 * max(int(lstar), 1)))


def cap_measure(r: float, d: int) -> float:
    """Uniform probability of a cap of angular radius r on S^{d-1}."""
    from scipy.special import betainc

    r = min(max(r, 0.0), math.pi)
    half = 0.5 * betainc((d - 1) / 2, 0.5, math.sin(min(r, math.pi / 2)) ** 2)
    return half if r <= math.pi / 2 else 1.0 - 0.5 * betainc((d - 1) / 2, 0.5, math.sin(r) ** 2)


def fibonacci_sphere(n: int) -> np.ndarray:
    """n near-uniform points on S^2 (cells of equal area 4 pi / n, up to the lattice's irregularity)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (3 - math.sqrt(5)) * i
    s = np.sqrt(1 - z * z)
    return np.stack([s * np.cos(phi), s * np.sin(phi), z], axis=1)


class ClusterFinder:
    """Finds clusters of weighted points: tokens, or a density's quadrature nodes with masses rho_j w_j.

    ``kind``: "circle" (points (n, 2)), "sphere" ((n, 3)), "rings" (zonal rings: meridian points
    (sin theta, cos theta) of S^{dim-1}) or "points" (tokens on S^{dim-1}, any dim).
    """

    MAX_GRID = 400_000

    def __init__(self, kind: str, dim: int, radius: float, min_mass: float = MIN_MASS):
        self.kind, self.dim = kind, int(dim)
        self.radius, self.min_mass = float(radius), float(min_mass)
        h = self.radius / 3
        if kind == "circle":
            self.m = max(8, math.ceil(2 * math.pi / h))
            th = 2 * math.pi * np.arange(self.m) / self.m
            self.nodes = np.stack([np.cos(th), np.sin(th)], axis=1)
            uniform = np.full(self.m, 1.0 / self.m)
        elif kind == "sphere":
            self.m = min(self.MAX_GRID, max(32, math.ceil(4 * math.pi / (h * h))))
            self.nodes = fibonacci_sphere(self.m)
            uniform = np.full(self.m, 1.0 / self.m)
        elif kind == "rings":
            self.m = max(8, math.ceil(math.pi / h))
            edges = math.pi * np.arange(self.m + 1) / self.m
            th = (edges[1:] + edges[:-1]) / 2
            self.nodes = np.stack([np.sin(th), np.cos(th)], axis=1)
            uniform = np.diff([_polar_cap(e, self.dim) for e in edges])
        elif kind == "points":
            self.nodes = None
            return
        else:
            raise ValueError(f"kind: got {kind!r}, allowed: circle, sphere, rings, points")
        self.adjacency = _ball_graph(self.nodes, self.radius)
        self.uniform_ball = self.adjacency @ uniform
        if kind != "circle":
            from scipy.spatial import cKDTree

            self.tree = cKDTree(self.nodes)

    def _bin(self, points: np.ndarray) -> np.ndarray:
        """Index of the cluster-grid node of each point."""
        if self.kind == "circle":
            th = np.mod(np.arctan2(points[:, 1], points[:, 0]), 2 * math.pi)
            return np.rint(th / (2 * math.pi) * self.m).astype(np.int64) % self.m
        if self.kind == "rings":
            th = np.arctan2(np.abs(points[:, 0]), points[:, 1])
            return np.minimum((th / math.pi * self.m).astype(np.int64), self.m - 1)
        return self.tree.query(points)[1]

    def find(self, points: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions (C, k), masses (C,)) of the clusters, heaviest first; negative weights count as 0."""
        points = np.asarray(points, dtype=float)
        weights = np.clip(np.asarray(weights, dtype=float), 0.0, None)
        keep = weights > 0
        points, weights = points[keep], weights[keep]
        if weights.size == 0:
            return np.zeros((0, points.shape[1])), np.zeros(0)
        if self.kind == "points":
            adjacency = _ball_graph(points, self.radius)
            node_of, node_mass = np.arange(weights.size), weights
            uniform_ball = cap_measure(self.radius, self.dim) * np.sum(weights)
        else:
            adjacency = self.adjacency
            node_of = self._bin(points)
            node_mass = np.bincount(node_of, weights, minlength=self.m)
            uniform_ball = self.uniform_ball * np.sum(weights)
        label = _label(node_mass, adjacency, uniform_ball)
        point_label = label[node_of]
        found = point_label >= 0
        if not found.any():
            return np.zeros((0, points.shape[1])), np.zeros(0)
        count = label.max() + 1
        mass = np.bincount(point_label[found], weights[found], minlength=count)
        first = np.zeros((count, points.shape[1]))
        np.add.at(first, point_label[found], weights[found, None] * points[found])
        big = np.flatnonzero(mass >= self.min_mass)
        order = big[np.argsort(-mass[big], kind="stable")]
        pos = first[order]
        pos /= np.linalg.norm(pos, axis=1, keepdims=True)
        return pos, mass[order]


def _polar_cap(theta: float, d: int) -> float:
    """Uniform probability of {colatitude <= theta} on S^{d-1}."""
    return cap_measure(theta, d)


def _ball_graph(points: np.ndarray, radius: float) -> csr_matrix:
    """Sparse symmetric 0/1 matrix of the pairs of points within angular distance ``radius``
    (diagonal included)."""
    n = points.shape[0]
    chord = 2 * math.sin(min(radius, math.pi) / 2)
    if points.shape[1] <= 16:
        from scipy.spatial import cKDTree

        pairs = cKDTree(points).query_pairs(chord, output_type="ndarray")
    else:
        found = []
        for i0 in range(0, n, 512):
            d2 = np.sum((points[i0:i0 + 512, None, :] - points[None, :, :]) ** 2, axis=2)
            i, j = np.nonzero(d2 <= chord * chord)
            keep = i + i0 < j
            found.append(np.stack([i[keep] + i0, j[keep]], axis=1))
        pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    i = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(n)])
    j = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(n)])
    return csr_matrix((np.ones(i.size), (i, j)), shape=(n, n))


def _label(node_mass: np.ndarray, adjacency: csr_matrix, uniform_ball) -> np.ndarray:
    """Cluster label of every node (-1: none): cores linked through the graph, borders attached to
    an adjacent core's cluster."""
    ball = adjacency @ node_mass
    core = ball >= RATIO * uniform_ball
    label = np.full(node_mass.size, -1, dtype=np.int64)
    if not core.any():
        return label
    idx = np.flatnonzero(core)
    sub = adjacency[idx][:, idx]
    _, comp = connected_components(sub, directed=False)
    label[idx] = comp
    # borders: non-core nodes next to a core take that core's label (the heaviest adjacent core's)
    border = adjacency[~core][:, idx]
    rows = np.flatnonzero(~core)
    border = border.tocsr()
    for r in range(border.shape[0]):
        lo, hi = border.indptr[r], border.indptr[r + 1]
        if hi > lo:
            cols = border.indices[lo:hi]
            label[rows[r]] = comp[cols[np.argmax(ball[idx[cols]])]]
    return label
