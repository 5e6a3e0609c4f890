"""
Meta-stability and the energy staircase (Geshkovski, Koubbi, Polyanskiy, Rigollet)
==================================================================================

Without viscosity, clusters form near t = 19 (beta = 25 on the circle), sharpen to Dirac masses and then
merge one pair at a time after exponentially long plateaus. ``examples/longtime_circle.toml`` runs the density
until clusters form, hands off to weighted tokens, and goes on to t = 1e20. On each plateau the energy
2 beta e^{-beta} E equals the sum of the clusters' squared masses (dots).
"""

import matplotlib.pyplot as plt

import meanfield
from meanfield.viz import plot

history = meanfield.solve(meanfield.example("longtime_circle"))
merges = history["merges"]["time"]
print(f"hand-off at t = {history['attrs']['handoff_time']:.2f}; {merges.size} mergers, the last at t = {merges[-1]:.3g}")

fig = plt.figure(figsize=(8, 5.5), layout="constrained")
plot.clusters(history, fig)
plt.show()
