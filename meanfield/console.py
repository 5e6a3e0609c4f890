"""The ``meanfield`` console script: signals are answered from the first instant, before numpy and the rest are
imported (``cli`` imports them), so Ctrl-C or SIGTERM during start-up is one line, never a traceback or a silent
death.  A run replaces these handlers by its own (a final snapshot and a checkpoint) once it is stepping."""

import signal
import sys


class Terminated(BaseException):
    """SIGTERM while no run holds the signal (start-up, imports, setting a run up, validate and sweep themselves)."""


def _terminate(signum, frame):
    raise Terminated


def main(argv=None) -> int:
    """Entry point of the ``meanfield`` command (``cli.main`` with the signals handled from the start)."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        from .cli import main as cli_main

        return cli_main(argv)
    except KeyboardInterrupt:  # Ctrl-C while Python imported numpy, say: cli.main answers it after that
        sys.stderr.write("meanfield: error: interrupted\n")
        return 130
    except Terminated:
        sys.stderr.write("meanfield: error: terminated (SIGTERM)\n")  # start-up, set-up, or a command that is no run
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
