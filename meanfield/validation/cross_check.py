"""Tokens against the PDE: distance ~ n^{-1/2} on S^1, S^2 and under two random heads.

The catalogue cases tokens-vs-pde, tokens-vs-pde-sphere, tokens-vs-pde-heads
(``meanfield validate --case ...``), at full size:

    python -m meanfield.validation.cross_check [-o REPORT_DIR]   (default REPORT_DIR: validation-out)
"""

import sys

from . import SCRIPTS
from ._entry import main

if __name__ == "__main__":
    sys.exit(main(__doc__, "cross_check", SCRIPTS["cross_check"][1]))
