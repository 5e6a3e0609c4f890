"""The direct token field on PyTorch (``particles.backend = "torch"``): float64, on the CPU or a CUDA GPU.

The same sum as ``TokenModel.velocity`` (general Q, K, V, several heads, causal mask), with the same
operands: the exponent beta <Q x_i, K x_j> - s_i + log w_j comes out of one matrix product (s_i bounds
the row, or is its exact maximum where the bound could let the row underflow), then one exp and one
product with [V x_j, 1] for numerator and denominator.  Only the n x n work moves to torch; the
integrators stay in numpy, and each evaluation sends x (n x d) and brings the field back.

Optional: ``pip install "meanfield[torch]"`` (a CPU-only wheel: ``pip install torch --index-url
https://download.pytorch.org/whl/cpu`` first).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

#: bytes of one block of rows of the interaction: on the CPU a few cache-sized MB (torch threads each
#: operation itself), on a GPU large enough to fill it
CPU_BLOCK_BYTES = 2 * 2**20
CUDA_BLOCK_BYTES = 256 * 2**20
DEVICES = ("cpu", "cuda")


def load_torch(device: str = "cpu"):
    """torch, checked for the device; a ConfigError naming the key when it cannot be had."""
    try:
        import torch
    except ImportError:
        raise ConfigError("particles.backend: got 'torch', but torch is not installed; allowed: 'numpy', or "
                          "install it: pip install \"meanfield[torch]\"") from None
    if device not in DEVICES:
        raise ConfigError(f"particles.device: got {device!r}, allowed: " + " | ".join(repr(d) for d in DEVICES))
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("particles.device: got 'cuda', but torch finds no CUDA device here; allowed: 'cpu'")
    return torch


class TorchField:
    """The direct field of a ``TokenModel`` evaluated with torch on ``device`` (``threads``: torch's CPU
    threads, set for the process)."""

    def __init__(self, model, device: str = "cpu", threads: int = 1):
        torch = self.torch = load_torch(device)
        self.model = model
        self.device = torch.device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, int(threads)))
        self.block_bytes = CPU_BLOCK_BYTES if self.device.type == "cpu" else CUDA_BLOCK_BYTES

    def _tensor(self, a: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def _exponent(self, A, BT, i0: int, i1: int):
        """Rows i0 .. i1 of A B^T (causal: columns j <= i1 - 1 only, j > i set to -inf)."""
        torch = self.torch
        cols = i1 if self.model.causal else BT.shape[1]
        e = A[i0:i1] @ BT[:, :cols]
        if self.model.causal:
            mask = torch.arange(cols, device=self.device)[None, :] > torch.arange(i0, i1, device=self.device)[:, None]
            e.masked_fill_(mask, float("-inf"))
        return e

    def velocity(self, x: np.ndarray) -> np.ndarray:
        """The attention output A_i of every token (n, d), float64 (own terms left out where the model's heads
        allow: ``TokenModel._free``)."""
        torch, m = self.torch, self.model
        n, d = x.shape
        rows = max(1, min(n, self.block_bytes // (8 * max(n, 1))))
        out = torch.zeros((n, d), dtype=torch.float64, device=self.device)
        for h in range(len(m.Q)):
            ops = m._operands(x, h)
            A, BT, V1, s = (self._tensor(a) for a in ops[:4])
            self_free, exact = ops[4:]
            if exact:  # shift each row by its exact maximum (one more pass, here on the device)
                top = torch.cat([self._exponent(A, BT, i0, min(n, i0 + rows)).amax(dim=1)
                                 for i0 in range(0, n, rows)])
                A[:, -2], s = -top, top
            for i0 in range(0, n, rows):
                i1 = min(n, i0 + rows)
                e = self._exponent(A, BT, i0, i1)
                idx = torch.arange(i0, i1, device=self.device)
                e.exp_()
                if self_free:  # the own term is parallel to x_i: out of the numerator (TokenModel's doc)
                    own = e[idx - i0, idx].clone()
                    e[idx - i0, idx] = 0.0
                acc = e @ V1[:e.shape[1]]
                if self_free:
                    acc[:, d] += own
                if m.variant == "sa":
                    out[i0:i1] += acc[:, :d] / acc[:, d:]
                else:
                    scale = torch.exp(s[i0:i1])
                    if m._row_scale is not None:  # causal USA: the row's probability measure
                        scale = scale * self._tensor(m._row_scale[i0:i1])
                    out[i0:i1] += acc[:, :d] * scale[:, None]
        return out.cpu().numpy()  # the attention output: TokenModel applies the update
