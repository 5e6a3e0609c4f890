"""The optimiser's view of a problem: its parameters (and initial state) as one flat real vector."""

from __future__ import annotations

import numpy as np

from .problem import Problem


class Packing:
    """The optimiser's flat real vector <-> the optimised parameters (and the initial state), in units of ``step``:
    L-BFGS's first step has length 1 in its coordinates, so ``step`` is the size of the first change."""

    def __init__(self, problem: Problem, names, step: float = 1.0):
        self.problem, self.names, self.step = problem, tuple(names), float(step)
        self.shapes = {n: (problem.initial.shape if n == "initial" else problem.schedule.values[n].shape)
                       for n in self.names}
        self.complex = np.iscomplexobj(problem.initial)

    def _size(self, n):
        size = int(np.prod(self.shapes[n]))
        return 2 * size if n == "initial" and self.complex else size

    def pack(self, schedule, initial) -> np.ndarray:
        """The vector of the current values."""
        parts = []
        for n in self.names:
            v = initial if n == "initial" else schedule.values[n]
            parts.append(np.concatenate([v.real.ravel(), v.imag.ravel()]) if n == "initial" and self.complex
                         else np.asarray(v, dtype=float).ravel())
        return np.concatenate(parts) / self.step

    def unpack(self, x: np.ndarray):
        """(schedule, initial) of a vector: tokens' initial positions are put on the sphere (x / |x|)."""
        out, initial, i = {}, self.problem.initial, 0
        x = x * self.step
        for n in self.names:
            size = self._size(n)
            part = x[i:i + size]
            i += size
            if n == "initial":
                if self.complex:
                    half = size // 2
                    initial = (part[:half] + 1j * part[half:]).reshape(self.shapes[n])
                else:
                    z = part.reshape(self.shapes[n])
                    initial = z / np.linalg.norm(z, axis=-1, keepdims=True)
            else:
                out[n] = part.reshape(self.shapes[n])
        return self.problem.schedule.replace(**out), initial

    def gradient(self, x: np.ndarray, grad: dict) -> np.ndarray:
        """The gradient in the vector's coordinates."""
        parts, i = [], 0
        x = x * self.step
        for n in self.names:
            size = self._size(n)
            g = grad[n]
            if n == "initial":
                if self.complex:
                    g = g.copy()
                    g.flat[0] = 0.0  # the mass is not a control
                    parts.append(np.concatenate([g.real.ravel(), g.imag.ravel()]))
                else:  # through x0 = z / |z|
                    z = x[i:i + size].reshape(self.shapes[n])
                    r = np.linalg.norm(z, axis=-1, keepdims=True)
                    y = z / r
                    parts.append(((g - y * np.sum(y * g, axis=-1, keepdims=True)) / r).ravel())
            else:
                parts.append(np.asarray(g, dtype=float).ravel())
            i += size
        return np.concatenate(parts) * self.step
