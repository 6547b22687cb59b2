"""`apps.simple_ml` (or `simple_ml` with ./apps on sys.path), as the course layout expects: this module is
`needle.apps.simple_ml` itself (one copy of the code, installed with the package)."""
import sys

import apps.models  # noqa: E402,F401  (as before the move: the first import of apps.models seeds 0)
from needle.apps import simple_ml as _module  # noqa: E402

sys.modules[__name__] = _module
