"""
Lost in the middle: what the last token retrieves (causal attention with ALiBi)
===============================================================================

Prompts of n iid uniform tokens on the circle follow causal USA attention with an ALiBi slope. How much the
last token's angle at time t still reflects the j-th token's initial angle is U-shaped in the position j: the
first tokens (attention sinks) and the last ones (ALiBi's recency) are retrieved, the middle is lost.
Dots: a Monte Carlo over 8192 prompts, advanced as one batch by the package's token solver. Solid line: the
linear-response prediction of docs/validation.md as n -> infinity (the retrieval profile at the same t); dashed:
the same to first order in 1/n at this n (the prompt's own causal weights), which the dots follow. The gap
between the two lines is the finite-n bias whose limit the catalogue's lost-in-the-middle-tokens case fits.
"""

import math

import matplotlib.pyplot as plt
import numpy as np

from meanfield.physics import theory
from scipy.linalg import expm

from meanfield.validate.cases.causal import _prompt_weights, profile_weights, prompt_correlations, retrieval_profile

n, prompts, beta, alibi = 32, 8192, 1.0, 2.0
modes = np.arange(1, 5)
amax = float(np.max(theory.growth_rates(np.arange(1, 40), beta, "usa")))
t = 0.5 * min(3 - math.sqrt(3), 2 * (1 - math.exp(-alibi))) / amax  # inside the linear response's range
mean, se, _ = prompt_correlations(n, prompts, beta, alibi, t, modes, seed=1)
omega = profile_weights(modes)
measured, err = omega @ mean, np.sqrt(omega**2 @ se**2)
s = np.arange(1, n + 1) / n
W = _prompt_weights(n, alibi)
finite_n = sum(w * n * expm(t * a * (W - np.diag(np.diag(W))))[-1]
               for w, a in zip(omega, theory.growth_rates(modes, beta, "usa")))
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
ax.errorbar(s[:-1], measured[:-1], 2 * err[:-1], fmt="o", ms=4, mfc="none", label=f"{prompts} prompts (2 SE)")
ax.plot(s[:-1], retrieval_profile(t, s[:-1], beta, alibi), "k-", lw=1, label="prediction, $n \\to \\infty$")
ax.plot(s[:-1], finite_n[:-1], "k--", lw=1, label=f"prediction at n = {n} (first order in 1/n)")
ax.set(xlabel="position $j/n$ of the source token", ylabel="retrieval by the last token",
       title=f"n = {n}, USA, $\\beta$ = {beta:g}, ALiBi slope {alibi:g}, t = {t:.3f}")
ax.legend()
plt.show()
