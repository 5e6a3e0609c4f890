"""Tokens advanced in time and merged when they meet (``TokenSolver``)."""

from __future__ import annotations

import math

import numpy as np

from ..stepping import EmbeddedStep, FixedStep
from .integrators import INTEGRATORS


def merge_groups(x: np.ndarray, tol: float) -> np.ndarray:
    """Labels 0..G-1 of the groups of tokens linked by angular distances below ``tol`` (radians)
    (single linkage: a chain of close tokens is one group)."""
    n = x.shape[0]
    chord = 2 * math.sin(min(tol, math.pi) / 2)
    if x.shape[1] <= 16:
        from scipy.spatial import cKDTree

        pairs = cKDTree(x).query_pairs(chord, output_type="ndarray")
    else:  # k-d trees lose their edge in high dimension: blocks of the distance matrix
        found = []
        for i0 in range(0, n, 1024):
            d2 = np.sum((x[i0:i0 + 1024, None, :] - x[None, :, :]) ** 2, axis=2)
            i, j = np.nonzero(d2 < chord * chord)
            keep = i + i0 < j
            found.append(np.stack([i[keep] + i0, j[keep]], axis=1))
        pairs = np.concatenate(found) if found else np.zeros((0, 2), int)
    if pairs.shape[0] == 0:
        return np.arange(n)
    return _linked(pairs[:, 0], pairs[:, 1], n)


