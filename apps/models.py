"""`apps.models` (or `models` with ./apps on sys.path), as the course layout expects: this module is
`needle.apps.models` itself (one copy of the code, installed with the package)."""
import sys

import numpy as np

np.random.seed(0)  # contract §11: importing the course module seeds numpy (needle.apps does not)

from needle.apps import models as _module  # noqa: E402

sys.modules[__name__] = _module
