"""`apps.train` (or `train` with ./apps on sys.path), as the course layout expects: this module is
`needle.apps.train` itself (one copy of the code, installed with the package)."""
import sys

import apps.models  # noqa: E402,F401  (as before the move: the first import of apps.models seeds 0)
from needle.apps import train as _module  # noqa: E402

if __name__ == "__main__":  # python -m apps.train
    sys.exit(_module.main())
sys.modules[__name__] = _module
