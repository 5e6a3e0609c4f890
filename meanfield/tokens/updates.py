"""The residual updates of the peers' transformers (``particles.update``, docs/variants.md): how the attention
output A_i moves token i.  Post-LN and nGPT keep the tokens on the sphere; pre-LN and peri-LN move a residual
stream z_i in R^d whose direction z_i / |z_i| is the token (the attention reads the directions)."""

from __future__ import annotations

import numpy as np

from ..config import NGPT_ALPHA


def on_sphere(update: str) -> bool:
    """Whether the tokens stay unit vectors under ``update`` (post-LN, nGPT); pre-LN and peri-LN move a
    residual stream z in R^d whose direction z / |z| is the token."""
    return update in ("post-ln", "ngpt")


def apply_update(update: str, x: np.ndarray, A: np.ndarray, alpha: float = NGPT_ALPHA) -> np.ndarray:
    """The velocity of the state under ``update`` from the attention output A at the unit vectors x (rows):

        post-ln:  dx/dt = P_x A                 (x on the sphere)
        ngpt:     dx/dt = alpha P_x A / |A|     (x on the sphere)
        pre-ln:   dz/dt = A                     (z in R^d, x = z / |z|)
        peri-ln:  dz/dt = A / |A|               (z in R^d, x = z / |z|)
    """
    if update == "pre-ln":
        return A
    if update == "peri-ln":
        return A / np.linalg.norm(A, axis=-1, keepdims=True)
    tangent = A - np.einsum("...i,...i->...", A, x)[..., None] * x
    if update == "ngpt":
        return alpha * tangent / np.linalg.norm(A, axis=-1, keepdims=True)
    return tangent
