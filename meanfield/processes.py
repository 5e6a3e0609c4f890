"""Worker processes that die with their parent, and connecting to a Dask scheduler with one-line errors."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

from .errors import ConfigError

_PR_SET_PDEATHSIG = 1
_POOL_WORKER = False


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; a no-op elsewhere).  A pool's
    initializer: a validate or sweep killed by SIGTERM or SIGKILL leaves no worker running."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to ask for
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def pool_worker() -> None:
    """A process pool's initializer: this process dies with its parent (``die_with_parent``), ignores SIGINT
    (Ctrl-C reaches the whole process group: the pool's owner answers it by ending its workers) and SIGTERM ends
    it at once, even during a run: its default action, whatever handler the fork inherited (the ``meanfield``
    command's start-up one raises an exception, which a pool's worker catches and goes on), and runs install no
    handlers here.  A pool stops its workers with SIGTERM when one of them died, and the dead one may have held
    the task queue's lock: a worker that took SIGTERM as "stop this run" went back to that queue and waited on
    the lock forever, its owner with it."""
    global _POOL_WORKER
    _POOL_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()


def in_pool_worker() -> bool:
    """Whether this process is a pool's worker (``pool_worker`` ran): runs leave its signals to the pool."""
    return _POOL_WORKER


def check_address(address: str, key: str = "--scheduler") -> None:
    """ConfigError naming ``key`` unless ``address`` looks like a scheduler's address (host and port)."""
    text = address.strip()
    if not text or any(ord(c) < 32 for c in text):
        raise ConfigError(f"{key}: got {address!r}, allowed: a Dask scheduler address such as tcp://host:8786")
    rest = text.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{key}: got {address!r}, allowed: a Dask scheduler address such as tcp://host:8786 "
                          "(host and port)")


def dask_setup(worker) -> None:
    """Worker preload of a local sweep cluster (``LocalCluster(preload=["meanfield.processes"])``).  Ctrl-C in a
    terminal reaches the whole process group; the command that started the cluster handles it (it stops the
    sweep and the workers, exit 130), so a worker ignores it rather than print a traceback.  A worker's own logs
    stay quiet: what fails in a run comes back to the command with its result (the table's row says why), and
    what a worker logs as the cluster closes (a heartbeat to a scheduler already gone, cancelled tasks) is noise."""
    import logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def dask_client(address: str, key: str = "--scheduler", timeout: float = 10.0):
    """A ``dask.distributed.Client`` of the scheduler at ``address``; a malformed address, one nobody answers at
    within ``timeout`` seconds, or something that is not a Dask scheduler (a web server that never replies) is a
    ConfigError naming ``key`` (one line).  The connection is made in a thread with a deadline: Dask's own
    timeout does not cover a peer that accepts and then stays silent."""
    import threading

    from dask.distributed import Client

    check_address(address, key)
    got: dict = {}

    def connect():
        try:
            got["client"] = Client(address, timeout=f"{timeout}s")
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            got["error"] = exc

    worker = threading.Thread(target=connect, name="meanfield-dask-connect", daemon=True)
    worker.start()
    worker.join(2 * timeout + 5)
    advice = "start one (dask scheduler) or leave --scheduler out for a local cluster"
    if worker.is_alive():
        raise ConfigError(f"{key}: {address!r} did not answer as a Dask scheduler within {2 * timeout + 5:.0f} s; "
                          f"{advice}")
    exc = got.get("error")
    if exc is not None:
        if not isinstance(exc, (OSError, TimeoutError, ValueError, TypeError, MemoryError)):
            raise exc
        why = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ConfigError(f"{key}: no Dask scheduler answered at {address!r} ({why}); {advice}")
    with got["client"] as client:
        yield client
