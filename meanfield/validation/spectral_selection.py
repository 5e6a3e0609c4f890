"""Symmetric V: tokens align with its top eigenvector.

The catalogue cases selection-tokens-symmetric-V, selection-tokens
(``meanfield validate --case ...``), at full size:

    python -m meanfield.validation.spectral_selection [-o REPORT_DIR]   (default REPORT_DIR: validation-out)
"""

import sys

from . import SCRIPTS
from ._entry import main

if __name__ == "__main__":
    sys.exit(main(__doc__, "spectral_selection", SCRIPTS["spectral_selection"][1]))
