"""`apps.train_schedule` (or `train_schedule` with ./apps on sys.path), as the course layout expects: this module is
`needle.apps.train_schedule` itself (one copy of the code, installed with the package)."""
import sys

from needle.apps import train_schedule as _module  # noqa: E402

sys.modules[__name__] = _module
