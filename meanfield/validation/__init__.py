"""Validation scripts: each runs the catalogue cases (``meanfield validate``) behind one theorem's setting, writes
their report and figures into a directory, and prints their numbers.

    python -m meanfield.validation.cross_check [-o DIR]        # tokens against the PDE, ~ n^{-1/2}
    python -m meanfield.validation.synchronization [-o DIR]    # all tokens meet, at rate 1 near the end
    python -m meanfield.validation.spectral_selection [-o DIR] # symmetric V: the top eigenvector
    python -m meanfield.validation.causal [-o DIR]             # causal mask: the first tokens lead
    python -m meanfield.validation.general_attention [-o DIR]  # Q, K, V, heads, causal positions in the density
"""

#: script -> (what it shows, the catalogue cases it runs)
SCRIPTS = {
    "cross_check": ("tokens against the PDE: distance ~ n^{-1/2} on S^1, S^2 and under two random heads",
                    ("tokens-vs-pde", "tokens-vs-pde-sphere", "tokens-vs-pde-heads")),
    "synchronization": ("tokens synchronise to one point, at rate 1 near the end",
                        ("synchronisation-from-uniform", "synchronisation-rate")),
    "spectral_selection": ("symmetric V: tokens align with its top eigenvector",
                           ("selection-tokens-symmetric-V", "selection-tokens")),
    "causal": ("causal attention: the first tokens lead", ("causal-first-token-leads", "causal-density-lead")),
    "general_attention": ("density with Q, K, V and heads, the causal density, random heads per layer",
                          ("selection-mass-split", "selection-sphere", "synchronisation-general-heads",
                           "causal-density-lead", "random-heads-logistic")),
}
