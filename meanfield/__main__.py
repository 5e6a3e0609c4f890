"""``python -m meanfield ...`` is the ``meanfield`` command."""

import sys

from .console import main

sys.exit(main())
