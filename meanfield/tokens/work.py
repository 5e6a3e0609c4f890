"""Blocks of a token field spread over threads, each thread with its own reusable work arrays (``Blocks``)."""

from __future__ import annotations

import threading

import numpy as np


class Blocks:
    """Runs a function over the starts of row (or system) blocks on ``threads`` threads, and hands each thread
    its own work arrays by name, reused from call to call: fresh multi-MB temporaries are returned to the system
    and page-faulted in again on every evaluation (at n = 32, 7x the cost of the product itself).  The pool
    starts on first use; each block is computed the same way whatever thread runs it."""

    def __init__(self, threads: int, name: str):
        self.threads = max(1, int(threads))
        self.name = name
        self._pool = None
        self._arrays: dict = {}

    def array(self, shape, name: str = "") -> np.ndarray:
        """This thread's C-contiguous work array ``name`` of ``shape`` (its contents undefined)."""
        key = (threading.get_ident(), name)
        size = int(np.prod(shape))
        buf = self._arrays.get(key)
        if buf is None or buf.size < size:
            buf = self._arrays[key] = np.empty(size)
        return buf[:size].reshape(shape)

    def run(self, fn, starts) -> None:
        """``fn(start)`` for every start, on the threads when there are several threads and blocks."""
        if self.threads > 1 and len(starts) > 1:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
            list(self._pool.map(fn, starts))
        else:
            for start in starts:
                fn(start)