def _linked(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """Labels 0..G-1 of the connected components of n nodes linked by the pairs (i[k], j[k]): single linkage."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(i.size), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


class TokenSolver:
    """Weighted tokens (or zonal rings) advanced in time and merged when they meet.

    ``x`` (n, k) the live tokens' positions, ``w`` their weights, ``ids`` their rows in the output
    (a token keeps its row for the whole run; a merged token keeps the smallest row of its group).
    After every accepted step, tokens closer than ``merge_tol`` radians become one token carrying
    the summed weight at the normalised weighted mean (mass exact, the first moment's direction
    kept, the energy changed by O(distance^2)).  ``merge_tol = 0``: never.

    A merge is found at the end of a step, but its record carries the time within the step at which the two
    heaviest parts came within ``merge_tol`` (``merge``): adaptive steps on a plateau's last approach span O(1)
    time units, and stamping the step's end made merger times depend on the tolerance by up to 1 %.
    """

    def __init__(self, model, x: np.ndarray, ids: np.ndarray, n_rows: int, integrator: str, dt: float,
                 adaptive: bool = False, rtol: float = 1e-9, atol: float = 1e-12, dt_min: float = 0.0,
                 dt_max: float = math.inf, merge_tol: float = 0.0, noise: float = 0.0, rng=None):
        self.model = model
        self.ids = np.asarray(ids, dtype=np.int64)
        self.n_rows = int(n_rows)
        self.scheme = INTEGRATORS[integrator](model.velocity, noise=noise, rng=rng, project=model.project)
        self.controller = EmbeddedStep(dt, rtol, atol, dt_min, dt_max) if adaptive else FixedStep(dt)
        self.merge_tol = float(merge_tol)
        self.state = self.scheme.start(model.project(np.asarray(x, dtype=float)))
        # per merged group: (row kept, tokens merged, total weight, two largest weights, largest distance
        # of a member to the merged position, how long before the step's end they met); the run loop stamps
        # the time and empties the list
        self.merges = []

    @property
    def x(self) -> np.ndarray:
        """Positions of the live tokens."""
        return self.state.u

    @property
    def w(self) -> np.ndarray:
        """Weights of the live tokens."""
        return self.model.w

    def advance(self, h: float) -> tuple[float, float]:
        """One accepted step of size <= h, then merging; returns (h_taken, next_h)."""
        before = self.state.u
        self.state, taken, proposed = self.controller.advance(self.scheme, self.state, h)
        if self.merge_tol > 0 and self.model.n > 1:
            self.merge(before, taken)
        return taken, proposed

    def merge(self, before: np.ndarray | None = None, h: float = 0.0) -> int:
        """Merge tokens closer than merge_tol; returns the number of tokens removed.

        ``before``: the positions at the start of the step of size ``h`` that just ended.  A group's record then
        says how long before the step's end its two heaviest parts came within merge_tol: their distance
        interpolated geometrically between the step's ends (exact for the exponential approach e^{-rate t} of
        two clusters' last stretch).  Without it, or when the two are linked only through other members, the
        step's end."""
        labels = merge_groups(self.x, self.merge_tol)
        groups = int(labels.max()) + 1 if labels.size else 0
        if groups == labels.size:
            return 0
        x, w, ids = self.x, self.w, self.ids
        total, new_x = _group_means(labels, w, x)
        new_ids = np.full(groups, np.iinfo(np.int64).max)
        np.minimum.at(new_ids, labels, ids)
        size = np.bincount(labels, minlength=groups)
        for g in np.flatnonzero(size > 1):
            members = np.flatnonzero(labels == g)
            b, a = members[np.argsort(w[members])[-2:]]  # a: the heaviest, b: the next
            top2 = w[[a, b]]
            reach = max(_angle(x[i], new_x[g]) for i in members)
            lag = 0.0 if before is None else _crossing_lag(_angle(before[a], before[b]), _angle(x[a], x[b]),
                                                          self.merge_tol, h)
            self.merges.append((int(new_ids[g]), int(members.size), float(total[g]), float(top2[0]),
                                float(top2[1]), reach, lag))
        self.model.set_weights(total)
        self.ids = new_ids
        self.state = self.scheme.start(self.model.project(new_x))  # the carried derivative is stale
        return labels.size - groups

    def full_positions(self) -> np.ndarray:
        """Positions on all rows (n_rows, k): NaN on rows whose token merged away or never was."""
        out = np.full((self.n_rows, self.x.shape[1]), np.nan)
        out[self.ids] = self.x
        return out

    def full_weights(self) -> np.ndarray:
        """Weights on all rows: 0 on rows whose token merged away or never was."""
        out = np.zeros(self.n_rows)
        out[self.ids] = self.w
        return out

    def _set_weights(self, point: dict) -> None:
        """The weights of a resume point."""
        self.model.set_weights(np.asarray(point["w"], dtype=float))

    def resume_point(self) -> dict:
        """What a checkpoint needs to continue bit for bit."""
        return {"state": self.state, "w": self.w.copy(), "ids": self.ids.copy(),
                "rejected": getattr(self.controller, "rejected", 0), "accepted": getattr(self.controller, "accepted", 0)}

    def restore(self, point: dict) -> None:
        """Continue from ``resume_point()`` (or its checkpoint copy)."""
        self._set_weights(point)
        self.ids = np.asarray(point["ids"], dtype=np.int64)
        self.state = point["state"]
        if isinstance(self.controller, EmbeddedStep):
            self.controller.rejected = int(point.get("rejected", 0))
            self.controller.accepted = int(point.get("accepted", 0))


class BatchTokenSolver(TokenSolver):
    """A ``TokenSolver`` for a ``BatchedTokenModel``: many systems of n tokens each, merged by weight transfer.

    Every system keeps its n rows (so its systems stay one stacked product); tokens of one system closer than
    ``merge_tol`` radians merge as in ``TokenSolver`` (the group's summed weight at its normalised weighted mean,
    on the group's smallest row), and the other rows of the group keep weight 0 and follow that row (the model's
    ``set_merged``): each system evolves as the single run of its tokens would, merges included, and the
    peers' statistics of its n rows still count a merged token as the tokens it stands for.

    Finding the groups costs one sort per step: two tokens within the chord have projections p_i = <x_i, u> on
    a fixed direction u within the chord too (|p_i - p_j| <= |x_i - x_j|), so only the pairs whose projections,
    sorted within each system, lie that near get their distance computed; the close pairs' connected components
    are the groups (single linkage, as ``merge_groups``).  Merge records are not kept (``merges`` stays empty): the history's per-system token count says how many
    tokens each system has left."""

    def __init__(self, model, x: np.ndarray, *args, **kwargs):
        super().__init__(model, x, *args, **kwargs)
        u = np.random.default_rng(0).standard_normal(self.x.shape[1])  # any fixed direction
        self._axis = u / np.linalg.norm(u)

    @property
    def live(self) -> np.ndarray:
        """Which rows carry a token (the others merged away)."""
        return self.model.leader == np.arange(self.model.n)

    def merge(self, before: np.ndarray | None = None, h: float = 0.0) -> int:
        """Merge the tokens of each system closer than merge_tol; returns the number of tokens merged away."""
        m, x, live = self.model, self.x, self.live
        S, n = m.systems, m.size
        chord = 2 * math.sin(min(self.merge_tol, math.pi) / 2)
        proj = np.where(live, x @ self._axis, np.nan).reshape(S, n)  # NaN (merged-away rows): never near
        reach = chord + 1e-14  # |p_i - p_j| <= |x_i - x_j|, with room for the projections' rounding (|x| = 1)
        candidates = np.flatnonzero(np.any(np.diff(np.sort(proj, axis=1), axis=1) <= reach, axis=1))
        if candidates.size == 0:
            return 0
        # within a candidate system, every pair of tokens whose projections lie within the chord: the pairs lag
        # apart in sorted order, lag by lag until no pair is that near (sorted: none further apart is), then
        # their exact distances (1 - <x_i, x_j> has no digits left at 1e-9)
        P = proj[candidates]
        order = np.argsort(P, axis=1)
        P = np.take_along_axis(P, order, axis=1)
        rows = candidates[:, None] * n + order
        first, second = [], []
        for lag in range(1, n):
            near = P[:, lag:] - P[:, :-lag] <= reach
            if not near.any():
                break
            c, k = np.nonzero(near)
            first.append(rows[c, k])
            second.append(rows[c, k + lag])
        pairs = np.stack([np.concatenate(first), np.concatenate(second)])
        pairs = pairs[:, np.sum((x[pairs[0]] - x[pairs[1]]) ** 2, axis=1) <= chord * chord]
        if pairs.shape[1] == 0:
            return 0
        nodes, ends = np.unique(pairs, return_inverse=True)  # the rows that merge, ascending
        k = nodes.size
        labels = _linked(*ends.reshape(2, -1), k)
        kept = nodes[np.unique(labels, return_index=True)[1]]  # each group's first node: its smallest row
        w, leader, x = m.w.copy(), m.leader.copy(), x.copy()
        total, position = _group_means(labels, w[nodes], x[nodes])
        x[nodes] = position[labels]  # on the sphere already
        w[nodes] = 0.0
        w[kept] = total
        leader[nodes] = kept[labels]
        leader = leader[leader]  # rows that followed a row merged away now follow its group's row (live: kept)
        away = leader != np.arange(m.n)
        x[away] = x[leader[away]]
        m.set_merged(w, leader)
        self.state = self.scheme.start(x)  # the carried derivative is stale (the other rows: as they were)
        return k - kept.size

    def full_positions(self) -> np.ndarray:
        """Positions on all rows: NaN on rows whose token merged away."""
        out = self.x.copy()
        out[~self.live] = np.nan
        return out

    def full_weights(self) -> np.ndarray:
        """Weights on all rows: 0 on rows whose token merged away."""
        return self.model.w.copy()

    def resume_point(self) -> dict:
        """``TokenSolver``'s, with the rows' leaders."""
        return {**super().resume_point(), "leader": self.model.leader.copy()}

    def _set_weights(self, point: dict) -> None:
        """The weights and leaders of a resume point (one without leaders: nothing merged)."""
        leader = np.asarray(point.get("leader", np.arange(self.model.n)), dtype=np.int64)
        self.model.set_merged(np.asarray(point["w"], dtype=float), leader)


def _group_means(labels: np.ndarray, w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group 0..G-1 of ``labels`` (each one used): the summed weight and the normalised weighted mean of the
    positions ``x``, where the group's tokens become one."""
    total = np.bincount(labels, w)
    mean = np.stack([np.bincount(labels, w * x[:, k]) for k in range(x.shape[1])], axis=1)
    return total, mean / np.linalg.norm(mean, axis=1, keepdims=True)


def _crossing_lag(d0: float, d1: float, tol: float, h: float) -> float:
    """How long before the end of a step of size h a distance falling from d0 to d1 (geometrically in time)
    crossed tol; 0 unless d1 < tol <= d0."""
    if not (0.0 < d1 < tol <= d0) or h <= 0:
        return 0.0
    return h * math.log(tol / d1) / math.log(d0 / d1)


def _angle(a, b) -> float:
    """Angle between unit vectors, accurate for tiny angles."""
    return float(2 * math.atan2(np.linalg.norm(a - b), np.linalg.norm(a + b)))
