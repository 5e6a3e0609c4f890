"""The cases of `meanfield validate` (meanfield.validate): importing this package registers them all,
in the report's order (the linear theory first, then what the nonlinear dynamics does)."""

from . import linear  # noqa: F401  isort: skip
from . import meanfield_limit  # noqa: F401  isort: skip
from . import clusters  # noqa: F401  isort: skip
from . import metastability  # noqa: F401  isort: skip
from . import synchronisation  # noqa: F401  isort: skip
from . import noise  # noqa: F401  isort: skip
from . import lowtemp  # noqa: F401  isort: skip
from . import selection  # noqa: F401  isort: skip
from . import tokens  # noqa: F401  isort: skip
from . import general  # noqa: F401  isort: skip
from . import causal  # noqa: F401  isort: skip
from . import control  # noqa: F401  isort: skip
