"""`apps.train_distributed` (or `train_distributed` with ./apps on sys.path), as the course layout expects: this module is
`needle.apps.train_distributed` itself (one copy of the code, installed with the package)."""
import sys

from needle.apps import train_distributed as _module  # noqa: E402

sys.modules[__name__] = _module
