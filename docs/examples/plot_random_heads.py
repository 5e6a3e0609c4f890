"""
Random heads drawn afresh every layer (a simuformer variant)
============================================================

16 tokens on S^127 pass through 1200 layers; each layer has four attention heads whose Q, K, V are drawn
afresh (entries N(0, 1/128)), as in a transformer at initialisation. As beta -> 0 the mean overlap of the
tokens follows a logistic-type law (docs/general.md) - a law of the mean over seeds. We average 8 seeds and
draw one run beside the mean and the law.
"""

import matplotlib.pyplot as plt
import numpy as np

import meanfield
from meanfield.analysis import diagnostics
from meanfield.physics import theory

runs = []
for seed in range(8):
    h = meanfield.solve(meanfield.example("random_heads"), [f"attention.seed={seed}", f"initial.seed={seed}"])
    runs.append([diagnostics.mean_overlap(x, w) for x, w in zip(h["positions"], h["token_weights"])])
t, runs = h["time"], np.array(runs)
mean, se = runs.mean(axis=0), runs.std(axis=0, ddof=1) / np.sqrt(len(runs))
law = theory.mean_overlap_ode(t, float(mean[0]), 16, 128)
print(f"t = {t[-1]:g}: mean overlap {mean[-1]:.3f} +- {se[-1]:.3f}, law {law[-1]:.3f}")
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
ax.plot(t, runs[0], "-", color="0.6", lw=0.8, label="one run")
ax.fill_between(t, mean - 2 * se, mean + 2 * se, color="C0", alpha=0.3, label="mean of 8 runs (2 SE)")
ax.plot(t, law, "k--", lw=1, label=r"$\beta \to 0$ law")
ax.set(xlabel="$t$ (layers x dt)", ylabel=r"mean overlap $\langle x_i, x_j \rangle$",
       title="16 tokens on $S^{127}$, 4 random heads per layer")
ax.legend()
plt.show()
