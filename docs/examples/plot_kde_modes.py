"""
How many clusters: modes of the density against k*(beta)
========================================================

From white noise of size 1e-3 (viscosity 1e-3) the density on the circle leaves the uniform state at the most unstable mode
k*(beta) ~ sqrt(2 beta) and organises into about k* clusters. We run the density for several beta until the
linear phase ends and count the modes (local maxima) of rho, beside k*(beta) and, for comparison, the
sqrt(beta log beta) count of modes of a Gaussian kernel density estimate of iid samples with bandwidth
beta^{-1/2} (Geshkovski, Rigollet, Sun: the count in the samples, before any dynamics).
"""

import matplotlib.pyplot as plt
import numpy as np

import meanfield
from meanfield.physics import theory

betas = [4, 9, 16, 25, 36, 49, 64]
counts = []
for beta in betas:
    t_end = round(1.3 * theory.linear_phase_end(1e-3, beta), 2)
    h = meanfield.solve(meanfield.example("clustering"),
                        [f"model.beta={beta}", "model.viscosity=1e-3", "initial.amplitude=1e-3", "initial.seed=3",
                         f"time.t_end={t_end}", f"output.interval={t_end}"])
    r = h["rho"][-1]
    counts.append(int(np.sum((r > np.roll(r, 1)) & (r > np.roll(r, -1)) & (r > r.mean()))))
    print(f"beta = {beta:3d}: k* = {theory.most_unstable_mode(beta)}, {counts[-1]} modes at t = {t_end}")

b = np.linspace(3, 70, 200)
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
ax.plot(betas, counts, "o", label=r"modes of $\rho$ at $1.3\times$ the linear phase's end")
ax.plot(b, [theory.most_unstable_mode(x) for x in b], "k-", lw=1, drawstyle="steps-mid", label=r"$k^*(\beta)$")
ax.plot(b, np.sqrt(b * np.log(b)), "C2--", lw=1, label=r"$\sqrt{\beta \log \beta}$ (KDE of iid samples)")
ax.set(xlabel=r"$\beta$", ylabel="number of clusters", title="clusters from white noise (SA, viscosity 1e-3)")
ax.legend()
plt.show()
