"""Tokens synchronise to one point, at rate 1 near the end.

The catalogue cases synchronisation-from-uniform, synchronisation-rate
(``meanfield validate --case ...``), at full size:

    python -m meanfield.validation.synchronization [-o REPORT_DIR]   (default REPORT_DIR: validation-out)
"""

import sys

from . import SCRIPTS
from ._entry import main

if __name__ == "__main__":
    sys.exit(main(__doc__, "synchronization", SCRIPTS["synchronization"][1]))
