"""Validation scripts: each runs one theorem's setting, measures its number and draws a figure.

    python -m meanfield.validation.cross_check [-o DIR]        # tokens against the PDE, ~ n^{-1/2}
    python -m meanfield.validation.synchronization [-o DIR]    # Q^T K positive definite: one point
    python -m meanfield.validation.spectral_selection [-o DIR] # symmetric V: the top eigenvector
    python -m meanfield.validation.causal [-o DIR]             # causal mask: the first tokens lead
"""
