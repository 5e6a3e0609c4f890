"""
The (t, beta) phase diagram of n tokens (Geshkovski, Letrouit, Polyanskiy, Rigollet)
====================================================================================

n = 32 tokens start uniformly at random on the circle and follow the SA field. For each beta many seeds are
advanced together as one batch (``meanfield.tokens.BatchedTokenModel``); the colour is the fraction of pairs of
tokens within 1e-2 of each other (<x_i, x_j> > 1 - 1e-4), averaged over seeds: 1 means one cluster. For small
beta the tokens synchronise quickly; for large beta they first form about sqrt(2 beta) / pi clusters, which
merge only much later (meta-stability). The settings of the paper's figure are 2048 seeds and 90 values of
beta; here 128 seeds and 47 values keep the example under a minute.
"""

import matplotlib.pyplot as plt
import numpy as np

from meanfield.tokens import BatchedTokenModel, TokenSolver

n, seeds, t_end, h = 32, 128, 30.0, 0.1
betas = np.linspace(0.5, 12, 47)
times = np.arange(0, t_end + h / 2, 1.0)
frac = np.zeros((times.size, betas.size))
rng = np.random.default_rng(0)
for b, beta in enumerate(betas):
    model = BatchedTokenModel(seeds, np.full(n, 1.0 / n), beta, "sa", dim=2)
    theta = rng.uniform(0, 2 * np.pi, seeds * n)
    solver = TokenSolver(model, np.stack([np.cos(theta), np.sin(theta)], 1), np.arange(seeds * n), seeds * n,
                         "rk4", h)
    for i, t in enumerate(times):
        if i:
            solver.advance(times[i] - times[i - 1])
        x = solver.x.reshape(seeds, n, 2)
        gram = np.einsum("sid,sjd->sij", x, x)
        frac[i, b] = np.mean((gram[:, ~np.eye(n, dtype=bool)] > 1 - 1e-4).mean(axis=1))

fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
mesh = ax.pcolormesh(times, betas, frac.T, cmap="magma", vmin=0, vmax=1, shading="nearest")
fig.colorbar(mesh, label="fraction of pairs in one cluster")
ax.set(xlabel="$t$", ylabel=r"$\beta$", title=f"n = {n} tokens on the circle, {seeds} seeds per $\\beta$ (SA)")
print(f"one cluster by t = {t_end:g} for beta <= {betas[frac[-1] > 0.99].max(initial=0):.2f}")
plt.show()
