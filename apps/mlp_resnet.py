"""`apps.mlp_resnet` (or `mlp_resnet` with ./apps on sys.path), as the course layout expects: this module is
`needle.apps.mlp_resnet` itself (one copy of the code, installed with the package)."""
import sys

import numpy as np

np.random.seed(0)  # contract §11: importing the course module seeds numpy (needle.apps does not)

from needle.apps import mlp_resnet as _module  # noqa: E402

sys.modules[__name__] = _module
