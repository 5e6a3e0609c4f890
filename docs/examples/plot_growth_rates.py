"""
Growth rates of the uniform state (Bruno, Pasqualotto, Agazzi, Fig. 4)
======================================================================

The uniform density on the circle is unstable at inverse temperature beta: Fourier mode k grows at the rate
lambda_k = k^2 I_k(beta) / (beta I_0(beta)) - nu k^2 (SA), largest at k* ~ sqrt(2 beta). We run
``examples/linear.toml`` (beta = 9, viscosity 0.02, a random perturbation of size 1e-7) and measure every
mode's rate in its linear window against that formula, then draw k*(beta).
"""

import matplotlib.pyplot as plt
import numpy as np

import meanfield
from meanfield.physics import theory

history = meanfield.solve(meanfield.example("linear"))
table = meanfield.measured_rates(history)
print(f"{len(table.measured)} modes measured; largest relative error {table.worst:.1e}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
k = np.arange(1, 33)
ax1.plot(k, theory.growth_rates(k, 9.0, viscosity=0.02), "k-", lw=1, label="theory")
ax1.plot([r.mode[0] for r in table.measured], [r.measured for r in table.measured], "o", ms=4, mfc="none", label="measured")
ax1.axhline(0, color="0.7", lw=0.8)
ax1.set(xlabel="mode $k$", ylabel=r"growth rate $\lambda_k$", title=r"$\beta = 9$, $\nu = 0.02$ (SA)")
ax1.legend()
betas = np.geomspace(1, 400, 60)
ax2.plot(betas, [theory.most_unstable_mode(b) for b in betas], "k.", ms=4, label="$k^*$ (exact argmax)")
ax2.plot(betas, np.sqrt(2 * betas), "C0-", lw=1, label=r"$\sqrt{2\beta}$")
ax2.set(xscale="log", xlabel=r"$\beta$", ylabel="most unstable mode", title=r"$k^*(\beta)$, viscosity 0")
ax2.legend()
plt.show()
