"""Causal attention: the first tokens lead.

The catalogue cases causal-first-token-leads, causal-density-lead
(``meanfield validate --case ...``), at full size:

    python -m meanfield.validation.causal [-o REPORT_DIR]   (default REPORT_DIR: validation-out)
"""

import sys

from . import SCRIPTS
from ._entry import main

if __name__ == "__main__":
    sys.exit(main(__doc__, "causal", SCRIPTS["causal"][1]))
