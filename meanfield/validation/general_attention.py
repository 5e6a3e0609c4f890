"""Density with Q, K, V and heads, the causal density, random heads per layer.

The catalogue cases selection-mass-split, selection-sphere, synchronisation-general-heads, causal-density-lead, random-heads-logistic
(``meanfield validate --case ...``), at full size:

    python -m meanfield.validation.general_attention [-o REPORT_DIR]   (default REPORT_DIR: validation-out)
"""

import sys

from . import SCRIPTS
from ._entry import main

if __name__ == "__main__":
    sys.exit(main(__doc__, "general_attention", SCRIPTS["general_attention"][1]))
